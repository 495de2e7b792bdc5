"""Contract every registered stage fulfils (STYLE.md §8, after nibabel's ValidateAPI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from support.synthetic import ct_cube, dixon_series, dwi_series

from bonelesion.errors import EmptyMaskError, InputError
from bonelesion.model.volume import Volume
from bonelesion.stages import STAGES
from bonelesion.stages.mr_chemical_shift import DixonImages
from bonelesion.units import IntensityUnit


def _relabel(v: Volume, unit: IntensityUnit) -> Volume:
    return v.with_array(v.array, intensity_unit=unit)


def _case(
    name: str,
) -> tuple[Callable[[Any, Volume, IntensityUnit | None], Any], Volume, list[Volume]]:
    """(call(stage, mask, wrong_unit), mask, input volumes) for a stage."""
    if name == "ct_attenuation":
        ct, mask = ct_cube(noise_sd_hu=10.0, seed=1)

        def call(stage: Any, m: Volume, unit: IntensityUnit | None) -> Any:
            return stage.run(_relabel(ct, unit) if unit else ct, m, lesion_id="L")

        return call, mask, [ct]
    if name == "mr_chemical_shift":
        d = dixon_series(0.2, noise_sd=5.0, seed=1)
        mask = d["in_phase"].with_array(np.ones(d["in_phase"].shape, bool))

        def call(stage: Any, m: Volume, unit: IntensityUnit | None) -> Any:
            ip = _relabel(d["in_phase"], unit) if unit else d["in_phase"]
            return stage.run(
                DixonImages(
                    in_phase=ip, opposed_phase=d["opposed_phase"], water=d["water"], fat=d["fat"]
                ),
                m,
                lesion_id="L",
            )

        return call, mask, list(d.values())
    if name == "dwi_adc":
        vols = dwi_series(1e-3, [0, 500, 1000], noise_sd=2.0, seed=1)
        mask = vols[0].with_array(np.ones(vols[0].shape, bool))

        def call(stage: Any, m: Volume, unit: IntensityUnit | None) -> Any:
            dwi = [_relabel(vols[0], unit) if unit else vols[0], *vols[1:]]
            return stage.run(m, dwi=dwi, lesion_id="L")

        return call, mask, vols
    raise AssertionError(f"no contract case for stage {name}")


@pytest.fixture(params=sorted(STAGES))
def stage_case(request: pytest.FixtureRequest) -> tuple[Any, Any, Volume, list[Volume]]:
    cls, config_cls = STAGES[request.param]
    call, mask, inputs = _case(request.param)
    return cls(config_cls()), call, mask, inputs


def test_inputs_unchanged_and_provenance(stage_case: tuple) -> None:
    stage, call, mask, inputs = stage_case
    before = [np.array(v.array, copy=True) for v in inputs]
    result = call(stage, mask, None)
    for v, b in zip(inputs, before, strict=True):
        np.testing.assert_array_equal(v.array, b)
    assert result.provenance is not None and result.provenance.stage == stage.name
    assert result.provenance.series_instance_uids


def test_rejects_wrong_intensity_unit(stage_case: tuple) -> None:
    stage, call, mask, _ = stage_case
    with pytest.raises(InputError, match="intensity unit MM2_PER_S"):
        call(stage, mask, IntensityUnit.MM2_PER_S)


def test_rejects_empty_mask(stage_case: tuple) -> None:
    stage, call, mask, _ = stage_case
    with pytest.raises(EmptyMaskError, match="is empty"):
        call(stage, mask.with_array(np.zeros(mask.shape, bool)), None)
