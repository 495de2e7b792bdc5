"""Result records of the measurement stages (frozen, units in every name).

These are the contract between the stages (which produce them), the classifier and the
reports (which consume them). A feature a study cannot give is ``None`` in
`LesionMeasurements`, with the reason in ``missing``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Provenance",
    "CtAttenuationResult",
    "ChemicalShiftResult",
    "AdcResult",
    "LesionMeasurements",
    "MISSING_CT",
    "MISSING_CHEMICAL_SHIFT",
    "MISSING_FAT_FRACTION",
    "MISSING_ADC",
    "missing_reason",
    "ANNOTATION_KEYS",
]

#: Keys of `LesionMeasurements.missing` (see its docstring).
MISSING_CT = "ct"
MISSING_CHEMICAL_SHIFT = "chemical_shift"
MISSING_FAT_FRACTION = "fat_fraction"
MISSING_ADC = "adc"

#: Structured per-lesion annotations the classifier reads (`LesionMeasurements.annotations`),
#: carried as columns of lesions.csv so a table can be re-called without the ROI file:
#: treatment status (tri-state), the scope of the CT rule (sclerotic, medullary, next to an
#: endplate), fat dominance and MR signal void read by a radiologist, and the SINS items and
#: ESCC grade.
ANNOTATION_KEYS = (
    "treated", "sclerotic", "medullary", "endplate_adjacent", "fat_dominant", "t1_bright",
    "sins_location", "sins_pain", "sins_lesion", "sins_alignment", "sins_collapse",
    "sins_posterolateral", "escc_grade", "signal_void",
)


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """How a result was made: the stage, its inputs and its resolved parameters."""

    stage: str
    series_instance_uids: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CtAttenuationResult:
    """CT attenuation statistics of one lesion, measured on its eroded core ROI.

    Reliability: ``core_voxel_count`` voxels were measured (None only when read back from a
    table that lacks it); ``erosion_fell_back`` is True when
    eroding the mask left no voxel and the whole mask (edge voxels, partial volume included)
    was used instead, so the statistics understate a dense lesion's attenuation.
    ``attenuation_central_slice_max_hu`` is the maximum of the core ROI on its largest
    cross-section (``central_slice_voxel_count`` voxels): a 2-D ROI maximum comparable with a
    reader's ROI maximum (Ulano 2016), unlike the 3-D maximum, which grows with lesion size.
    """

    lesion_id: str
    series_instance_uid: str
    lesion_voxel_count: int
    lesion_volume_ml: float
    core_voxel_count: int | None
    attenuation_mean_hu: float
    attenuation_median_hu: float
    attenuation_max_hu: float
    attenuation_min_hu: float
    attenuation_sd_hu: float
    attenuation_p05_hu: float
    attenuation_p95_hu: float
    erosion_margin_mm: float
    erosion_fell_back: bool = False
    attenuation_central_slice_max_hu: float | None = None
    central_slice_voxel_count: int | None = None
    warnings: tuple[str, ...] = ()
    provenance: Provenance | None = None


@dataclass(frozen=True, kw_only=True)
class ChemicalShiftResult:
    """In/opposed-phase (and Dixon water/fat) signal of one lesion.

    ``chemical_shift_ratio`` is SIR = mean opposed-phase / mean in-phase signal;
    ``signal_drop_pct`` = (1 − SIR) × 100; ``fat_fraction`` = F / (W + F) when water and
    fat images exist, else None.
    """

    lesion_id: str
    in_phase_series_uid: str
    opposed_phase_series_uid: str
    voxel_count: int | None
    signal_in_phase_mean: float
    signal_opposed_phase_mean: float
    chemical_shift_ratio: float
    signal_drop_pct: float
    fat_fraction: float | None = None
    normalised_chemical_shift_ratio: float | None = None
    echo_time_in_phase_ms: float | None = None
    echo_time_opposed_phase_ms: float | None = None
    magnetic_field_strength_t: float | None = None
    signal_water_mean: float | None = None
    signal_fat_mean: float | None = None
    snr_in_phase: float | None = None
    snr_opposed_phase: float | None = None
    snr_water: float | None = None
    snr_fat: float | None = None
    reference_voxel_count: int | None = None
    reference_signal_in_phase: float | None = None
    reference_signal_opposed_phase: float | None = None
    reference_signal_water: float | None = None
    in_phase_relative_to_reference: float | None = None
    water_relative_to_reference: float | None = None
    warnings: tuple[str, ...] = ()
    provenance: Provenance | None = None


@dataclass(frozen=True, kw_only=True)
class AdcResult:
    """ADC statistics of one lesion, in mm²/s.

    ``adc_source`` is ``"scanner"`` (the scanner's ADC map) or ``"fitted"`` (our fit over
    ``b_values_s_per_mm2``).
    """

    lesion_id: str
    series_instance_uid: str
    adc_source: str
    voxel_count: int | None
    adc_mean_mm2_per_s: float
    adc_median_mm2_per_s: float
    adc_p10_mm2_per_s: float
    adc_p90_mm2_per_s: float
    adc_sd_mm2_per_s: float
    b_values_s_per_mm2: tuple[float, ...] = ()
    map_degenerate: bool = False
    low_b_value_s_per_mm2: float | None = None
    signal_low_b_mean: float | None = None
    snr_low_b: float | None = None
    reference_voxel_count: int | None = None
    reference_signal_low_b: float | None = None
    low_b_relative_to_reference: float | None = None
    warnings: tuple[str, ...] = ()
    provenance: Provenance | None = None


@dataclass(frozen=True, kw_only=True)
class LesionMeasurements:
    """Everything measured for one lesion in one study.

    ``missing`` maps a feature name to the reason it could not be measured. The keys (one
    vocabulary for the stages that write them and the classifier that reads them):

    ``"ct"`` (`MISSING_CT`)
        no CT attenuation result (``ct`` is None).
    ``"chemical_shift"`` (`MISSING_CHEMICAL_SHIFT`)
        no chemical-shift result (``chemical_shift`` is None); this also means no fat fraction.
    ``"fat_fraction"`` (`MISSING_FAT_FRACTION`)
        a chemical-shift result exists but its ``fat_fraction`` is None (no Dixon water/fat
        images). Readers of the fat fraction look here first, then under
        ``"chemical_shift"``.
    ``"adc"`` (`MISSING_ADC`)
        no ADC result (``adc`` is None).

    ``annotations`` carries the structured per-lesion inputs of the ROI source (``treated``,
    SINS/ESCC items …) unchanged.
    """

    study_instance_uid: str
    lesion_id: str
    ct: CtAttenuationResult | None = None
    chemical_shift: ChemicalShiftResult | None = None
    adc: AdcResult | None = None
    missing: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def missing_reason(measurements: LesionMeasurements, *keys: str,
                   default: str = "not measured") -> str:
    """Return the first reason found in ``measurements.missing`` under ``keys``, in order.

    Examples
    --------
    >>> m = LesionMeasurements(study_instance_uid="1.2", lesion_id="L1",
    ...                        missing={"fat_fraction": "no Dixon water/fat images"})
    >>> missing_reason(m, MISSING_FAT_FRACTION, MISSING_CHEMICAL_SHIFT)
    'no Dixon water/fat images'
    >>> missing_reason(m, MISSING_ADC)
    'not measured'
    """
    for key in keys:
        reason = measurements.missing.get(key)
        if reason:
            return reason
    return default
