"""Boxes of a grid: `IndexBox`, `Volume.crop`, `box_centres_lps`, `sample_nearest`.

Truth: the whole-grid computation (a box must give the same voxels, bit for bit), numpy
indexing of the parent array, `Volume.index_to_lps`, and SimpleITK's nearest-neighbour
resampler.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from bonelesion.errors import InputError
from bonelesion.model import Volume
from bonelesion.model.sitk_bridge import volume_to_sitk
from bonelesion.model.volume import IndexBox, SeriesInfo
from bonelesion.units import IntensityUnit


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


GRIDS = {
    "axial": (np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), (2.5, 0.7, 0.7)),
    "flipped": (np.diag([-1.0, 1.0, -1.0]), (1.0, 1.3, 0.9)),
    "oblique": (_rotation(0.31, -0.54, 0.2), (3.3, 0.83, 0.91)),
}


def _grid(name: str, shape: tuple[int, int, int] = (17, 23, 29),
          array: np.ndarray | None = None) -> Volume:
    direction, spacing = GRIDS[name]
    return Volume(array=np.zeros(shape) if array is None else array, spacing_mm=spacing,
                  origin_lps_mm=(-13.7, 21.2, 5.9), direction_lps=direction)


def _random_box(rng: np.random.Generator, shape: tuple[int, ...]) -> IndexBox:
    start = [int(rng.integers(0, n)) for n in shape]
    stop = [int(rng.integers(a + 1, n + 1)) for a, n in zip(start, shape)]
    return IndexBox(tuple(start), tuple(stop))  # type: ignore[arg-type]


def test_index_box_arithmetic() -> None:
    box = IndexBox((2, 0, 5), (4, 3, 9))
    assert box.shape == (2, 3, 4) and not box.is_empty
    assert box.grown((1, 2, 3)) == IndexBox((1, -2, 2), (5, 5, 12))
    assert box.grown((1, 2, 3)).clipped((10, 4, 11)) == IndexBox((1, 0, 2), (5, 4, 11))
    assert box.intersection(IndexBox((3, 1, 0), (9, 9, 6))) == IndexBox((3, 1, 5), (4, 3, 6))
    assert box.intersection(IndexBox((5, 0, 0), (9, 9, 9))).is_empty
    assert IndexBox((3, 0, 0), (1, 2, 2)).shape == (0, 2, 2)  # stop < start: empty
    assert IndexBox.full((4, 5, 6)).contains(box) is False  # column stop 9 > 6
    assert IndexBox.full((4, 5, 9)).contains(box)
    outer = IndexBox((1, 0, 3), (6, 6, 12))
    a = np.arange(5 * 6 * 9).reshape(5, 6, 9)
    parent = np.zeros((6, 6, 12), dtype=int)
    parent[outer.slices] = a
    np.testing.assert_array_equal(a[box.relative_to(outer)], parent[box.slices])
    # around: every voxel whose centre lies in [low, high], clipped
    assert IndexBox.around([1.2, -3.0, 4.0], [2.0, 2.5, 40.0], (10, 10, 10)) == \
        IndexBox((1, 0, 4), (3, 4, 10))


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_crop_is_a_view_with_the_sub_grid_geometry(name: str) -> None:
    rng = np.random.default_rng(5)
    vol = _grid(name, array=rng.normal(size=(17, 23, 29)))
    for _ in range(20):
        box = _random_box(rng, vol.shape)
        crop = vol.crop(box)
        assert crop.shape == box.shape
        assert np.shares_memory(crop.array, vol.array)
        np.testing.assert_array_equal(crop.array, np.asarray(vol.array)[box.slices])
        local = np.array([[0, 0, 0], [n - 1 for n in box.shape]], dtype=float)
        np.testing.assert_allclose(crop.index_to_lps(local),
                                   vol.index_to_lps(local + np.asarray(box.start)), atol=1e-9)
        assert crop.spacing_mm == vol.spacing_mm and crop.series == vol.series



def _validated_copy(vol: Volume) -> Volume:
    """The same volume built through the validating constructor."""
    return Volume(array=vol.array, spacing_mm=vol.spacing_mm, origin_lps_mm=vol.origin_lps_mm,
                  direction_lps=vol.direction_lps, intensity_unit=vol.intensity_unit,
                  series=vol.series)


def _assert_same_volume(got: Volume, want: Volume) -> None:
    assert got.array is not None and not got.array.flags.writeable
    assert got.array.shape == want.array.shape and np.shares_memory(got.array, want.array)
    np.testing.assert_array_equal(got.array, want.array)
    assert got.spacing_mm == want.spacing_mm and got.origin_lps_mm == want.origin_lps_mm
    assert all(type(x) is float for x in (*got.spacing_mm, *got.origin_lps_mm))
    assert got.direction_lps.dtype == np.float64 and not got.direction_lps.flags.writeable
    np.testing.assert_array_equal(got.direction_lps, want.direction_lps)
    assert type(got.intensity_unit) is IntensityUnit and got.intensity_unit == want.intensity_unit
    assert got.series is want.series


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_crops_and_new_arrays_equal_the_validated_construction(name: str) -> None:
    """`crop`/`with_array` skip re-validation: what they build is what `Volume(...)` builds."""
    rng = np.random.default_rng(11)
    vol = _grid(name, array=rng.normal(size=(17, 23, 29)))
    for _ in range(20):
        crop = vol.crop(_random_box(rng, vol.shape))
        _assert_same_volume(crop, _validated_copy(crop))
        mask = crop.with_array(crop.array > 0, intensity_unit=IntensityUnit.MASK)
        _assert_same_volume(mask, _validated_copy(mask))
        assert mask.intensity_unit is IntensityUnit.MASK and mask.array.dtype == bool
        relabelled = crop.with_array(np.ones(crop.shape), intensity_unit="HU",  # type: ignore[arg-type]
                                     series=SeriesInfo(series_instance_uid="1.2.3"))
        _assert_same_volume(relabelled, _validated_copy(relabelled))
        assert relabelled.intensity_unit is IntensityUnit.HU
    mine = np.zeros(vol.shape)
    vol.with_array(mine)
    assert mine.flags.writeable  # the caller's own array stays writeable
    with pytest.raises(ValueError):
        vol.with_array(mine, intensity_unit="furlongs")  # type: ignore[arg-type]


def test_crop_refuses_boxes_outside_the_grid() -> None:
    vol = _grid("axial")
    with pytest.raises(InputError, match="outside the grid of shape"):
        vol.crop(IndexBox((0, 0, 0), (18, 1, 1)))
    with pytest.raises(InputError, match="is empty"):
        vol.crop(IndexBox((3, 3, 3), (3, 4, 4)))


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_box_centres_are_the_whole_grid_centres_bit_for_bit(name: str) -> None:
    rng = np.random.default_rng(7)
    vol = _grid(name)
    whole = vol.box_centres_lps(vol.full_box)
    np.testing.assert_allclose(np.moveaxis(whole, 0, -1), vol.voxel_centres_lps(), atol=1e-9)
    for _ in range(20):
        box = _random_box(rng, vol.shape)
        np.testing.assert_array_equal(vol.box_centres_lps(box),
                                      whole[(slice(None), *box.slices)])


def _source_and_target(name_src: str, name_tgt: str) -> tuple[Volume, Volume]:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 5, size=(13, 15, 17)).astype(np.uint8)
    direction, spacing = GRIDS[name_src]
    src = Volume(array=labels, spacing_mm=spacing, origin_lps_mm=(-9.0, 14.0, 2.0),
                 direction_lps=direction)
    # the target is centred on the source and reaches beyond it (inside and outside voxels)
    direction, spacing = GRIDS[name_tgt]
    shape = (19, 21, 23)
    extent = np.asarray(src.spacing_mm) * np.asarray(src.shape) * 1.3
    tgt_spacing = float(np.prod(extent)) ** (1 / 3) / np.asarray(shape)
    centre = src.index_to_lps([[(n - 1) / 2 for n in src.shape]])[0]
    origin = centre - (direction * tgt_spacing) @ ((np.asarray(shape) - 1) / 2)
    tgt = Volume(array=np.zeros(shape), spacing_mm=tuple(tgt_spacing), origin_lps_mm=origin,
                 direction_lps=direction)
    return src, tgt


@pytest.mark.parametrize(("src_name", "tgt_name"),
                         [("oblique", "axial"), ("axial", "oblique"), ("flipped", "oblique")])
def test_sample_nearest_box_equals_whole_and_simpleitk(src_name: str, tgt_name: str) -> None:
    src, tgt = _source_and_target(src_name, tgt_name)
    whole = src.sample_nearest(tgt)
    assert whole.dtype == src.array.dtype and whole.shape == tgt.shape
    rng = np.random.default_rng(3)
    for _ in range(25):
        box = _random_box(rng, tgt.shape)
        np.testing.assert_array_equal(src.sample_nearest(tgt, box), whole[box.slices])
    # truth: SimpleITK's nearest neighbour (round half up, like ours), except where a target
    # centre falls within 1e-6 voxel of a rounding tie or of the source's edge
    theirs = sitk.GetArrayFromImage(sitk.Resample(
        volume_to_sitk(src), volume_to_sitk(tgt), sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    cont = src.lps_to_index(tgt.voxel_centres_lps().reshape(-1, 3)).reshape(*tgt.shape, 3)
    frac = cont - np.floor(cont)
    tie = np.any(np.abs(frac - 0.5) < 1e-6, axis=-1)
    assert (~tie).mean() > 0.99
    inside = np.all((cont > -0.5 + 1e-6) & (cont < np.asarray(src.shape) - 0.5 - 1e-6), axis=-1)
    assert inside.sum() > 1000 and (~inside).sum() > 1000  # the test covers both
    np.testing.assert_array_equal(whole[~tie], theirs[~tie])


def test_sample_nearest_on_the_same_grid_copies_the_box() -> None:
    src, _ = _source_and_target("oblique", "axial")
    box = IndexBox((2, 3, 4), (9, 10, 11))
    out = src.sample_nearest(src, box)
    np.testing.assert_array_equal(out, np.asarray(src.array)[box.slices])
    assert not np.shares_memory(out, src.array)
    with pytest.raises(InputError, match="outside the target grid"):
        src.sample_nearest(src, IndexBox((0, 0, 0), (14, 1, 1)))
