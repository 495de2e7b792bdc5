"""Error branches of the generator, and its analytic parts (echo times, ADC fit, fractions)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from bonelesion.errors import InputError
from bonelesion.phantom import DEFAULT_LESIONS, echo_times_ms, fit_adc_map, write_study
from bonelesion.phantom.anatomy import centred_grid, check_lesions, tissue_fractions
from bonelesion.phantom.study import ADC_MASK_MIN_S0, DWI_B_VALUES_S_PER_MM2, ct_grid

#: Rounding of the ADC map to integer 1e-6 mm²/s.
ADC_MAP_ATOL_UM2_PER_S = 1.0


def _lesion(**changes: object):
    return dataclasses.replace(DEFAULT_LESIONS[0], **changes)


def test_echo_times_analytic() -> None:
    # Δf = 3.4e-6 · 42.577478e6 · B0 Hz; OP = 1/(2Δf), IP = 1/Δf (CLINICAL_REFERENCE §B1)
    for b0, op_ms in ((1.5, 2.3026), (3.0, 1.1513)):
        op, ip = echo_times_ms(b0)
        assert op == pytest.approx(op_ms, abs=1e-4)
        assert ip == pytest.approx(2 * op_ms, abs=2e-4)


def test_fit_adc_map_analytic() -> None:
    b = np.asarray(DWI_B_VALUES_S_PER_MM2)
    adc_true = np.array([0.45e-3, 1.0e-3, 3.0e-3, 0.8e-3])
    s0 = np.array([1050.0, 2000.0, 2700.0, 50.0])  # last one under the background mask
    dwi = np.rint(s0[None, :] * np.exp(-b[:, None] * adc_true[None, :]))
    out = fit_adc_map(dwi.astype(np.uint16).reshape(4, 1, 1, 4))
    np.testing.assert_allclose(out[0, 0, :3], adc_true[:3] * 1e6, atol=ADC_MAP_ATOL_UM2_PER_S)
    assert s0[3] < ADC_MASK_MIN_S0 and out[0, 0, 3] == 0


def test_fractions_sum_to_one_and_are_exact_inside() -> None:
    grid = ct_grid()
    les = DEFAULT_LESIONS[2]  # centre (11, 0, 0)
    k = int(round(np.linalg.solve(grid.affine_lps[:3, :3],
                                  np.asarray(les.center_lps_mm) - grid.origin_lps_mm)[0]))
    fr, labels = tissue_fractions(grid, DEFAULT_LESIONS, slice_index=k, supersampling=3)
    np.testing.assert_allclose(fr.sum(axis=0), 1.0, atol=1e-12)
    lesion_plane = fr[list(labels).index(12)]
    assert lesion_plane.max() == 1.0 and ((lesion_plane > 0) & (lesion_plane < 1)).any()
    # the lesion's volume on this slice ≈ disc area (π r'²) · thickness, r' at the slice offset
    s_offset = grid.origin_lps_mm[2] + k * grid.spacing_mm[0] - les.center_lps_mm[2]
    area = math.pi * (les.radius_mm**2 - s_offset**2)
    assert lesion_plane.sum() * 1.5 * 1.5 == pytest.approx(area, rel=0.05)


def test_centred_grid_centre() -> None:
    g = centred_grid(shape=(3, 4, 5), spacing_mm=(2.0, 1.0, 1.0), center_lps_mm=(1.0, 2.0, 3.0),
                     direction=np.eye(3))
    centre_index = (np.asarray(g.shape) - 1) / 2
    np.testing.assert_allclose(g.affine_lps @ [*centre_index, 1.0], [1.0, 2.0, 3.0, 1.0])


def test_write_study_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="vendor 'canon' is not supported"):
        write_study(tmp_path / "a", vendor="canon")
    with pytest.raises(InputError, match="seed must be a non-negative integer, found -1"):
        write_study(tmp_path / "a", seed=-1)
    with pytest.raises(InputError, match="seed must be a non-negative integer, found True"):
        write_study(tmp_path / "a", seed=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="is not empty"):
        write_study(tmp_path / "full")
    with pytest.raises(InputError, match="exists and is not a folder"):
        write_study(tmp_path / "full" / "x")
    with pytest.raises(InputError, match=r"field_strength_t must be in \[0.2, 11.7\] T"):
        write_study(tmp_path / "b", field_strength_t=30.0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_lesion_errors() -> None:
    ok = list(DEFAULT_LESIONS)
    check_lesions(ok, coarsest_spacing_mm=2.5)
    cases = [
        ([_lesion(radius_mm=6.0)], r"radius_mm must be ≥ 7.5 mm"),
        ([ok[0], _lesion()], "lesion ids must be unique"),
        ([_lesion(attenuation_hu=650.5)], "attenuation_hu must be an integer"),
        ([_lesion(fat_fraction=1.5)], "expected fat_fraction in"),
        ([_lesion(adc_mm2_per_s=0.8)], r"not 1e-3 mm²/s"),
        ([_lesion(center_lps_mm=(11.0, 0.0, 18.0))], "not wholly inside the marrow"),
        ([_lesion(vertebra="L2")], "lies in vertebra L1, but vertebra='L2'"),
        ([ok[0], _lesion(lesion_id="x", center_lps_mm=(0.0, 0.0, 36.0), radius_mm=8.0,
                         vertebra="L1")], "overlap by"),
    ]
    for lesions, pattern in cases:
        with pytest.raises(InputError, match=pattern):
            check_lesions(lesions, coarsest_spacing_mm=2.5)
    with pytest.raises(InputError, match=r"radius_mm must be ≥ 5 mm"):
        check_lesions([_lesion(radius_mm=4.0)], coarsest_spacing_mm=1.0)


def test_custom_lesions_are_written(tmp_path: Path) -> None:
    """A user lesion set reaches truth.json, rois.csv and the UIDs."""
    from bonelesion.phantom import ExpectedNature, LesionSpec, load_truth

    mine = [LesionSpec(lesion_id="mine", vertebra="L2", center_lps_mm=(0.0, 2.0, 0.0),
                       radius_mm=12.0, attenuation_hu=900, fat_fraction=0.0,
                       adc_mm2_per_s=1.0e-3, mr_signal_scale=1.0,
                       expected_nature=ExpectedNature.BENIGN, kind="enostosis", treated=True)]
    truth = write_study(tmp_path / "s", lesions=mine, noise_free=True)
    assert [les.lesion_id for les in load_truth(tmp_path / "s").lesions] == ["mine"]
    assert truth.lesions[0].treated
    assert "mine,0.0,2.0,0.0,12.0," in (tmp_path / "s" / "rois.csv").read_text()
