"""Gantry tilt: refused by default; ``tilt="resample"`` puts every pixel where it belongs,
on an orthogonal grid (analytic tilted phantom, the tilted GE HiSpeed head CT)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage
from support.testdata import shared_path

from bonelesion.cli.main import main
from bonelesion.dicom.series import load_series, load_volume
from bonelesion.errors import InputError, SeriesGeometryError

TILT_DEG = 15.0
#: Stored values are integers: a linear field rounded to integers is off by ≤ 0.5, and
#: linear interpolation of a linear field is exact.
ATOL_LINEAR_FIELD_HU = 0.5 + 1e-3
#: Real data: the test looks the resampled volume up at each source pixel's (fractional)
#: position, so a pixel is interpolated twice; at the skull's edges (≈ 1000 HU per pixel)
#: that gives tens of HU (measured 34 HU at the 99th percentile), elsewhere < 1 HU.
P99_REAL_HU = 45.0
MEDIAN_REAL_HU = 1.0


def _field(world: np.ndarray) -> np.ndarray:
    """A linear HU field of the LPS position (mm)."""
    return 200.0 + 3.0 * world[..., 0] - 2.0 * world[..., 1] + 5.0 * world[..., 2]


def _tilted_phantom(folder: Path, ct_writer, n: int = 6):  # type: ignore[no-untyped-def]
    tilt = np.radians(TILT_DEG)
    iop = (1.0, 0.0, 0.0, 0.0, np.cos(tilt), -np.sin(tilt))
    positions = [(0.0, 0.0, 4.0 * k) for k in range(n)]  # the table moves along z
    row, col = np.array(iop[:3]), np.array(iop[3:])
    rows, cols, spacing = 16, 12, (0.8, 0.6)

    files, _ = ct_writer(folder, positions=positions, iop=iop, rows=rows, cols=cols,
                         pixel_spacing=spacing)
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    for k, path in enumerate(files):  # the writer's random pixels → the analytic field
        ds = pydicom.dcmread(path)
        world = (np.array(positions[k]) + r[..., None] * spacing[0] * col
                 + c[..., None] * spacing[1] * row)
        ds.PixelData = np.round(_field(world) + 1024).astype(np.uint16).tobytes()
        ds.GantryDetectorTilt = str(TILT_DEG)
        ds.save_as(path, enforce_file_format=True)


def test_tilt_refused_by_default_and_resampled_on_request(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    _tilted_phantom(tmp_path, ct_writer)
    with pytest.raises(SeriesGeometryError, match=r"gantry tilt.*tilt='resample'"):
        load_volume(tmp_path)
    volume = load_volume(tmp_path, tilt="resample")
    d = volume.direction_lps
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)  # orthogonal grid
    normal = np.cross([1, 0, 0], [0, np.cos(np.radians(TILT_DEG)), -np.sin(np.radians(TILT_DEG))])
    np.testing.assert_allclose(d[:, 0], normal, atol=1e-6)
    assert volume.spacing_mm[0] == pytest.approx(4.0 * np.cos(np.radians(TILT_DEG)), abs=1e-4)
    assert volume.shape[1] > 16 and volume.shape[2] == 12  # rows grew by the drift
    assert any(n.startswith(f"gantry tilt {TILT_DEG:.2f}°") for n in volume.series.notes)
    # every voxel covered by a source slice holds the field at its own world position
    idx = np.indices(volume.shape).reshape(3, -1).T.astype(float)
    world = (volume.affine_lps @ np.column_stack([idx, np.ones(len(idx))]).T)[:3].T
    expected = _field(world).reshape(volume.shape)
    array = np.asarray(volume.array, dtype=np.float64)
    inside = array > array.min()  # the padding holds the lowest value
    inside &= ndimage.binary_erosion(inside, structure=np.ones((1, 3, 1)))  # not the edge rows
    assert inside.sum() > 0.6 * 6 * 16 * 12
    np.testing.assert_allclose(array[inside], expected[inside], atol=ATOL_LINEAR_FIELD_HU)


def test_unknown_tilt_policy_is_an_input_error(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path)
    with pytest.raises(InputError, match=r"tilt='sideways'"):
        load_series(tmp_path, tilt="sideways")


def test_ge_hispeed_head_pixels_stay_in_place(caplog: pytest.LogCaptureFixture) -> None:
    """The 18.5° GE head CT: each source pixel, looked up at its own world position in the
    resampled volume, keeps its value (the DICOM geometry is the truth)."""
    folder = shared_path("ct_ge_hispeed_head", "dicom", "GE_series2")
    with caplog.at_level(logging.ERROR):
        assert not [s for s in load_series(folder, decode=False) if s.usable]  # default: refused
        stacks = [s for s in load_series(folder, tilt="resample")]
    assert len(stacks) == 2 and all(s.usable for s in stacks)  # 4 mm (ADD) and 7 mm slices
    for stack in stacks:
        vol = stack.volume
        assert vol is not None
        inverse = np.linalg.inv(vol.affine_lps)
        diffs = []
        for path in stack.files[::3]:
            ds = pydicom.dcmread(path)
            source = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) \
                + float(ds.RescaleIntercept)
            r, c = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
            iop = np.array(ds.ImageOrientationPatient, dtype=float)
            ps = np.array(ds.PixelSpacing, dtype=float)
            world = (np.array(ds.ImagePositionPatient, dtype=float) + r[..., None] * ps[0]
                     * iop[3:] + c[..., None] * ps[1] * iop[:3])
            index = (inverse[:3, :3] @ world.reshape(-1, 3).T) + inverse[:3, 3:4]
            assert np.allclose(index[0], np.round(index[0]), atol=1e-3)  # on a slice plane
            ours = ndimage.map_coordinates(np.asarray(vol.array, dtype=np.float64), index,
                                           order=1, mode="nearest")
            diffs.append(np.abs(ours - source.ravel())[source.ravel() > -900])
        diffs_hu = np.concatenate(diffs)
        assert float(np.median(diffs_hu)) <= MEDIAN_REAL_HU
        assert float(np.percentile(diffs_hu, 99)) <= P99_REAL_HU


def test_convert_tilt_resample_writes_tilt_output(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    _tilted_phantom(tmp_path / "in", ct_writer)
    assert main(["-q", "convert", str(tmp_path / "in"), str(tmp_path / "refused")]) == 4
    assert main(["-q", "convert", str(tmp_path / "in"), str(tmp_path / "out"),
                 "--tilt", "resample"]) == 0
    (nii,) = (tmp_path / "out").glob("*_Tilt.nii.gz")
    sidecar = json.loads(nii.with_name(nii.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["tilt_corrected"] is True
    assert any(n.startswith("gantry tilt") for n in sidecar["notes"])
