"""Graded evidence, scope gates, reliability and fusion of the literature classifier.

Truth: the published group distributions and likelihood ratios of CLINICAL_REFERENCE.md,
typed in here (Ulano 2016: 654 ± 176 vs 1190 ± 239 HU mean, 787 ± 194 vs 1323 ± 234 HU max;
AJNR 2017: SIR 0.98 ± 0.11 vs 0.75 ± 0.19, ADC 1.01 ± 0.22 vs 1.41 ± 0.31e-3; Eur J Radiol
2009 b 0/500: 1.9 ± 0.39e-3 benign, ~0.9e-3 metastases; §G LR caps 23.8 / 0.052, 8.4 / 0.090,
6.9 / 0.126), the issue's value LR(946 HU) ≈ 0.58, and scipy's normal density — not the
code's own arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from support.classify_factory import lesion

from bonelesion.classify import (
    ClassifierConfig,
    FeatureStatus,
    Label,
    classify_lesion,
    load_classifier_config,
)
from bonelesion.classify.config import classifier_config_from_mapping
from bonelesion.errors import ConfigError
from bonelesion.report.table import call_cells, csv_cell

REPO = Path(__file__).resolve().parents[2]
# The reference rounds LRs to 2–3 significant digits: compare posteriors to 2e-3.
ATOL_P = 2e-3
RTOL_LR = 1e-3  # code and scipy evaluate the same densities: agreement to rounding
# published LR caps (CLINICAL_REFERENCE.md §G, derived there from sens/spec)
CT_LR_POS, CT_LR_NEG = 23.8, 0.052
CSI_LR_POS, CSI_LR_NEG = 8.4, 0.090
ADC_LR_POS, ADC_LR_NEG = 6.9, 0.126
UNTREATED = {"treated": False}
EPI_B = (50.0, 800.0)
LOW_B = (100.0, 250.0, 400.0)


def p_from(*terms: tuple[float, float], prior: float = 0.5) -> float:
    """Posterior from (LR, weight) pairs."""
    lo = math.log(prior / (1 - prior)) + sum(w * math.log(lr) for lr, w in terms)
    return 1 / (1 + math.exp(-lo))


def ratio(x: float, m: tuple[float, float], b: tuple[float, float],
          caps: tuple[float, float]) -> float:
    """Normal-density ratio of two published groups at x, clamped to the cutoff's LRs."""
    lr = norm.pdf(x, *m) / norm.pdf(x, *b)
    return float(min(max(lr, caps[1]), caps[0]))


def ct_lr(x: float) -> float:
    return ratio(x, (654.0, 176.0), (1190.0, 239.0), (0.95 / 0.04, 0.05 / 0.96))


def ct_max_lr(x: float) -> float:
    return ratio(x, (787.0, 194.0), (1323.0, 234.0), (0.95 / 0.04, 0.05 / 0.96))


def sir_lr(x: float) -> float:
    return ratio(x, (0.98, 0.11), (0.75, 0.19), (0.92 / 0.11, 0.08 / 0.89))


def adc_lr(x: float, protocol: str = "epi") -> float:
    groups = {"epi": ((1.01e-3, 0.22e-3), (1.41e-3, 0.31e-3)),
              "low_b": ((0.9e-3, 0.39e-3), (1.9e-3, 0.39e-3))}[protocol]
    return ratio(x, *groups, (0.89 / 0.13, 0.11 / 0.87))


def reason(call, feature):  # type: ignore[no-untyped-def]
    return next(r for r in call.reasons if r.feature == feature)


def reliable_mr(**kw):  # type: ignore[no-untyped-def]
    """MR measured against reference marrow: not dark (a water-rich lesion)."""
    return {"cs_kw": {"in_phase_relative_to_reference": 0.6, **kw.pop("cs_kw", {})},
            "adc_kw": {"low_b_relative_to_reference": 2.0, **kw.pop("adc_kw", {})}, **kw}


# ----------------------------------------------------------------------------- config
def test_toml_equals_builtin_defaults() -> None:
    assert load_classifier_config(REPO / "configs" / "classifier.toml") == ClassifierConfig()


def test_unknown_key_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ct\.mean_treshold_hu: unknown key"):
        classifier_config_from_mapping({"ct": {"mean_treshold_hu": 880.0}})


EPI_TABLE = {"name": "x", "max_b_from_s_per_mm2": 700.0, "max_b_to_s_per_mm2": 1100.0,
             "malignant_mean_mm2_per_s": 1.0e-3, "malignant_sd_mm2_per_s": 0.2e-3,
             "benign_mean_mm2_per_s": 1.4e-3, "benign_sd_mm2_per_s": 0.3e-3}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"ct": {"sensitivity": 1.2}}, r"ct\.sensitivity: must lie in \(0\.5, 1\.0\)"),
        ({"ct": {"sclerotic_floor_hu": 900.0}}, r"lytic_ceiling_hu < sclerotic_floor_hu"),
        ({"ct": {"max_rule_weight": 2.0}}, r"ct\.max_rule_weight: a weight must lie in \[0, 1\]"),
        ({"ct": {"calibration_sd_hu": -1.0}}, r"ct\.calibration_sd_hu: must be a finite"),
        ({"ct": {"metastasis_mean_sd_hu": 0.0}}, r"ct\.metastasis_mean_sd_hu: a published"),
        ({"ct": {"mean_threshold_hu": 1300.0}}, r"between the metastasis and enostosis"),
        ({"ct": {"max_statistic": "max_3d"}}, r"ct\.max_statistic: 'max_3d' is not one of"),
        ({"chemical_shift": {"fat_dominant_fraction": 0.0}}, r"fat_dominant_fraction: must lie"),
        ({"adc": {"protocols": [{**EPI_TABLE, "cutoff_mm2_per_s": 1.14}]}},
         r"adc\.protocols\[0\].*cutoff_mm2_per_s: 1\.14 is outside .*Potential fix"),
        ({"adc": {"assume_protocol": "tse"}}, r"adc\.assume_protocol: 'tse' is not"),
        ({"fusion": {"prior_probability_malignant": 1.0}}, r"prior_probability_malignant"),
        ({"fusion": {"malignant_min_probability": 0.4}}, r"benign_max_probability < 0\.5"),
        ({"fusion": {"sufficient_alone": ["adc"]}}, r"sufficient_alone: unknown feature"),
        ({"ct": {"mean_threshold_hu": "885"}}, r"ct\.mean_threshold_hu: expected a number"),
    ],
)
def test_config_range_errors(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        classifier_config_from_mapping(data)


def test_nested_classifier_table_and_missing_file(tmp_path: Path) -> None:
    cfg = classifier_config_from_mapping({"classifier": {"adc": {"assume_protocol":
                                                                 "low_b_400_500"}}})
    assert cfg.adc.protocol_for(()) is not None
    assert cfg.adc.protocol_for(()).cutoff_mm2_per_s == pytest.approx(1.7e-3)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="does not exist"):
        load_classifier_config(tmp_path / "nope.toml")


# ----------------------------------------------------------------------------- CT: graded
@pytest.mark.parametrize("mean_hu", [320.0, 500.0, 654.0, 760.0, 850.0, 885.0, 946.0, 1000.0,
                                     1100.0, 1190.0, 1500.0])
def test_ct_mean_lr_is_the_ratio_of_ulano_distributions(mean_hu: float) -> None:
    call = classify_lesion(lesion(ct=(mean_hu, mean_hu + 100.0), annotations=UNTREATED))
    r = reason(call, "ct_attenuation_mean_hu")
    assert r.likelihood_ratio == pytest.approx(ct_lr(mean_hu), rel=RTOL_LR)
    assert r.weight == 1.0 and r.threshold == 885.0 and "Ulano" in r.citation
    assert call.probability_malignant == pytest.approx(p_from((ct_lr(mean_hu), 1.0)),
                                                       abs=1e-9)


def test_ct_946_hu_is_the_overlap_zone() -> None:
    # issue 18: CT 946 HU, nothing else → value-specific LR ≈ 0.58, not "benign 0.05"
    call = classify_lesion(lesion(ct=946.0, annotations=UNTREATED))
    assert reason(call, "ct_attenuation_mean_hu").likelihood_ratio == pytest.approx(0.58,
                                                                                   abs=0.01)
    assert call.label is Label.INDETERMINATE
    assert 0.3 < call.probability_malignant < 0.45


def test_ct_lr_is_monotone_and_clamped_to_the_published_cutoff_lrs() -> None:
    lrs = [reason(classify_lesion(lesion(ct=float(hu), annotations=UNTREATED)),
                  "ct_attenuation_mean_hu").likelihood_ratio for hu in range(300, 2001, 25)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert max(lrs) == pytest.approx(CT_LR_POS, rel=0.01)
    assert min(lrs) == pytest.approx(CT_LR_NEG, rel=0.01)


@pytest.mark.parametrize("mean_hu", [870.0, 885.0, 900.0])
def test_near_threshold_is_weak_evidence_not_a_veto(mean_hu: float) -> None:
    call = classify_lesion(lesion(ct=mean_hu, annotations=UNTREATED))
    r = reason(call, "ct_attenuation_mean_hu")
    assert r.status is FeatureStatus.NEAR_THRESHOLD and r.counted
    assert 0.5 < r.likelihood_ratio < 2.0
    assert call.label is Label.INDETERMINATE
    # counted: two agreeing MR features still give a definitive label beside it
    both = classify_lesion(lesion(ct=mean_hu, sir=1.0, fat_fraction=0.05, adc=0.8e-3,
                                  annotations=UNTREATED, **reliable_mr()))
    assert both.label is Label.MALIGNANT
    assert both.probability_malignant == pytest.approx(p_from(
        (ct_lr(mean_hu), 1.0), (sir_lr(1.0), 1.0), (adc_lr(0.8e-3), 0.5)), abs=ATOL_P)


# ----------------------------------------------------------------------------- CT: scope
def test_treatment_is_tri_state() -> None:
    unknown = classify_lesion(lesion(ct=1000.0))
    r = reason(unknown, "ct_attenuation_mean_hu")
    assert r.status is FeatureStatus.OUT_OF_SCOPE and "treatment status not given" in r.note
    assert unknown.label is Label.INDETERMINATE  # issue 18: 1000 HU, status not given
    assumed = classify_lesion(
        lesion(ct=1000.0), config=classifier_config_from_mapping(
            {"treatment": {"assume_untreated": True}}))
    r = reason(assumed, "ct_attenuation_mean_hu")
    assert r.counted and "ASSUMED untreated" in r.note
    assert any("ASSUMED untreated" in d for d in assumed.decision)
    treated = classify_lesion(lesion(ct=1400.0, annotations={"treated": "yes"}))
    assert reason(treated, "ct_attenuation_mean_hu").status is FeatureStatus.OUT_OF_SCOPE
    assert treated.label is Label.INDETERMINATE and treated.statement.startswith("treated")


@pytest.mark.parametrize(
    ("mean_hu", "annotations", "ct_kw", "match"),
    [
        (299.9, {}, {}, "below the sclerotic floor"),
        (700.0, {"sclerotic": "no"}, {}, "annotated as not sclerotic"),
        (700.0, {"medullary": False}, {}, "not medullary"),
        (700.0, {"endplate_adjacent": True}, {}, "endplate"),
        (700.0, {}, {"attenuation_p05_hu": -40.0}, "macroscopic fat"),
        (700.0, {}, {"lesion_volume_ml": 20.0}, "not a focal lesion"),  # 34 mm
        (700.0, {}, {"attenuation_sd_hu": 320.0}, "heterogeneous"),
    ],
)
def test_ct_scope_gates(mean_hu: float, annotations: dict, ct_kw: dict, match: str) -> None:
    call = classify_lesion(lesion(ct=mean_hu, annotations={**UNTREATED, **annotations},
                                  ct_kw=ct_kw))
    for name in ("ct_attenuation_mean_hu", "ct_attenuation_max_hu"):
        r = reason(call, name)
        assert r.status is FeatureStatus.OUT_OF_SCOPE and r.weight == 0.0
        assert match in r.note
    assert any(a["feature"] == "ct_attenuation_mean_hu" and match in a["why"]
               for a in call.reasons_dict()["set_aside"])


def test_ct_in_scope_lists_its_gates() -> None:
    call = classify_lesion(lesion(ct=250.0, annotations={"treated": False, "sclerotic": True}))
    note = reason(call, "ct_attenuation_mean_hu").note
    assert "untreated (annotated)" in note and "sclerotic by annotation" in note
    assert "endplate adjacency not annotated" in note and "diameter" in note


# ----------------------------------------------------------------------------- CT: maximum
def test_central_slice_maximum_stands_for_ulanos_roi_maximum() -> None:
    # issue 18: 2 cm blastic metastasis, mean 650, 3-D core max 1123 HU → malignant
    m = lesion(ct=(650.0, 1123.0), annotations=UNTREATED,
               ct_kw={"attenuation_central_slice_max_hu": 1010.0, "attenuation_sd_hu": 140.0,
                      "lesion_volume_ml": 4.19})
    call = classify_lesion(m)
    assert call.label is Label.MALIGNANT
    peak = reason(call, "ct_attenuation_max_hu")
    assert peak.value == 1010.0 and "central-slice ROI" in peak.note
    assert peak.likelihood_ratio == pytest.approx(ct_max_lr(1010.0), rel=RTOL_LR)
    # without the central-slice maximum: the 95th percentile, said so
    p95 = classify_lesion(lesion(ct=(650.0, 1123.0), annotations=UNTREATED))
    assert "95th percentile" in reason(p95, "ct_attenuation_max_hu").note
    assert reason(p95, "ct_attenuation_max_hu").value == 700.0
    # the 3-D maximum alone is never used
    none = classify_lesion(lesion(ct=(650.0, 1123.0), annotations=UNTREATED,
                                  ct_kw={"attenuation_p95_hu": float("nan")}))
    r = reason(none, "ct_attenuation_max_hu")
    assert r.status is FeatureStatus.MISSING and "3-D maximum" in r.note
    assert none.label is Label.MALIGNANT


def test_roi_maximum_strongly_against_the_mean_is_a_conflict() -> None:
    call = classify_lesion(lesion(ct=700.0, annotations=UNTREATED,
                                  ct_kw={"attenuation_central_slice_max_hu": 1300.0}))
    assert call.label is Label.INDETERMINATE
    assert any("ROI maximum" in d for d in call.decision)
    off = classifier_config_from_mapping({"fusion": {"conflict_is_indeterminate": False}})
    assert classify_lesion(lesion(ct=700.0, annotations=UNTREATED,
                                  ct_kw={"attenuation_central_slice_max_hu": 1300.0}),
                           config=off).label is Label.MALIGNANT


def test_max_rule_weight_counts_when_configured() -> None:
    cfg = classifier_config_from_mapping({"ct": {"max_rule_weight": 0.5}})
    call = classify_lesion(lesion(ct=700.0, annotations=UNTREATED,
                                  ct_kw={"attenuation_central_slice_max_hu": 850.0}), config=cfg)
    assert call.probability_malignant == pytest.approx(
        p_from((ct_lr(700.0), 1.0), (ct_max_lr(850.0), 0.5)), abs=1e-6)


# ----------------------------------------------------------------------------- CT: reliability
def test_partial_volume_sets_the_mean_aside_and_keeps_the_maximum_as_a_lower_bound() -> None:
    # issue 18: 3 mm bone island, partial volume pulls the mean to 700 HU (erosion fell back)
    small = {"erosion_fell_back": True, "core_voxel_count": 5, "attenuation_sd_hu": 230.0,
             "lesion_volume_ml": 0.014, "attenuation_central_slice_max_hu": 1250.0}
    call = classify_lesion(lesion(ct=700.0, annotations=UNTREATED, ct_kw=small))
    mean = reason(call, "ct_attenuation_mean_hu")
    assert mean.status is FeatureStatus.UNRELIABLE and "partial volume" in mean.note
    peak = reason(call, "ct_attenuation_max_hu")
    assert peak.counted and "lower bound" in peak.note
    assert call.label is Label.BENIGN
    assert call.probability_malignant == pytest.approx(p_from((ct_max_lr(1250.0), 1.0)),
                                                       abs=1e-6)
    # a low maximum under partial volume is no evidence of metastasis
    low = classify_lesion(lesion(ct=500.0, annotations=UNTREATED,
                                 ct_kw={**small, "attenuation_central_slice_max_hu": 700.0}))
    assert reason(low, "ct_attenuation_max_hu").status is FeatureStatus.UNRELIABLE
    assert low.label is Label.INDETERMINATE
    few = classify_lesion(lesion(ct=650.0, annotations=UNTREATED, ct_kw={"core_voxel_count": 3}))
    assert "3 core voxels < 4" in reason(few, "ct_attenuation_mean_hu").note


def test_ct_disabled() -> None:
    cfg = classifier_config_from_mapping({"ct": {"enabled": False}})
    call = classify_lesion(lesion(ct=650.0, annotations=UNTREATED), config=cfg)
    assert reason(call, "ct_attenuation_mean_hu").status is FeatureStatus.DISABLED
    assert call.label is Label.INDETERMINATE


# ----------------------------------------------------------------------------- CSI
@pytest.mark.parametrize("sir", [0.4, 0.6, 0.75, 0.8, 0.85, 0.9, 0.98, 1.05])
def test_sir_lr_is_the_ratio_of_the_published_groups(sir: float) -> None:
    call = classify_lesion(lesion(sir=sir, fat_fraction=0.05))
    r = reason(call, "chemical_shift_ratio")
    assert r.likelihood_ratio == pytest.approx(sir_lr(sir), rel=RTOL_LR)
    assert "Suh" in r.citation and "AJNR 2017" in r.citation


def test_sir_beyond_the_malignant_mean_stays_malignant() -> None:
    # two Gaussians with unequal SDs turn back in the tail; the clinical feature does not
    lrs = [reason(classify_lesion(lesion(sir=s, fat_fraction=0.02)),
                  "chemical_shift_ratio").likelihood_ratio for s in np.arange(0.3, 1.6, 0.05)]
    assert all(a <= b + 1e-12 for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[-1] > 5.0


@pytest.mark.parametrize(
    ("kwargs", "status", "match"),
    [
        ({"fat_fraction": 0.51}, FeatureStatus.OUT_OF_SCOPE, "fat dominant"),
        ({"fat_fraction": 0.50}, FeatureStatus.APPLIED, "Dixon fat fraction 0.500"),
        ({"cs_kw": {"in_phase_relative_to_reference": 0.7}}, FeatureStatus.APPLIED,
         "in-phase signal 0.70"),
        ({"cs_kw": {"in_phase_relative_to_reference": 0.95}}, FeatureStatus.OUT_OF_SCOPE,
         "not excluded"),
        ({"cs_kw": {"in_phase_relative_to_reference": 1.3}}, FeatureStatus.OUT_OF_SCOPE,
         "T1-bright"),
        ({"annotations": {"t1_bright": True}}, FeatureStatus.OUT_OF_SCOPE, "annotated t1_bright"),
        ({"annotations": {"t1_bright": False}}, FeatureStatus.APPLIED, "by annotation"),
        ({}, FeatureStatus.OUT_OF_SCOPE, "fat fraction unknown"),
    ],
)
def test_csi_only_where_fat_dominance_is_excluded(kwargs: dict, status: FeatureStatus,
                                                  match: str) -> None:
    call = classify_lesion(lesion(sir=1.0, **kwargs))
    r = reason(call, "chemical_shift_ratio")
    assert r.status is status
    assert match in r.note


def test_low_in_phase_snr_sets_sir_aside() -> None:
    # bright at low b: not a signal void, but the in-phase signal is at the noise floor
    call = classify_lesion(lesion(sir=1.0, fat_fraction=0.05, adc=0.8e-3,
                                  cs_kw={"snr_in_phase": 3.0},
                                  adc_kw={"low_b_relative_to_reference": 2.0}))
    r = reason(call, "chemical_shift_ratio")
    assert r.status is FeatureStatus.UNRELIABLE and "ratio of noise" in r.note


# ----------------------------------------------------------------------------- macroscopic fat
def test_macroscopic_fat_is_benign_evidence() -> None:
    # issue 18: focal fat on in/opposed phase only (FF 0.92 folds to SIR 0.84), ADC 0.4e-3
    m = lesion(sir=0.84, adc=0.4e-3, cs_kw={"in_phase_relative_to_reference": 1.3})
    call = classify_lesion(m)
    fat = reason(call, "macroscopic_fat")
    assert fat.counted and fat.likelihood_ratio == pytest.approx(CT_LR_NEG, abs=1e-3)
    assert "(1 + SIR)/2 = 0.92" in fat.note
    assert reason(call, "chemical_shift_ratio").status is FeatureStatus.OUT_OF_SCOPE
    assert reason(call, "adc_mean_mm2_per_s").status is FeatureStatus.OUT_OF_SCOPE
    assert call.label is Label.BENIGN
    # haemangioma, CT only: trabeculae give a mean of 320 HU, fat between them
    haem = classify_lesion(lesion(ct=320.0, ct_kw={"attenuation_p05_hu": -60.0,
                                                   "attenuation_sd_hu": 260.0}))
    assert haem.label is Label.BENIGN
    assert "fat attenuation" in reason(haem, "macroscopic_fat").note
    assert reason(haem, "ct_attenuation_mean_hu").status is FeatureStatus.OUT_OF_SCOPE
    none = classify_lesion(lesion(ct=700.0, annotations=UNTREATED))
    assert reason(none, "macroscopic_fat").status is FeatureStatus.ABSENT


def test_air_in_a_ct_roi_is_not_fat() -> None:
    """An ROI reaching air (−1000 HU: outside the patient, a vacuum cleft) is no fat evidence:
    before, its 5th percentile passed the fat test and the lesion was called benign."""
    air = classify_lesion(lesion(ct=(-1001.6, -975.0), annotations=UNTREATED,
                                 ct_kw={"attenuation_p05_hu": -1015.0}))
    fat = reason(air, "macroscopic_fat")
    assert fat.status is FeatureStatus.ABSENT and not fat.counted
    assert "gas or air in the ROI, not fat" in fat.note
    assert air.label is not Label.BENIGN
    # the window's lower edge: −190 HU is still fat, −191 HU is not
    edge = classify_lesion(lesion(ct=320.0, ct_kw={"attenuation_p05_hu": -190.0}))
    assert reason(edge, "macroscopic_fat").counted
    below = classify_lesion(lesion(ct=320.0, ct_kw={"attenuation_p05_hu": -191.0}))
    assert reason(below, "macroscopic_fat").status is FeatureStatus.ABSENT


def test_fat_window_must_be_ordered() -> None:
    from bonelesion.classify.config import FatConfig
    from bonelesion.errors import ConfigError

    with pytest.raises(ConfigError, match="ct_fat_p05_min_hu < ct_fat_p05_max_hu"):
        FatConfig(ct_fat_p05_min_hu=-20.0)


# ----------------------------------------------------------------------------- ADC
@pytest.mark.parametrize(("adc", "b", "protocol"),
                         [(0.8e-3, EPI_B, "epi"), (1.14e-3, EPI_B, "epi"),
                          (1.9e-3, EPI_B, "epi"), (0.9e-3, LOW_B, "low_b"),
                          (1.3e-3, LOW_B, "low_b"), (2.2e-3, LOW_B, "low_b")])
def test_adc_lr_follows_the_protocol(adc: float, b: tuple[float, ...], protocol: str) -> None:
    call = classify_lesion(lesion(adc=adc, adc_kw={"b_values_s_per_mm2": b}))
    r = reason(call, "adc_mean_mm2_per_s")
    assert r.likelihood_ratio == pytest.approx(adc_lr(adc, protocol), rel=RTOL_LR)


def test_same_adc_reads_differently_by_protocol() -> None:
    # issue 18: metastasis on a low-b DWI protocol, ADC 1.3e-3 → malignant range there
    low = classify_lesion(lesion(adc=1.3e-3, adc_kw={"b_values_s_per_mm2": LOW_B}))
    epi = classify_lesion(lesion(adc=1.3e-3, adc_kw={"b_values_s_per_mm2": EPI_B}))
    assert reason(low, "adc_mean_mm2_per_s").favours is Label.MALIGNANT
    assert reason(low, "adc_mean_mm2_per_s").threshold == pytest.approx(1.7e-3)
    assert "malignant range for protocol low_b" in low.statement
    assert reason(epi, "adc_mean_mm2_per_s").favours is Label.BENIGN
    assert low.label is not Label.BENIGN and epi.label is not Label.MALIGNANT


@pytest.mark.parametrize("b", [(0.0, 200.0), (0.0, 1500.0), ()])
def test_adc_without_a_validated_cutoff_is_refused(b: tuple[float, ...]) -> None:
    call = classify_lesion(lesion(adc=0.8e-3, adc_kw={"b_values_s_per_mm2": b}))
    r = reason(call, "adc_mean_mm2_per_s")
    assert r.status is FeatureStatus.OUT_OF_SCOPE and "no validated ADC cutoff" in r.note
    site = classifier_config_from_mapping({"adc": {"assume_protocol": "epi_b800_1000"}})
    assumed = classify_lesion(lesion(adc=0.8e-3, adc_kw={"b_values_s_per_mm2": ()}), config=site)
    assert reason(assumed, "adc_mean_mm2_per_s").counted


def test_very_low_adc_carries_the_red_marrow_differential() -> None:
    # issue 18: red-marrow island, DWI only, ADC 0.5e-3 → benign differential, not malignant
    call = classify_lesion(lesion(adc=0.5e-3))
    r = reason(call, "adc_mean_mm2_per_s")
    assert r.status is FeatureStatus.OUT_OF_SCOPE and "red (haematopoietic) marrow" in r.note
    assert "red-marrow island" in call.statement and call.label is Label.INDETERMINATE
    # no published red-marrow cutoff at low b: there 0.5e-3 is counted
    low = classify_lesion(lesion(adc=0.5e-3, adc_kw={"b_values_s_per_mm2": LOW_B}))
    assert reason(low, "adc_mean_mm2_per_s").counted


@pytest.mark.parametrize(("adc_kw", "match"), [
    ({"map_degenerate": True}, "identical source volumes"),
    ({"low_b_relative_to_reference": 0.5}, "T2 black-out"),
    ({"snr_low_b": 3.0}, "fitted to noise"),
    ({"voxel_count": 2}, "2 voxels < 4"),
])
def test_unreliable_adc_is_set_aside(adc_kw: dict, match: str) -> None:
    # in-phase signal not dark against marrow: not a signal void
    call = classify_lesion(lesion(adc=0.8e-3, adc_kw=adc_kw, sir=1.0,
                                  cs_kw={"in_phase_relative_to_reference": 0.6}))
    r = reason(call, "adc_mean_mm2_per_s")
    assert r.status is FeatureStatus.UNRELIABLE and match in r.note and not r.counted


@pytest.mark.parametrize(("ct_mean", "low_b_rel", "weight"),
                         [(499.0, None, 1.0), (500.0, None, 0.5), (800.0, 2.0, 1.0)])
def test_dense_sclerosis_is_a_proxy_only_without_a_signal_measure(
        ct_mean: float, low_b_rel: float | None, weight: float) -> None:
    call = classify_lesion(lesion(ct=ct_mean, adc=0.8e-3, annotations={"treated": True},
                                  adc_kw={"low_b_relative_to_reference": low_b_rel}))
    r = reason(call, "adc_mean_mm2_per_s")
    assert ("densely sclerotic" in r.note) is (weight < 1.0)


# ----------------------------------------------------------------------------- signal void
def test_signal_void_sets_mr_aside_and_recommends_ct() -> None:
    # issue 18: bone island seen only on MR, signal void on every image → needs CT
    void = {"cs_kw": {"in_phase_relative_to_reference": 0.1, "fat_fraction": 0.3},
            "adc_kw": {"low_b_relative_to_reference": 0.3}}
    call = classify_lesion(lesion(sir=1.0, adc=0.9e-3, **void))
    for name in ("chemical_shift_ratio", "adc_mean_mm2_per_s"):
        r = reason(call, name)
        assert r.status is FeatureStatus.UNRELIABLE and "signal void" in r.note
    assert call.label is Label.INDETERMINATE
    assert call.statement.startswith("MR not evaluable: signal void; recommend CT")
    # with CT: enostosis range → benign on CT alone; metastasis range → malignant
    island = classify_lesion(lesion(ct=1250.0, sir=1.0, adc=0.9e-3, annotations=UNTREATED,
                                    **void))
    assert island.label is Label.BENIGN and "called on CT attenuation" in island.statement
    assert island.probability_malignant == pytest.approx(p_from((CT_LR_NEG, 1.0)), abs=ATOL_P)
    blastic = classify_lesion(lesion(ct=650.0, sir=1.0, adc=0.9e-3, annotations=UNTREATED,
                                     **void))
    assert blastic.label is Label.MALIGNANT


def test_dark_on_t1_alone_is_not_void() -> None:
    # a water-rich metastasis is dark on the in-phase image but bright at low b
    call = classify_lesion(lesion(sir=1.0, fat_fraction=0.05, adc=0.8e-3, cs_kw={
        "in_phase_relative_to_reference": 0.3}, adc_kw={"low_b_relative_to_reference": 2.5}))
    assert reason(call, "chemical_shift_ratio").counted
    assert call.label is Label.MALIGNANT


def test_void_judged_on_noise_where_there_is_no_reference() -> None:
    call = classify_lesion(lesion(sir=1.0, adc=0.9e-3, cs_kw={"snr_in_phase": 2.0},
                                  adc_kw={"snr_low_b": 2.5}))
    assert "signal void" in call.statement
    read = classify_lesion(lesion(sir=1.0, adc=0.9e-3, annotations={"signal_void": "true"}))
    assert "signal void" in read.statement


# ----------------------------------------------------------------------------- treated
def test_treated_lesion_gets_a_response_statement_never_benign() -> None:
    # issue 18: treated metastasis, fatty marrow after radiotherapy, high ADC
    call = classify_lesion(lesion(sir=0.6, fat_fraction=0.8, adc=1.6e-3,
                                  annotations={"treated": True}, **reliable_mr()))
    assert call.label is Label.INDETERMINATE
    assert "consistent with response to treatment" in call.statement
    assert all(not r.counted for r in call.reasons)
    assert call.probability_malignant == pytest.approx(0.5)
    viable = classify_lesion(lesion(sir=1.0, fat_fraction=0.03, adc=0.8e-3,
                                    annotations={"treated": True}, **reliable_mr()))
    assert viable.label is Label.INDETERMINATE and "viable tumour" in viable.statement


# ----------------------------------------------------------------------------- fusion
def test_concordant_mr_features_use_correlation_discount() -> None:
    call = classify_lesion(lesion(sir=1.0, fat_fraction=0.05, adc=0.8e-3, **reliable_mr()))
    assert call.label is Label.MALIGNANT
    assert call.probability_malignant == pytest.approx(
        p_from((sir_lr(1.0), 1.0), (adc_lr(0.8e-3), 0.5)), abs=1e-6)
    r = reason(call, "adc_mean_mm2_per_s")
    assert r.weight == pytest.approx(0.5) and "correlation discount" in r.note


def test_a_single_mr_feature_is_not_enough() -> None:
    call = classify_lesion(lesion(adc=0.75e-3, **reliable_mr()))
    assert call.probability_malignant >= 0.85  # the posterior alone would say malignant
    assert call.label is Label.INDETERMINATE
    assert any("not enough for a definitive label" in d for d in call.decision)


def test_asymmetric_bounds_need_more_evidence_for_benign() -> None:
    # LR 0.128 (1050 HU) is as strong against as LR 7.8 for; only the latter is definitive
    benign_side = classify_lesion(lesion(ct=1050.0, annotations=UNTREATED))
    malignant_side = classify_lesion(lesion(ct=750.0, annotations=UNTREATED))
    assert ct_lr(1050.0) == pytest.approx(0.128, abs=0.005)
    assert benign_side.label is Label.INDETERMINATE  # p 0.11 > 0.10
    assert malignant_side.label is Label.MALIGNANT  # p 0.87 ≥ 0.85


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ct": 1200.0, "sir": 1.0, "fat_fraction": 0.02},  # CT enostosis, CSI marrow replacement
        {"ct": 650.0, "sir": 0.5, "fat_fraction": 0.2},  # CT metastasis, CSI benign
    ],
)
def test_conflicting_evidence_is_indeterminate(kwargs: dict) -> None:
    call = classify_lesion(lesion(annotations=UNTREATED, **reliable_mr(), **kwargs))
    assert call.label is Label.INDETERMINATE
    assert any("conflicting evidence" in d for d in call.decision)
    off = classifier_config_from_mapping({"fusion": {"conflict_is_indeterminate": False}})
    assert 0.0 < classify_lesion(lesion(annotations=UNTREATED, **kwargs),
                                 config=off).probability_malignant < 1.0


def test_prior_is_an_explicit_documented_input() -> None:
    cfg = ClassifierConfig().with_prior(0.2, source="test cohort prevalence")
    call = classify_lesion(lesion(ct=700.0, annotations=UNTREATED), config=cfg)
    assert call.probability_malignant == pytest.approx(p_from((ct_lr(700.0), 1.0), prior=0.2),
                                                       abs=1e-9)
    data = call.reasons_dict()
    assert data["prior"] == {"probability_malignant": 0.2, "source": "test cohort prevalence"}
    default = classify_lesion(lesion(ct=700.0)).reasons_dict()
    assert default["prior"]["probability_malignant"] == 0.5
    assert "no preference" in default["prior"]["source"]
    with pytest.raises(ConfigError, match="prior_probability_malignant"):
        ClassifierConfig().with_prior(1.0, source="x")


def test_no_features_is_indeterminate_with_missing_reasons() -> None:
    m = lesion(missing={"ct": "no CT series in study", "adc": "DWI has one b-value only"})
    call = classify_lesion(m)
    assert call.label is Label.INDETERMINATE
    assert call.probability_malignant == pytest.approx(0.5, abs=1e-12)
    assert reason(call, "ct_attenuation_mean_hu").note == "no CT series in study"
    assert reason(call, "adc_mean_mm2_per_s").note == "DWI has one b-value only"
    assert reason(call, "chemical_shift_ratio").status is FeatureStatus.MISSING
    assert any("no applicable evidence" in d for d in call.decision)


def test_nan_feature_is_missing_not_an_exception() -> None:
    call = classify_lesion(lesion(ct=float("nan"), sir=float("nan"), adc=float("nan")))
    assert call.label is Label.INDETERMINATE
    assert all(r.status in (FeatureStatus.MISSING, FeatureStatus.ABSENT) for r in call.reasons)


def test_reasons_json_is_complete() -> None:
    call = classify_lesion(lesion(ct=(650.0, 800.0), sir=1.0, fat_fraction=0.05, adc=0.8e-3,
                                  annotations=UNTREATED, **reliable_mr()))
    cols = call_cells(call.to_dict())
    assert cols["label"] == "malignant"
    data = json.loads(csv_cell(cols["reasons"]))
    assert data["method"] == "rules" and data["statement"].startswith("malignant")
    assert set(data) == {"method", "statement", "prior", "decision", "set_aside", "features"}
    keys = {"feature", "status", "value", "unit", "threshold", "direction", "favours", "weight",
            "likelihood_ratio", "log_odds", "citation", "note", "unreliable"}
    assert [f["feature"] for f in data["features"]] == [
        "ct_attenuation_mean_hu", "ct_attenuation_max_hu", "macroscopic_fat",
        "chemical_shift_ratio", "adc_mean_mm2_per_s"]
    for f in data["features"]:
        assert set(f) == keys
    assert sum(f["log_odds"] for f in data["features"]) == pytest.approx(
        math.log(call.probability_malignant / (1 - call.probability_malignant)), abs=1e-9)


def test_unreliable_mr_does_not_make_a_conflict() -> None:
    # enostosis on CT; ADC "restricted" but down-weighted in dense sclerosis (no signal measure)
    call = classify_lesion(lesion(ct=1250.0, sir=0.6, fat_fraction=0.2, adc=0.8e-3,
                                  annotations=UNTREATED))
    adc = reason(call, "adc_mean_mm2_per_s")
    assert adc.unreliable and adc.favours is Label.MALIGNANT
    assert adc.weight == pytest.approx(0.25)  # dense sclerosis ×0.5, second MR feature ×0.5
    assert call.label is Label.BENIGN
    assert any("not treated as conflicting" in d for d in call.decision)
