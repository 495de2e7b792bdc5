"""Measurements on digital phantom studies (real DICOM written by bonelesion.phantom) vs truth.

Each vendor style, noise-free and noisy: `bonelesion measure` (the one per-study path) must
give the truth.json values.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from support.report_series import study_documents

from bonelesion.batch import measure_export
from bonelesion.report.outputs import OutputOptions

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
    out = tmp_path / "out"
    summary = measure_export(study / "DICOM", out, rois=study / "rois.csv")
    assert summary.exit_code == 0, summary.failures
    ((_, doc),) = study_documents(out).values()
    by_id = {e["lesion_id"]: e for e in doc["lesions"]}
    assert set(by_id) == {t.lesion_id for t in truth.lesions}
    for t in truth.lesions:
        entry = by_id[t.lesion_id]
        assert entry["missing"] == {}, entry["missing"]
        ct, cs, adc = (entry["measurements"][k] for k in ("ct", "chemical_shift", "adc"))
        if noise_free:
            assert ct["attenuation_mean_hu"] == pytest.approx(t.attenuation_mean_hu,
                                                              abs=ATOL_HU_NOISE_FREE)
        else:
            se_hu = truth.noise.ct_sd_hu / math.sqrt(ct["core_voxel_count"])
            assert abs(ct["attenuation_mean_hu"] - t.attenuation_mean_hu) < N_STANDARD_ERRORS * se_hu
        assert cs["chemical_shift_ratio"] == pytest.approx(t.chemical_shift_ratio, abs=ATOL_SIR)
        assert cs["fat_fraction"] == pytest.approx(t.fat_fraction, abs=ATOL_FAT_FRACTION)
        assert adc["adc_source"] == "scanner"
        assert adc["adc_mean_mm2_per_s"] == pytest.approx(t.adc_mm2_per_s, rel=RTOL_ADC)
        assert entry["annotations"]["treated"] is t.treated
    with (out / "lesions.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(truth.lesions)
    if vendor == "siemens" and not noise_free:
        _check_fitted_adc(study, truth, tmp_path)


def _check_fitted_adc(study: Path, truth: object, tmp_path: Path) -> None:
    """Our own fit of the phantom's noisy DWI (scanner map not preferred) also matches truth."""
    config = tmp_path / "fit.toml"
    config.write_text("[stages.dwi_adc]\nprefer_scanner_adc = false\n")
    out = tmp_path / "fitted"
    summary = measure_export(study / "DICOM", out, rois=study / "rois.csv", config=config,
                             outputs=OutputOptions(qc=False, dicom=False))
    assert summary.exit_code == 0, summary.failures
    ((_, doc),) = study_documents(out).values()
    for entry in doc["lesions"]:
        t = next(t for t in truth.lesions  # type: ignore[attr-defined]
                 if t.lesion_id == entry["lesion_id"])
        adc = entry["measurements"]["adc"]
        assert adc["adc_source"] == "fitted"
        assert adc["b_values_s_per_mm2"] == pytest.approx((50.0, 400.0, 800.0))
        assert adc["adc_mean_mm2_per_s"] == pytest.approx(t.adc_mm2_per_s, rel=RTOL_ADC)
