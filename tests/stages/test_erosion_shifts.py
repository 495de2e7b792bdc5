"""A lesion's core by shifted ANDs equals scipy's binary erosion, voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bonelesion.stages.base import _SHIFTED_EROSION_MAX, ellipsoid_footprint, erode_mask


@pytest.mark.parametrize("radii", [(1.0, 1.0, 1.0), (0.5, 1.0, 1.0), (1.0, 2.2, 2.2),
                                   (2.0, 2.0, 2.0), (1.4, 0.9, 3.1), (0.0, 1.0, 0.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eroded_by_shifts_equals_scipy(radii: tuple[float, float, float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 14, size=3))
    # blobs touching the borders, holes, single voxels, and all-empty / all-full cases
    mask = ndimage.binary_opening(rng.random(shape) < 0.7) | (rng.random(shape) < 0.05)
    footprint = ellipsoid_footprint(radii)
    assert 1 < footprint.sum() <= _SHIFTED_EROSION_MAX or footprint.sum() <= 1
    # a 1 mm margin on voxels of 1/r mm is a margin of r voxels along each axis
    spacing = tuple(1.0 / r if r > 0 else 100.0 for r in radii)
    for m in (mask, np.zeros(shape, bool), np.ones(shape, bool)):
        core, got_radii = erode_mask(m, spacing, margin_mm=1.0)  # type: ignore[arg-type]
        np.testing.assert_allclose(got_radii, [r if r > 0 else 0.01 for r in radii])
        expected = (m.copy() if footprint.sum() <= 1 else
                    ndimage.binary_erosion(m, structure=footprint, border_value=0))
        np.testing.assert_array_equal(core, expected)
        assert core.dtype == bool and core.shape == m.shape


def test_larger_footprints_still_use_scipy() -> None:
    footprint = ellipsoid_footprint((3.0, 3.0, 3.0))
    assert footprint.sum() > _SHIFTED_EROSION_MAX
    rng = np.random.default_rng(5)
    mask = rng.random((12, 15, 15)) < 0.9
    core, _ = erode_mask(mask, (1.0, 1.0, 1.0), margin_mm=3.0)
    np.testing.assert_array_equal(
        core, ndimage.binary_erosion(mask, structure=footprint, border_value=0))
