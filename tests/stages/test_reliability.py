"""Reliability inputs of the stages: partial volume, central-slice ROI maximum, SNR, reference
marrow and degenerate ADC maps.

Truth: arrays built by hand with known values (the lesion, marrow and air values written into
them), magnitude noise drawn from a complex Gaussian of known σ (Rayleigh in air), Euclidean
distances computed by brute force, and the phantom's own tissue table.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.synthetic import ct_cube, dixon_series, dwi_series, make_volume

from bonelesion.errors import DataQualityWarning
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.stages.base import background_noise_sd, reference_shell
from bonelesion.stages.config import ChemicalShiftConfig, CtAttenuationConfig, DwiAdcConfig
from bonelesion.stages.ct_attenuation import measure_attenuation
from bonelesion.stages.dwi_adc import fit_adc, measure_adc, scanner_adc_map
from bonelesion.stages.mr_chemical_shift import DixonImages, measure_chemical_shift
from bonelesion.units import IntensityUnit

RTOL_NOISE = 0.03  # σ from 40 000 air voxels: the median's standard error is ~0.6 %


# ----------------------------------------------------------------------------- CT
def test_central_slice_maximum_is_the_2d_roi_maximum() -> None:
    ct, mask = ct_cube(lesion_hu=700.0, lesion_slices=slice(5, 12))
    array = np.array(ct.array)
    array[6, 15, 15] = 1500.0  # an outlier off the largest cross-section ...
    array[9, 20, 20] = 900.0  # ... and the brightest voxel of the central slice
    m = np.array(mask.array)
    m[8, 5:35, 5:35] = True  # slice 8 has the most voxels
    r = measure_attenuation(ct.with_array(array), mask.with_array(m),
                            config=CtAttenuationConfig(erosion_margin_voxels=0))
    assert r.attenuation_max_hu == 1500.0 and not r.erosion_fell_back
    array[8, 20, 20] = 950.0
    r = measure_attenuation(ct.with_array(array), mask.with_array(m),
                            config=CtAttenuationConfig(erosion_margin_voxels=0))
    assert r.attenuation_central_slice_max_hu == 950.0
    assert r.central_slice_voxel_count == 30 * 30


def test_erosion_fall_back_is_flagged() -> None:
    ct, mask = ct_cube(lesion_slices=slice(5, 6), lesion_rows=slice(10, 12),
                       lesion_columns=slice(10, 12))
    with pytest.warns(DataQualityWarning, match="left no voxel"):
        r = measure_attenuation(ct, mask, config=CtAttenuationConfig())
    assert r.erosion_fell_back and r.core_voxel_count == 4 and r.erosion_margin_mm == 0.0
    big = measure_attenuation(*ct_cube(), config=CtAttenuationConfig())
    assert not big.erosion_fell_back


# ----------------------------------------------------------------------------- noise
def test_background_noise_of_rayleigh_air_and_none_without_noise() -> None:
    rng = np.random.default_rng(7)
    sigma = 12.0
    air = np.abs(rng.normal(0, sigma, 40000) + 1j * rng.normal(0, sigma, 40000))
    tissue = 1500.0 + rng.normal(0, sigma, 20000)
    image = np.concatenate([air, tissue])
    assert background_noise_sd(image, background_fraction=0.05, min_voxels=500) == \
        pytest.approx(sigma, rel=RTOL_NOISE)
    noise_free = np.concatenate([np.zeros(40000), np.full(20000, 1500.0)])
    assert background_noise_sd(noise_free, background_fraction=0.05, min_voxels=500) is None
    assert background_noise_sd(tissue, background_fraction=0.05, min_voxels=500) is None


# ----------------------------------------------------------------------------- reference shell
def test_reference_shell_is_the_distance_band_around_the_lesion() -> None:
    lesion = np.zeros((12, 30, 30), bool)
    lesion[5:7, 12:16, 12:16] = True
    other = np.zeros_like(lesion)
    other[5, 20:24, 12:16] = True
    spacing = (2.5, 1.25, 1.25)
    shell = reference_shell(lesion, spacing, gap_mm=2.0, width_mm=3.0, exclude=other)
    idx = np.argwhere(np.ones_like(lesion))
    pts = idx * np.asarray(spacing)
    les = np.argwhere(lesion) * np.asarray(spacing)
    d = np.min(np.linalg.norm(pts[:, None, :] - les[None, :, :], axis=-1), axis=1)
    truth = ((d > 2.0) & (d <= 5.0)).reshape(lesion.shape) & ~other
    np.testing.assert_array_equal(shell, truth)
    assert not (shell & lesion).any() and not (shell & other).any()


# ----------------------------------------------------------------------------- chemical shift
def _dixon_lesion(marrow_ff: float, lesion_ff: float, lesion_scale: float, *,
                  noise_sd: float = 0.0):  # type: ignore[no-untyped-def]
    """Marrow block with a darker/brighter spherical lesion, air around (exact values)."""
    shape = (10, 40, 40)
    ff = np.full(shape, marrow_ff)
    scale = np.ones(shape)
    scale[:, :, :6] = 0.0  # air strip
    d = dixon_series(ff, shape=shape, spacing_mm=(2.0, 1.5, 1.5))
    grid = d["in_phase"]
    centre = grid.index_to_lps([[5.0, 20.0, 22.0]])[0]
    les = Lesion(lesion_id="L", sphere=Sphere(tuple(centre), 5.0))
    inside = np.asarray(les.mask_on(grid).array)
    rng = np.random.default_rng(1)
    out = {}
    w = np.where(inside, (1 - lesion_ff) * lesion_scale, (1 - marrow_ff) * scale) * 1000.0
    f = np.where(inside, lesion_ff * lesion_scale, marrow_ff * scale) * 1000.0
    for name, array in (("in_phase", w + f), ("opposed_phase", np.abs(w - f)), ("water", w),
                        ("fat", f)):
        if noise_sd:
            array = np.abs(array + rng.normal(0, noise_sd, shape)
                           + 1j * rng.normal(0, noise_sd, shape))
        out[name] = d[name].with_array(array.astype(np.float32))
    shell = reference_shell(inside, grid.spacing_mm, gap_mm=2.0, width_mm=5.0)
    reference = grid.with_array(shell, intensity_unit=IntensityUnit.MASK)
    return DixonImages(**out), les.mask_on, reference


def test_lesion_signal_against_reference_marrow_without_noise() -> None:
    images, mask, reference = _dixon_lesion(0.65, 0.2, 0.05)
    r = measure_chemical_shift(images, mask, config=ChemicalShiftConfig(),
                               reference_mask=reference)
    # marrow IP = 1000, lesion IP = 0.05 · 1000; marrow water 350, lesion water 40
    assert r.reference_signal_in_phase == pytest.approx(1000.0)
    assert r.in_phase_relative_to_reference == pytest.approx(0.05, rel=1e-5)
    assert r.water_relative_to_reference == pytest.approx(40.0 / 350.0, rel=1e-5)
    assert r.normalised_chemical_shift_ratio == pytest.approx(0.6 / 0.3, rel=1e-5)
    assert r.snr_in_phase is None and r.snr_opposed_phase is None  # no noise to estimate
    assert r.reference_voxel_count > 100


def test_snr_of_each_image_against_rayleigh_background() -> None:
    sigma = 8.0
    images, mask, reference = _dixon_lesion(0.65, 0.05, 0.9, noise_sd=sigma)
    r = measure_chemical_shift(images, mask, config=ChemicalShiftConfig(),
                               reference_mask=reference)
    assert r.snr_in_phase == pytest.approx(r.signal_in_phase_mean / sigma, rel=0.1)
    assert r.snr_water == pytest.approx(r.signal_water_mean / sigma, rel=0.1)
    assert r.in_phase_relative_to_reference == pytest.approx(0.9, abs=0.02)


# ----------------------------------------------------------------------------- ADC
def test_identical_source_volumes_give_a_degenerate_map() -> None:
    vols = dwi_series(1e-3, [0, 800])
    same = [vols[0], vols[0].with_array(vols[0].array, series=vols[1].series)]
    fit = fit_adc(same, config=DwiAdcConfig())
    assert fit.degenerate
    mask = vols[0].with_array(np.ones(vols[0].shape, bool), intensity_unit=IntensityUnit.MASK)
    with pytest.warns(DataQualityWarning, match="identical source volumes"):
        r = measure_adc(fit, mask, config=DwiAdcConfig())
    assert r.map_degenerate
    assert not measure_adc(fit_adc(vols, config=DwiAdcConfig()), mask,
                           config=DwiAdcConfig()).map_degenerate
    zeros = make_volume(np.zeros((8, 32, 32), np.float32), spacing_mm=(4.0, 2.0, 2.0),
                        intensity_unit=IntensityUnit.MM2_PER_S, role="adc")
    with pytest.warns(DataQualityWarning, match="~0 everywhere"):
        assert measure_adc(zeros, mask.with_array(np.asarray(mask.array)),
                           config=DwiAdcConfig()).map_degenerate


def test_scanner_map_takes_b_values_and_low_b_signal_from_its_dwi() -> None:
    adc = np.full((8, 32, 32), 1.0e-3)
    adc[3:6, 12:20, 12:20] = 0.6e-3
    vols = dwi_series(adc, [0, 50, 800], s0=1000.0, spacing_mm=(4.0, 2.0, 2.0))
    b0 = np.array(vols[0].array)
    b0[3:6, 12:20, 12:20] = 250.0  # a dark lesion at b = 0 against 1000 around it
    vols[0] = vols[0].with_array(b0)
    scanner = make_volume(adc.astype(np.float32), spacing_mm=(4.0, 2.0, 2.0),
                          intensity_unit=IntensityUnit.MM2_PER_S, role="adc")
    lesion = np.zeros(adc.shape, bool)
    lesion[3:6, 12:20, 12:20] = True
    mask = scanner.with_array(lesion, intensity_unit=IntensityUnit.MASK)
    shell = reference_shell(lesion, scanner.spacing_mm, gap_mm=2.0, width_mm=5.0)
    reference = scanner.with_array(shell, intensity_unit=IntensityUnit.MASK)
    r = measure_adc(scanner_adc_map(scanner, vols), mask, config=DwiAdcConfig(),
                    reference_mask=reference)
    assert r.b_values_s_per_mm2 == (0.0, 50.0, 800.0) and r.adc_source == "scanner"
    assert r.low_b_value_s_per_mm2 == 0.0 and r.signal_low_b_mean == pytest.approx(250.0)
    assert r.low_b_relative_to_reference == pytest.approx(0.25, rel=1e-5)
    assert r.snr_low_b is None  # noise-free
    assert r.adc_mean_mm2_per_s == pytest.approx(0.6e-3, rel=1e-5)
