"""Measurements on digital phantom studies (real DICOM written by bonelesion.phantom) vs truth.

Each vendor style, noise-free and noisy: `bonelesion measure` must give the truth.json
values. Needs the reader (bonelesion.dicom.series); skipped until it is importable.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from bonelesion.stages.commands import measure_export
from bonelesion.stages.config import DwiAdcConfig, PipelineConfig, StagesConfig

ATOL_HU_NOISE_FREE = 1.0  # Done-means: mean HU within 1 HU (int16 storage rounds to 0.5 HU)
N_STANDARD_ERRORS = 3.0  # Done-means for noisy studies
ATOL_SIR = 0.01  # Done-means
ATOL_FAT_FRACTION = 0.01  # Done-means
RTOL_ADC = 0.01  # Done-means: ADC within 1 %

VARIANTS = [(v, nf) for v in ("siemens", "ge", "philips") for nf in (True, False)]


@pytest.mark.slow
@pytest.mark.parametrize(("vendor", "noise_free"), VARIANTS,
                         ids=[f"{v}-{'clean' if nf else 'noisy'}" for v, nf in VARIANTS])
def test_measure_matches_phantom_truth(tmp_path: Path, vendor: str, noise_free: bool) -> None:
    from bonelesion.phantom import write_study

    study = tmp_path / "study"
    truth = write_study(study, vendor=vendor, seed=3, noise_free=noise_free)
    summary = measure_export(study / "DICOM", study / "rois.csv", tmp_path / "out")
    by_id = {m.lesion_id: m for m in summary.measurements}
    assert set(by_id) == {t.lesion_id for t in truth.lesions}
    for t in truth.lesions:
        m = by_id[t.lesion_id]
        assert m.missing == {}, m.missing
        assert m.ct is not None and m.chemical_shift is not None and m.adc is not None
        if noise_free:
            assert m.ct.attenuation_mean_hu == pytest.approx(t.attenuation_mean_hu,
                                                             abs=ATOL_HU_NOISE_FREE)
        else:
            se_hu = truth.noise.ct_sd_hu / math.sqrt(m.ct.core_voxel_count)
            assert abs(m.ct.attenuation_mean_hu - t.attenuation_mean_hu) < N_STANDARD_ERRORS * se_hu
        assert m.chemical_shift.chemical_shift_ratio == pytest.approx(t.chemical_shift_ratio,
                                                                      abs=ATOL_SIR)
        assert m.chemical_shift.fat_fraction == pytest.approx(t.fat_fraction,
                                                              abs=ATOL_FAT_FRACTION)
        assert m.adc.adc_source == "scanner"
        assert m.adc.adc_mean_mm2_per_s == pytest.approx(t.adc_mm2_per_s, rel=RTOL_ADC)
        assert m.annotations["treated"] is t.treated
    with summary.lesions_csv.open() as fh:
        assert len(list(csv.DictReader(fh))) == len(truth.lesions)
    if vendor == "siemens" and not noise_free:
        _check_fitted_adc(study, truth)


def _check_fitted_adc(study: Path, truth: object) -> None:
    """Our own fit of the phantom's noisy DWI (scanner map ignored) also matches the truth."""
    from bonelesion.dicom.series import load_series
    from bonelesion.roi.sources import load_lesions
    from bonelesion.stages.study import measure_study

    config = PipelineConfig(stages=StagesConfig(dwi_adc=DwiAdcConfig(prefer_scanner_adc=False)))
    measurements = measure_study(load_series(study / "DICOM"), load_lesions(study / "rois.csv"),
                                 config)
    for m in measurements:
        t = next(t for t in truth.lesions if t.lesion_id == m.lesion_id)  # type: ignore[attr-defined]
        assert m.adc is not None and m.adc.adc_source == "fitted"
        assert m.adc.b_values_s_per_mm2 == pytest.approx((50.0, 400.0, 800.0))
        assert m.adc.adc_mean_mm2_per_s == pytest.approx(t.adc_mm2_per_s, rel=RTOL_ADC)
