"""Reports of a run: one results document (schema "2.0") and the views rendered from it.

Public API
----------
study_document(result, ...) -> dict, batch_document(...) -> dict
    The results documents (`bonelesion.report.document`), validated against the shipped
    JSON Schema (`bonelesion.report.schema`).
write_study_outputs(folder, result, document, *, options) -> (document, rows)
    Every view of one study: figures (key images, overview), DICOM SEG/SR, report.html,
    results.json, lesions.csv (`bonelesion.report.outputs`).
LESION_COLUMNS
    The one documented lesions.csv column order (`bonelesion.report.table`).

The package imports nothing heavy at import time: the renderers (figures, DICOM out,
HTML) are imported only when their views are written.
"""

from __future__ import annotations

from bonelesion.report.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION"]
