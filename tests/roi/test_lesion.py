"""Lesion → mask on a target grid: spheres, label masks, contours; FoR and empty errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support.synthetic import FOR_UID, make_volume, sphere_mask_truth

from bonelesion.errors import (
    EmptyMaskError,
    FrameOfReferenceError,
    GeometryMismatchError,
    InputError,
)
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.units import IntensityUnit


def _orientations() -> list[np.ndarray]:
    """A sample of the 48 axis permutations/flips plus two oblique rotations."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in [(1, 1, 1), (-1, 1, -1)]:
            out.append(np.eye(3)[:, perm] * np.asarray(signs))
    for angle in (0.3, 1.1):
        c, s = np.cos(angle), np.sin(angle)
        rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        out.append(rz @ rx)
    return out


@pytest.mark.parametrize("direction", _orientations(), ids=lambda d: str(np.round(d, 2).tolist()))
def test_sphere_rasterisation_matches_brute_force(direction: np.ndarray) -> None:
    grid = make_volume(np.zeros((12, 20, 24)), spacing_mm=(2.5, 0.9, 1.1), direction_lps=direction)
    centre = grid.index_to_lps([[5.3, 9.7, 11.2]])[0]
    lesion = Lesion(
        lesion_id="s", sphere=Sphere(tuple(centre), 6.0), frame_of_reference_uid=FOR_UID
    )
    mask = lesion.mask_on(grid)
    np.testing.assert_array_equal(mask.array, sphere_mask_truth(grid, centre, 6.0))
    assert mask.intensity_unit == IntensityUnit.MASK


def test_sphere_volume_converges_to_analytic() -> None:
    grid = make_volume(np.zeros((40, 40, 40)), spacing_mm=(0.5, 0.5, 0.5))
    centre = grid.index_to_lps([[19.5, 19.5, 19.5]])[0]
    mask = Lesion(lesion_id="s", sphere=Sphere(tuple(centre), 8.0)).mask_on(grid)
    volume_mm3 = np.count_nonzero(mask.array) * 0.125
    assert volume_mm3 == pytest.approx(4 / 3 * np.pi * 8.0**3, rel=0.02)  # voxelisation


def test_sphere_partly_outside_is_clipped_and_outside_is_empty() -> None:
    grid = make_volume(np.zeros((5, 10, 10)))
    corner = grid.index_to_lps([[0, 0, 0]])[0]
    mask = Lesion(lesion_id="edge", sphere=Sphere(tuple(corner), 3.0)).mask_on(grid)
    np.testing.assert_array_equal(mask.array, sphere_mask_truth(grid, corner, 3.0))
    far = Lesion(lesion_id="far", sphere=Sphere((500.0, 0.0, 0.0), 3.0), source="x.csv:3")
    with pytest.raises(EmptyMaskError, match=r"Lesion 'far' \(x.csv:3\) has no voxel on series"):
        far.mask_on(grid)


def test_mask_lesion_resampled_through_lps() -> None:
    # label mask on a fine grid, target coarser and flipped: nearest-neighbour through LPS
    fine = make_volume(np.zeros((20, 20, 20)), spacing_mm=(1.0, 1.0, 1.0))
    centre = fine.index_to_lps([[10, 10, 10]])[0]
    truth = sphere_mask_truth(fine, centre, 5.0)
    lesion = Lesion(lesion_id="m", mask=fine.with_array(truth), frame_of_reference_uid=FOR_UID)
    flip = np.diag([-1.0, 1.0, -1.0])
    origin = fine.index_to_lps([[19, 0, 19]])[0]
    coarse = make_volume(
        np.zeros((10, 20, 10)), spacing_mm=(2.0, 1.0, 2.0), origin_lps_mm=origin, direction_lps=flip
    )
    on = np.asarray(lesion.mask_on(coarse).array)
    # each coarse voxel centre coincides with a fine voxel centre: exact nearest neighbour
    idx = np.round(fine.lps_to_index(coarse.voxel_centres_lps().reshape(-1, 3))).astype(int)
    np.testing.assert_array_equal(on.ravel(), truth[idx[:, 0], idx[:, 1], idx[:, 2]])


#: Axial grid: slices along S, rows along P, columns along L.
AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def _square(z: float, half: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return np.array(
        [
            [cx - half, cy - half, z],
            [cx + half, cy - half, z],
            [cx + half, cy + half, z],
            [cx - half, cy + half, z],
        ],
        dtype=float,
    )


def test_contours_filled_slice_by_slice_with_holes() -> None:
    grid = make_volume(
        np.zeros((6, 30, 30)),
        spacing_mm=(3.0, 1.0, 1.0),
        origin_lps_mm=(-15, -15, 0),
        direction_lps=AXIAL,
    )
    outer = [_square(3.0 * s, 8.4) for s in (1, 2, 3)]
    hole = _square(6.0, 3.4)
    lesion = Lesion(lesion_id="rt", contours=(*outer, hole), frame_of_reference_uid=FOR_UID)
    m = np.asarray(lesion.mask_on(grid).array)
    assert not m[0].any() and not m[4].any()
    # polygon fill: pixel centres with −8.4 ≤ x ≤ 8.4 → columns 7..23 (17 pixels)
    assert m[1].sum() == 17 * 17 and m[3].sum() == 17 * 17
    assert m[2].sum() == 17 * 17 - 7 * 7  # hole −3.4..3.4 → 7 pixels


def test_contours_on_thicker_planes_fill_thinner_target_slices() -> None:
    grid = make_volume(
        np.zeros((12, 30, 30)),
        spacing_mm=(1.0, 1.0, 1.0),
        origin_lps_mm=(-15, -15, 0),
        direction_lps=AXIAL,
    )
    lesion = Lesion(lesion_id="rt", contours=tuple(_square(z, 5.0) for z in (3.0, 6.0, 9.0)))
    m = np.asarray(lesion.mask_on(grid).array)
    assert [bool(m[s].any()) for s in range(12)] == [s in range(2, 11) for s in range(12)]


def test_contour_not_parallel_to_slices_is_refused() -> None:
    grid = make_volume(np.zeros((6, 30, 30)), spacing_mm=(3.0, 1.0, 1.0), direction_lps=AXIAL)
    tilted = np.array([[0, 0, 0], [5, 0, 3], [5, 5, 3], [0, 5, 0]], dtype=float)
    with pytest.raises(GeometryMismatchError, match="not parallel to the target slices"):
        Lesion(lesion_id="t", contours=(tilted,)).mask_on(grid)


def test_other_frame_of_reference_is_refused() -> None:
    grid = make_volume(np.zeros((5, 10, 10)))
    lesion = Lesion(
        lesion_id="f", sphere=Sphere((0.0, 0.0, 0.0), 3.0), frame_of_reference_uid="1.2.3"
    )
    with pytest.raises(FrameOfReferenceError, match=r"frame of reference 1\.2\.3.*registration"):
        lesion.mask_on(grid)


def test_lesion_needs_exactly_one_shape() -> None:
    with pytest.raises(InputError, match="exactly one shape"):
        Lesion(lesion_id="x")
    with pytest.raises(InputError, match="found 2"):
        Lesion(lesion_id="x", sphere=Sphere((0, 0, 0), 1.0), contours=(_square(0, 1),))
