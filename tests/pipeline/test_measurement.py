"""Measuring one study on the volumes its plan chose (`bonelesion.pipeline.measurement`).

Truth: analytic volumes (`synthetic`): a 700 HU cube, Dixon images of fat fraction 0.1 (SIR
0.8), DWI of ADC 0.9e-3 mm²/s.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.synthetic import STUDY_UID, ct_cube, dixon_series, dwi_series

from bonelesion.errors import StageError
from bonelesion.model.volume import Volume
from bonelesion.pipeline.loading import StudyVolumes
from bonelesion.pipeline.measurement import measure_study
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.stages.config import DwiAdcConfig, PipelineConfig, StagesConfig
from bonelesion.units import IntensityUnit

ATOL_HU = 1e-3  # noise-free float32
ATOL_SIR = 1e-5
RTOL_ADC = 1e-5


def _study() -> tuple[dict[str, tuple[Volume, ...]], Lesion]:
    """CT (700 HU cube), Dixon (FF 0.1 lesion), DWI b 0/1000 (ADC 0.9e-3), all one FoR."""
    ct, _ = ct_cube(
        shape=(20, 40, 40),
        lesion_hu=700.0,
        lesion_slices=slice(2, 18),
        lesion_rows=slice(4, 36),
        lesion_columns=slice(4, 36),
        spacing_mm=(1.0, 1.0, 1.0),
    )
    dixon = dixon_series(0.1, shape=(8, 20, 20), spacing_mm=(2.0, 2.0, 2.0))
    dwi = dwi_series(0.9e-3, [0, 1000], shape=(8, 20, 20), spacing_mm=(2.0, 2.0, 2.0))
    roles = {"ct": (ct,), "dwi": tuple(dwi)}
    roles.update({f"dixon_{k}": (v,) for k, v in dixon.items()})
    centre = ct.index_to_lps([[10, 20, 20]])[0]
    lesion = Lesion(
        lesion_id="L1",
        sphere=Sphere(tuple(centre), 6.0),
        treated=False,
        annotations={"sins_pain": 1},
    )
    return roles, lesion


def _volumes(roles: dict[str, tuple[Volume, ...]], *keep: str) -> StudyVolumes:
    return StudyVolumes(study_instance_uid=STUDY_UID,
                        by_role={r: v for r, v in roles.items() if not keep or r in keep})


def test_measure_study_runs_every_stage() -> None:
    roles, lesion = _study()
    (m,) = measure_study(_volumes(roles), [lesion], PipelineConfig())
    assert m.study_instance_uid == STUDY_UID and m.lesion_id == "L1"
    assert m.missing == {}
    assert m.ct is not None and m.ct.attenuation_mean_hu == pytest.approx(700.0, abs=ATOL_HU)
    assert m.chemical_shift is not None
    assert m.chemical_shift.chemical_shift_ratio == pytest.approx(0.8, abs=ATOL_SIR)
    assert m.chemical_shift.fat_fraction == pytest.approx(0.1, abs=ATOL_SIR)
    assert m.adc is not None and m.adc.adc_source == "fitted"
    assert m.adc.adc_mean_mm2_per_s == pytest.approx(0.9e-3, rel=RTOL_ADC)
    assert m.annotations == {"treated": False, "sins_pain": 1}


def test_missing_modalities_have_reasons() -> None:
    roles, lesion = _study()
    (m,) = measure_study(_volumes(roles, "ct"), [lesion], PipelineConfig())
    assert m.ct is not None and m.chemical_shift is None and m.adc is None
    assert "no in/opposed-phase" in m.missing["chemical_shift"]
    assert "no scanner ADC map" in m.missing["adc"]
    mr_only = _volumes(roles, "dixon_in_phase", "dixon_opposed_phase", "dwi")
    (m,) = measure_study(mr_only, [lesion], PipelineConfig())
    assert "no CT image volume" in m.missing["ct"]
    assert m.chemical_shift is not None and m.chemical_shift.fat_fraction is None
    assert "this study has none" in m.missing["fat_fraction"]


def test_errors_become_reasons_not_failures() -> None:
    roles, _ = _study()
    outside = Lesion(lesion_id="far", sphere=Sphere((900.0, 0.0, 0.0), 5.0))
    other_for = Lesion(
        lesion_id="for", sphere=Sphere((0.0, 0.0, 0.0), 5.0), frame_of_reference_uid="1.2.3.4"
    )
    single_b = dict(roles, dwi=roles["dwi"][1:])
    m_far, m_for = measure_study(_volumes(single_b), [outside, other_for], PipelineConfig())
    assert set(m_far.missing) == {"ct", "chemical_shift", "adc"}
    assert "has no voxel on series" in m_far.missing["ct"]
    assert "at least two distinct b-values" in m_far.missing["adc"]
    assert "frame of reference 1.2.3.4" in m_for.missing["ct"]


def test_scanner_adc_preferred_unless_configured_otherwise() -> None:
    roles, lesion = _study()
    grid = roles["dwi"][0]
    scanner = grid.with_array(
        np.full(grid.shape, 1.3e-3, np.float32),
        intensity_unit=IntensityUnit.MM2_PER_S,
        series=grid.series.replace(role="adc", series_instance_uid="9.9"),
    )
    (m,) = measure_study(_volumes({**roles, "adc": (scanner,)}), [lesion], PipelineConfig())
    assert m.adc is not None and m.adc.adc_source == "scanner"
    assert m.adc.adc_mean_mm2_per_s == pytest.approx(1.3e-3, rel=1e-6)
    # its b-values come from the study's DWI series
    assert m.adc.b_values_s_per_mm2 == (0.0, 1000.0)
    fit_it = PipelineConfig(stages=StagesConfig(dwi_adc=DwiAdcConfig(prefer_scanner_adc=False)))
    (m,) = measure_study(_volumes({**roles, "adc": (scanner,)}), [lesion], fit_it)
    assert m.adc is not None and m.adc.adc_source == "fitted"
    assert m.adc.adc_mean_mm2_per_s == pytest.approx(0.9e-3, rel=RTOL_ADC)


def test_unexpected_errors_are_wrapped_with_context() -> None:
    roles, _ = _study()

    class Broken(Lesion):
        def mask_on(self, target: Volume) -> Volume:  # noqa: ARG002
            raise ZeroDivisionError("boom")

    broken = Broken(lesion_id="B", sphere=Sphere((0.0, 0.0, 0.0), 1.0))
    with pytest.raises(StageError, match="stage ct failed unexpectedly on lesion 'B'"):
        measure_study(_volumes(roles), [broken], PipelineConfig())


def test_a_lesion_naming_its_series_takes_that_series_frame() -> None:
    roles, lesion = _study()
    ct = roles["ct"][0]
    named = Lesion(lesion_id="N", sphere=lesion.sphere,
                   series_instance_uid=ct.series.series_instance_uid)
    (m,) = measure_study(_volumes(roles, "ct"), [named], PipelineConfig())
    assert m.ct is not None and m.ct.series_instance_uid == ct.series.series_instance_uid
    assert m.ct.attenuation_mean_hu == pytest.approx(700.0, abs=ATOL_HU)
