"""Builders of `LesionMeasurements` for the classifier and report tests (no I/O)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bonelesion.model.results import (
    AdcResult,
    ChemicalShiftResult,
    CtAttenuationResult,
    LesionMeasurements,
)


def ct_result(mean_hu: float, max_hu: float | None = None, *, lesion_id: str = "L1",
              series_uid: str = "1.2.826.0.1.3680043.8.498.1") -> CtAttenuationResult:
    """A CT attenuation result with the given mean (max defaults to mean + 100 HU)."""
    max_hu = mean_hu + 100.0 if max_hu is None else max_hu
    return CtAttenuationResult(
        lesion_id=lesion_id, series_instance_uid=series_uid, lesion_voxel_count=125,
        lesion_volume_ml=0.125, core_voxel_count=27, attenuation_mean_hu=mean_hu,
        attenuation_median_hu=mean_hu, attenuation_max_hu=max_hu,
        attenuation_min_hu=mean_hu - 100.0, attenuation_sd_hu=30.0,
        attenuation_p05_hu=mean_hu - 50.0, attenuation_p95_hu=mean_hu + 50.0,
        erosion_margin_mm=1.0,
    )


def csi_result(sir: float, *, fat_fraction: float | None = None, lesion_id: str = "L1",
               warnings: tuple[str, ...] = ()) -> ChemicalShiftResult:
    """A chemical-shift result with SIR = sir (in-phase signal 1000)."""
    return ChemicalShiftResult(
        lesion_id=lesion_id, in_phase_series_uid="1.2.3.10", opposed_phase_series_uid="1.2.3.11",
        voxel_count=50, signal_in_phase_mean=1000.0, signal_opposed_phase_mean=1000.0 * sir,
        chemical_shift_ratio=sir, signal_drop_pct=(1.0 - sir) * 100.0, fat_fraction=fat_fraction,
        warnings=warnings,
    )


def adc_result(adc_mm2_per_s: float, *, lesion_id: str = "L1") -> AdcResult:
    """An ADC result with mean = median = adc."""
    return AdcResult(
        lesion_id=lesion_id, series_instance_uid="1.2.3.20", adc_source="fitted", voxel_count=40,
        adc_mean_mm2_per_s=adc_mm2_per_s, adc_median_mm2_per_s=adc_mm2_per_s,
        adc_p10_mm2_per_s=adc_mm2_per_s * 0.9, adc_p90_mm2_per_s=adc_mm2_per_s * 1.1,
        adc_sd_mm2_per_s=adc_mm2_per_s * 0.05, b_values_s_per_mm2=(50.0, 800.0),
    )


def lesion(*, ct: float | tuple[float, float] | None = None, sir: float | None = None,
           fat_fraction: float | None = None, adc: float | None = None,
           annotations: dict[str, Any] | None = None, lesion_id: str = "L1",
           study: str = "1.2.3", missing: dict[str, str] | None = None,
           csi_warnings: tuple[str, ...] = (), ct_kw: dict[str, Any] | None = None,
           cs_kw: dict[str, Any] | None = None,
           adc_kw: dict[str, Any] | None = None) -> LesionMeasurements:
    """One lesion; ``ct`` is a mean HU or (mean, max); ``*_kw`` override result fields."""
    ct_r = None
    if ct is not None:
        mean, mx = (ct, None) if isinstance(ct, (int, float)) else ct
        ct_r = dataclasses.replace(ct_result(float(mean), mx, lesion_id=lesion_id),
                                   **(ct_kw or {}))
    cs_r = None
    if sir is not None:
        cs_r = dataclasses.replace(
            csi_result(sir, fat_fraction=fat_fraction, lesion_id=lesion_id,
                       warnings=csi_warnings), **(cs_kw or {}))
    adc_r = None
    if adc is not None:
        adc_r = dataclasses.replace(adc_result(adc, lesion_id=lesion_id), **(adc_kw or {}))
    return LesionMeasurements(
        study_instance_uid=study, lesion_id=lesion_id, ct=ct_r, chemical_shift=cs_r, adc=adc_r,
        missing=missing or {}, annotations=annotations or {},
    )
