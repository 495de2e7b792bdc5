"""A lesion on a box of a grid: the box's mask is the whole-grid mask cropped, voxel for voxel.

Truth: the whole-grid mask (`Lesion.mask_on`), itself checked against brute force
(`sphere_mask_truth`), and SimpleITK's nearest-neighbour resampling for mask lesions. For
random spheres, label-mask lesions and contour lesions on axis-aligned, flipped and oblique
grids: (1) ``box_on`` holds every voxel of the lesion (the mask is zero outside it);
(2) ``mask_in_box`` on any box equals the whole mask cropped, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from support.synthetic import FOR_UID, make_volume, sphere_mask_truth

from bonelesion.errors import EmptyMaskError, FrameOfReferenceError, GeometryMismatchError
from bonelesion.model.sitk_bridge import volume_to_sitk
from bonelesion.model.volume import IndexBox, Volume
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.units import IntensityUnit


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
DIRECTIONS = {
    "axial": AXIAL,
    "sagittal_flipped": np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    "oblique": _rotation(0.37, -0.61, 0.23),
    "oblique2": _rotation(-1.1, 0.4, 0.9),
}


def _grid(direction: str, spacing: tuple[float, float, float] = (2.5, 0.8, 0.9),
          shape: tuple[int, int, int] = (24, 40, 44)) -> Volume:
    return make_volume(np.zeros(shape), spacing_mm=spacing, direction_lps=DIRECTIONS[direction])


def _random_box(rng: np.random.Generator, shape: tuple[int, ...]) -> IndexBox:
    start = [int(rng.integers(0, n)) for n in shape]
    stop = [int(rng.integers(a + 1, n + 1)) for a, n in zip(start, shape)]
    return IndexBox(tuple(start), tuple(stop))  # type: ignore[arg-type]


def _check_box_identity(lesion: Lesion, grid: Volume, rng: np.random.Generator) -> np.ndarray:
    """Assert both identities for ``lesion`` on ``grid``; return the whole mask."""
    whole = lesion.mask_in_box(grid, grid.full_box)
    for margin in (0, 1, 3):
        box = lesion.box_on(grid, margin_voxels=margin)
        if box.is_empty:
            assert not whole.any()
            continue
        outside = whole.copy()
        outside[box.slices] = False
        assert not outside.any(), "a lesion voxel lies outside its box"
        np.testing.assert_array_equal(lesion.mask_in_box(grid, box), whole[box.slices])
    for _ in range(8):
        box = _random_box(rng, grid.shape)
        np.testing.assert_array_equal(lesion.mask_in_box(grid, box), whole[box.slices])
    return whole


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_random_spheres_box_equals_whole_cropped(direction: str) -> None:
    rng = np.random.default_rng(abs(hash(direction)) % 2**32)
    grid = _grid(direction)
    for _ in range(12):
        # centres inside, near and beyond the edges; radii from sub-voxel to large
        idx = rng.uniform(-3, np.asarray(grid.shape) + 2)
        centre = grid.index_to_lps([idx])[0]
        radius = float(rng.choice([0.3, 1.5, 4.0, 9.0, 16.0]))
        lesion = Lesion(lesion_id="s", sphere=Sphere(tuple(centre), radius),
                        frame_of_reference_uid=FOR_UID)
        whole = _check_box_identity(lesion, grid, rng)
        np.testing.assert_array_equal(whole, sphere_mask_truth(grid, centre, radius))


def _blob_mask(direction: str, rng: np.random.Generator, centre_lps: np.ndarray) -> Volume:
    """A label-mask lesion on its own grid (centred at ``centre_lps``): two balls."""
    shape, spacing = np.array([18, 26, 22]), np.array([1.7, 1.1, 1.3])
    axes = DIRECTIONS[direction] * spacing
    src = make_volume(np.zeros(tuple(shape)), spacing_mm=spacing,
                      origin_lps_mm=centre_lps - axes @ ((shape - 1) / 2),
                      direction_lps=DIRECTIONS[direction])
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in src.shape), indexing="ij"), -1)
    blob = np.zeros(src.shape, dtype=bool)
    for _ in range(2):
        c = rng.uniform(4, np.asarray(src.shape) - 4)
        r = rng.uniform(2.5, 4.5)
        blob |= np.linalg.norm((idx - c) * np.asarray(src.spacing_mm), axis=-1) <= r * 1.5
    return src.with_array(blob, intensity_unit=IntensityUnit.MASK)


@pytest.mark.parametrize(("mask_dir", "grid_dir"), [("axial", "axial"), ("oblique", "axial"),
                                                    ("axial", "oblique"),
                                                    ("sagittal_flipped", "oblique2")])
def test_mask_lesions_box_equals_whole_cropped(mask_dir: str, grid_dir: str) -> None:
    rng = np.random.default_rng(17)
    grid = make_volume(np.zeros((20, 36, 34)), spacing_mm=(1.9, 0.9, 1.0),
                       origin_lps_mm=(-20.0, -22.0, -8.0), direction_lps=DIRECTIONS[grid_dir])
    centre = grid.index_to_lps([[(n - 1) / 2 for n in grid.shape]])[0]
    for _ in range(3):
        mask = _blob_mask(mask_dir, rng, centre + rng.uniform(-12, 12, 3))
        lesion = Lesion(lesion_id="m", mask=mask, frame_of_reference_uid=FOR_UID)
        whole = _check_box_identity(lesion, grid, rng)
        assert whole.any()
        # truth: SimpleITK nearest neighbour, except target centres within 1e-6 voxel of a tie
        theirs = sitk.GetArrayFromImage(sitk.Resample(
            volume_to_sitk(mask.with_array(np.asarray(mask.array).astype(np.uint8))),
            volume_to_sitk(grid), sitk.Transform(), sitk.sitkNearestNeighbor, 0)) != 0
        cont = mask.lps_to_index(grid.voxel_centres_lps().reshape(-1, 3)).reshape(*grid.shape, 3)
        tie = np.any(np.abs(cont - np.floor(cont) - 0.5) < 1e-6, axis=-1)
        np.testing.assert_array_equal(whole[~tie], theirs[~tie])


def test_mask_lesion_on_its_own_grid_and_a_full_size_mask() -> None:
    rng = np.random.default_rng(2)
    grid = _grid("oblique")
    truth = np.zeros(grid.shape, dtype=bool)
    truth[5:9, 10:17, 30:41] = rng.random((4, 7, 11)) > 0.3
    lesion = Lesion(lesion_id="m", mask=grid.with_array(truth))
    assert lesion.box_on(grid) == IndexBox((5, 10, 30), (9, 17, 41))
    np.testing.assert_array_equal(_check_box_identity(lesion, grid, rng), truth)


def _polygon_lps(grid: Volume, slice_index: float, rows_cols: np.ndarray) -> np.ndarray:
    idx = np.column_stack([np.full(len(rows_cols), slice_index), rows_cols])
    return grid.index_to_lps(idx)


@pytest.mark.parametrize("direction", ["axial", "oblique", "sagittal_flipped"])
def test_contour_lesions_box_equals_whole_cropped(direction: str) -> None:
    rng = np.random.default_rng(23)
    grid = _grid(direction, spacing=(1.0, 0.8, 0.9))
    for _ in range(4):
        # contours drawn every 3 target slices (thicker planes): slices between are filled
        # from the nearest plane; polygons near and beyond the in-plane edges; one hole
        planes = rng.choice(np.arange(-2, grid.shape[0] + 2, 3), size=4, replace=False)
        contours = []
        for s in sorted(planes):
            centre = rng.uniform(-2, np.asarray(grid.shape[1:]) + 2)
            angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
            radii = rng.uniform(3, 9, 7)
            outer = centre + np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
            contours.append(_polygon_lps(grid, float(s), outer))
            hole = centre + np.array([[-1.2, -1.2], [1.2, -1.2], [1.2, 1.2], [-1.2, 1.2]])
            contours.append(_polygon_lps(grid, float(s), hole))
        lesion = Lesion(lesion_id="c", contours=tuple(contours), frame_of_reference_uid=FOR_UID)
        _check_box_identity(lesion, grid, rng)


def test_box_mask_on_returns_the_crop_and_refuses_like_mask_on() -> None:
    grid = _grid("oblique")
    centre = grid.index_to_lps([[10.2, 20.7, 3.1]])[0]
    lesion = Lesion(lesion_id="s", sphere=Sphere(tuple(centre), 5.0), source="r.csv:2")
    box, mask = lesion.box_mask_on(grid, margin_mm=20.0)
    assert mask.intensity_unit == IntensityUnit.MASK and mask.geometry_equal(grid.crop(box))
    assert box.start[2] == 0  # clipped at the grid's edge
    np.testing.assert_array_equal(mask.array, np.asarray(lesion.mask_on(grid).array)[box.slices])
    # 20 mm of margin on each side: ceil(20 / spacing) voxels beyond the lesion's box
    own = lesion.box_on(grid)
    assert box == own.grown(grid.margin_voxels(20.0)).clipped(grid.shape)
    for far in (Sphere((900.0, 0.0, 0.0), 3.0),  # box empty
                Sphere(tuple(grid.index_to_lps([[10.5, 20.5, -0.9]])[0]), 0.2)):  # no voxel
        out = Lesion(lesion_id="far", sphere=far, source="r.csv:3")
        with pytest.raises(EmptyMaskError) as whole_error:
            out.mask_on(grid)
        with pytest.raises(EmptyMaskError) as box_error:
            out.box_mask_on(grid, margin_voxels=2)
        assert str(box_error.value) == str(whole_error.value)
        assert f"(shape {grid.shape})" in str(box_error.value)
    other = Lesion(lesion_id="f", sphere=Sphere(tuple(centre), 5.0), frame_of_reference_uid="9.9")
    with pytest.raises(FrameOfReferenceError, match="registration"):
        other.box_on(grid)
    tilted = Lesion(lesion_id="t", contours=(grid.index_to_lps([[0, 0, 0], [3, 5, 0], [3, 5, 5]]),))
    with pytest.raises(GeometryMismatchError, match="not parallel"):
        tilted.box_on(grid)
