"""The one series-selection policy: what is never a candidate, DWI fit sets, the ADC source."""

from __future__ import annotations

import pytest

from bonelesion.pipeline.definition import load_pipeline
from bonelesion.pipeline.plan import ChoiceStatus, StackCandidate
from bonelesion.pipeline.selection import dwi_fit_groups, not_measurable, plan_study

STUDY = "1.2.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
GRID = dict(frame_of_reference_uid="9.9", image_orientation_lps=(1.0, 0, 0, 0, 1.0, 0),
            rows=64, columns=64, pixel_spacing_mm=(2.0, 2.0))


def _cand(uid: str, *, role: str = "ct", modality: str = "CT", n: int = 40, number: int = 2,
          image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"), kernel: str = "",
          sop_class: str = CT_IMAGE, thick: float = 1.0, desc: str = "",
          b: tuple[float, ...] = (), key: str = "1", **grid: object) -> StackCandidate:
    return StackCandidate(study_instance_uid=STUDY, series_instance_uid=uid, stack_key=key,
                          modality=modality, role=role,
                          files=tuple(f"/x/{uid}/{key}/{i}" for i in range(n)),
                          series_number=number, image_type=image_type, convolution_kernel=kernel,
                          sop_class_uid=sop_class, slice_thickness_mm=thick,
                          series_description=desc, b_values_s_per_mm2=b, **grid)  # type: ignore[arg-type]


@pytest.mark.parametrize(("candidate", "why"), [
    (_cand("1", n=1, thick=0.1), "a single image"),
    (_cand("2", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), "a localizer"),
    (_cand("3", sop_class=SECONDARY_CAPTURE, image_type=("DERIVED", "SECONDARY", "AXIAL")),
     "Secondary Capture"),
    (_cand("4", sop_class=DOSE_SR, n=1), "structured report"),
    (_cand("5", role="localizer"), "reader role 'localizer'"),
])
def test_non_volumes_are_never_candidates(candidate: StackCandidate, why: str) -> None:
    assert why in not_measurable(candidate)


def test_a_reformatted_ct_is_a_volume_whatever_its_image_type() -> None:
    # DERIVED\SECONDARY\AXIAL is a real CT (a reformat): judged by SOP Class, not ImageType
    assert not_measurable(_cand("6", image_type=("DERIVED", "SECONDARY", "AXIAL"))) == ""


def test_localizer_with_the_finest_voxel_and_no_telltale_description_is_excluded() -> None:
    cands = [
        _cand("7.1", thick=1.0, kernel="STANDARD", number=2, desc="Abdomen"),
        _cand("7.2", thick=0.5, kernel="BONE", number=3, desc="Abdomen"),
        _cand("7.3", n=1, thick=0.1, kernel="BONE", number=1, desc="Abdomen"),
    ]
    plan = plan_study(STUDY, cands, load_pipeline("ct_sclerotic"))
    choice = plan.choice("ct")
    assert choice.series_instance_uid == "7.2"
    assert [label for label, _ in choice.excluded] == [cands[2].label]
    assert "single image" in choice.excluded[0][1]
    assert plan.to_dict()["roles"][0]["excluded"][0]["candidate"] == cands[2].label


def test_study_with_only_a_localizer_is_refused_with_the_reason() -> None:
    plan = plan_study(STUDY, [_cand("8", n=1)], load_pipeline("ct_sclerotic"))
    assert plan.choice("ct").status == ChoiceStatus.MISSING
    assert "not measurable: a single image" in plan.refusal


def test_single_b_series_on_one_grid_form_one_fit_set() -> None:
    b0 = _cand("9.16", role="dwi", modality="MR", number=16, b=(0.0,), **GRID)
    trace = _cand("9.12", role="dwi", modality="MR", number=12, b=(2500.0,), **GRID)
    other_grid = _cand("9.20", role="dwi", modality="MR", number=20, b=(1000.0,),
                       **{**GRID, "rows": 128})
    multi = [_cand("9.10", role="dwi", modality="MR", number=10, b=(b,), key=f"b{b}", **GRID)
             for b in (0.0, 2500.0)]
    groups = dwi_fit_groups([b0, trace, other_grid, *multi])
    as_uids = sorted(tuple(c.series_instance_uid for c in g) for g in groups)
    assert as_uids == [("9.10", "9.10"), ("9.12", "9.16"), ("9.20",)]
    plan = plan_study(STUDY, [b0, trace, other_grid], load_pipeline("mr_multiparametric"))
    dwi = plan.choice("dwi")
    assert {c.series_instance_uid for c in dwi.chosen} == {"9.12", "9.16"}
    assert "most_b_values: 2 b-values over 1 b-values" in dwi.reason


def test_dwi_is_planned_beside_a_scanner_adc_map() -> None:
    # the DWI series gives the map's b-values and the lesion's low-b signal (ADC reliability)
    dwi = [_cand("10.1", role="dwi", modality="MR", b=(b,), key=f"b{b}", **GRID)
           for b in (0.0, 800.0)]
    adc = _cand("10.2", role="adc", modality="MR", **GRID)
    plan = plan_study(STUDY, [*dwi, adc], load_pipeline("mr_multiparametric"))
    assert plan.choice("dwi").status == ChoiceStatus.SINGLE
    assert {c.series_instance_uid for c in plan.inputs} == {"10.1", "10.2"}
    assert plan.stages == ("dwi_adc",)
