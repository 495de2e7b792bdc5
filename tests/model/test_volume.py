"""Volume geometry: constructor checks, index↔LPS, resampling, SimpleITK round-trip."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from bonelesion.errors import FrameOfReferenceError, InputError
from bonelesion.model import SeriesInfo, Volume
from bonelesion.model.sitk_bridge import volume_from_sitk, volume_to_sitk

ATOL_MM = 1e-4  # geometry round-trip through double precision (highdicom test_roundtrip)
ATOL_INDEX = 1e-6  # continuous voxel index from SimpleITK's double-precision inverse


def _all_axis_orientations() -> list[np.ndarray]:
    """The 48 signed permutation matrices (nibabel ALL_ORNTS)."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs)):
                m[row, col] = sign
            mats.append(m)
    return mats


def _oblique() -> np.ndarray:
    a, b = np.deg2rad(17.0), np.deg2rad(-31.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


ORIENTATIONS = _all_axis_orientations() + [_oblique()]


def test_there_are_48_axis_orientations() -> None:
    assert len({m.tobytes() for m in _all_axis_orientations()}) == 48


@pytest.mark.parametrize("direction", ORIENTATIONS, ids=[f"o{i}" for i in range(49)])
def test_sitk_round_trip_every_orientation(direction: np.ndarray, rng: np.random.Generator) -> None:
    array = rng.normal(size=(4, 5, 6)).astype(np.float32)
    vol = Volume(array=array, spacing_mm=(2.5, 0.7, 0.9), origin_lps_mm=(-12.0, 30.5, 7.25),
                 direction_lps=direction)
    image = volume_to_sitk(vol)
    # SimpleITK's own index→physical mapping must agree with ours at a non-trivial voxel
    s, r, c = 3, 1, 4
    np.testing.assert_allclose(
        image.TransformIndexToPhysicalPoint((c, r, s)), vol.index_to_lps([[s, r, c]])[0],
        atol=ATOL_MM,
    )
    # ... and its physical→continuous-index mapping with our lps_to_index (not only our inverse)
    point = (3.1, -7.4, 12.9)
    np.testing.assert_allclose(
        vol.lps_to_index([point])[0], image.TransformPhysicalPointToContinuousIndex(point)[::-1],
        atol=ATOL_INDEX,
    )
    back = volume_from_sitk(image)
    assert back.geometry_equal(vol, atol_mm=ATOL_MM)
    np.testing.assert_array_equal(back.array, array)


@pytest.mark.parametrize("direction", ORIENTATIONS[::7] + [ORIENTATIONS[-1]])
def test_lps_index_inverse(direction: np.ndarray, rng: np.random.Generator) -> None:
    vol = Volume(array=np.zeros((3, 4, 5)), spacing_mm=(3.0, 0.5, 1.25),
                 origin_lps_mm=(1.0, 2.0, 3.0), direction_lps=direction)
    idx = rng.uniform(-2, 6, size=(20, 3))
    np.testing.assert_allclose(vol.lps_to_index(vol.index_to_lps(idx)), idx, atol=1e-9)


def test_constructor_rejects_bad_geometry() -> None:
    with pytest.raises(InputError, match="orthonormal"):
        Volume(array=np.zeros((2, 2, 2)), spacing_mm=(1, 1, 1), origin_lps_mm=(0, 0, 0),
               direction_lps=np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1.0]]))
    with pytest.raises(InputError, match="spacing_mm"):
        Volume(array=np.zeros((2, 2, 2)), spacing_mm=(1, 0, 1), origin_lps_mm=(0, 0, 0),
               direction_lps=np.eye(3))
    with pytest.raises(InputError, match="3-D"):
        Volume(array=np.zeros((2, 2)), spacing_mm=(1, 1, 1), origin_lps_mm=(0, 0, 0),
               direction_lps=np.eye(3))


def test_array_is_read_only_and_caller_buffer_untouched() -> None:
    buf = np.zeros((2, 3, 4))
    vol = Volume(array=buf[:, :, :], spacing_mm=(1, 1, 1), origin_lps_mm=(0, 0, 0),
                 direction_lps=np.eye(3))
    assert buf.flags.writeable
    with pytest.raises(ValueError):
        vol.array[0, 0, 0] = 1


def test_resample_mask_through_lps_matches_analytic_sphere() -> None:
    # A sphere of radius 10 mm on a 1 mm grid, resampled onto a rotated 2 mm grid:
    # every target voxel whose centre is well inside (or outside) must be set (or not).
    fine = Volume(array=np.zeros((41, 41, 41), bool), spacing_mm=(1, 1, 1),
                  origin_lps_mm=(-20, -20, -20), direction_lps=np.eye(3))
    pts = fine.voxel_centres_lps()
    fine = fine.with_array(np.linalg.norm(pts, axis=-1) <= 10.0)
    coarse = Volume(array=np.zeros((15, 15, 15)), spacing_mm=(2, 2, 2),
                    origin_lps_mm=(-14, 14, -14), direction_lps=np.diag([1.0, -1.0, 1.0]) @ _oblique())
    out = fine.resample_like(coarse)
    r = np.linalg.norm(coarse.voxel_centres_lps(), axis=-1)
    assert out.array[r < 9.0].all()
    assert not out.array[r > 11.0].any()


def test_resample_refuses_other_frame_of_reference() -> None:
    a = Volume(array=np.zeros((2, 2, 2)), spacing_mm=(1, 1, 1), origin_lps_mm=(0, 0, 0),
               direction_lps=np.eye(3), series=SeriesInfo(frame_of_reference_uid="1.2.3"))
    b = Volume(array=np.zeros((2, 2, 2)), spacing_mm=(1, 1, 1), origin_lps_mm=(0, 0, 0),
               direction_lps=np.eye(3), series=SeriesInfo(frame_of_reference_uid="1.2.4"))
    with pytest.raises(FrameOfReferenceError, match="frame of reference"):
        a.resample_like(b)


def test_ras_affine_converted_once() -> None:
    affine_ras = np.diag([2.0, 3.0, 4.0, 1.0])
    affine_ras[:3, 3] = (10, 20, 30)
    vol = Volume.from_ras_affine(np.zeros((2, 2, 2)), affine_ras)
    np.testing.assert_allclose(vol.origin_lps_mm, (-10, -20, 30))
    np.testing.assert_allclose(vol.affine_ras, affine_ras)


def test_sitk_resample_agrees_with_ours(rng: np.random.Generator) -> None:
    src = Volume(array=rng.normal(size=(10, 12, 14)).astype(np.float64), spacing_mm=(2, 1, 1.5),
                 origin_lps_mm=(5, -3, 2), direction_lps=_oblique())
    tgt = Volume(array=np.zeros((8, 9, 10)), spacing_mm=(1.7, 1.3, 1.1), origin_lps_mm=(6, -1, 4),
                 direction_lps=np.eye(3))
    ours = src.resample_like(tgt, order=1).array
    theirs = sitk.GetArrayFromImage(sitk.Resample(volume_to_sitk(src), volume_to_sitk(tgt),
                                                  sitk.Transform(), sitk.sitkLinear, 0.0))
    inside = theirs != 0
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-6)


def test_geometry_equal_against_known_offsets() -> None:
    # STYLE §8: a geometry check that compares a thing with itself can never fail; compare
    # against grids moved by a known amount instead. Corner of a 200 mm field of view:
    # a 0.1° tilt moves it by 200·sin(0.1°) ≈ 0.35 mm, far above the tolerance.
    base = Volume(array=np.zeros((2, 200, 200)), spacing_mm=(1, 1, 1), origin_lps_mm=(0, 0, 0),
                  direction_lps=np.eye(3))
    shifted = Volume(array=np.zeros((2, 200, 200)), spacing_mm=(1, 1, 1),
                     origin_lps_mm=(0, 0, 10 * ATOL_MM), direction_lps=np.eye(3))
    a = np.deg2rad(0.1)
    tilted = Volume(array=np.zeros((2, 200, 200)), spacing_mm=(1, 1, 1), origin_lps_mm=(0, 0, 0),
                    direction_lps=np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)],
                                            [0, np.sin(a), np.cos(a)]]))
    assert base.geometry_equal(base.with_array(np.ones((2, 200, 200))), atol_mm=ATOL_MM)
    assert not base.geometry_equal(shifted, atol_mm=ATOL_MM)
    assert base.geometry_equal(shifted, atol_mm=100 * ATOL_MM)
    assert not base.geometry_equal(tilted, atol_mm=0.1)
    narrower = Volume(array=np.zeros((2, 200, 199)), spacing_mm=(1, 1, 1),
                      origin_lps_mm=(0, 0, 0), direction_lps=np.eye(3))
    assert not base.geometry_equal(narrower)
