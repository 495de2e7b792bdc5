"""United Imaging mosaic DWI and GE multi-b / tensor DWI (issue 12): load, catalogue,
convert to one 4-D NIfTI with dcm2niix's .bval/.bvec (the reference conversions kept with
the data), and fit a plausible brain ADC."""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.testdata import shared_path

from bonelesion.cli.main import main
from bonelesion.dicom.convert import convert_export
from bonelesion.dicom.index import Catalogue, index_export
from bonelesion.dicom.series import load_series

pytestmark = pytest.mark.shared_data

UIH = ("dwi_uih_umr770_dti_132225", "dicom", "dti_tra_dir16_PA_rot_SaveBySlc__134057")
UIH_REF = ("dwi_uih_umr770_dti_132225", "reference", "dti_tra_dir16_PA_rot_12_132222")
GE_MULTIB = ("dwi_ge_mr750_multib_mr0004", "dicom")
GE_TENSOR = ("dwi_ge_pioneer_tensor_r2", "dicom")
GE_TENSOR_REF = ("dwi_ge_pioneer_tensor_r2", "reference", "Ax_DWI_TENSOR_R2_1")
#: dcm2niix writes b-values with 6 significant digits and bvecs with 6 decimals.
ATOL_B_S_PER_MM2 = 1e-3
ATOL_BVEC = 1e-5
#: Brain ADC (grey/white matter) in mm²/s (CLINICAL_REFERENCE.md; issue 12).
BRAIN_ADC_MM2_PER_S = (0.6e-3, 0.9e-3)
#: Brain mask: b0 signal above this fraction of its 99th percentile, and ADC below CSF.
MASK_B0_FRACTION = 0.3
CSF_ADC_MM2_PER_S = 1.5e-3
#: GE multi-b volume order (README-Series.txt): b 100, 750, 1500, 0, then 4 × (100, 750, 1500).
GE_MULTIB_ORDER = [100.0, 750.0, 1500.0, 0.0] + [100.0, 750.0, 1500.0] * 4


def _quiet_convert(src: Path, out: Path) -> Path:
    logging.disable(logging.WARNING)
    try:
        summary = convert_export(src, out)
    finally:
        logging.disable(logging.NOTSET)
    (nii,) = [p for p in summary.written if p.name.endswith(".nii.gz")]
    return nii


def _stem(nii: Path) -> Path:
    return nii.with_name(nii.name.removesuffix(".nii.gz"))


def test_uih_mosaics_load_as_17_volumes_of_20_slices() -> None:
    stacks = load_series(shared_path(*UIH))
    assert len(stacks) == 17 and all(s.usable for s in stacks)
    assert {s.shape for s in stacks} == {(20, 64, 64)}
    b = sorted(s.info.b_value_s_per_mm2 or 0.0 for s in stacks)
    assert b[0] == pytest.approx(1.2512641, abs=1e-6)  # the "b0" is the small b it is
    assert all(v == pytest.approx(929.75, abs=0.01) for v in b[1:])
    assert all(s.info.role == "dwi" for s in stacks)


def test_uih_converts_to_dcm2niix_reference(tmp_path: Path, ref_on_grid) -> None:  # type: ignore[no-untyped-def]
    nii = _quiet_convert(shared_path(*UIH), tmp_path)
    ref = shared_path(*UIH_REF[:-1], UIH_REF[-1] + ".nii")
    ours_b = np.loadtxt(f"{_stem(nii)}.bval")
    ref_b = np.loadtxt(shared_path(*UIH_REF[:-1], UIH_REF[-1] + ".bval"))
    np.testing.assert_allclose(ours_b, ref_b, atol=ATOL_B_S_PER_MM2)
    np.testing.assert_allclose(np.loadtxt(f"{_stem(nii)}.bvec"),
                               np.loadtxt(shared_path(*UIH_REF[:-1], UIH_REF[-1] + ".bvec")),
                               atol=ATOL_BVEC)
    stacks = sorted(load_series(shared_path(*UIH)), key=lambda s: s.files[0])
    for t, stack in enumerate(stacks):  # voxel values and geometry, volume by volume
        assert stack.volume is not None
        expected = ref_on_grid(stack.volume, ref, t)
        np.testing.assert_array_equal(np.asarray(stack.volume.array), expected)


def test_uih_catalogue_has_one_stack_per_mosaic(tmp_path: Path) -> None:
    index_export(shared_path(*UIH), tmp_path / "uih.sqlite", workers=1)
    with Catalogue(tmp_path / "uih.sqlite") as cat:
        (series,) = cat.series()
        stacks = cat.stacks(series.series_instance_uid)
        assert len(cat.files()) == 17
    reader = {str(s.key) for s in load_series(shared_path(*UIH), decode=False)}
    assert {s.stack_key for s in stacks} == reader and {s.role for s in stacks} == {"dwi"}


def test_ge_multib_volumes_told_apart_by_vas_collapse(tmp_path: Path) -> None:
    """(0019,10BB–BD) read (0, 1, 0) for every volume; (0043,1030) separates them."""
    stacks = load_series(shared_path(*GE_MULTIB), decode=False)
    assert len(stacks) == 16 and all(s.usable and s.shape == (5, 256, 256) for s in stacks)
    assert [s.info.b_value_s_per_mm2 for s in stacks] == GE_MULTIB_ORDER
    index_export(shared_path(*GE_MULTIB), tmp_path / "ge.sqlite", workers=1)
    with Catalogue(tmp_path / "ge.sqlite") as cat:
        (series,) = cat.series()
        keys = {s.stack_key for s in cat.stacks(series.series_instance_uid)}
    assert keys == {str(s.key) for s in stacks}
    nii = _quiet_convert(shared_path(*GE_MULTIB), tmp_path / "out")
    assert nib.load(nii).shape == (256, 256, 5, 16)
    assert np.loadtxt(f"{_stem(nii)}.bval").tolist() == GE_MULTIB_ORDER


def test_ge_tensor_bval_bvec_equal_dcm2niix_reference(tmp_path: Path) -> None:
    nii = _quiet_convert(shared_path(*GE_TENSOR), tmp_path)
    assert nib.load(nii).shape[3] == 7
    ref = shared_path(*GE_TENSOR_REF[:-1])
    np.testing.assert_allclose(np.loadtxt(f"{_stem(nii)}.bval"),
                               np.loadtxt(ref / f"{GE_TENSOR_REF[-1]}.bval"), atol=ATOL_B_S_PER_MM2)
    ours = np.loadtxt(f"{_stem(nii)}.bvec")
    theirs = np.loadtxt(ref / f"{GE_TENSOR_REF[-1]}.bvec")
    # sign-agnostic per volume: the overall sign of a gradient is irrelevant
    cos = np.abs(np.sum(ours * theirs, axis=0))
    norms = np.linalg.norm(ours, axis=0) * np.linalg.norm(theirs, axis=0)
    np.testing.assert_allclose(cos[norms > 0] / norms[norms > 0], 1.0, atol=1e-4)


@pytest.mark.parametrize("parts", [UIH, GE_MULTIB], ids=["uih", "ge_multib"])
def test_adc_of_brain_is_plausible(parts: tuple[str, ...], tmp_path: Path) -> None:
    src = shared_path(*parts)
    nii = _quiet_convert(src, tmp_path / "nifti")
    dwi = np.asarray(nib.load(nii).dataobj, dtype=np.float64)
    b = np.loadtxt(f"{_stem(nii)}.bval")
    b0 = dwi[..., int(np.argmin(b))]
    assert main(["-q", "adc", str(src), str(tmp_path / "adc")]) == 0
    (adc_path,) = glob.glob(str(tmp_path / "adc" / "*" / "adc_*.nii.gz"))  # one per study
    sidecar = json.loads(Path(adc_path.replace(".nii.gz", ".json")).read_text())
    if parts == UIH:  # the small "b0" is used as the b it is, not as 0
        assert min(sidecar["b_values_s_per_mm2"]) == pytest.approx(1.2512641, abs=1e-6)
    adc = np.asarray(nib.load(adc_path).dataobj, dtype=np.float64)
    assert adc.shape == b0.shape
    brain = (b0 > MASK_B0_FRACTION * np.percentile(b0, 99)) & (adc > 0) & (adc < CSF_ADC_MM2_PER_S)
    assert brain.sum() > 1000
    low, high = BRAIN_ADC_MM2_PER_S
    assert low <= float(np.median(adc[brain])) <= high
