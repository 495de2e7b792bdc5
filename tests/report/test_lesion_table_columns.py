"""Every lesions.csv measurement column holds the result field it is named after.

Truth: the column → field table below, written out by hand from the column names (quantity →
statistic → unit), and a lesion whose every numeric field has a different value, so that a
column filled from the wrong field (e.g. median from mean) fails.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest
from support.report_series import write_study_views

from bonelesion.model.results import (
    AdcResult,
    ChemicalShiftResult,
    CtAttenuationResult,
    LesionMeasurements,
)
from bonelesion.report.result import study_result
from bonelesion.report.table import COLUMN_NAMES

#: column → (result part, field name)
COLUMN_FIELDS = {
    "ct_series_uid": ("ct", "series_instance_uid"),
    "ct_voxels": ("ct", "lesion_voxel_count"),
    "ct_volume_ml": ("ct", "lesion_volume_ml"),
    "ct_core_voxels": ("ct", "core_voxel_count"),
    "ct_attenuation_mean_hu": ("ct", "attenuation_mean_hu"),
    "ct_attenuation_median_hu": ("ct", "attenuation_median_hu"),
    "ct_attenuation_max_hu": ("ct", "attenuation_max_hu"),
    "ct_attenuation_min_hu": ("ct", "attenuation_min_hu"),
    "ct_attenuation_sd_hu": ("ct", "attenuation_sd_hu"),
    "ct_attenuation_p05_hu": ("ct", "attenuation_p05_hu"),
    "ct_attenuation_p95_hu": ("ct", "attenuation_p95_hu"),
    "ct_erosion_margin_mm": ("ct", "erosion_margin_mm"),
    "mr_in_phase_series_uid": ("chemical_shift", "in_phase_series_uid"),
    "mr_opposed_phase_series_uid": ("chemical_shift", "opposed_phase_series_uid"),
    "mr_voxels": ("chemical_shift", "voxel_count"),
    "mr_signal_in_phase_mean": ("chemical_shift", "signal_in_phase_mean"),
    "mr_signal_opposed_phase_mean": ("chemical_shift", "signal_opposed_phase_mean"),
    "mr_chemical_shift_ratio": ("chemical_shift", "chemical_shift_ratio"),
    "mr_signal_drop_pct": ("chemical_shift", "signal_drop_pct"),
    "mr_fat_fraction": ("chemical_shift", "fat_fraction"),
    "mr_normalised_chemical_shift_ratio": ("chemical_shift", "normalised_chemical_shift_ratio"),
    "mr_echo_time_in_phase_ms": ("chemical_shift", "echo_time_in_phase_ms"),
    "mr_echo_time_opposed_phase_ms": ("chemical_shift", "echo_time_opposed_phase_ms"),
    "mr_magnetic_field_strength_t": ("chemical_shift", "magnetic_field_strength_t"),
    "adc_series_uid": ("adc", "series_instance_uid"),
    "adc_source": ("adc", "adc_source"),
    "adc_voxels": ("adc", "voxel_count"),
    "adc_mean_mm2_per_s": ("adc", "adc_mean_mm2_per_s"),
    "adc_median_mm2_per_s": ("adc", "adc_median_mm2_per_s"),
    "adc_p10_mm2_per_s": ("adc", "adc_p10_mm2_per_s"),
    "adc_p90_mm2_per_s": ("adc", "adc_p90_mm2_per_s"),
    "adc_sd_mm2_per_s": ("adc", "adc_sd_mm2_per_s"),
    # reliability columns (issue 18)
    "ct_erosion_fell_back": ("ct", "erosion_fell_back"),
    "ct_attenuation_central_slice_max_hu": ("ct", "attenuation_central_slice_max_hu"),
    "ct_central_slice_voxels": ("ct", "central_slice_voxel_count"),
    "mr_signal_water_mean": ("chemical_shift", "signal_water_mean"),
    "mr_signal_fat_mean": ("chemical_shift", "signal_fat_mean"),
    "mr_snr_in_phase": ("chemical_shift", "snr_in_phase"),
    "mr_snr_opposed_phase": ("chemical_shift", "snr_opposed_phase"),
    "mr_snr_water": ("chemical_shift", "snr_water"),
    "mr_snr_fat": ("chemical_shift", "snr_fat"),
    "mr_reference_voxels": ("chemical_shift", "reference_voxel_count"),
    "mr_reference_signal_in_phase": ("chemical_shift", "reference_signal_in_phase"),
    "mr_reference_signal_water": ("chemical_shift", "reference_signal_water"),
    "mr_in_phase_relative_to_reference": ("chemical_shift", "in_phase_relative_to_reference"),
    "mr_water_relative_to_reference": ("chemical_shift", "water_relative_to_reference"),
    "adc_map_degenerate": ("adc", "map_degenerate"),
    "adc_low_b_value_s_per_mm2": ("adc", "low_b_value_s_per_mm2"),
    "adc_signal_low_b_mean": ("adc", "signal_low_b_mean"),
    "adc_snr_low_b": ("adc", "snr_low_b"),
    "adc_reference_voxels": ("adc", "reference_voxel_count"),
    "adc_reference_signal_low_b": ("adc", "reference_signal_low_b"),
    "adc_low_b_relative_to_reference": ("adc", "low_b_relative_to_reference"),
}
#: Floats are written with repr() and read back exactly; the values differ by ≥ 1.
RTOL_FLOAT = 1e-12


def _distinct(cls: type[Any], counter: itertools.count[int]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in ("warnings", "provenance", "lesion_id"):
            continue
        if f.name == "b_values_s_per_mm2":
            values[f.name] = (0.0, 800.0)
        elif "bool" in str(f.type):
            values[f.name] = next(counter) % 2 == 0
        elif "tuple" in str(f.type) or "Mapping" in str(f.type):
            continue  # defaults (source images of a scanner map …) are not table columns
        elif "int" in str(f.type):
            values[f.name] = next(counter)
        elif "float" in str(f.type):
            values[f.name] = next(counter) + 0.25
        else:
            values[f.name] = f"{f.name}-{next(counter)}"
    return cls(lesion_id="L1", **values)


def test_each_column_holds_its_named_field(tmp_path: Path) -> None:
    counter = itertools.count(1)
    m = LesionMeasurements(
        study_instance_uid="1.2.3", lesion_id="L1",
        ct=_distinct(CtAttenuationResult, counter),
        chemical_shift=_distinct(ChemicalShiftResult, counter),
        adc=_distinct(AdcResult, counter),
    )
    write_study_views(tmp_path, study_result([m]), qc=False, dicom=False, html=False)
    with (tmp_path / "lesions.csv").open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    measured = {c for c in COLUMN_NAMES
                if c.startswith(("ct_", "mr_", "adc_")) and c != "adc_b_values_s_per_mm2"}
    assert measured == set(COLUMN_FIELDS)
    for column, (part, name) in COLUMN_FIELDS.items():
        expected = getattr(getattr(m, part), name)
        if isinstance(expected, float):
            assert float(row[column]) == pytest.approx(expected, rel=RTOL_FLOAT), column
        else:
            assert row[column] == (str(expected).lower() if isinstance(expected, bool) else str(expected)), column
    assert row["adc_b_values_s_per_mm2"] == "0;800"
