"""Chemical-shift stage against the two-point Dixon model (analytic truth)."""

from __future__ import annotations

import numpy as np
import pytest
from support.synthetic import dixon_series

from bonelesion.errors import DataQualityWarning, EmptyMaskError, InputError
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.stages.base import erode_mask
from bonelesion.stages.config import ChemicalShiftConfig
from bonelesion.stages.mr_chemical_shift import (
    DixonImages,
    check_echo_times,
    measure_chemical_shift,
)
from bonelesion.units import IntensityUnit

ATOL_SIR = 1e-6  # noise-free float32 images: exact up to rounding
ATOL_SIR_DONE = 0.01  # Done-means tolerance (SIR and fat fraction)
CONFIG = ChemicalShiftConfig()


def _images(d: dict, *, water_fat: bool = True) -> DixonImages:
    return DixonImages(
        in_phase=d["in_phase"],
        opposed_phase=d["opposed_phase"],
        water=d["water"] if water_fat else None,
        fat=d["fat"] if water_fat else None,
    )


def _full_mask(d: dict):
    return d["in_phase"].with_array(
        np.ones(d["in_phase"].shape, bool), intensity_unit=IntensityUnit.MASK
    )


@pytest.mark.parametrize("ff", [0.0, 0.1, 0.3, 0.45])
def test_water_dominant_lesion_sir_is_one_minus_two_ff(ff: float) -> None:
    d = dixon_series(ff)
    r = measure_chemical_shift(_images(d), _full_mask(d), config=CONFIG)
    assert r.chemical_shift_ratio == pytest.approx(1 - 2 * ff, abs=ATOL_SIR)
    assert r.signal_drop_pct == pytest.approx(200 * ff, abs=100 * ATOL_SIR)
    assert r.fat_fraction == pytest.approx(ff, abs=ATOL_SIR)
    assert r.warnings == ()


def test_fatty_marrow_folds_back() -> None:
    d = dixon_series(0.9)  # SIR = 2·FF − 1 = 0.8 (CLINICAL_REFERENCE §B1)
    r = measure_chemical_shift(_images(d), _full_mask(d), config=CONFIG)
    assert r.chemical_shift_ratio == pytest.approx(0.8, abs=ATOL_SIR)
    assert r.fat_fraction == pytest.approx(0.9, abs=ATOL_SIR)


def test_noisy_sphere_within_done_tolerance_and_fat_fraction_is_ratio_of_means() -> None:
    ff = np.full((8, 32, 32), 0.6)
    ff[2:6, 8:24, 8:24] = 0.15  # lesion
    d = dixon_series(ff, noise_sd=10.0, seed=5)
    grid = d["in_phase"]
    centre = grid.index_to_lps([[3.5, 15.5, 15.5]])[0]
    lesion = Lesion(lesion_id="L1", sphere=Sphere(tuple(centre), 9.0))
    r = measure_chemical_shift(_images(d), lesion.mask_on, config=CONFIG, lesion_id="L1")
    assert r.chemical_shift_ratio == pytest.approx(0.7, abs=ATOL_SIR_DONE)
    assert r.fat_fraction == pytest.approx(0.15, abs=ATOL_SIR_DONE)
    m, _ = erode_mask(np.asarray(lesion.mask_on(grid).array), grid.spacing_mm)  # core ROI
    w, f = np.asarray(d["water"].array, float)[m], np.asarray(d["fat"].array, float)[m]
    assert r.fat_fraction == pytest.approx(f.mean() / (w.mean() + f.mean()), rel=1e-12)


def test_same_lesion_rasterised_on_each_grid() -> None:
    ff = np.full((8, 32, 32), 0.1)
    d = dixon_series(ff)
    coarse = dixon_series(0.1, shape=(4, 16, 16), spacing_mm=(10.0, 3.0, 3.0))
    centre = d["in_phase"].index_to_lps([[4, 16, 16]])[0]
    lesion = Lesion(lesion_id="L", sphere=Sphere(tuple(centre), 12.0))
    images = DixonImages(in_phase=d["in_phase"], opposed_phase=coarse["opposed_phase"])
    r = measure_chemical_shift(images, lesion.mask_on, config=CONFIG)
    assert r.chemical_shift_ratio == pytest.approx(0.8, abs=ATOL_SIR)
    assert r.fat_fraction is None


def test_normalisation_to_reference_marrow() -> None:
    ff = np.full((8, 32, 32), 0.4)  # reference marrow, SIR 0.2
    ff[:, :, :16] = 0.05  # lesion half, SIR 0.9
    d = dixon_series(ff)
    lesion = _full_mask(d).with_array(np.zeros((8, 32, 32), bool) | (np.arange(32) < 16))
    ref = _full_mask(d).with_array(np.zeros((8, 32, 32), bool) | (np.arange(32) >= 16))
    r = measure_chemical_shift(_images(d), lesion, config=CONFIG, reference_mask=ref)
    assert r.normalised_chemical_shift_ratio == pytest.approx(0.9 / 0.2, rel=1e-5)


def test_echo_times_checked_against_field_strength() -> None:
    ok = dixon_series(0.1, field_strength_t=1.5, echo_times_ms=(4.6, 2.3))
    assert check_echo_times(_images(ok), CONFIG) == []
    three_t = dixon_series(0.1, field_strength_t=3.0, echo_times_ms=(2.3, 1.15))
    assert check_echo_times(_images(three_t), CONFIG) == []
    swapped = dixon_series(0.1, field_strength_t=1.5, echo_times_ms=(2.3, 4.6))
    with pytest.warns(DataQualityWarning) as record:
        r = measure_chemical_shift(_images(swapped), _full_mask(swapped), config=CONFIG)
    messages = [str(w.message) for w in record]
    assert any("outside the in-phase window 4.2–4.9 ms" in m for m in messages)
    assert any("outside the opposed-phase window 2–2.5 ms" in m for m in messages)
    assert len(r.warnings) == 2
    odd = dixon_series(0.1, field_strength_t=7.0)
    assert "no echo-time window" in check_echo_times(_images(odd), CONFIG)[0]


def test_missing_echo_is_an_error() -> None:
    d = dixon_series(0.1)
    with pytest.raises(InputError, match="opposed-phase echo is missing"):
        measure_chemical_shift(
            DixonImages(in_phase=d["in_phase"], opposed_phase=None), _full_mask(d), config=CONFIG
        )
    with pytest.raises(InputError, match="in-phase echo is missing"):
        measure_chemical_shift(
            DixonImages(in_phase=None, opposed_phase=d["opposed_phase"]),
            _full_mask(d),
            config=CONFIG,
        )


def test_wrong_unit_empty_mask_and_zero_signal() -> None:
    d = dixon_series(0.1)
    hu = d["in_phase"].with_array(d["in_phase"].array, intensity_unit=IntensityUnit.HU)
    with pytest.raises(InputError, match="intensity unit HU, expected ARBITRARY"):
        measure_chemical_shift(
            DixonImages(in_phase=hu, opposed_phase=d["opposed_phase"]), _full_mask(d), config=CONFIG
        )
    with pytest.raises(EmptyMaskError, match="is empty"):
        measure_chemical_shift(
            _images(d), _full_mask(d).with_array(np.zeros((8, 32, 32), bool)), config=CONFIG
        )
    zero = d["in_phase"].with_array(np.zeros((8, 32, 32), np.float32))
    with pytest.raises(InputError, match="mean in-phase signal .* is 0"):
        measure_chemical_shift(
            DixonImages(in_phase=zero, opposed_phase=d["opposed_phase"]),
            _full_mask(d),
            config=CONFIG,
        )


def test_only_one_of_water_and_fat_warns() -> None:
    d = dixon_series(0.1)
    images = DixonImages(in_phase=d["in_phase"], opposed_phase=d["opposed_phase"], water=d["water"])
    with pytest.warns(DataQualityWarning, match="only the water image"):
        r = measure_chemical_shift(images, _full_mask(d), config=CONFIG)
    assert r.fat_fraction is None


def test_degenerate_water_fat_and_reference_signals_warn() -> None:
    d = dixon_series(0.1)
    zero = d["water"].with_array(np.zeros((8, 32, 32), np.float32))
    images = DixonImages(
        in_phase=d["in_phase"], opposed_phase=d["opposed_phase"], water=zero, fat=zero
    )
    with pytest.warns(DataQualityWarning, match="water \\+ fat mean signal is 0"):
        r = measure_chemical_shift(images, _full_mask(d), config=CONFIG)
    assert r.fat_fraction is None
    op0 = DixonImages(
        in_phase=d["in_phase"],
        opposed_phase=d["opposed_phase"].with_array(np.zeros((8, 32, 32), np.float32)),
    )
    with pytest.warns(DataQualityWarning, match="reference ROI signal is not positive"):
        r = measure_chemical_shift(op0, _full_mask(d), config=CONFIG, reference_mask=_full_mask(d))
    assert r.normalised_chemical_shift_ratio is None
