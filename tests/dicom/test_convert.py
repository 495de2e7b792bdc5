"""`bonelesion convert` and `bonelesion series` against reference conversions and contracts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from support.testdata import shared_path

from bonelesion.cli import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, main
from bonelesion.dicom.convert import convert_export

pytestmark = pytest.mark.shared_data

#: Voxel-centre agreement with dcm2niix (brief: 1e-3 mm).
ATOL_AFFINE_MM = 1e-3
#: dcm2niix prints bvec components with 5–6 decimals.
ATOL_BVEC = 1e-3
#: b-values are integers in .bval files.
ATOL_B_VALUE = 0.5

@pytest.fixture(autouse=True)
def _restore_logging():  # type: ignore[no-untyped-def]
    """`main` configures root logging on the (captured) stderr; undo it after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logging.captureWarnings(False)


SERIES_KEYS = {
    "series_instance_uid", "modality", "manufacturer", "role", "role_reason", "shape", "n_volumes",
    "spacing_mm", "origin_lps_mm", "direction_lps", "b_values_s_per_mm2", "echo_time_ms",
    "files", "problems", "study_instance_uid", "patient_id", "series_number",
    "series_description",
}


def _world_bvecs(bvec_path: Path, affine: np.ndarray) -> np.ndarray:
    """FSL bvecs (voxel axes, x flipped for det > 0) → unit vectors in RAS world space."""
    vecs = np.loadtxt(bvec_path).reshape(3, -1).T.copy()
    rotation = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if np.linalg.det(affine[:3, :3]) > 0:
        vecs[:, 0] = -vecs[:, 0]
    return vecs @ rotation.T


def test_dwi_series_becomes_one_4d_nifti_matching_dcm2niix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = shared_path("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    ref_dir = shared_path("dwi_ge_signa_pioneer", "reference")
    summary = convert_export(src, tmp_path)
    (nii,) = [p for p in summary.written if p.name.endswith(".nii.gz")]
    ours = nib.as_closest_canonical(nib.load(nii))
    ref = nib.as_closest_canonical(nib.load(ref_dir / "Ax_DWI_TENSOR_R2_1.nii"))
    assert ours.shape == ref.shape == (256, 256, 2, 7)
    np.testing.assert_allclose(ours.affine, ref.affine, atol=ATOL_AFFINE_MM)
    np.testing.assert_array_equal(ours.get_fdata(), ref.get_fdata())
    bval = nii.with_name(nii.name.replace(".nii.gz", ".bval"))
    np.testing.assert_allclose(np.loadtxt(bval),
                               np.loadtxt(ref_dir / "Ax_DWI_TENSOR_R2_1.bval"), atol=ATOL_B_VALUE)
    sidecar = json.loads(nii.with_name(nii.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["role"] == "dwi" and sidecar["n_volumes"] == 7
    text = json.dumps(sidecar)
    for forbidden in ("PatientName", "PatientID", "PatientBirthDate"):
        assert forbidden not in text
    assert summary.n_refused == 0


def test_bvec_matches_dcm2niix_in_world_space(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "10_DWI_dir80_PA")
    ref_dir = shared_path("dwi_siemens_xa30_enhanced_pa", "reference")
    summary = convert_export(src, tmp_path)
    (bvec,) = [p for p in summary.written if p.suffix == ".bvec"]
    nii = bvec.with_name(bvec.name.replace(".bvec", ".nii.gz"))
    ours = _world_bvecs(bvec, nib.load(nii).affine)
    # dcm2niix's series-10 NIfTI is not shipped; series 12 has the same grid.
    ref = _world_bvecs(ref_dir / "10_DWI_dir80_PA.bvec",
                       nib.load(ref_dir / "12_DWI_dir80_PA.nii").affine)
    assert ours.shape == ref.shape == (21, 3)
    for a, b in zip(ours, ref):
        if np.linalg.norm(b) < 0.5:
            assert np.linalg.norm(a) < ATOL_BVEC
        else:
            assert abs(abs(np.dot(a, b)) - 1.0) < ATOL_BVEC, (a, b)
    np.testing.assert_allclose(np.loadtxt(bvec.with_suffix(".bval")),
                               np.loadtxt(ref_dir / "10_DWI_dir80_PA.bval"), atol=ATOL_B_VALUE)


def test_refused_stacks_are_listed_not_fatal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = shared_path("multivendor_cases_dicom2nifti", "dicom")
    out = tmp_path / "out"
    code = main(["-q", "convert", str(src / "failing"), str(out)])
    assert code == EXIT_PARTIAL
    summary = json.loads((out / "summary.json").read_text())
    assert summary["written"] == []
    reasons = " ".join(p for r in summary["refused"] for p in r["problems"])
    for expected in ("gantry tilt", "duplicate positions", "irregular slice spacing"):
        assert expected in reasons
    # converting again without --force refuses to overwrite
    assert main(["-q", "convert", str(src / "hitachi"), str(out)]) == EXIT_OK
    assert main(["-q", "convert", str(src / "hitachi"), str(out)]) == EXIT_INPUT
    assert main(["-q", "convert", str(src / "hitachi"), str(out), "--force"]) == EXIT_OK


def test_dixon_echoes_become_two_3d_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary = convert_export(shared_path("dixon_philips15T_chaos_set1"), tmp_path)
    niis = sorted(p for p in summary.written if p.name.endswith(".nii.gz"))
    assert len(niis) == 2 and all("_e" in p.name for p in niis)
    for p in niis:
        assert nib.load(p).shape == (256, 256, 35)


def test_series_json_has_exactly_the_documented_keys(capsys) -> None:  # type: ignore[no-untyped-def]
    src = shared_path("multivendor_cases_dicom2nifti", "dicom")
    assert main(["-q", "series", str(src / "failing"), "--json"]) == EXIT_OK
    refused = json.loads(capsys.readouterr().out)
    assert refused and all(set(r) == SERIES_KEYS for r in refused)
    assert all(r["shape"] is None and r["problems"] for r in refused)
    assert main(["-q", "series", str(src / "philips" / "dti" / "002"), "--json"]) == EXIT_OK
    records = json.loads(capsys.readouterr().out)
    assert [r["b_values_s_per_mm2"] for r in records] == [[0.0], [40.0], [273.0], [800.0]]
    for r in records:
        assert set(r) == SERIES_KEYS
        assert r["shape"] == [3, 384, 384] and r["n_volumes"] == 1 and r["problems"] == []
        direction = np.array(r["direction_lps"])
        np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-6)
        assert r["role"] == "dwi" and r["modality"] == "MR"
        # what a user writing an ROI file needs, as pydicom reads it from the first file
        ds = pydicom.dcmread(r["files"][0], stop_before_pixels=True)
        assert r["study_instance_uid"] == ds.StudyInstanceUID
        assert r["patient_id"] == str(ds.PatientID)
        assert r["series_number"] == int(ds.SeriesNumber)
        assert r["series_description"] == str(ds.get("SeriesDescription", ""))


def test_series_table_and_module_entry_point(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = shared_path("multivendor_cases_dicom2nifti", "dicom", "failing", "notavolume")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "bonelesion", "-q", "series", str(src)],
        capture_output=True, text=True, env={"PYTHONPATH": str(root / "src"), "PATH": ""},
        timeout=120,
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "REFUSED: duplicate positions" in proc.stdout
    assert "role" in proc.stdout.splitlines()[0]
    ds = pydicom.dcmread(next(p for p in sorted(src.rglob("*")) if p.is_file()),
                         stop_before_pixels=True)
    assert f"series {ds.SeriesNumber} " in proc.stdout
    assert f"study {ds.StudyInstanceUID}" in proc.stdout


def test_whole_number_volumes_are_written_as_16_bit_integers_exactly() -> None:
    """float32 volumes holding whole numbers → (u)int16 with the same values; others as is."""
    from bonelesion.dicom.convert import exact_integer_array

    unsigned = np.array([[0.0, 4095.0], [65535.0, 7.0]], dtype=np.float32)
    signed = np.array([-1024.0, 3071.0, -32768.0, 32767.0], dtype=np.float32)
    for array, dtype in ((unsigned, np.uint16), (signed, np.int16)):
        out = exact_integer_array(array)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out.astype(np.float64), array.astype(np.float64))
    for kept in (np.array([0.5, 1.0], dtype=np.float32),       # a fraction
                 np.array([-1.0, 40000.0], dtype=np.float32),  # beyond both ranges
                 np.array([1.0, np.nan], dtype=np.float32),
                 np.array([70000.0], dtype=np.float32)):
        assert exact_integer_array(kept) is kept
    ints = np.array([1, 2], dtype=np.int16)
    assert exact_integer_array(ints) is ints
