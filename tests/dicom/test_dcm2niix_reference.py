"""dcm2niix as a live reference: every series of ../shared/data that dcm2niix converts.

dcm2niix (the PyPI package ships the binary; test extra of pyproject.toml) converts each
dataset's ``dicom/`` folder once per session; ``bonelesion convert`` (with
``tilt="resample"``) converts it once too. Every 3-D volume dcm2niix writes must then be
found among ours with

* the same world geometry: our voxel centres land on its voxel centres (after reorienting
  both: any axis order and flips), the same number of voxels;
* the same voxel values (after each file's scaling);
* the same b-value and, for directional volumes, the same gradient direction (compared as
  world directions, sign-agnostic: an FSL bvec may flip an axis).

A difference fails the test unless `EXCEPTIONS` lists it with its reason (ONE table). An
exception that no longer happens fails too, so the table stays true. The reference
conversions kept in ``*/reference`` are checked by tests/dicom/test_series.py and
test_convert.py; SimpleITK is compared below where it reads a series.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.testdata import SHARED_DATA

from bonelesion.dicom.convert import convert_export
from bonelesion.dicom.series import load_series

pytestmark = pytest.mark.shared_data

#: World distance between our voxel centres and dcm2niix's: float32 affines, DS rounding.
ATOL_GEOMETRY_MM = 0.05
#: b-values: dcm2niix writes them with ~6 significant digits.
ATOL_B_S_PER_MM2 = 0.5
#: Gradient directions: dcm2niix writes 6 decimals; vendor vectors are unit to ~1e-4.
ATOL_DIRECTION_DEG = 1.0
#: Voxel values: the same stored integers after the same rescale (float32 round-off).
RTOL_VALUES = 1e-5
ATOL_VALUES = 1e-3
#: Tilt-corrected volumes: both interpolate in-plane; the 99th percentile of |Δ| in HU
#: (dcm2niix rounds to integers; the last row at each edge mixes with the padding).
TILT_P99_HU = 1.0

#: The ONE table of expected differences: (dataset, dcm2niix file-name pattern) → the
#: check it excuses (``match``: no volume of ours corresponds; ``values``; ``bval``;
#: ``bvec``) and why.
EXCEPTIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("ct_ge_hispeed_head", "*_Tilt_Eq_1.nii"): (
        "match", "dcm2niix joins the 4 mm (ImageType ADD) and 7 mm reconstructions into one "
        "volume resampled to equal spacing between slices (_Tilt_Eq); we keep them as two "
        "stacks (their ImageType differs) and resample each for the tilt only"),
    ("ct_ge_hispeed_head", "2_*_0_.nii"): (
        "match", "dcm2niix's uncorrected output of a tilted, irregularly spaced series (a "
        "sheared affine with one spacing); we refuse or resample, never write it"),
    ("multivendor_cases_dicom2nifti", "4_*172569766509356512040321185_0_dicom2nifti.nii"): (
        "match", "dcm2niix's uncorrected output of the tilted Siemens CT (sheared affine); "
        "we compare its _Tilt output instead"),
    ("multivendor_cases_dicom2nifti", "3_*_0_dicom2nifti*.nii"): (
        "match", "irregular slice spacing (0.75–1.5 mm, a missing slice; and tilted): refused "
        "on purpose; dcm2niix interpolates (_Eq / _Tilt_Eq)"),
    ("multivendor_cases_dicom2nifti", "2_*_0_dicom2nifti*.nii"): (
        "match", "irregular slice spacing (5–10 mm, a missing slice): refused on purpose; "
        "dcm2niix writes it as is and interpolated (_Eq)"),
    ("multivendor_cases_dicom2nifti", "4_*12055911408007578160432651861615759294_0_*.nii"): (
        "match", "four different images at one position (not a volume): refused on purpose; "
        "dcm2niix writes a 4-D series of single slices"),
    ("compressed_nema_pydicom", "1_*_1_a.nii"): (
        "values", "MR2_J2KI is a lossy JPEG 2000 copy of the MR2 instance: dcm2niix writes it "
        "into a 4-D file with another copy; we refuse the stack where it shares a position "
        "with the lossless copies (two different images), so its pixels match none of ours"),
    ("multivendor_cases_dicom2nifti", "8_*1725697665093567298250528831_0_*.nii"): (
        "match", "Siemens TrioTim mosaic without the CSA slice count: dcm2niix writes each "
        "1344 × 1344 mosaic as one slice; we demosaic it (ASCCONV sSliceArray.lSize)"),
    ("dwi_siemens_xa30_enhanced_pa", "11_*.nii"): (
        "values", "scanner ADC map: we convert to mm²/s (×1e-6) as the pipeline measures; "
        "dcm2niix keeps the stored 1e-6 mm²/s integers"),
    ("enhanced_philips_siemens_small", "801_*.nii"): (
        "values", "Philips enhanced field map: dcm2niix applies the Philips private scale "
        "(UsePhilipsFloatNotDisplayScaling); we keep the DICOM rescale (display values)"),
    ("dwi_siemens_xa30_enhanced_pa", "12_*.nii"): (
        "bval", "scanner trace image (TRACEW): dcm2niix writes no .bval for a single derived "
        "volume; ours says b = 2500 s/mm² from (0018,9087)"),
    ("compressed_nema_pydicom", "301_*.nii"): (
        "match", "emri_small: 10 frames without ImagePositionPatient, ImageOrientationPatient "
        "and PixelSpacing; dcm2niix (≥ 1.0.20241211) writes them on an assumed grid; we refuse "
        "a stack without geometry (test_series.py, emri_small variants)"),
    ("compressed_nema_pydicom", "18_*_ROI1.nii"): (
        "values", "dcm2niix writes the overlay plane (60xx,3000) as an extra _ROI1 image; we "
        "read the pixel data only (overlays are annotations)"),
    ("multivendor_cases_dicom2nifti", "501_*.nii"): (
        "values", "Philips enhanced DWI: dcm2niix's float scaling vs our DICOM rescale"),
}


@dataclass
class _Vol:
    """One 3-D volume of a NIfTI file (ours or dcm2niix's)."""

    name: str
    data: np.ndarray
    affine: np.ndarray
    b: float | None = None
    bvec_world: np.ndarray | None = None
    matched: list[str] = field(default_factory=list)


def _dcm2niix() -> str:
    found = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not os.access(found, os.X_OK):
        pytest.skip("dcm2niix not installed (pip install -e '.[test]' installs it)")
    return found


def _datasets() -> list[str]:
    if not SHARED_DATA.is_dir():
        return []
    return sorted(d.name for d in SHARED_DATA.iterdir() if (d / "dicom").is_dir())


def _bvec_world(affine: np.ndarray, vector: np.ndarray) -> np.ndarray | None:
    """World direction of an FSL bvec (image axes, x negated for a positive determinant)."""
    v = np.asarray(vector, dtype=np.float64).copy()
    if np.linalg.norm(v) < 1e-6:
        return None
    rotation = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if np.linalg.det(affine[:3, :3]) > 0:
        v[0] = -v[0]
    w = rotation @ v
    return w / np.linalg.norm(w)


def _volumes(folder: Path) -> list[_Vol]:
    out = []
    for nii in sorted(folder.glob("*.nii*")):
        img = nib.load(nii)
        data = np.asarray(img.get_fdata(dtype=np.float64))
        stem = nii.name.split(".nii")[0]
        bval = folder / f"{stem}.bval"
        bvec = folder / f"{stem}.bvec"
        bvals = [float(v) for v in bval.read_text().split()] if bval.exists() else None
        bvecs = np.loadtxt(bvec, ndmin=2) if bvec.exists() else None
        arrays = [data] if data.ndim == 3 else [data[..., t] for t in range(data.shape[3])] \
            if data.ndim == 4 else []
        for t, arr in enumerate(arrays):
            out.append(_Vol(
                name=nii.name + (f"[{t}]" if len(arrays) > 1 else ""), data=arr,
                affine=img.affine,
                b=bvals[t] if bvals is not None else None,
                bvec_world=_bvec_world(img.affine, bvecs[:, t]) if bvecs is not None else None))
    return out


def _on_grid(ours: _Vol, ref: _Vol) -> np.ndarray | None:
    """Reference values at our voxel centres, or None when the grids do not coincide."""
    if ours.data.size != ref.data.size:
        return None
    m = np.linalg.inv(ref.affine) @ ours.affine
    perm = np.argmax(np.abs(m[:3, :3]), axis=0)
    if sorted(perm) != [0, 1, 2]:
        return None
    corners = np.array([[i, j, k, 1.0] for i in (0, ours.data.shape[0] - 1)
                        for j in (0, ours.data.shape[1] - 1) for k in (0, ours.data.shape[2] - 1)])
    cont = (m @ corners.T)[:3]
    near = np.round(cont)
    world_ours = (ours.affine @ corners.T)[:3]
    world_ref = (ref.affine[:3, :3] @ near) + ref.affine[:3, 3:4]
    if float(np.max(np.linalg.norm(world_ours - world_ref, axis=0))) > ATOL_GEOMETRY_MM:
        return None
    slices: list[slice] = [slice(None)] * 3
    order = [0, 0, 0]
    for axis in range(3):
        p = int(perm[axis])
        start = int(near[p, 0])
        step = 1 if m[p, axis] > 0 else -1
        n = ours.data.shape[axis]
        stop = start + step * n
        if min(start, stop - step) < 0 or max(start, stop - step) >= ref.data.shape[p]:
            return None
        slices[p] = slice(start, stop if stop >= 0 else None, step)
        order[axis] = p
    return ref.data[tuple(slices)].transpose(order)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """dcm2niix's and our conversion of every dataset, once per session."""
    exe = _dcm2niix()
    root = tmp_path_factory.mktemp("dcm2niix_reference")
    out: dict[str, tuple[Path, Path]] = {}
    for name in _datasets():
        ref_dir, our_dir = root / name / "dcm2niix", root / name / "ours"
        ref_dir.mkdir(parents=True)
        proc = subprocess.run([exe, "-ba", "n", "-z", "n", "-f", "%s_%j_%e_%z", "-o",
                               str(ref_dir), str(SHARED_DATA / name / "dicom")],
                              check=False, capture_output=True, timeout=300)
        # 0: all converted; 8: some converted (dcm2niix ERRORS.md)
        assert proc.returncode in (0, 8), proc.stdout.decode(errors="replace")[-2000:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # data-quality warnings are recorded per stack
            logging.disable(logging.WARNING)
            try:
                convert_export(SHARED_DATA / name / "dicom", our_dir, tilt="resample")
            finally:
                logging.disable(logging.NOTSET)
        out[name] = (ref_dir, our_dir)
    return out


def _exception(dataset: str, ref_name: str) -> tuple[str, str] | None:
    base = ref_name.split("[")[0]
    for (ds, pattern), value in EXCEPTIONS.items():
        if ds == dataset and fnmatch.fnmatch(base, pattern):
            return value
    return None


def _angle_deg(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Angle between two directions, sign-agnostic; 0 when both are absent, 180 if one is."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else 180.0
    return float(np.degrees(np.arccos(min(abs(float(a @ b)), 1.0))))


def _compare(dataset: str, ref: _Vol, ours: list[_Vol]) -> dict[str, str]:
    """Differences of one reference volume from our best-matching volume, by check."""
    best: tuple[tuple[float, float, float], float, _Vol, np.ndarray] | None = None
    for candidate in ours:
        values = _on_grid(candidate, ref)
        if values is None:
            continue
        diff = np.abs(candidate.data - values)
        score = float(np.percentile(diff, 99)) if "_Tilt" in ref.name else float(diff.max())
        # identical pixels in several volumes (a GE test set): b-value and direction decide
        rank = (round(score, 6), abs((candidate.b or 0.0) - (ref.b or 0.0)),
                _angle_deg(candidate.bvec_world, ref.bvec_world))
        if best is None or rank < best[0]:
            best = (rank, score, candidate, values)
    if best is None:
        return {"match": f"{ref.name}: no volume of ours on the same grid "
                         f"(shape {ref.data.shape})"}
    _, score, mine, values = best
    mine.matched.append(ref.name)
    problems: dict[str, str] = {}
    if "_Tilt" in ref.name:
        if score > TILT_P99_HU:
            problems["values"] = f"{ref.name} vs {mine.name}: 99th percentile |Δ| {score:.3g}"
    elif not np.allclose(mine.data, values, rtol=RTOL_VALUES, atol=ATOL_VALUES):
        problems["values"] = f"{ref.name} vs {mine.name}: max |Δ| {score:.4g}"
    ref_b = ref.b if ref.b is not None else 0.0
    our_b = mine.b if mine.b is not None else 0.0
    if (ref.b is not None or mine.b is not None) and abs(ref_b - our_b) > ATOL_B_S_PER_MM2:
        problems["bval"] = f"{ref.name}: b {ref.b} vs ours {mine.b} ({mine.name})"
    if (ref.bvec_world is None) != (mine.bvec_world is None) and ref_b > ATOL_B_S_PER_MM2:
        problems["bvec"] = f"{ref.name}: gradient {ref.bvec_world} vs ours {mine.bvec_world}"
    elif ref.bvec_world is not None and mine.bvec_world is not None:
        angle = _angle_deg(ref.bvec_world, mine.bvec_world)
        if angle > ATOL_DIRECTION_DEG:
            problems["bvec"] = f"{ref.name}: gradient {angle:.2f}° from ours ({mine.name})"
    return problems


@pytest.mark.parametrize("dataset", _datasets())
def test_every_dcm2niix_volume_is_ours(dataset: str,
                                       converted: dict[str, tuple[Path, Path]]) -> None:
    ref_dir, our_dir = converted[dataset]
    refs, ours = _volumes(ref_dir), _volumes(our_dir)
    assert refs, f"dcm2niix converted nothing in {dataset}"
    unexpected: list[str] = []
    excused_used: dict[str, bool] = {}  # file → did any of its volumes need its exception
    for ref in refs:
        problems = _compare(dataset, ref, ours)
        excused = _exception(dataset, ref.name)
        for check, text in problems.items():
            if excused is None or excused[0] != check:
                unexpected.append(f"{check}: {text}")
        if excused is not None:
            base = ref.name.split("[")[0]
            excused_used[base] = excused_used.get(base, False) or excused[0] in problems
    stale = [f"{name}: listed in EXCEPTIONS but no longer differs"
             for name, used in excused_used.items() if not used]
    assert not unexpected, "\n".join(unexpected)
    assert not stale, "\n".join(stale)


def test_dwi_bval_files_equal_dcm2niix(converted: dict[str, tuple[Path, Path]]) -> None:
    """UIH mosaic, GE multi-b and GE tensor: one 4-D file with dcm2niix's .bval, in order."""
    for dataset in ("dwi_uih_umr770_dti_132225", "dwi_ge_mr750_multib_mr0004",
                    "dwi_ge_pioneer_tensor_r2"):
        if dataset not in converted:
            pytest.skip(f"{dataset} not present")
        ref_dir, our_dir = converted[dataset]
        (ref_bval,) = ref_dir.glob("*.bval")
        (our_bval,) = our_dir.glob("*.bval")
        ref_b = [float(v) for v in ref_bval.read_text().split()]
        our_b = [float(v) for v in our_bval.read_text().split()]
        np.testing.assert_allclose(our_b, ref_b, atol=ATOL_B_S_PER_MM2, err_msg=dataset)
        (our_nii,) = [p for p in our_dir.glob("*.nii.gz") if p.name.startswith(our_bval.stem)]
        assert nib.load(our_nii).ndim == 4 and nib.load(our_nii).shape[3] == len(ref_b)


def test_simpleitk_reads_the_same_volumes() -> None:
    """Where SimpleITK's GDCM series reader reads a single-volume series, its image equals
    our stack: geometry through voxel centres and voxel values."""
    sitk = pytest.importorskip("SimpleITK")
    if not _datasets():
        pytest.skip(f"shared test data not found: {SHARED_DATA}")
    compared = 0
    for dataset in _datasets():
        folders = sorted({p.parent for p in (SHARED_DATA / dataset / "dicom").rglob("*")
                          if p.is_file()})
        for folder in folders:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.disable(logging.WARNING)
                try:
                    stacks = [s for s in load_series(folder) if s.usable and s.volume is not None]
                finally:
                    logging.disable(logging.NOTSET)
            by_series: dict[str, list] = {}
            for s in stacks:
                by_series.setdefault(s.info.series_instance_uid, []).append(s)
            reader = sitk.ImageSeriesReader()
            for uid in reader.GetGDCMSeriesIDs(str(folder)):
                mine = by_series.get(uid, [])
                files = reader.GetGDCMSeriesFileNames(str(folder), uid)
                if len(mine) != 1 or len(files) != len(mine[0].files) or len(files) < 2 \
                        or mine[0].volume.shape[0] != len(files):
                    continue  # multi-volume series, mosaics, multi-frame: not comparable
                reader.SetFileNames(files)
                image = reader.Execute()
                ref = sitk.GetArrayFromImage(image).astype(np.float64)  # (z, y, x)
                direction = np.array(image.GetDirection()).reshape(3, 3)
                affine_lps = np.eye(4)
                affine_lps[:3, :3] = direction * np.array(image.GetSpacing())
                affine_lps[:3, 3] = image.GetOrigin()
                vol = mine[0].volume
                ours = _Vol("ours", np.asarray(vol.array, dtype=np.float64),
                            vol.affine_lps)
                theirs = _Vol(f"sitk {dataset}/{folder.name}", ref.transpose(0, 1, 2),
                              affine_lps[:, [2, 1, 0, 3]])
                values = _on_grid(ours, theirs)
                assert values is not None, f"{theirs.name}: grids differ"
                np.testing.assert_allclose(ours.data, values, rtol=RTOL_VALUES,
                                           atol=ATOL_VALUES, err_msg=theirs.name)
                compared += 1
    assert compared >= 3  # the single-volume series GDCM groups as we do
