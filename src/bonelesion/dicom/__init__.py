"""DICOM input: catalogue of an export, series → `Volume`, vendor knowledge."""
