"""Literature rules and likelihood-ratio fusion: a pure function of measurements and config.

Each applicable rule contributes ``weight × ln(LR)`` to the log-odds of malignancy, seeded by
the prior (CLINICAL_REFERENCE.md Defaults 19). Scope gates, near-threshold bands and
conflicting evidence lead to ``Label.INDETERMINATE`` with reasons, never to an exception.

Notes
-----
logit(p) = logit(prior) + Σ_k w_k · ln LR_k, with LR_k = LR+ when the rule's malignant side
holds and LR− otherwise (LR+ = sens / (1 − spec), LR− = (1 − sens) / spec).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bonelesion.classify.call import (
    FeatureReason,
    FeatureStatus,
    Label,
    LesionCall,
    label_from_posterior,
)
from bonelesion.classify.call import _clean as _finite
from bonelesion.classify.config import ClassifierConfig, likelihood_ratios
from bonelesion.classify.spine import EsccGrade, SinsScore, grade_escc, score_sins
from bonelesion.errors import InputError
from bonelesion.model.results import (
    MISSING_ADC,
    MISSING_CHEMICAL_SHIFT,
    MISSING_CT,
    MISSING_FAT_FRACTION,
    LesionMeasurements,
    missing_reason,
)

__all__ = ["classify_lesion", "classify_lesions", "annotation_flag", "bone_lesion_category",
           "logit", "sigmoid"]

UNIT_HU = "[hnsf'U]"
UNIT_RATIO = "1"
UNIT_ADC = "mm2/s"

_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


def logit(p: float) -> float:
    """Log-odds of a probability in (0, 1)."""
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    """Inverse of `logit`, overflow-safe."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def annotation_flag(annotations: Mapping[str, Any], key: str) -> bool | None:
    """Read a yes/no annotation; None when absent or unreadable.

    Examples
    --------
    >>> annotation_flag({"treated": "yes"}, "treated"), annotation_flag({}, "treated")
    (True, None)
    """
    value = annotations.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def bone_lesion_category(
    m: LesionMeasurements, config: ClassifierConfig
) -> str | None:
    """SINS bone-lesion category (lytic / mixed / blastic) from CT attenuation, or None.

    Blastic when annotated ``sclerotic`` or mean ≥ ``ct.sclerotic_floor_hu``; lytic when mean
    < ``ct.lytic_ceiling_hu``; mixed in between.
    """
    sclerotic = annotation_flag(m.annotations, "sclerotic")
    mean = _finite(m.ct.attenuation_mean_hu) if m.ct is not None else None
    if sclerotic is True:
        return "blastic"
    if mean is None:
        return None
    if mean >= config.ct.sclerotic_floor_hu:
        return "blastic"
    if mean < config.ct.lytic_ceiling_hu:
        return "lytic"
    return "mixed"


def _not_used(feature: str, status: FeatureStatus, note: str, *, value: float | None = None,
              unit: str = "", threshold: float | None = None, direction: str = "",
              citation: str = "") -> FeatureReason:
    return FeatureReason(feature=feature, status=status, value=value, unit=unit,
                         threshold=threshold, direction=direction, citation=citation, note=note)


def _evidence(
    feature: str,
    *,
    value: float,
    unit: str,
    threshold: float,
    band: float,
    malignant_side: bool,
    direction: str,
    sensitivity: float,
    specificity: float,
    weight: float,
    citation: str,
    note: str,
    status: FeatureStatus = FeatureStatus.APPLIED,
) -> FeatureReason:
    lr_pos, lr_neg = likelihood_ratios(sensitivity, specificity)
    u = "" if unit == UNIT_RATIO else f" {unit}"
    # band edges inclusive; the relative slack absorbs binary rounding of e.g. 1.24e-3 − 1.14e-3
    near = band > 0.0 and abs(value - threshold) <= band * (1.0 + 1e-9)
    if near and status is FeatureStatus.APPLIED:
        return FeatureReason(
            feature=feature, status=FeatureStatus.NEAR_THRESHOLD, value=value, unit=unit,
            threshold=threshold, direction=direction, citation=citation,
            note=(f"{value:.6g}{u} lies within ±{band:.6g}{u} of the threshold "
                  f"{threshold:.6g}{u}: not counted; calibration or protocol differences could "
                  f"flip it. {note}").strip(),
        )
    lr = lr_pos if malignant_side else lr_neg
    return FeatureReason(
        feature=feature, status=status, value=value, unit=unit, threshold=threshold,
        direction=direction, favours=Label.MALIGNANT if malignant_side else Label.BENIGN,
        weight=weight, likelihood_ratio=lr, log_odds=weight * math.log(lr), citation=citation,
        note=note,
    )


def _ct_reasons(m: LesionMeasurements, config: ClassifierConfig) -> list[FeatureReason]:
    cfg = config.ct
    mean_dir = f"mean < {cfg.mean_threshold_hu:g} {UNIT_HU} favours malignant (untreated " \
               "osteoblastic metastasis over enostosis)"
    max_dir = f"max < {cfg.max_threshold_hu:g} {UNIT_HU} favours malignant"
    names = ("ct_attenuation_mean_hu", "ct_attenuation_max_hu")
    if not cfg.enabled:
        return [_not_used(n, FeatureStatus.DISABLED, "ct.enabled = false", citation=cfg.citation)
                for n in names]
    if m.ct is None:
        why = missing_reason(m, MISSING_CT,
                             default="no CT attenuation measurement for this lesion")
        return [_not_used(n, FeatureStatus.MISSING, why, citation=cfg.citation) for n in names]
    mean = _finite(m.ct.attenuation_mean_hu)
    max_hu = _finite(m.ct.attenuation_max_hu)
    if mean is None:
        return [_not_used(n, FeatureStatus.MISSING, "CT attenuation is not a finite number",
                          citation=cfg.citation) for n in names]
    treated = annotation_flag(m.annotations, "treated")
    sclerotic = annotation_flag(m.annotations, "sclerotic")
    gate: str | None = None
    if treated:
        gate = ("annotated as treated: the HU rule does not separate treated metastases from "
                "benign lesions (Azar 2021 AJR)")
    elif sclerotic is False:
        gate = "annotated as not sclerotic: the HU rule applies to sclerotic lesions only"
    elif sclerotic is None and mean < cfg.sclerotic_floor_hu:
        gate = (f"mean {mean:.1f} {UNIT_HU} is below the sclerotic floor "
                f"{cfg.sclerotic_floor_hu:g} {UNIT_HU}: not a sclerotic lesion, the enostosis "
                "rule is out of scope")
    if gate is not None:
        return [
            _not_used(names[0], FeatureStatus.OUT_OF_SCOPE, gate, value=mean, unit=UNIT_HU,
                      threshold=cfg.mean_threshold_hu, direction=mean_dir, citation=cfg.citation),
            _not_used(names[1], FeatureStatus.OUT_OF_SCOPE, gate, value=max_hu, unit=UNIT_HU,
                      threshold=cfg.max_threshold_hu, direction=max_dir, citation=cfg.citation),
        ]
    scope = ("in scope: sclerotic by annotation" if sclerotic else
             f"in scope: untreated, mean ≥ sclerotic floor {cfg.sclerotic_floor_hu:g} {UNIT_HU}")
    out = [_evidence(
        names[0], value=mean, unit=UNIT_HU, threshold=cfg.mean_threshold_hu,
        band=cfg.near_threshold_band_hu, malignant_side=mean < cfg.mean_threshold_hu,
        direction=mean_dir, sensitivity=cfg.sensitivity, specificity=cfg.specificity,
        weight=1.0, citation=cfg.citation, note=scope,
    )]
    if max_hu is None:
        out.append(_not_used(names[1], FeatureStatus.MISSING, "CT max is not a finite number",
                             citation=cfg.citation))
    else:
        out.append(_evidence(
            names[1], value=max_hu, unit=UNIT_HU, threshold=cfg.max_threshold_hu, band=0.0,
            malignant_side=max_hu < cfg.max_threshold_hu, direction=max_dir,
            sensitivity=cfg.sensitivity, specificity=cfg.specificity,
            weight=cfg.max_rule_weight, citation=cfg.citation, status=FeatureStatus.SECONDARY,
            note=(f"secondary rule (weight {cfg.max_rule_weight:g}): max HU is noise-sensitive; "
                  "the mean rule leads (CLINICAL_REFERENCE Defaults 2)"),
        ))
        if cfg.max_rule_weight == 0.0:
            out[-1] = dataclasses.replace(out[-1], log_odds=0.0)
    return out


def _csi_reason(m: LesionMeasurements, config: ClassifierConfig) -> FeatureReason:
    cfg = config.chemical_shift
    name = "chemical_shift_ratio"
    direction = (f"SIR ≥ {cfg.sir_threshold_ratio:g} (signal drop ≤ "
                 f"{(1 - cfg.sir_threshold_ratio) * 100:g} %) favours malignant (marrow "
                 "replacement)")
    if not cfg.enabled:
        return _not_used(name, FeatureStatus.DISABLED, "chemical_shift.enabled = false",
                         citation=cfg.citation)
    cs = m.chemical_shift
    if cs is None:
        why = missing_reason(m, MISSING_CHEMICAL_SHIFT,
                             default="no chemical-shift measurement for this lesion")
        return _not_used(name, FeatureStatus.MISSING, why, citation=cfg.citation)
    sir = _finite(cs.chemical_shift_ratio)
    if sir is None:
        return _not_used(name, FeatureStatus.MISSING, "SIR is not a finite number",
                         citation=cfg.citation)
    ff = _finite(cs.fat_fraction)
    gate: str | None = None
    if ff is not None and ff > cfg.fat_dominant_fraction:
        gate = (f"fat dominant: Dixon fat fraction {ff:.3f} > {cfg.fat_dominant_fraction:g}; "
                "the two-point SIR folds back (SIR = 2·FF − 1), so fatty tissue mimics a "
                "fat-free lesion")
    elif annotation_flag(m.annotations, "fat_dominant") or annotation_flag(m.annotations,
                                                                            "t1_bright"):
        gate = "annotated fat dominant / T1 bright: SIR folds back for fat-dominant tissue"
    elif any("fold" in w.lower() for w in cs.warnings):
        gate = "the chemical-shift stage reported SIR folding evidence: " + "; ".join(
            w for w in cs.warnings if "fold" in w.lower())
    if gate is not None:
        return _not_used(name, FeatureStatus.OUT_OF_SCOPE, gate, value=sir, unit=UNIT_RATIO,
                         threshold=cfg.sir_threshold_ratio, direction=direction,
                         citation=cfg.citation)
    scope = ("in scope: water-dominant or mixed tissue"
             + (f" (fat fraction {ff:.3f})" if ff is not None else
                " (fat fraction unknown: " + missing_reason(
                    m, MISSING_FAT_FRACTION, default="not measured") + ")")
             + "; CSI separates marrow replacement from non-neoplastic marrow, not benign from "
             "malignant tumour (van Vucht 2021)")
    return _evidence(
        name, value=sir, unit=UNIT_RATIO, threshold=cfg.sir_threshold_ratio,
        band=cfg.near_threshold_band_ratio, malignant_side=sir >= cfg.sir_threshold_ratio,
        direction=direction, sensitivity=cfg.sensitivity, specificity=cfg.specificity,
        weight=1.0, citation=cfg.citation, note=scope,
    )


def _adc_reason(m: LesionMeasurements, config: ClassifierConfig) -> FeatureReason:
    cfg = config.adc
    name = "adc_mean_mm2_per_s"
    direction = f"ADC ≤ {cfg.cutoff_mm2_per_s:.4g} {UNIT_ADC} favours malignant"
    if not cfg.enabled:
        return _not_used(name, FeatureStatus.DISABLED, "adc.enabled = false", citation=cfg.citation)
    if m.adc is None:
        why = missing_reason(m, MISSING_ADC, default="no ADC measurement for this lesion")
        return _not_used(name, FeatureStatus.MISSING, why, citation=cfg.citation)
    adc = _finite(m.adc.adc_mean_mm2_per_s)
    if adc is None:
        return _not_used(name, FeatureStatus.MISSING, "ADC is not a finite number",
                         citation=cfg.citation)
    weight = 1.0
    unreliable = False
    notes = [f"ADC source: {m.adc.adc_source}"]
    ct_mean = _finite(m.ct.attenuation_mean_hu) if m.ct is not None else None
    if ct_mean is not None and ct_mean >= cfg.dense_sclerosis_floor_hu:
        weight *= cfg.dense_sclerosis_weight
        unreliable = True
        notes.append(
            f"down-weighted ×{cfg.dense_sclerosis_weight:g}: densely sclerotic on CT (mean "
            f"{ct_mean:.0f} ≥ {cfg.dense_sclerosis_floor_hu:g} {UNIT_HU}); T2 black-out makes "
            "ADC unreliable (Eur J Radiol 2009; Kim 2023)")
    reason = _evidence(
        name, value=adc, unit=UNIT_ADC, threshold=cfg.cutoff_mm2_per_s,
        band=cfg.near_threshold_band_mm2_per_s, malignant_side=adc <= cfg.cutoff_mm2_per_s,
        direction=direction, sensitivity=cfg.sensitivity, specificity=cfg.specificity,
        weight=weight, citation=cfg.citation, note="; ".join(notes),
    )
    return dataclasses.replace(reason, unreliable=unreliable)


def _spine(m: LesionMeasurements, config: ClassifierConfig
           ) -> tuple[SinsScore | None, EsccGrade | None, tuple[str, ...]]:
    problems: list[str] = []
    sins: SinsScore | None = None
    escc: EsccGrade | None = None
    derived = bone_lesion_category(m, config) if config.spine.derive_bone_lesion_from_ct else None
    try:
        sins = score_sins(m.annotations, bone_lesion_from_ct=derived)
    except InputError as exc:
        problems.append(str(exc))
    try:
        escc = grade_escc(m.annotations.get("escc_grade"))
    except InputError as exc:
        problems.append(str(exc))
    return sins, escc, tuple(problems)


def classify_lesion(
    m: LesionMeasurements, *, config: ClassifierConfig | None = None
) -> LesionCall:
    """Classify one lesion with the literature rules and explain the call.

    Parameters
    ----------
    m : LesionMeasurements
        The lesion's measurements and annotations (``treated``, ``sclerotic``,
        ``fat_dominant``, ``t1_bright``, ``sins_*``, ``escc_grade``).
    config : ClassifierConfig, optional
        Thresholds, gates and fusion settings; defaults to the cited defaults.

    Returns
    -------
    LesionCall
        Label (never None), probability of malignancy, per-feature reasons, decision notes,
        SINS and ESCC. Invalid spine annotations are recorded in ``spine_problems``.

    Examples
    --------
    >>> from bonelesion.model.results import CtAttenuationResult, LesionMeasurements
    >>> ct = CtAttenuationResult(lesion_id="1", series_instance_uid="1.2", lesion_voxel_count=9,
    ...     lesion_volume_ml=0.1, core_voxel_count=1, attenuation_mean_hu=650.0,
    ...     attenuation_median_hu=650.0, attenuation_max_hu=800.0, attenuation_min_hu=500.0,
    ...     attenuation_sd_hu=50.0, attenuation_p05_hu=560.0, attenuation_p95_hu=740.0,
    ...     erosion_margin_mm=1.0)
    >>> call = classify_lesion(LesionMeasurements(study_instance_uid="1", lesion_id="1", ct=ct))
    >>> call.label.value, round(call.probability_malignant, 3)
    ('malignant', 0.96)
    """
    config = config or ClassifierConfig()
    fusion = config.fusion
    reasons = [*_ct_reasons(m, config), _csi_reason(m, config), _adc_reason(m, config)]
    # correlation discount: the second marrow-fat-related MR feature counts half
    mr = [i for i, r in enumerate(reasons)
          if r.feature in ("chemical_shift_ratio", "adc_mean_mm2_per_s") and r.counted]
    if len(mr) == 2 and fusion.second_marrow_feature_weight < 1.0:
        i = mr[1]
        r = reasons[i]
        w = r.weight * fusion.second_marrow_feature_weight
        assert r.likelihood_ratio is not None
        reasons[i] = dataclasses.replace(
            r, weight=w, log_odds=w * math.log(r.likelihood_ratio),
            note=(r.note + "; " if r.note else "") + (
                f"correlation discount ×{fusion.second_marrow_feature_weight:g}: second "
                "marrow-fat-related MR feature (SIR and ADC both reflect fat replacement)"),
        )
    log_odds = logit(fusion.prior_probability_malignant) + sum(r.log_odds for r in reasons)
    p = sigmoid(log_odds)
    decision: list[str] = [f"prior probability {fusion.prior_probability_malignant:g}; "
                           f"posterior {p:.3f} (log-odds {log_odds:+.3f})"]
    counted = [r for r in reasons if r.counted]
    near = [r for r in reasons if r.status is FeatureStatus.NEAR_THRESHOLD]
    # a feature down-weighted as unreliable still counts, but cannot by itself make a conflict
    sides = {r.favours for r in counted if not r.unreliable}
    outvoted = [r for r in counted if r.unreliable and r.favours not in sides and sides]
    for r in outvoted:
        decision.append(
            f"{r.feature} favours {r.favours.value if r.favours else '?'} but is down-weighted "
            "as unreliable: not treated as conflicting evidence")
    ct_mean = next((r for r in reasons if r.feature == "ct_attenuation_mean_hu"), None)
    ct_max = next((r for r in reasons if r.feature == "ct_attenuation_max_hu"), None)
    max_conflict = (
        config.ct.max_conflict_is_indeterminate and ct_mean is not None and ct_max is not None
        and ct_mean.status is FeatureStatus.APPLIED and ct_max.status is FeatureStatus.SECONDARY
        and ct_mean.favours is not None and ct_max.favours is not None
        and ct_mean.favours != ct_max.favours
    )
    label: Label
    if near:
        label = Label.INDETERMINATE
        decision.append("indeterminate: near threshold: " + ", ".join(r.feature for r in near))
    elif not counted:
        label = Label.INDETERMINATE
        decision.append("indeterminate: no applicable evidence (every feature missing, disabled "
                        "or out of scope)")
    elif fusion.conflict_is_indeterminate and len(sides) > 1:
        label = Label.INDETERMINATE
        decision.append("indeterminate: conflicting evidence: " + "; ".join(
            f"{r.feature} favours {r.favours.value if r.favours else '?'}" for r in counted))
    elif max_conflict:
        label = Label.INDETERMINATE
        decision.append("indeterminate: conflicting evidence: CT mean and CT max fall on "
                        "opposite sides of their thresholds")
    else:
        label, why = label_from_posterior(
            p, malignant_min_probability=fusion.malignant_min_probability,
            benign_max_probability=fusion.benign_max_probability)
        decision.append(why)
    sins, escc, problems = _spine(m, config)
    return LesionCall(
        study_instance_uid=m.study_instance_uid, lesion_id=m.lesion_id, label=label,
        probability_malignant=p, method="rules", reasons=tuple(reasons),
        decision=tuple(decision), sins=sins, escc=escc, spine_problems=problems,
    )


def classify_lesions(
    measurements: Sequence[LesionMeasurements], *, config: ClassifierConfig | None = None
) -> list[LesionCall]:
    """`classify_lesion` over a sequence, in order."""
    return [classify_lesion(m, config=config) for m in measurements]
