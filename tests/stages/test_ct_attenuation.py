"""CT attenuation stage: analytic truth, SimpleITK cross-check, erosion, error paths."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from support.synthetic import ct_cube

from bonelesion.errors import DataQualityWarning, EmptyMaskError, GeometryMismatchError, InputError
from bonelesion.model.sitk_bridge import volume_to_sitk
from bonelesion.stages.config import CtAttenuationConfig
from bonelesion.stages.ct_attenuation import ellipsoid_footprint, measure_attenuation
from bonelesion.units import IntensityUnit

ATOL_HU_NOISE_FREE = 1e-3  # float32 storage of exact HU values
ATOL_HU_SITK = 1e-6  # same voxels, float64 sums in both implementations
N_STANDARD_ERRORS = 3.0  # Done-means criterion for noisy phantoms


def test_noise_free_cube_mean_is_exact() -> None:
    ct, mask = ct_cube(lesion_hu=700.0)
    r = measure_attenuation(ct, mask, config=CtAttenuationConfig(), lesion_id="L1")
    assert r.attenuation_mean_hu == pytest.approx(700.0, abs=ATOL_HU_NOISE_FREE)
    assert r.attenuation_max_hu == pytest.approx(700.0, abs=ATOL_HU_NOISE_FREE)
    assert r.attenuation_sd_hu == pytest.approx(0.0, abs=ATOL_HU_NOISE_FREE)
    # 10×20×20 cuboid eroded by the 6-connected cross: 8×18×18 core
    assert r.lesion_voxel_count == 4000
    assert r.core_voxel_count == 8 * 18 * 18
    assert r.lesion_volume_ml == pytest.approx(4000 * 2.0 * 0.7 * 0.7 / 1000.0)
    assert r.provenance is not None and r.provenance.stage == "ct_attenuation"


def test_noisy_cube_mean_within_three_standard_errors() -> None:
    sd = 30.0
    ct, mask = ct_cube(lesion_hu=850.0, noise_sd_hu=sd, seed=7)
    r = measure_attenuation(ct, mask, config=CtAttenuationConfig())
    se = sd / np.sqrt(r.core_voxel_count)
    assert abs(r.attenuation_mean_hu - 850.0) < N_STANDARD_ERRORS * se
    assert r.attenuation_sd_hu == pytest.approx(sd, rel=0.05)


def test_erosion_excludes_the_partial_volume_edge() -> None:
    # edge voxels of the cuboid at 300 HU (partial volume); the core must not see them
    # (analytic: the cuboid [5:15, 10:30, 10:30] minus its one-voxel shell, not the code's
    # own erosion, so a stage that skipped erosion would see the 300 HU edge and fail)
    ct, mask = ct_cube(lesion_hu=900.0)
    array = np.array(ct.array)
    lesion = np.asarray(mask.array)
    core = np.zeros_like(lesion)
    core[6:14, 11:29, 11:29] = True
    array[lesion & ~core] = 300.0
    r = measure_attenuation(ct.with_array(array), mask, config=CtAttenuationConfig())
    assert r.attenuation_mean_hu == pytest.approx(900.0, abs=ATOL_HU_NOISE_FREE)
    assert r.attenuation_min_hu == pytest.approx(900.0, abs=ATOL_HU_NOISE_FREE)


def test_statistics_agree_with_simpleitk_label_statistics() -> None:
    ct, mask = ct_cube(lesion_hu=650.0, noise_sd_hu=80.0, seed=3, dtype=np.float64)
    config = CtAttenuationConfig(erosion_margin_voxels=0)
    r = measure_attenuation(ct, mask, config=config)
    stats = sitk.LabelStatisticsImageFilter()
    label = sitk.Cast(volume_to_sitk(mask), sitk.sitkUInt8)
    stats.SetUseHistograms(True)
    stats.Execute(volume_to_sitk(ct), label)
    assert r.core_voxel_count == stats.GetCount(1)
    assert r.attenuation_mean_hu == pytest.approx(stats.GetMean(1), abs=ATOL_HU_SITK)
    assert r.attenuation_min_hu == pytest.approx(stats.GetMinimum(1), abs=ATOL_HU_SITK)
    assert r.attenuation_max_hu == pytest.approx(stats.GetMaximum(1), abs=ATOL_HU_SITK)
    assert r.attenuation_sd_hu == pytest.approx(stats.GetSigma(1), abs=1e-6)
    # ITK's median comes from a 256-bin histogram over the image range: agree to one bin
    bin_hu = (float(np.max(ct.array)) - float(np.min(ct.array))) / 256.0
    assert r.attenuation_median_hu == pytest.approx(stats.GetMedian(1), abs=bin_hu)


def test_mm_margin_is_converted_per_axis() -> None:
    # 2 mm margin on (2, 0.7, 0.7) mm voxels: 1 slice, 2 rows/columns (floor(2/0.7) = 2)
    fp = ellipsoid_footprint((2 / 2.0, 2 / 0.7, 2 / 0.7))
    assert fp.shape == (3, 5, 5)
    ct, mask = ct_cube()
    r = measure_attenuation(ct, mask, config=CtAttenuationConfig(erosion_margin_mm=2.0))
    assert r.core_voxel_count == 8 * 16 * 16
    assert r.erosion_margin_mm == 2.0


def test_erosion_that_empties_the_roi_falls_back_with_a_warning() -> None:
    ct, mask = ct_cube(lesion_slices=slice(5, 6), lesion_hu=1000.0)  # one slice thick
    with pytest.warns(DataQualityWarning, match="un-eroded mask was used"):
        r = measure_attenuation(ct, mask, config=CtAttenuationConfig())
    assert r.core_voxel_count == r.lesion_voxel_count == 400
    assert r.erosion_margin_mm == 0.0
    assert len(r.warnings) == 1


def test_wrong_intensity_unit_is_refused() -> None:
    ct, mask = ct_cube()
    mr = ct.with_array(ct.array, intensity_unit=IntensityUnit.ARBITRARY)
    with pytest.raises(InputError, match="intensity unit ARBITRARY, expected HU"):
        measure_attenuation(mr, mask, config=CtAttenuationConfig())


def test_empty_mask_is_refused() -> None:
    ct, mask = ct_cube()
    with pytest.raises(EmptyMaskError, match="lesion 'L9'.*is empty"):
        measure_attenuation(
            ct,
            mask.with_array(np.zeros(mask.shape, bool)),
            config=CtAttenuationConfig(),
            lesion_id="L9",
        )


def test_mask_on_another_grid_is_refused() -> None:
    ct, mask = ct_cube()
    other, _ = ct_cube(shape=(20, 40, 41))
    with pytest.raises(GeometryMismatchError, match="not on the grid"):
        measure_attenuation(other, mask, config=CtAttenuationConfig())


def test_config_ranges() -> None:
    from bonelesion.errors import ConfigError

    with pytest.raises(ConfigError, match="erosion_margin_voxels: must be ≥ 0"):
        CtAttenuationConfig(erosion_margin_voxels=-1)
    with pytest.raises(ConfigError, match="erosion_margin_mm: must be ≥ 0"):
        CtAttenuationConfig(erosion_margin_mm=-0.5)
