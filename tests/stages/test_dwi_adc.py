"""ADC fit and per-lesion statistics against S = S0·exp(−b·ADC)."""

from __future__ import annotations

import numpy as np
import pytest
from support.synthetic import dwi_series

from bonelesion.errors import (
    DataQualityWarning,
    FrameOfReferenceError,
    GeometryMismatchError,
    InputError,
    MissingAttributeError,
)
from bonelesion.stages.config import DwiAdcConfig
from bonelesion.stages.dwi_adc import DwiAdcStage, fit_adc, measure_adc, select_b_values
from bonelesion.units import IntensityUnit

RTOL_ADC_NOISE_FREE = 1e-5  # float32 logs
RTOL_ADC_DONE = 0.01  # Done-means: ADC within 1 %
CONFIG = DwiAdcConfig()


def _adc_field() -> np.ndarray:
    adc = np.full((8, 32, 32), 0.8e-3)
    adc[:, :, 16:] = 2.0e-3
    return adc


@pytest.mark.parametrize("bvals", [[0, 1000], [0, 50, 400, 800], [100, 500, 1000, 1500], [0, 800]])
def test_noise_free_fit_recovers_adc(bvals: list[float]) -> None:
    truth = _adc_field()
    fit = fit_adc(dwi_series(truth, bvals), config=CONFIG)
    np.testing.assert_allclose(fit.volume.array, truth, rtol=RTOL_ADC_NOISE_FREE)
    assert fit.volume.intensity_unit == IntensityUnit.MM2_PER_S
    assert fit.masked_voxel_count == 0


def test_b_value_selection() -> None:
    assert select_b_values([0, 50, 400, 800], CONFIG)[0] == [50, 400, 800]
    assert select_b_values([0, 40, 273, 800], CONFIG)[0] == [273, 800]
    assert select_b_values([0, 1000], CONFIG)[0] == [0, 1000]
    assert select_b_values([0, 40, 1000], CONFIG)[0] == [0, 1000]
    with pytest.raises(InputError, match="at least two distinct b-values, found \\[1000.0\\]"):
        select_b_values([1000, 1000], CONFIG)


def test_least_squares_matches_numpy_polyfit_on_noisy_data() -> None:
    bvals = [50, 300, 600, 1000]
    vols = dwi_series(1.1e-3, bvals, noise_sd=20.0, seed=2, shape=(2, 8, 8))
    fit = fit_adc(vols, config=CONFIG)
    logs = np.log(np.stack([np.asarray(v.array, float) for v in vols]).reshape(4, -1))
    slope = np.polyfit(np.asarray(bvals, float), logs, 1)[0]
    np.testing.assert_allclose(fit.volume.array.ravel(), -slope, rtol=1e-4)


def test_noisy_lesion_mean_within_one_percent() -> None:
    truth = _adc_field()
    vols = dwi_series(truth, [0, 50, 500, 1000], s0=1000.0, noise_sd=5.0, seed=11)
    stage = DwiAdcStage(CONFIG)
    mask = vols[0].with_array(
        np.zeros(truth.shape, bool) | (np.arange(32) < 16), intensity_unit=IntensityUnit.MASK
    )
    r = stage.run(mask, dwi=vols, lesion_id="L1")
    assert r.adc_source == "fitted"
    assert r.adc_mean_mm2_per_s == pytest.approx(0.8e-3, rel=RTOL_ADC_DONE)
    assert r.adc_p10_mm2_per_s < r.adc_median_mm2_per_s < r.adc_p90_mm2_per_s
    assert r.b_values_s_per_mm2 == (50.0, 500.0, 1000.0)


def test_directional_images_combine_to_the_trace() -> None:
    # three orthogonal directions with different diffusivities: the trace ADC is their mean
    d = [0.5e-3, 1.0e-3, 1.5e-3]
    b0 = dwi_series(0.0, [0])[0]
    dirs = []
    for k, adc in enumerate(d):
        v = dwi_series(adc, [1000])[0]
        direction = tuple(float(x) for x in np.eye(3)[k])
        dirs.append(v.with_array(v.array, series=v.series.replace(diffusion_direction=direction)))
    fit = fit_adc([b0, *dirs], config=CONFIG)
    np.testing.assert_allclose(fit.volume.array, np.mean(d), rtol=RTOL_ADC_NOISE_FREE)
    assert any("geometric mean of 3 directions" in n for n in fit.notes)


def test_noise_floor_and_non_positive_signal_are_masked() -> None:
    vols = dwi_series(1e-3, [0, 1000])
    b0 = np.array(vols[0].array)
    b0[0, 0, :4] = 1.0  # background: far below 5 % of the 99th percentile
    high = np.array(vols[1].array)
    high[1, 1, 1] = 0.0  # log undefined
    vols = [vols[0].with_array(b0), vols[1].with_array(high)]
    fit = fit_adc(vols, config=CONFIG)
    assert np.isnan(fit.volume.array[0, 0, :4]).all()
    assert np.isnan(fit.volume.array[1, 1, 1])
    assert fit.masked_voxel_count == 5
    mask = vols[0].with_array(np.zeros((8, 32, 32), bool), intensity_unit=IntensityUnit.MASK)
    m = np.asarray(mask.array).copy()
    m[0, 0, :8] = True
    no_erosion = DwiAdcConfig(erosion_margin_voxels=0)
    with pytest.warns(DataQualityWarning, match="4 of 8 ADC voxels .* masked"):
        r = measure_adc(fit, mask.with_array(m.copy()), config=no_erosion)
    assert r.voxel_count == 4
    m = np.zeros((8, 32, 32), bool)
    m[0, 0, :4] = True
    with pytest.raises(InputError, match="all 4 ADC voxels .* are masked"):
        measure_adc(fit, mask.with_array(m), config=no_erosion)


def test_scanner_map_is_used_when_present() -> None:
    vols = dwi_series(1e-3, [0, 1000])
    scanner = vols[0].with_array(
        np.full((8, 32, 32), 0.9e-3), intensity_unit=IntensityUnit.MM2_PER_S
    )
    mask = vols[0].with_array(np.ones((8, 32, 32), bool), intensity_unit=IntensityUnit.MASK)
    r = DwiAdcStage(CONFIG).run(mask, scanner_adc=scanner, dwi=vols)
    assert r.adc_source == "scanner"
    assert r.adc_mean_mm2_per_s == pytest.approx(0.9e-3)
    r = DwiAdcStage(DwiAdcConfig(prefer_scanner_adc=False)).run(mask, scanner_adc=scanner, dwi=vols)
    assert r.adc_source == "fitted"
    assert r.adc_mean_mm2_per_s == pytest.approx(1e-3, rel=RTOL_ADC_NOISE_FREE)


def test_error_paths() -> None:
    vols = dwi_series(1e-3, [0, 1000])
    with pytest.raises(InputError, match="at least two distinct b-values"):
        fit_adc([vols[1]], config=CONFIG)
    with pytest.raises(InputError, match="no DWI volume"):
        fit_adc([], config=CONFIG)
    no_b = vols[1].with_array(vols[1].array, series=vols[1].series.replace(b_value_s_per_mm2=None))
    with pytest.raises(MissingAttributeError, match="has no b-value"):
        fit_adc([vols[0], no_b], config=CONFIG)
    other = dwi_series(1e-3, [1000], shape=(8, 32, 30))[0]
    with pytest.raises(GeometryMismatchError, match="not on the grid"):
        fit_adc([vols[0], other], config=CONFIG)
    far = vols[1].with_array(
        vols[1].array, series=vols[1].series.replace(frame_of_reference_uid="9.9")
    )
    with pytest.raises(FrameOfReferenceError, match="frame of reference 9.9"):
        fit_adc([vols[0], far], config=CONFIG)
    hu = vols[1].with_array(vols[1].array, intensity_unit=IntensityUnit.HU)
    with pytest.raises(InputError, match="intensity unit HU, expected ARBITRARY"):
        fit_adc([vols[0], hu], config=CONFIG)
    mask = vols[0].with_array(np.ones((8, 32, 32), bool))
    with pytest.raises(InputError, match="intensity unit ARBITRARY, expected MM2_PER_S"):
        measure_adc(vols[0], mask, config=CONFIG)


def test_config_ranges() -> None:
    from bonelesion.errors import ConfigError

    with pytest.raises(ConfigError, match="b_min_s_per_mm2: must be ≥ 0"):
        DwiAdcConfig(b_min_s_per_mm2=-1.0)
    with pytest.raises(ConfigError, match="noise_floor_fraction: must be in"):
        DwiAdcConfig(noise_floor_fraction=1.5)
