"""Rule boundaries, scope gates and fusion of the literature classifier.

Truth: the published likelihood ratios of CLINICAL_REFERENCE.md (§A1, §G: CT LR+ 23.8 /
LR− 0.052; CSI pooled 8.4 / 0.090; ADC pooled 6.9 / 0.126), not the code's own arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from classify_factory import lesion

from bonelesion.classify import (
    ClassifierConfig,
    FeatureStatus,
    Label,
    classify_lesion,
    load_classifier_config,
)
from bonelesion.classify.config import classifier_config_from_mapping
from bonelesion.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
# The reference rounds LRs to 2–3 significant digits: compare posteriors to 2e-3.
ATOL_P = 2e-3
# published LRs (CLINICAL_REFERENCE.md §G table, derived there from sens/spec)
CT_LR_POS, CT_LR_NEG = 23.8, 0.052
CSI_LR_POS, CSI_LR_NEG = 8.4, 0.090
ADC_LR_POS, ADC_LR_NEG = 6.9, 0.126


def p_from(*terms: tuple[float, float], prior: float = 0.5) -> float:
    """Posterior from (LR, weight) pairs."""
    lo = math.log(prior / (1 - prior)) + sum(w * math.log(lr) for lr, w in terms)
    return 1 / (1 + math.exp(-lo))


def reason(call, feature):  # type: ignore[no-untyped-def]
    return next(r for r in call.reasons if r.feature == feature)


# ----------------------------------------------------------------------------- config
def test_toml_equals_builtin_defaults() -> None:
    assert load_classifier_config(REPO / "configs" / "classifier.toml") == ClassifierConfig()


def test_unknown_key_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"ct\.mean_treshold_hu: unknown key"):
        classifier_config_from_mapping({"ct": {"mean_treshold_hu": 880.0}})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"ct": {"sensitivity": 1.2}}, r"ct\.sensitivity: must lie in \(0\.5, 1\.0\)"),
        ({"ct": {"sclerotic_floor_hu": 900.0}}, r"lytic_ceiling_hu < sclerotic_floor_hu"),
        ({"ct": {"max_rule_weight": 2.0}}, r"ct\.max_rule_weight: a weight must lie in \[0, 1\]"),
        ({"ct": {"near_threshold_band_hu": -1.0}}, r"ct\.near_threshold_band_hu: must be a finite"),
        ({"chemical_shift": {"fat_dominant_fraction": 0.0}}, r"fat_dominant_fraction: must lie"),
        ({"adc": {"cutoff_mm2_per_s": 1.14}}, r"adc\.cutoff_mm2_per_s: .*Potential fix"),
        ({"fusion": {"prior_probability_malignant": 1.0}}, r"prior_probability_malignant"),
        ({"fusion": {"malignant_min_probability": 0.4}}, r"benign_max_probability < 0\.5"),
        ({"ct": {"mean_threshold_hu": "885"}}, r"ct\.mean_threshold_hu: expected a number"),
    ],
)
def test_config_range_errors(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        classifier_config_from_mapping(data)


def test_nested_classifier_table_and_missing_file(tmp_path: Path) -> None:
    cfg = classifier_config_from_mapping({"classifier": {"adc": {"cutoff_mm2_per_s": 1.7e-3}}})
    assert cfg.adc.cutoff_mm2_per_s == pytest.approx(1.7e-3)
    with pytest.raises(ConfigError, match="does not exist"):
        load_classifier_config(tmp_path / "nope.toml")


# ----------------------------------------------------------------------------- CT rule
@pytest.mark.parametrize(
    ("mean_hu", "max_hu", "label", "lr"),
    [
        (885.0 - 60.0 - 0.1, 1000.0, Label.MALIGNANT, CT_LR_POS),  # just below the band
        (885.0 + 60.0 + 0.1, 1100.0, Label.BENIGN, CT_LR_NEG),  # just above the band
        (654.0, 787.0, Label.MALIGNANT, CT_LR_POS),  # Ulano metastasis mean / max
        (1190.0, 1323.0, Label.BENIGN, CT_LR_NEG),  # Ulano enostosis mean / max
    ],
)
def test_ct_mean_rule(mean_hu: float, max_hu: float, label: Label, lr: float) -> None:
    call = classify_lesion(lesion(ct=(mean_hu, max_hu)))
    assert call.label is label
    assert call.probability_malignant == pytest.approx(p_from((lr, 1.0)), abs=ATOL_P)
    r = reason(call, "ct_attenuation_mean_hu")
    assert r.status is FeatureStatus.APPLIED and r.threshold == 885.0 and r.weight == 1.0
    assert "Ulano" in r.citation


@pytest.mark.parametrize("mean_hu", [885.0 - 60.0, 884.9, 885.0, 885.1, 885.0 + 60.0])
def test_ct_near_threshold_band_is_indeterminate(mean_hu: float) -> None:
    call = classify_lesion(lesion(ct=(mean_hu, 1000.0)))
    assert call.label is Label.INDETERMINATE
    assert reason(call, "ct_attenuation_mean_hu").status is FeatureStatus.NEAR_THRESHOLD
    assert any("near threshold" in d for d in call.decision)


def test_ct_threshold_side_exactly_at_885_with_band_off() -> None:
    cfg = classifier_config_from_mapping({"ct": {"near_threshold_band_hu": 0.0}})
    below = classify_lesion(lesion(ct=(884.9, 1000.0)), config=cfg)
    at = classify_lesion(lesion(ct=(885.1, 1100.0)), config=cfg)
    assert below.label is Label.MALIGNANT and at.label is Label.BENIGN
    # Ulano 2016: metastasis when mean < 885 HU, so exactly 885 HU is on the enostosis side
    exact = classify_lesion(lesion(ct=(885.0, 1100.0)), config=cfg)
    assert exact.label is Label.BENIGN
    assert reason(exact, "ct_attenuation_mean_hu").favours is Label.BENIGN


def test_ct_max_disagreeing_with_mean_is_indeterminate() -> None:
    call = classify_lesion(lesion(ct=(700.0, 1061.0)))
    assert call.label is Label.INDETERMINATE
    assert any("CT mean and CT max" in d for d in call.decision)
    r = reason(call, "ct_attenuation_max_hu")
    assert r.status is FeatureStatus.SECONDARY and r.weight == 0.0 and r.favours is Label.BENIGN
    agree = classify_lesion(lesion(ct=(700.0, 1059.0)))
    assert agree.label is Label.MALIGNANT
    # max < 1060 HU favours malignant (Ulano 2016): exactly 1060 HU favours benign
    assert reason(classify_lesion(lesion(ct=(700.0, 1060.0))),
                  "ct_attenuation_max_hu").favours is Label.BENIGN
    off = classifier_config_from_mapping({"ct": {"max_conflict_is_indeterminate": False}})
    assert classify_lesion(lesion(ct=(700.0, 1061.0)), config=off).label is Label.MALIGNANT


def test_ct_max_rule_weight_counts_when_configured() -> None:
    cfg = classifier_config_from_mapping({"ct": {"max_rule_weight": 0.5}})
    call = classify_lesion(lesion(ct=(700.0, 900.0)), config=cfg)
    assert call.probability_malignant == pytest.approx(
        p_from((CT_LR_POS, 1.0), (CT_LR_POS, 0.5)), abs=ATOL_P)


@pytest.mark.parametrize(
    ("mean_hu", "annotations", "in_scope", "match"),
    [
        (299.9, {}, False, "below the sclerotic floor"),
        (300.0, {}, True, "sclerotic floor"),
        (250.0, {"sclerotic": True}, True, "sclerotic by annotation"),
        (700.0, {"sclerotic": "no"}, False, "annotated as not sclerotic"),
        (700.0, {"treated": True}, False, "treated"),
        (700.0, {"treated": "yes", "sclerotic": True}, False, "Azar"),
        (700.0, {"treated": False}, True, "untreated"),
    ],
)
def test_ct_scope_gates(mean_hu: float, annotations: dict, in_scope: bool, match: str) -> None:
    call = classify_lesion(lesion(ct=(mean_hu, mean_hu + 50.0), annotations=annotations))
    r = reason(call, "ct_attenuation_mean_hu")
    assert (r.status is FeatureStatus.APPLIED) is in_scope
    assert match in r.note
    if not in_scope:
        assert r.status is FeatureStatus.OUT_OF_SCOPE and r.weight == 0.0
        assert call.label is Label.INDETERMINATE
        assert call.probability_malignant == pytest.approx(0.5, abs=1e-12)


def test_ct_disabled() -> None:
    cfg = classifier_config_from_mapping({"ct": {"enabled": False}})
    call = classify_lesion(lesion(ct=650.0), config=cfg)
    assert reason(call, "ct_attenuation_mean_hu").status is FeatureStatus.DISABLED
    assert call.label is Label.INDETERMINATE


# ----------------------------------------------------------------------------- CSI rule
@pytest.mark.parametrize(
    ("sir", "label", "lr"),
    [(0.80 + 0.03 + 1e-3, Label.MALIGNANT, CSI_LR_POS), (0.80 - 0.03 - 1e-3, Label.BENIGN,
                                                          CSI_LR_NEG),
     (1.0, Label.MALIGNANT, CSI_LR_POS), (0.40, Label.BENIGN, CSI_LR_NEG)],
)
def test_csi_rule(sir: float, label: Label, lr: float) -> None:
    call = classify_lesion(lesion(sir=sir))
    assert call.label is label
    assert call.probability_malignant == pytest.approx(p_from((lr, 1.0)), abs=ATOL_P)
    assert "Suh" in reason(call, "chemical_shift_ratio").citation


@pytest.mark.parametrize("sir", [0.77, 0.799, 0.80, 0.801, 0.83])
def test_csi_near_threshold(sir: float) -> None:
    call = classify_lesion(lesion(sir=sir))
    assert reason(call, "chemical_shift_ratio").status is FeatureStatus.NEAR_THRESHOLD
    assert call.label is Label.INDETERMINATE


def test_csi_threshold_inclusive_with_band_off() -> None:
    cfg = classifier_config_from_mapping({"chemical_shift": {"near_threshold_band_ratio": 0.0}})
    assert reason(classify_lesion(lesion(sir=0.80), config=cfg),
                  "chemical_shift_ratio").favours is Label.MALIGNANT  # SIR ≥ 0.8
    assert reason(classify_lesion(lesion(sir=0.7999), config=cfg),
                  "chemical_shift_ratio").favours is Label.BENIGN


@pytest.mark.parametrize(
    ("kwargs", "applied", "match"),
    [
        ({"fat_fraction": 0.51}, False, "fat dominant: Dixon fat fraction"),
        ({"fat_fraction": 0.50}, True, "fat fraction 0.500"),
        ({"annotations": {"t1_bright": True}}, False, "T1 bright"),
        ({"annotations": {"fat_dominant": "true"}}, False, "fat dominant"),
        ({"csi_warnings": ("SIR folding suspected: opposed > in-phase",)}, False, "folding"),
        ({}, True, "fat fraction unknown"),
    ],
)
def test_csi_fat_dominance_gate(kwargs: dict, applied: bool, match: str) -> None:
    call = classify_lesion(lesion(sir=1.0, **kwargs))
    r = reason(call, "chemical_shift_ratio")
    assert (r.status is FeatureStatus.APPLIED) is applied
    assert match in r.note


# ----------------------------------------------------------------------------- ADC rule
@pytest.mark.parametrize(
    ("adc", "label", "lr"),
    [(1.14e-3 - 0.1e-3 - 1e-6, Label.MALIGNANT, ADC_LR_POS),
     (1.14e-3 + 0.1e-3 + 1e-6, Label.BENIGN, ADC_LR_NEG),
     (0.9e-3, Label.MALIGNANT, ADC_LR_POS), (1.9e-3, Label.BENIGN, ADC_LR_NEG)],
)
def test_adc_rule(adc: float, label: Label, lr: float) -> None:
    call = classify_lesion(lesion(adc=adc))
    assert call.probability_malignant == pytest.approx(p_from((lr, 1.0)), abs=ATOL_P)
    assert call.label is label


@pytest.mark.parametrize("adc", [1.04e-3, 1.14e-3, 1.24e-3])
def test_adc_near_threshold(adc: float) -> None:
    call = classify_lesion(lesion(adc=adc))
    assert reason(call, "adc_mean_mm2_per_s").status is FeatureStatus.NEAR_THRESHOLD
    assert call.label is Label.INDETERMINATE


def test_adc_cutoff_inclusive_and_configurable() -> None:
    band_off = {"near_threshold_band_mm2_per_s": 0.0}
    cfg = classifier_config_from_mapping({"adc": band_off})
    assert reason(classify_lesion(lesion(adc=1.14e-3), config=cfg),
                  "adc_mean_mm2_per_s").favours is Label.MALIGNANT  # ADC ≤ cutoff
    tse = classifier_config_from_mapping({"adc": {**band_off, "cutoff_mm2_per_s": 1.7e-3}})
    assert reason(classify_lesion(lesion(adc=1.5e-3), config=tse),
                  "adc_mean_mm2_per_s").favours is Label.MALIGNANT


@pytest.mark.parametrize(("ct_mean", "weight"), [(499.0, 1.0), (500.0, 0.5)])
def test_adc_downweighted_in_dense_sclerosis(ct_mean: float, weight: float) -> None:
    # treated lesion: CT rule out of scope, but its density still gates ADC
    call = classify_lesion(lesion(ct=ct_mean, adc=0.7e-3, annotations={"treated": True}))
    r = reason(call, "adc_mean_mm2_per_s")
    assert r.weight == pytest.approx(weight)
    assert ("densely sclerotic" in r.note) is (weight < 1.0)
    assert call.probability_malignant == pytest.approx(p_from((ADC_LR_POS, weight)), abs=ATOL_P)


# ----------------------------------------------------------------------------- fusion
def test_concordant_mr_features_use_correlation_discount() -> None:
    call = classify_lesion(lesion(sir=1.0, adc=0.8e-3))
    assert call.label is Label.MALIGNANT
    assert call.probability_malignant == pytest.approx(
        p_from((CSI_LR_POS, 1.0), (ADC_LR_POS, 0.5)), abs=ATOL_P)
    r = reason(call, "adc_mean_mm2_per_s")
    assert r.weight == pytest.approx(0.5) and "correlation discount" in r.note


def test_all_three_concordant_benign() -> None:
    call = classify_lesion(lesion(ct=(1190.0, 1323.0), sir=0.4, adc=1.9e-3))
    assert call.label is Label.BENIGN
    # ADC is also down-weighted (dense sclerosis), then discounted as second MR feature
    assert call.probability_malignant == pytest.approx(
        p_from((CT_LR_NEG, 1.0), (CSI_LR_NEG, 1.0), (ADC_LR_NEG, 0.25)), abs=ATOL_P)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ct": (650.0, 800.0), "sir": 0.4},  # CT malignant, CSI benign
        {"sir": 1.0, "adc": 1.9e-3},  # CSI malignant, ADC benign
        {"ct": (450.0, 600.0), "adc": 1.9e-3},  # CT malignant, ADC benign (not dense)
    ],
)
def test_conflicting_evidence_is_indeterminate(kwargs: dict) -> None:
    call = classify_lesion(lesion(**kwargs))
    assert call.label is Label.INDETERMINATE
    assert any("conflicting evidence" in d for d in call.decision)
    off = classifier_config_from_mapping({"fusion": {"conflict_is_indeterminate": False}})
    # without the conflict rule the posterior decides (still a number in (0, 1))
    assert 0.0 < classify_lesion(lesion(**kwargs), config=off).probability_malignant < 1.0


def test_probability_between_bounds_is_indeterminate() -> None:
    cfg = classifier_config_from_mapping({"fusion": {"malignant_min_probability": 0.95}})
    call = classify_lesion(lesion(sir=1.0), config=cfg)  # p ≈ 0.894
    assert call.label is Label.INDETERMINATE
    assert any("between the decision bounds" in d for d in call.decision)


def test_prior_moves_posterior() -> None:
    cfg = classifier_config_from_mapping({"fusion": {"prior_probability_malignant": 0.2}})
    call = classify_lesion(lesion(adc=0.8e-3), config=cfg)
    assert call.probability_malignant == pytest.approx(p_from((ADC_LR_POS, 1.0), prior=0.2),
                                                       abs=ATOL_P)
    assert call.label is Label.INDETERMINATE  # 0.63: between the bounds


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
    assert all(r.status is FeatureStatus.MISSING for r in call.reasons)


def test_reasons_json_is_complete() -> None:
    call = classify_lesion(lesion(ct=(650.0, 800.0), sir=1.0, adc=0.8e-3))
    cols = call.table_columns()
    assert cols["label"] == "malignant"
    data = json.loads(cols["reasons"])
    assert data["method"] == "rules"
    keys = {"feature", "status", "value", "unit", "threshold", "direction", "favours", "weight",
            "likelihood_ratio", "log_odds", "citation", "note", "unreliable"}
    assert {f["feature"] for f in data["features"]} == {
        "ct_attenuation_mean_hu", "ct_attenuation_max_hu", "chemical_shift_ratio",
        "adc_mean_mm2_per_s"}
    for f in data["features"]:
        assert set(f) == keys
    assert sum(f["log_odds"] for f in data["features"]) == pytest.approx(
        math.log(call.probability_malignant / (1 - call.probability_malignant)), abs=1e-9)


def test_unreliable_adc_does_not_make_a_conflict() -> None:
    # enostosis-like: CT and CSI benign; ADC "restricted" but in dense sclerosis (T2 black-out)
    call = classify_lesion(lesion(ct=(1250.0, 1400.0), sir=0.6, adc=0.6e-3))
    adc = reason(call, "adc_mean_mm2_per_s")
    assert adc.unreliable and adc.favours is Label.MALIGNANT
    assert adc.weight == pytest.approx(0.25)  # dense sclerosis ×0.5, second MR feature ×0.5
    assert call.label is Label.BENIGN
    assert call.probability_malignant == pytest.approx(
        p_from((CT_LR_NEG, 1.0), (CSI_LR_NEG, 1.0), (ADC_LR_POS, 0.25)), abs=ATOL_P)
    assert any("not treated as conflicting" in d for d in call.decision)
    # an unreliable ADC alone is still evidence (it is the only side)
    alone = classify_lesion(lesion(ct=1250.0, adc=0.6e-3, annotations={"treated": True}))
    assert reason(alone, "adc_mean_mm2_per_s").counted
