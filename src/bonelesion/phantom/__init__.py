"""Digital phantoms written as real DICOM, with exact truth.

Public API
----------
write_study(out_dir, *, vendor="siemens", seed=0, enhanced=False, compressed=False,
            noise_free=False, lesions=None, min_lesion_radius_mm=None) -> StudyTruth
    A lumbar-spine-like study: CT, Dixon (in/opposed phase, water, fat), DWI (b 0/50/400/800)
    and a scanner-style ADC map in one frame of reference, plus truth.json and rois.csv.
write_ct_series(out_dir, *, shape=(300, 512, 512), vendor="siemens", seed=0, ...) -> Path
    A plain large CT series for loader benchmarks.
write_spine_study(out_dir, *, vendor="siemens", seed=0, options=None, ct=None, mr=None,
                  noise_free=False, enhanced=False, compressed=False) -> StudyTruth
    A thoracolumbar-pelvic spine (T10–sacrum, ribs, iliac bones, soft tissue, table) CT with
    sclerotic metastases, bone islands and look-alikes, blurred by a PSF and slice profile,
    plus sagittal Dixon and DWI/ADC in the same frame of reference; truth schema 2.0.
load_truth(path) -> StudyTruth
    Read and validate truth.json (schemas 1.0 and 2.0: `TRUTH_JSON_SCHEMAS`).
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
from bonelesion.phantom.spine import LesionKind, LookAlikeKind, SpineOptions
from bonelesion.phantom.spine_study import (
    PATIENT_POSITIONS,
    SAMPLE_CT,
    SAMPLE_MR,
    CtProtocol,
    MrProtocol,
    write_spine_study,
    write_spine_study_from_options,
)
from bonelesion.phantom.study import echo_times_ms, fit_adc_map, write_ct_series, write_study
from bonelesion.phantom.truth import (
    ROIS_CSV_COLUMNS,
    SUPPORTED_TRUTH_SCHEMA_VERSIONS,
    TRUTH_JSON_SCHEMA,
    TRUTH_JSON_SCHEMAS,
    TRUTH_SCHEMA_VERSION,
    AcquisitionTruth,
    CtReconstructionTruth,
    DiscTruth,
    LesionTruth,
    LookAlikeTruth,
    NoiseTruth,
    RibTruth,
    SacroiliacJointTruth,
    SeriesTruth,
    SpineLesionTruth,
    SpineOptionsTruth,
    SpineTruth,
    StudyTruth,
    TissueTruth,
    VertebraTruth,
    load_truth,
)
from bonelesion.phantom.vendor_style import SUPPORTED_VENDORS

__all__ = [
    "write_study",
    "write_spine_study",
    "write_spine_study_from_options",
    "SpineOptions",
    "CtProtocol",
    "MrProtocol",
    "SAMPLE_CT",
    "SAMPLE_MR",
    "PATIENT_POSITIONS",
    "LesionKind",
    "LookAlikeKind",
    "SpineTruth",
    "SpineOptionsTruth",
    "CtReconstructionTruth",
    "VertebraTruth",
    "DiscTruth",
    "RibTruth",
    "SacroiliacJointTruth",
    "SpineLesionTruth",
    "LookAlikeTruth",
    "TRUTH_JSON_SCHEMAS",
    "SUPPORTED_TRUTH_SCHEMA_VERSIONS",
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
