"""The export catalogue (SQLite): record types, reading files, storage, queries.

`bonelesion.dicom.index.index_export` builds it; `bonelesion.dicom.catalogue.query.Catalogue`
(also importable from `bonelesion.dicom.index`) reads it.
"""
