"""Pipeline TOML validation and the per-role series choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from bonelesion.errors import ConfigError
from bonelesion.pipeline.definition import (
    STAGE_ROLES,
    load_pipeline,
    pipeline_hash,
    shipped_pipelines,
)
from bonelesion.pipeline.plan import ChoiceStatus, StackCandidate
from bonelesion.pipeline.selection import plan_study

STUDY = "1.2.3"


def test_shipped_pipelines_load_and_cover_their_stages() -> None:
    assert {"ct_sclerotic", "mr_multiparametric", "combined"} <= set(shipped_pipelines())
    for name in shipped_pipelines():
        d = load_pipeline(name)
        assert d.name == name
        for stage in d.stages:
            all_of, any_of = STAGE_ROLES[stage]
            assert set(all_of) <= set(d.roles)
    assert load_pipeline("combined").stages == ("ct_attenuation", "mr_chemical_shift", "dwi_adc")
    assert load_pipeline("ct_sclerotic").roles["ct"].required is True


def test_pipeline_hash_changes_with_config_and_version() -> None:
    d = load_pipeline("ct_sclerotic")
    assert pipeline_hash(d, version="1") == pipeline_hash(load_pipeline("ct_sclerotic"), version="1")
    assert pipeline_hash(d, version="1") != pipeline_hash(d, version="2")
    assert pipeline_hash(d, version="1") != pipeline_hash(load_pipeline("combined"), version="1")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


GOOD = """
name = "t"
stages = ["ct_attenuation"]
[roles.ct]
modality = "CT"
stack_roles = ["ct"]
"""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GOOD + "colour = 1\n", r"colour: unknown key"),
        (GOOD + "prefer = ['thinest_slice']\n", r"roles.ct.*prefer: unknown preference 'thinest_slice'"),
        (GOOD.replace('stack_roles = ["ct"]', 'stack_roles = ["ctt"]'), r"unknown stack role 'ctt'"),
        (GOOD.replace('stack_roles = ["ct"]', "stack_roles = []"), r"need at least one stack role"),
        (GOOD + "unit = 'patient'\n", r"unit: expected 'stack' or 'series'"),
        (GOOD + "description_pattern = '(['\n", r"description_pattern: not a valid regular expression"),
        (GOOD.replace("ct_attenuation", "ct_attenuatoin"), r"unknown stage 'ct_attenuatoin'"),
        (GOOD.replace('"ct_attenuation"', '"ct_attenuation", "dwi_adc"'), r"stage 'dwi_adc' needs role 'dwi or adc'"),
        (GOOD.replace('"ct_attenuation"', '"mr_chemical_shift"'), r"needs role 'dixon_in_phase'"),
        (GOOD.replace('name = "t"', 'name = "../x"'), r"name: '../x' must be"),
        (GOOD.replace('stages = ["ct_attenuation"]', "stages = []"), r"stages: need at least one stage"),
        (GOOD.replace('modality = "CT"', "modality = 5"), r"roles.ct.modality: expected a string"),
        ("name = [", r"is not valid TOML"),
    ],
)
def test_invalid_pipeline_is_a_config_error(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_pipeline(_write(tmp_path, text))


def test_unknown_pipeline_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"'nope' is neither a file nor a shipped pipeline.*combined"):
        load_pipeline("nope")


def test_config_file_is_merged_under_inline_config(tmp_path: Path) -> None:
    (tmp_path / "cfg.toml").write_text("[stages.ct_attenuation]\nerosion_margin_voxels = 1\nx = 2\n")
    path = _write(tmp_path, GOOD.replace('name = "t"', 'name = "t"\nconfig_file = "cfg.toml"')
                  + "[config.stages.ct_attenuation]\nerosion_margin_voxels = 0\n")
    d = load_pipeline(path)
    assert d.config["stages"]["ct_attenuation"] == {"erosion_margin_voxels": 0, "x": 2}


def _ct(uid: str, *, thick: float | None, kernel: str = "", n: int = 10, number: int = 1,
        desc: str = "", image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")) -> StackCandidate:
    return StackCandidate(study_instance_uid=STUDY, series_instance_uid=uid, stack_key="1",
                          modality="CT", role="ct", files=tuple(f"/x/{uid}/{i}" for i in range(n)),
                          slice_thickness_mm=thick, convolution_kernel=kernel, series_number=number,
                          series_description=desc, image_type=image_type)


def _dwi(uid: str, bvals: tuple[float, ...], number: int) -> list[StackCandidate]:
    return [StackCandidate(study_instance_uid=STUDY, series_instance_uid=uid, stack_key=f"b{b:g}",
                           modality="MR", role="dwi", files=tuple(f"/x/{uid}/{b}/{i}" for i in range(5)),
                           b_values_s_per_mm2=(b,),
                           series_number=number, slice_thickness_mm=5.0) for b in bvals]


def test_ct_prefers_original_bone_kernel_then_thinnest_and_skips_scouts() -> None:
    cands = [
        _ct("1.1", thick=5.0, kernel="STANDARD", number=2),
        _ct("1.2", thick=1.25, kernel="BONE", number=3),
        _ct("1.3", thick=0.625, kernel="BONE", number=4),
        _ct("1.4", thick=0.5, kernel="BONE", number=5, image_type=("DERIVED", "SECONDARY", "MPR")),
        _ct("1.5", thick=0.1, kernel="BONE", number=1, desc="Scout"),
    ]
    plan = plan_study(STUDY, cands, load_pipeline("ct_sclerotic"))
    choice = plan.choice("ct")
    assert choice.status == ChoiceStatus.PREFERRED
    assert choice.series_instance_uid == "1.3"
    assert "original" in choice.reason and "bone_kernel" in choice.reason and "thinnest_slice: 0.625 mm" in choice.reason
    assert len(choice.candidates) == 4  # the scout was filtered out
    assert plan.stages == ("ct_attenuation",) and not plan.refusal


@pytest.mark.parametrize("kernel", ["BONE", "BONEPLUS", "B70f", "Br64", "YC", "D", "FC30", "LUNG"])
def test_bone_kernels_of_each_vendor_are_recognised(kernel: str) -> None:
    cands = [_ct("2.1", thick=1.0, kernel="STANDARD"), _ct("2.2", thick=1.0, kernel=kernel)]
    assert plan_study(STUDY, cands, load_pipeline("ct_sclerotic")).choice("ct").series_instance_uid == "2.2"


@pytest.mark.parametrize("kernel", ["STANDARD", "SOFT", "B30f", "Br40", "FC08", "B", "C"])
def test_soft_kernels_are_not_bone(kernel: str) -> None:
    cands = [_ct("3.1", thick=1.0, kernel=kernel, number=1), _ct("3.2", thick=1.0, kernel="BONE", number=2)]
    assert plan_study(STUDY, cands, load_pipeline("ct_sclerotic")).choice("ct").series_instance_uid == "3.2"


def test_dwi_series_with_most_b_values_wins_and_missing_roles_are_recorded() -> None:
    cands = _dwi("4.1", (0.0, 800.0), 7) + _dwi("4.2", (0.0, 50.0, 400.0, 800.0), 8)
    plan = plan_study(STUDY, cands, load_pipeline("mr_multiparametric"))
    dwi = plan.choice("dwi")
    assert dwi.series_instance_uid == "4.2" and len(dwi.chosen) == 4
    assert "most_b_values: 4 b-values over 2 b-values" in dwi.reason
    assert plan.choice("dixon_in_phase").status == ChoiceStatus.MISSING
    assert plan.stages == ("dwi_adc",)
    assert plan.skipped_stages["mr_chemical_shift"] == (
        "no series for role dixon_in_phase, dixon_opposed_phase")
    assert not plan.refusal


def test_equal_candidates_are_a_recorded_tie() -> None:
    cands = [_ct("5.2", thick=1.0, kernel="BONE", number=3), _ct("5.1", thick=1.0, kernel="BONE", number=3)]
    choice = plan_study(STUDY, cands, load_pipeline("ct_sclerotic")).choice("ct")
    assert choice.status == ChoiceStatus.TIE
    assert choice.series_instance_uid == "5.1"
    assert "2 candidates, 2 equal" in choice.reason and "Potential fix" in choice.reason


def test_required_role_missing_refuses_the_study() -> None:
    plan = plan_study(STUDY, _dwi("6.1", (0.0, 800.0), 1), load_pipeline("ct_sclerotic"))
    assert plan.choice("ct").status == ChoiceStatus.MISSING
    assert "required role 'ct' has no candidate" in plan.refusal and "Potential fix" in plan.refusal


def test_no_runnable_stage_refuses_the_study() -> None:
    plan = plan_study(STUDY, [_ct("7.1", thick=1.0)], load_pipeline("mr_multiparametric"))
    assert plan.stages == ()
    assert "no stage of the pipeline can run" in plan.refusal


def test_combined_runs_what_the_study_has() -> None:
    plan = plan_study(STUDY, [_ct("8.1", thick=1.0)], load_pipeline("combined"))
    assert plan.stages == ("ct_attenuation",) and not plan.refusal
    assert set(plan.skipped_stages) == {"mr_chemical_shift", "dwi_adc"}
