"""ROI sources and lesion masks: CSV spheres, NIfTI labels, DICOM SEG, DICOM RTSTRUCT."""

from __future__ import annotations

from bonelesion.roi.lesion import Lesion, Sphere, rasterise_contours, rasterise_sphere
from bonelesion.roi.sources import (
    load_lesions,
    read_annotations_csv,
    read_dicom_seg,
    read_nifti_labels,
    read_rtstruct,
)

__all__ = [
    "Lesion",
    "Sphere",
    "rasterise_sphere",
    "rasterise_contours",
    "load_lesions",
    "read_annotations_csv",
    "read_nifti_labels",
    "read_dicom_seg",
    "read_rtstruct",
]
