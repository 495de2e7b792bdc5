"""Real scanner data (../shared/data): ADC against the scanner, multi-b ADC, Dixon marrow.

Needs the reader (bonelesion.dicom.series); skipped when it or the data are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.testdata import plan_and_load, shared_path

from bonelesion.cli import EXIT_OK, main
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.stages.config import ChemicalShiftConfig, DwiAdcConfig
from bonelesion.stages.dwi_adc import fit_adc
from bonelesion.stages.mr_chemical_shift import DixonImages, measure_chemical_shift
from bonelesion.units import IntensityUnit

pytestmark = pytest.mark.shared_data

#: Done-means: median |fitted − scanner| / scanner over head voxels.
MAX_MEDIAN_REL_ERROR_VS_SCANNER = 0.01
#: Head voxels that must get a fitted value (the rest: noise floor / non-positive signal).
MIN_FITTED_FRACTION_IN_HEAD = 0.97
#: Plausible median brain ADC (grey/white matter dominate a brain mask), mm²/s.
BRAIN_ADC_RANGE_MM2_PER_S = (0.6e-3, 1.2e-3)
#: Fatty (mixed) vertebral marrow loses far more than 20 % on opposed phase.
FATTY_MARROW_SIR_MAX = 0.5


def _series_module():
    import bonelesion.dicom.series as series

    return series


def _link_files(folders: list[Path], dest: Path) -> Path:
    dest.mkdir()
    for folder in folders:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            os.symlink(f, dest / f"{folder.name}_{f.name}")
    return dest


def _otsu_mask(array: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    finite = np.nan_to_num(np.asarray(array, dtype=np.float64))
    return finite > threshold_otsu(finite)


@pytest.mark.slow
def test_fitted_adc_matches_siemens_xa30_scanner_map(tmp_path: Path) -> None:
    series = _series_module()
    base = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom")
    export = _link_files([base / "16_DWI_dir80_PA", base / "12_DWI_dir80_PA"], tmp_path / "export")
    out = tmp_path / "adc"
    assert main(["-q", "adc", str(export), str(out)]) == EXIT_OK
    (nifti,) = out.rglob("*.nii.gz")
    fitted = np.asarray(nib.load(nifti).get_fdata()).transpose(2, 1, 0)  # back to [s, r, c]

    stacks = series.load_series(base / "11_DWI_dir80_PA") + series.load_series(
        base / "16_DWI_dir80_PA"
    )
    scanner = next(s.volume for s in stacks if s.info.role == "adc")
    b0 = next(s.volume for s in stacks if s.info.role == "dwi")
    assert scanner.intensity_unit == IntensityUnit.MM2_PER_S
    assert scanner.geometry_equal(b0) and fitted.shape == b0.shape
    scanner_adc = np.asarray(scanner.array, dtype=np.float64)
    head = _otsu_mask(b0.array) & (scanner_adc > 0)
    assert head.sum() > 10_000
    values = fitted[head]
    ok = np.isfinite(values)
    assert ok.mean() > MIN_FITTED_FRACTION_IN_HEAD  # the noise-floor mask spares the head
    rel = np.abs(values[ok] - scanner_adc[head][ok]) / scanner_adc[head][ok]
    assert np.median(rel) < MAX_MEDIAN_REL_ERROR_VS_SCANNER


def test_multi_b_selection_on_philips_headers(tmp_path: Path) -> None:
    # philips/dti/002 keeps real Philips headers (b in private tag 2001,1003) but its pixel
    # data were replaced by uniform noise (0–254) when dicom2nifti anonymised it, so only the
    # b-value handling can be checked here; plausibility is checked on the XA30 brain below.
    folder = shared_path("multivendor_cases_dicom2nifti", "dicom", "philips", "dti", "002")
    _, volumes = plan_and_load(folder, tmp_path, "mr_multiparametric")
    dwi = volumes.by_role["dwi"]
    b_values = sorted({v.series.b_value_s_per_mm2 for v in dwi})
    assert b_values == pytest.approx((0.0, 40.0, 273.0, 800.0), abs=1.0)
    fit = fit_adc(dwi, config=DwiAdcConfig())
    assert fit.b_values_s_per_mm2 == pytest.approx((273.0, 800.0), abs=1.0)  # b ≥ 50 only
    assert fit.volume.shape == dwi[0].shape


@pytest.mark.slow
def test_trace_of_20_directions_matches_scanner_and_is_plausible_brain_adc(tmp_path: Path
                                                                          ) -> None:
    # Raw XA30 series 10: b = 0 plus 20 directions at b = 2500, combined to the trace
    # (geometric mean) and fitted; compared with the scanner's own ADC map (series 11).
    series = _series_module()
    base = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom")
    _, volumes = plan_and_load(base / "10_DWI_dir80_PA", tmp_path, "mr_multiparametric")
    dwi = volumes.by_role["dwi"]
    assert len(dwi) == 21
    assert sorted({v.series.b_value_s_per_mm2 for v in dwi}) == [0.0, 2500.0]
    fit = fit_adc(dwi, config=DwiAdcConfig())
    assert any("geometric mean of 20 directions" in n for n in fit.notes)
    scanner = series.load_series(base / "11_DWI_dir80_PA")[0].volume
    b0 = next(v for v in dwi if v.series.b_value_s_per_mm2 == 0.0)
    assert scanner.geometry_equal(b0)
    scanner_adc = np.asarray(scanner.array, dtype=np.float64)
    head = _otsu_mask(b0.array) & (scanner_adc > 0)
    values = np.asarray(fit.volume.array, dtype=np.float64)[head]
    ok = np.isfinite(values)
    assert ok.mean() > MIN_FITTED_FRACTION_IN_HEAD
    rel = np.abs(values[ok] - scanner_adc[head][ok]) / scanner_adc[head][ok]
    assert np.median(rel) < MAX_MEDIAN_REL_ERROR_VS_SCANNER
    low, high = BRAIN_ADC_RANGE_MM2_PER_S
    assert low < float(np.median(values[ok])) < high


def test_chaos_dixon_vertebral_marrow_shows_fatty_signal_drop(tmp_path: Path) -> None:
    folder = shared_path("dixon_philips15T_chaos_set1", "dicom")
    _, volumes = plan_and_load(folder, tmp_path, "mr_multiparametric")
    images = DixonImages(in_phase=volumes.one("dixon_in_phase"),
                         opposed_phase=volumes.one("dixon_opposed_phase"))
    assert images.in_phase is not None and images.opposed_phase is not None
    # Vertebral body (lumbar, slice at S = 54.3 mm): found on the in-phase image at row 136,
    # column 119 of the 256×256 slice; the sphere (r 6 mm) lies inside the body.
    lesion = Lesion(lesion_id="vertebral_body", sphere=Sphere((-7.5, 18.9, 54.3), 6.0))
    result = measure_chemical_shift(images, lesion.mask_on, config=ChemicalShiftConfig())
    assert result.echo_time_opposed_phase_ms == pytest.approx(2.302, abs=0.01)
    assert result.echo_time_in_phase_ms == pytest.approx(4.635, abs=0.01)
    assert result.chemical_shift_ratio < FATTY_MARROW_SIR_MAX
    assert result.warnings == ()  # TEs are in/opposed phase at 1.5 T


def test_measure_command_on_chaos_dixon(tmp_path: Path) -> None:
    _series_module()
    import csv

    from support.report_series import study_documents

    folder = shared_path("dixon_philips15T_chaos_set1", "dicom")
    rois = tmp_path / "rois.csv"
    rois.write_text("lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm,sins_lesion\n"
                    "vertebral_body,-7.5,18.9,54.3,6,0\n")
    out = tmp_path / "out"
    assert main(["-q", "measure", str(folder), "--rois", str(rois), "--out", str(out)]) == EXIT_OK
    with (out / "lesions.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["mr_chemical_shift_ratio"]) < FATTY_MARROW_SIR_MAX
    assert row["ct_attenuation_mean_hu"] == "" and row["adc_mean_mm2_per_s"] == ""
    ((_, doc),) = study_documents(out).values()
    (entry,) = doc["lesions"]
    assert set(entry["missing"]) == {"ct", "adc", "fat_fraction"}
    assert entry["annotations"]["sins_lesion"] == 0
