"""Digital phantoms written as real DICOM, with exact truth.

Public API
----------
write_study(out_dir, *, vendor="siemens", seed=0, enhanced=False, compressed=False,
            noise_free=False, lesions=None, min_lesion_radius_mm=None) -> StudyTruth
    A lumbar-spine-like study: CT, Dixon (in/opposed phase, water, fat), DWI (b 0/50/400/800)
    and a scanner-style ADC map in one frame of reference, plus truth.json and rois.csv.
write_ct_series(out_dir, *, shape=(300, 512, 512), vendor="siemens", seed=0, ...) -> Path
    A plain large CT series for loader benchmarks.
load_truth(path) -> StudyTruth
    Read and validate truth.json (schema: `TRUTH_JSON_SCHEMA`).
"""

from __future__ import annotations

from bonelesion.phantom.anatomy import (
    DEFAULT_LESIONS,
    SIGNAL_VOID_LESIONS,
    SMALL_BONE_ISLAND,
    TISSUES,
    VERTEBRAE,
    ExpectedNature,
    LesionSpec,
    TissueSpec,
)
from bonelesion.phantom.study import echo_times_ms, fit_adc_map, write_ct_series, write_study
from bonelesion.phantom.truth import (
    ROIS_CSV_COLUMNS,
    TRUTH_JSON_SCHEMA,
    TRUTH_SCHEMA_VERSION,
    AcquisitionTruth,
    LesionTruth,
    NoiseTruth,
    SeriesTruth,
    StudyTruth,
    TissueTruth,
    load_truth,
)
from bonelesion.phantom.vendor_style import SUPPORTED_VENDORS

__all__ = [
    "write_study",
    "write_ct_series",
    "load_truth",
    "echo_times_ms",
    "fit_adc_map",
    "StudyTruth",
    "LesionTruth",
    "TissueTruth",
    "SeriesTruth",
    "AcquisitionTruth",
    "NoiseTruth",
    "LesionSpec",
    "TissueSpec",
    "ExpectedNature",
    "DEFAULT_LESIONS",
    "SIGNAL_VOID_LESIONS",
    "SMALL_BONE_ISLAND",
    "TISSUES",
    "VERTEBRAE",
    "SUPPORTED_VENDORS",
    "TRUTH_JSON_SCHEMA",
    "TRUTH_SCHEMA_VERSION",
    "ROIS_CSV_COLUMNS",
]
