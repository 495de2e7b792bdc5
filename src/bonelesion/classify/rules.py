"""Literature rules and graded likelihood-ratio fusion: a pure function of measurements and config.

Each feature that is measured, reliable and in the population its rule was validated in
contributes ``weight × ln(LR)`` to the log-odds of malignancy, seeded by the prior. The LR is
value-specific: the ratio of the published group distributions (Gaussian densities of the
malignant and benign groups) at the measured value, clamped to the LRs of the published
cutoff, so a value near the cutoff carries an LR near 1 instead of the tail LR of a
dichotomised rule. A definitive label needs the posterior beyond an asymmetric decision bound
(a false "benign" costs more than a false "malignant") *and* enough independent, reliable
evidence: one validated feature strong enough on its own (CT HU of an untreated focal
sclerotic lesion, macroscopic fat), or several reliable features agreeing. Everything else is
``indeterminate`` with reasons; nothing raises for data.

Notes
-----
logit(p) = logit(prior) + Σ_k w_k · ln LR_k(x_k), with
LR_k(x) = clamp(f_malignant(x) / f_benign(x), LR−, LR+), f = normal density of the group,
LR± = the published sensitivity/specificity at the cutoff, and x clipped at the turning point
of ln LR (so LR is monotone in x). Scope gates, reliability checks and every feature set
aside are listed in the call's reasons.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bonelesion.classify.call import (
    FeatureReason,
    FeatureStatus,
    Label,
    LesionCall,
    label_from_posterior,
)
from bonelesion.classify.call import _clean as _finite
from bonelesion.classify.config import (
    AdcProtocol,
    ClassifierConfig,
    MaxStatistic,
    likelihood_ratios,
)
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
           "logit", "sigmoid", "gaussian_likelihood_ratio", "treatment_status",
           "TREATED", "UNTREATED", "UNKNOWN"]

UNIT_HU = "[hnsf'U]"
UNIT_RATIO = "1"
UNIT_ADC = "mm2/s"

_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}

#: Treatment status values (tri-state).
TREATED, UNTREATED, UNKNOWN = "treated", "untreated", "unknown"

_MONTOYA = ("blastic metastases and bone islands are both hypointense on T1, T2/STIR and in- "
            "and opposed-phase images (Montoya-Bordón et al. 2023, table 2; 'T2 black-out', "
            "CLINICAL_REFERENCE §C2)")


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


def treatment_status(m: LesionMeasurements, config: ClassifierConfig) -> tuple[str, str]:
    """Return the lesion's treatment status (treated / untreated / unknown) and a sentence.

    ``unknown`` becomes ``untreated`` only with ``treatment.assume_untreated``, and the
    sentence says so.
    """
    flag = annotation_flag(m.annotations, "treated")
    if flag is True:
        return TREATED, "treated (annotated)"
    if flag is False:
        return UNTREATED, "untreated (annotated)"
    if config.treatment.assume_untreated:
        return UNTREATED, ("treatment status not given: ASSUMED untreated (configuration "
                           "treatment.assume_untreated = true)")
    return UNKNOWN, "treatment status not given (annotate treated = true/false)"


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


def gaussian_likelihood_ratio(
    x: float,
    *,
    malignant_mean: float,
    malignant_sd: float,
    benign_mean: float,
    benign_sd: float,
    extra_sd: float = 0.0,
) -> float:
    """Ratio of the malignant to the benign group's normal density at ``x`` (monotone in x).

    Parameters
    ----------
    x : float
        The measured value.
    malignant_mean, malignant_sd, benign_mean, benign_sd : float
        Published group means and SDs (e.g. Ulano 2016: 654 ± 176 vs 1190 ± 239 HU).
    extra_sd : float
        Measurement uncertainty added in quadrature to both SDs (e.g. scanner calibration).

    Returns
    -------
    float
        f_malignant(x) / f_benign(x).

    Notes
    -----
    With unequal SDs ln LR is a parabola; beyond its turning point (outside the two means)
    the ratio of two Gaussian tails would turn back, which no clinical feature does. ``x`` is
    clipped at that turning point, so the LR is monotone in ``x``.

    Examples
    --------
    >>> round(gaussian_likelihood_ratio(946.0, malignant_mean=654.0, malignant_sd=176.0,
    ...                                 benign_mean=1190.0, benign_sd=239.0), 2)
    0.58
    """
    sm = math.hypot(malignant_sd, extra_sd)
    sb = math.hypot(benign_sd, extra_sd)
    a = 1.0 / sb**2 - 1.0 / sm**2  # ln LR = ½ a x² + … ; turning point where derivative is 0
    if a != 0.0:
        turn = (benign_mean / sb**2 - malignant_mean / sm**2) / a
        low, high = sorted((malignant_mean, benign_mean))
        if turn < low:
            x = max(x, turn)
        elif turn > high:
            x = min(x, turn)
    log_lr = (math.log(sb / sm) - 0.5 * ((x - malignant_mean) / sm) ** 2
              + 0.5 * ((x - benign_mean) / sb) ** 2)
    return math.exp(log_lr)


# ----------------------------------------------------------------------------- reasons
def _not_used(feature: str, status: FeatureStatus, note: str, *, value: float | None = None,
              unit: str = "", threshold: float | None = None, direction: str = "",
              citation: str = "", unreliable: bool = False) -> FeatureReason:
    return FeatureReason(feature=feature, status=status, value=value, unit=unit,
                         threshold=threshold, direction=direction, citation=citation, note=note,
                         unreliable=unreliable)


def _graded(
    feature: str,
    *,
    value: float,
    unit: str,
    threshold: float,
    direction: str,
    raw_lr: float,
    model: str,
    sensitivity: float,
    specificity: float,
    weight: float,
    citation: str,
    note: str,
    near_lr: float,
    status: FeatureStatus = FeatureStatus.APPLIED,
) -> FeatureReason:
    """Build a counted feature with its value-specific LR (clamped to the cutoff's LR±)."""
    lr_pos, lr_neg = likelihood_ratios(sensitivity, specificity)
    lr = min(max(raw_lr, lr_neg), lr_pos)
    clamp = ""
    if lr != raw_lr:
        sign = "+" if lr > 1 else "−"
        clamp = f" (density ratio {raw_lr:.3g} clamped to the cutoff's LR{sign} {lr:.3g})"
    if status is FeatureStatus.APPLIED and 1.0 / near_lr < lr < near_lr:
        status = FeatureStatus.NEAR_THRESHOLD
    favours = Label.MALIGNANT if lr > 1.0 else Label.BENIGN if lr < 1.0 else None
    text = f"value-specific LR {lr:.3g}{clamp} from {model}"
    if status is FeatureStatus.NEAR_THRESHOLD:
        text += f": near 1 (within 1/{near_lr:g}–{near_lr:g}), weak evidence"
    return FeatureReason(
        feature=feature, status=status, value=value, unit=unit, threshold=threshold,
        direction=direction, favours=favours, weight=weight, likelihood_ratio=lr,
        log_odds=weight * math.log(lr), citation=citation,
        note=f"{text}; {note}" if note else text,
    )


@dataclass(frozen=True)
class _Signal:
    """How bright the lesion is on the MR images, judged against reference marrow."""

    void: bool
    dixon_dark: bool | None
    dixon_water_dark: bool | None
    dwi_dark: bool | None
    ip_snr_low: bool
    low_b_snr_low: bool
    described: str


def _mr_signal(m: LesionMeasurements, config: ClassifierConfig) -> _Signal:
    cfg = config.mr_signal
    cs, adc = m.chemical_shift, m.adc
    parts: list[str] = []
    dixon_dark = dixon_water_dark = dwi_dark = None
    ip_snr_low = low_b_snr_low = False
    if cs is not None:
        ip_rel = _finite(cs.in_phase_relative_to_reference)
        snr = _finite(cs.snr_in_phase)
        ip_snr_low = snr is not None and snr < cfg.min_snr
        if ip_rel is not None:
            dixon_dark = ip_rel <= cfg.void_in_phase_max_relative
            parts.append(f"in-phase {ip_rel:.2f} × reference marrow")
        elif snr is not None:
            dixon_dark = ip_snr_low
            parts.append(f"in-phase SNR {snr:.1f}")
        w_rel = _finite(cs.water_relative_to_reference)
        if w_rel is not None:
            dixon_water_dark = w_rel <= cfg.dark_water_max_relative
            parts.append(f"water {w_rel:.2f} × marrow")
    if adc is not None:
        low_rel = _finite(adc.low_b_relative_to_reference)
        snr = _finite(adc.snr_low_b)
        low_b_snr_low = snr is not None and snr < cfg.min_snr
        b = _finite(adc.low_b_value_s_per_mm2)
        at = f"b = {b:g}" if b is not None else "lowest b"
        if low_rel is not None:
            dwi_dark = low_rel <= cfg.dark_water_max_relative
            parts.append(f"DWI {at} {low_rel:.2f} × marrow")
        elif snr is not None:
            dwi_dark = low_b_snr_low
            parts.append(f"DWI {at} SNR {snr:.1f}")
    states = [s for s in (dixon_dark, dixon_water_dark, dwi_dark) if s is not None]
    void = bool(states) and all(states)
    if annotation_flag(m.annotations, "signal_void") is True:
        void = True
        parts.append("annotated signal_void")
    return _Signal(void=void, dixon_dark=dixon_dark, dixon_water_dark=dixon_water_dark,
                   dwi_dark=dwi_dark, ip_snr_low=ip_snr_low, low_b_snr_low=low_b_snr_low,
                   described=", ".join(parts))


def _void_note(sig: _Signal, config: ClassifierConfig) -> str:
    return (f"MR not evaluable: signal void (dark on every MR image: {sig.described}; dark = "
            f"in-phase ≤ {config.mr_signal.void_in_phase_max_relative:g} × marrow, water / "
            f"low-b ≤ {config.mr_signal.dark_water_max_relative:g} × marrow); {_MONTOYA}: the "
            "ratios are ratios of noise (CLINICAL_REFERENCE Defaults 15)")


@dataclass(frozen=True)
class _Fat:
    present: bool
    sources: tuple[str, ...]
    value: float | None
    unit: str
    measured: bool
    not_fat: str = ""  # what was found instead (gas), said when fat is absent


def _fat_evidence(m: LesionMeasurements, config: ClassifierConfig, sig: _Signal) -> _Fat:
    cs, ct = m.chemical_shift, m.ct
    sources: list[str] = []
    value: float | None = None
    unit = ""
    not_fat = ""
    measured = False
    # a lesion dark on every MR image holds no fat signal: its Dixon fat fraction is that of
    # partial-volume marrow or noise, not of the lesion
    ff = _finite(cs.fat_fraction) if cs is not None and not sig.void else None
    if ff is not None:
        measured = True
        if ff > config.chemical_shift.fat_dominant_fraction:
            sources.append(f"Dixon fat fraction {ff:.3f} > "
                           f"{config.chemical_shift.fat_dominant_fraction:g} (fat dominant)")
            value, unit = ff, UNIT_RATIO
    elif cs is not None and not sig.void:
        ip_rel = _finite(cs.in_phase_relative_to_reference)
        sir = _finite(cs.chemical_shift_ratio)
        if ip_rel is not None:
            measured = True
            if ip_rel >= config.chemical_shift.t1_bright_min_relative:
                est = f"; two-point FF ≈ (1 + SIR)/2 = {(1 + sir) / 2:.2f}" if sir is not None \
                    else ""
                sources.append(
                    f"in-phase signal {ip_rel:.2f} × reference marrow ≥ "
                    f"{config.chemical_shift.t1_bright_min_relative:g}: brighter than marrow on "
                    f"the T1-weighted in-phase image, fat dominant (Defaults 8: T1-bright){est}")
                value, unit = ip_rel, UNIT_RATIO
    for key in ("fat_dominant", "t1_bright"):
        if annotation_flag(m.annotations, key) is True:
            sources.append(f"annotated {key}")
            measured = True
    if ct is not None:
        p05 = _finite(ct.attenuation_p05_hu)
        if p05 is not None:
            measured = True
            low, high = config.fat.ct_fat_p05_min_hu, config.fat.ct_fat_p05_max_hu
            if low <= p05 <= high:
                sources.append(f"CT: ≥ 5 % of the core voxels at fat attenuation (p05 {p05:.0f} "
                               f"in [{low:g}, {high:g}] {UNIT_HU})")
                if value is None:
                    value, unit = p05, UNIT_HU
            elif p05 < low:
                not_fat = (f"CT p05 {p05:.0f} {UNIT_HU} is below fat attenuation ({low:g} "
                           f"{UNIT_HU}): gas or air in the ROI, not fat (is the ROI on the bone?)")
    return _Fat(present=bool(sources), sources=tuple(sources), value=value, unit=unit,
                measured=measured, not_fat=not_fat)


def _fat_reason(config: ClassifierConfig, fat: _Fat, treatment: str) -> FeatureReason:
    cfg = config.fat
    name = "macroscopic_fat"
    direction = "macroscopic fat in the lesion favours benign (haemangioma, focal fat)"
    if not cfg.enabled:
        return _not_used(name, FeatureStatus.DISABLED, "fat.enabled = false", citation=cfg.citation)
    if not fat.measured:
        return _not_used(name, FeatureStatus.MISSING,
                         "no Dixon fat fraction, in-phase/marrow ratio or CT percentile",
                         direction=direction, citation=cfg.citation)
    if not fat.present:
        return _not_used(name, FeatureStatus.ABSENT,
                         "looked for, not found (absence of fat is not counted either way)"
                         + (f"; {fat.not_fat}" if fat.not_fat else ""),
                         direction=direction, citation=cfg.citation)
    found = "; ".join(fat.sources)
    if treatment == TREATED:
        return _not_used(name, FeatureStatus.OUT_OF_SCOPE,
                         f"treated lesion: fatty marrow conversion is a response to treatment, "
                         f"not benign evidence ({found})", value=fat.value, unit=fat.unit,
                         direction=direction, citation=cfg.citation)
    note = found
    if treatment == UNKNOWN:
        note += ("; treatment status not given: fatty conversion after radiotherapy looks the "
                 "same (annotate treated = true for a treated lesion)")
    lr = cfg.likelihood_ratio
    return FeatureReason(feature=name, status=FeatureStatus.APPLIED, value=fat.value,
                         unit=fat.unit, direction=direction, favours=Label.BENIGN, weight=1.0,
                         likelihood_ratio=lr, log_odds=math.log(lr), citation=cfg.citation,
                         note=f"LR {lr:g}: {note}")


def _ct_reasons(m: LesionMeasurements, config: ClassifierConfig, treatment: tuple[str, str],
                fat: _Fat) -> list[FeatureReason]:
    cfg = config.ct
    near = config.fusion.near_threshold_likelihood_ratio
    mean_dir = (f"mean < {cfg.mean_threshold_hu:g} {UNIT_HU} favours malignant (untreated "
                "osteoblastic metastasis over enostosis)")
    max_dir = f"ROI maximum < {cfg.max_threshold_hu:g} {UNIT_HU} favours malignant"
    names = ("ct_attenuation_mean_hu", "ct_attenuation_max_hu")
    if not cfg.enabled:
        return [_not_used(n, FeatureStatus.DISABLED, "ct.enabled = false", citation=cfg.citation)
                for n in names]
    ct = m.ct
    if ct is None:
        why = missing_reason(m, MISSING_CT,
                             default="no CT attenuation measurement for this lesion")
        return [_not_used(n, FeatureStatus.MISSING, why, citation=cfg.citation) for n in names]
    mean = _finite(ct.attenuation_mean_hu)
    if mean is None:
        return [_not_used(n, FeatureStatus.MISSING, "CT attenuation is not a finite number",
                          citation=cfg.citation) for n in names]
    # ---- which statistic stands for Ulano's ROI maximum
    central = _finite(ct.attenuation_central_slice_max_hu)
    p95 = _finite(ct.attenuation_p95_hu)
    stat: float | None
    if cfg.max_statistic is MaxStatistic.CENTRAL_SLICE_MAX and central is not None:
        stat, stat_name = central, "maximum of the central-slice ROI (largest cross-section)"
    elif p95 is not None:
        stat = p95
        stat_name = "95th percentile of the core ROI" + (
            " (central-slice maximum not measured)"
            if cfg.max_statistic is MaxStatistic.CENTRAL_SLICE_MAX else "")
    else:
        stat, stat_name = None, ""
    # ---- scope gates (Azar 2021; Defaults 3)
    status, said = treatment
    sclerotic = annotation_flag(m.annotations, "sclerotic")
    volume_ml = _finite(ct.lesion_volume_ml)
    diameter = (6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0) if volume_ml else None
    sd = _finite(ct.attenuation_sd_hu)
    gate: str | None = None
    if status == TREATED:
        gate = ("treated lesion: the HU rule does not separate treated metastases from benign "
                "lesions (Azar 2021 AJR); Ulano's rule is for untreated lesions")
    elif status == UNKNOWN:
        gate = ("treatment status not given: Ulano's rule was validated on untreated lesions "
                "only (Azar 2021: it fails for treated metastases). Potential fix: annotate "
                "treated = false, or set treatment.assume_untreated = true")
    elif sclerotic is False:
        gate = "annotated as not sclerotic: the HU rule applies to sclerotic lesions only"
    elif sclerotic is None and mean < cfg.sclerotic_floor_hu:
        gate = (f"mean {mean:.1f} {UNIT_HU} is below the sclerotic floor "
                f"{cfg.sclerotic_floor_hu:g} {UNIT_HU}: not a sclerotic lesion, the enostosis "
                "rule is out of scope")
    elif annotation_flag(m.annotations, "medullary") is False:
        gate = "annotated as not medullary: Ulano's rule is for medullary sclerotic foci"
    elif annotation_flag(m.annotations, "endplate_adjacent") is True:
        gate = ("annotated as next to an endplate: endplate sclerosis (degenerative / Modic, "
                "Schmorl node, fracture) is not in Ulano's enostosis-vs-metastasis population")
    elif fat.present:
        gate = ("the lesion contains macroscopic fat (" + "; ".join(fat.sources) + "): not a "
                "homogeneous sclerotic focus")
    elif diameter is not None and diameter > cfg.max_diameter_mm:
        gate = (f"equivalent diameter {diameter:.0f} mm > {cfg.max_diameter_mm:g} mm: not a "
                "focal lesion of Ulano's population (enostoses are 1 mm – 2 cm)")
    elif sd is not None and sd > cfg.max_sd_hu:
        gate = (f"SD {sd:.0f} {UNIT_HU} > {cfg.max_sd_hu:g} {UNIT_HU}: heterogeneous (mixed) "
                "lesion; Ulano's rule is for homogeneous sclerotic foci (Defaults 3)")
    if gate is not None:
        return [
            _not_used(names[0], FeatureStatus.OUT_OF_SCOPE, gate, value=mean, unit=UNIT_HU,
                      threshold=cfg.mean_threshold_hu, direction=mean_dir, citation=cfg.citation),
            _not_used(names[1], FeatureStatus.OUT_OF_SCOPE, gate, value=stat, unit=UNIT_HU,
                      threshold=cfg.max_threshold_hu, direction=max_dir, citation=cfg.citation),
        ]
    scope = [said, "sclerotic by annotation" if sclerotic else
             f"sclerotic (mean ≥ {cfg.sclerotic_floor_hu:g} {UNIT_HU})"]
    if diameter is not None:
        scope.append(f"diameter {diameter:.0f} mm ≤ {cfg.max_diameter_mm:g} mm")
    if sd is not None:
        scope.append(f"SD {sd:.0f} ≤ {cfg.max_sd_hu:g} {UNIT_HU}")
    scope.append("no fat-attenuation voxels")
    if annotation_flag(m.annotations, "endplate_adjacent") is None:
        scope.append("endplate adjacency not annotated (not checked)")
    scope_note = "in scope: " + ", ".join(scope)
    mean_lr = gaussian_likelihood_ratio(
        mean, malignant_mean=cfg.metastasis_mean_hu, malignant_sd=cfg.metastasis_mean_sd_hu,
        benign_mean=cfg.enostosis_mean_hu, benign_sd=cfg.enostosis_mean_sd_hu,
        extra_sd=cfg.calibration_sd_hu)
    model_mean = (f"Ulano 2016 group means (metastases {cfg.metastasis_mean_hu:g} ± "
                  f"{cfg.metastasis_mean_sd_hu:g}, enostoses {cfg.enostosis_mean_hu:g} ± "
                  f"{cfg.enostosis_mean_sd_hu:g} {UNIT_HU})")
    # ---- reliability: partial volume
    core = ct.core_voxel_count
    partial = ct.erosion_fell_back or (core is not None and core < cfg.min_core_voxels)
    if core is None:
        scope_note += "; core voxel count unknown (partial volume not checked)"
    out: list[FeatureReason] = []
    if partial:
        why = ("erosion left no core, the whole mask (edge voxels) was measured"
               if ct.erosion_fell_back else
               f"{core} core voxels < {cfg.min_core_voxels}")
        out.append(_not_used(
            names[0], FeatureStatus.UNRELIABLE,
            f"partial volume: {why}; the mean of a lesion this small is pulled towards the "
            f"surrounding marrow, so it understates a dense lesion and says nothing about a "
            f"low one ({scope_note})", value=mean, unit=UNIT_HU,
            threshold=cfg.mean_threshold_hu, direction=mean_dir, citation=cfg.citation,
            unreliable=True))
    else:
        out.append(_graded(
            names[0], value=mean, unit=UNIT_HU, threshold=cfg.mean_threshold_hu,
            direction=mean_dir, raw_lr=mean_lr, model=model_mean, sensitivity=cfg.sensitivity,
            specificity=cfg.specificity, weight=1.0, citation=cfg.citation, note=scope_note,
            near_lr=near))
    if stat is None:
        out.append(_not_used(
            names[1], FeatureStatus.MISSING,
            "neither the central-slice ROI maximum nor the 95th percentile is available; the "
            "3-D maximum grows with lesion size and is not comparable with Ulano's ROI maximum",
            citation=cfg.citation))
        return out
    max_lr = gaussian_likelihood_ratio(
        stat, malignant_mean=cfg.metastasis_max_hu, malignant_sd=cfg.metastasis_max_sd_hu,
        benign_mean=cfg.enostosis_max_hu, benign_sd=cfg.enostosis_max_sd_hu,
        extra_sd=cfg.calibration_sd_hu)
    model_max = (f"Ulano 2016 maximum attenuation (metastases {cfg.metastasis_max_hu:g} ± "
                 f"{cfg.metastasis_max_sd_hu:g}, enostoses {cfg.enostosis_max_hu:g} ± "
                 f"{cfg.enostosis_max_sd_hu:g} {UNIT_HU})")
    if partial:
        if max_lr < 1.0:
            out.append(_graded(
                names[1], value=stat, unit=UNIT_HU, threshold=cfg.max_threshold_hu,
                direction=max_dir, raw_lr=max_lr, model=model_max, sensitivity=cfg.sensitivity,
                specificity=cfg.specificity, weight=1.0, citation=cfg.citation, near_lr=near,
                note=(f"statistic: {stat_name}; partial volume can only lower it, so as a lower "
                      f"bound of the lesion's attenuation it leads the CT evidence ({scope_note})"),
            ))
        else:
            out.append(_not_used(
                names[1], FeatureStatus.UNRELIABLE,
                f"statistic: {stat_name}; partial volume: a value in the metastasis range may "
                "be diluted by the surrounding marrow and is not evidence", value=stat,
                unit=UNIT_HU, threshold=cfg.max_threshold_hu, direction=max_dir,
                citation=cfg.citation, unreliable=True))
        return out
    reason = _graded(
        names[1], value=stat, unit=UNIT_HU, threshold=cfg.max_threshold_hu, direction=max_dir,
        raw_lr=max_lr, model=model_max, sensitivity=cfg.sensitivity, specificity=cfg.specificity,
        weight=cfg.max_rule_weight, citation=cfg.citation, near_lr=near,
        status=FeatureStatus.SECONDARY,
        note=(f"statistic: {stat_name}; secondary (weight {cfg.max_rule_weight:g}): the mean "
              "and the maximum measure the same lesion, so the maximum is checked for "
              "agreement, not added (Defaults 2: the mean leads)"))
    out.append(reason)
    return out


def _dense_proxy(m: LesionMeasurements, config: ClassifierConfig) -> float | None:
    """CT mean when it shows dense sclerosis (≥ the configured floor), else None."""
    mean = _finite(m.ct.attenuation_mean_hu) if m.ct is not None else None
    if mean is not None and mean >= config.adc.dense_sclerosis_floor_hu:
        return mean
    return None


def _csi_reason(m: LesionMeasurements, config: ClassifierConfig, sig: _Signal, fat: _Fat
                ) -> FeatureReason:
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
    kw: dict[str, Any] = dict(value=sir, unit=UNIT_RATIO, threshold=cfg.sir_threshold_ratio,
                              direction=direction, citation=cfg.citation)
    min_voxels = config.mr_signal.min_voxels
    if sig.void:
        return _not_used(name, FeatureStatus.UNRELIABLE, _void_note(sig, config),
                         unreliable=True, **kw)
    if sig.ip_snr_low:
        return _not_used(name, FeatureStatus.UNRELIABLE,
                         f"in-phase SNR {cs.snr_in_phase:.1f} < {config.mr_signal.min_snr:g}: "
                         "the SIR is a ratio of noise", unreliable=True, **kw)
    if cs.voxel_count is not None and cs.voxel_count < min_voxels:
        return _not_used(name, FeatureStatus.UNRELIABLE,
                         f"{cs.voxel_count} voxels < {min_voxels}", unreliable=True, **kw)
    if fat.present:
        return _not_used(name, FeatureStatus.OUT_OF_SCOPE,
                         "fat dominant (" + "; ".join(fat.sources) + "): the two-point SIR folds "
                         "back (SIR = 2·FF − 1), so fatty tissue mimics a fat-free lesion "
                         "(Defaults 8); the fat itself is counted as macroscopic_fat", **kw)
    ff = _finite(cs.fat_fraction)
    ip_rel = _finite(cs.in_phase_relative_to_reference)
    if ff is not None:
        excluded = f"fat dominance excluded by the Dixon fat fraction {ff:.3f}"
    elif annotation_flag(m.annotations, "t1_bright") is False:
        excluded = "fat dominance excluded by annotation (t1_bright = false)"
    elif ip_rel is not None and ip_rel <= cfg.fat_excluded_max_relative:
        excluded = (f"fat dominance excluded: in-phase signal {ip_rel:.2f} × reference marrow "
                    f"≤ {cfg.fat_excluded_max_relative:g} (darker than marrow on the "
                    "T1-weighted in-phase image; fat-dominant tissue is not)")
    else:
        why = (f"in-phase signal {ip_rel:.2f} × reference marrow is not below "
               f"{cfg.fat_excluded_max_relative:g}" if ip_rel is not None
               else "no reference marrow to judge the in-phase signal against")
        ff_why = missing_reason(m, MISSING_FAT_FRACTION, default="not measured")
        return _not_used(
            name, FeatureStatus.OUT_OF_SCOPE,
            f"fat dominance not excluded: fat fraction unknown: {ff_why}; and {why}; a "
            "fat-dominant "
            "lesion's SIR folds (SIR = 2·FF − 1) and mimics marrow replacement (Defaults 8). "
            "Potential fix: acquire Dixon water/fat images", **kw)
    weight = 1.0
    notes = [excluded + "; CSI separates marrow replacement from non-neoplastic marrow, not "
             "benign from malignant tumour (van Vucht 2021)"]
    dense = _dense_proxy(m, config)
    if sig.dixon_dark is None and dense is not None:
        weight *= config.adc.dense_sclerosis_weight
        notes.append(
            f"down-weighted ×{config.adc.dense_sclerosis_weight:g}: densely sclerotic on CT "
            f"(mean {dense:.0f} {UNIT_HU}) and no reference marrow / SNR to show the MR signal "
            "is preserved (Defaults 15)")
    lr = gaussian_likelihood_ratio(sir, malignant_mean=cfg.malignant_mean_ratio,
                                   malignant_sd=cfg.malignant_sd_ratio,
                                   benign_mean=cfg.benign_mean_ratio,
                                   benign_sd=cfg.benign_sd_ratio)
    model = (f"AJNR 2017 group SIRs (malignant {cfg.malignant_mean_ratio:g} ± "
             f"{cfg.malignant_sd_ratio:g}, benign {cfg.benign_mean_ratio:g} ± "
             f"{cfg.benign_sd_ratio:g})")
    reason = _graded(name, raw_lr=lr, model=model, sensitivity=cfg.sensitivity,
                     specificity=cfg.specificity, weight=weight, note="; ".join(notes),
                     near_lr=config.fusion.near_threshold_likelihood_ratio, **kw)
    return dataclasses.replace(reason, unreliable=weight < 1.0)


def _adc_reason(m: LesionMeasurements, config: ClassifierConfig, sig: _Signal
                ) -> tuple[FeatureReason, str]:
    """Return the ADC reason and a statement: the protocol range, or the red-marrow differential."""
    cfg = config.adc
    name = "adc_mean_mm2_per_s"
    if not cfg.enabled:
        return _not_used(name, FeatureStatus.DISABLED, "adc.enabled = false",
                         citation=cfg.citation), ""
    if m.adc is None:
        why = missing_reason(m, MISSING_ADC, default="no ADC measurement for this lesion")
        return _not_used(name, FeatureStatus.MISSING, why, citation=cfg.citation), ""
    a = m.adc
    adc = _finite(a.adc_mean_mm2_per_s)
    if adc is None:
        return _not_used(name, FeatureStatus.MISSING, "ADC is not a finite number",
                         citation=cfg.citation), ""
    protocol: AdcProtocol | None = cfg.protocol_for(tuple(a.b_values_s_per_mm2))
    bvals = ", ".join(f"{b:g}" for b in a.b_values_s_per_mm2) or "unknown"
    direction = (f"ADC ≤ {protocol.cutoff_mm2_per_s:.4g} {UNIT_ADC} favours malignant "
                 f"(protocol {protocol.name}: b {bvals} s/mm²)" if protocol is not None else
                 f"low ADC favours malignant (cutoff depends on the protocol; b {bvals} s/mm²)")
    kw: dict[str, Any] = dict(value=adc, unit=UNIT_ADC, direction=direction,
                              threshold=protocol.cutoff_mm2_per_s if protocol else None,
                              citation=protocol.citation if protocol else cfg.citation)
    source = f"ADC source: {a.adc_source}, {a.voxel_count} voxels, b-values {bvals} s/mm²"
    if a.map_degenerate:
        return _not_used(name, FeatureStatus.UNRELIABLE,
                         f"the ADC map is ~0 everywhere or was fitted from identical source "
                         f"volumes: not a measurement ({source})", unreliable=True, **kw), ""
    if sig.void:
        return _not_used(name, FeatureStatus.UNRELIABLE, _void_note(sig, config),
                         unreliable=True, **kw), ""
    if sig.dwi_dark and _finite(a.low_b_relative_to_reference) is not None:
        return _not_used(
            name, FeatureStatus.UNRELIABLE,
            f"T2 black-out: the lesion is no brighter than fat-suppressed marrow at low b "
            f"({sig.described}; dark ≤ {config.mr_signal.dark_water_max_relative:g} × marrow): "
            "too little water signal for a reliable ADC (Defaults 15)", unreliable=True,
            **kw), ""
    if sig.low_b_snr_low or sig.dwi_dark:
        return _not_used(name, FeatureStatus.UNRELIABLE,
                         f"low-b SNR {a.snr_low_b:.1f} < {config.mr_signal.min_snr:g}: the ADC "
                         "is fitted to noise (Defaults 15)", unreliable=True, **kw), ""
    if a.voxel_count is not None and a.voxel_count < config.mr_signal.min_voxels:
        return _not_used(name, FeatureStatus.UNRELIABLE,
                         f"{a.voxel_count} voxels < {config.mr_signal.min_voxels}",
                         unreliable=True, **kw), ""
    if protocol is None:
        ranges = "; ".join(f"{p.name}: highest b {p.max_b_from_s_per_mm2:g}–"
                           f"{p.max_b_to_s_per_mm2:g}" for p in cfg.protocols)
        return _not_used(
            name, FeatureStatus.OUT_OF_SCOPE,
            f"no validated ADC cutoff for this protocol (b-values {bvals} s/mm²; validated: "
            f"{ranges}); ADC cutoffs range 0.7–1.7e-3 with b-values and sequence "
            "(CLINICAL_REFERENCE §C3). Potential fix: set adc.assume_protocol if the b-values "
            "are known to the site", **kw), ""
    red = protocol.red_marrow_max_mm2_per_s
    if red is not None and adc <= red:
        statement = (f"very low ADC ({adc:.3g} ≤ {red:.3g} {UNIT_ADC}): the differential "
                     "includes red (haematopoietic) marrow, e.g. a red-marrow island (benign)")
        return _not_used(
            name, FeatureStatus.OUT_OF_SCOPE,
            f"{statement}; red marrow has a lower ADC than metastases (Park: red marrow vs "
            f"malignant cutoff {red:.3g}), normal marrow 0.42 ± 0.07e-3 (Colombo 2021), and "
            "fat lowers the ADC (Dieckmeyer 2017): a low ADC here is not evidence of "
            "malignancy", **kw), statement
    weight = 1.0
    notes = [source, f"protocol {protocol.name} (highest b "
             f"{max(a.b_values_s_per_mm2) if a.b_values_s_per_mm2 else 'assumed'})"]
    dense = _dense_proxy(m, config)
    if sig.dwi_dark is None and dense is not None:
        weight *= cfg.dense_sclerosis_weight
        notes.append(
            f"down-weighted ×{cfg.dense_sclerosis_weight:g}: densely sclerotic on CT (mean "
            f"{dense:.0f} {UNIT_HU}) and no low-b signal measure to exclude T2 black-out "
            "(Defaults 15; Eur J Radiol 2009; Kim 2023)")
    lr = gaussian_likelihood_ratio(
        adc, malignant_mean=protocol.malignant_mean_mm2_per_s,
        malignant_sd=protocol.malignant_sd_mm2_per_s,
        benign_mean=protocol.benign_mean_mm2_per_s, benign_sd=protocol.benign_sd_mm2_per_s)
    model = (f"protocol {protocol.name} groups (malignant {protocol.malignant_mean_mm2_per_s:.3g}"
             f" ± {protocol.malignant_sd_mm2_per_s:.2g}, benign "
             f"{protocol.benign_mean_mm2_per_s:.3g} ± {protocol.benign_sd_mm2_per_s:.2g} "
             f"{UNIT_ADC}; clamp: pooled LR±, Suh 2018)")
    reason = _graded(name, raw_lr=lr, model=model, sensitivity=cfg.sensitivity,
                     specificity=cfg.specificity, weight=weight, note="; ".join(notes),
                     near_lr=config.fusion.near_threshold_likelihood_ratio, **kw)
    lr_used = reason.likelihood_ratio or 1.0
    side = ("malignant range" if lr_used > 1.0 else "benign range" if lr_used < 1.0
            else "neutral")
    statement = (f"ADC {adc:.3g} {UNIT_ADC}: {side} for protocol {protocol.name} (b {bvals} "
                 f"s/mm²; LR {lr_used:.2g}; published cutoff {protocol.cutoff_mm2_per_s:.3g})")
    return dataclasses.replace(reason, unreliable=weight < 1.0), statement


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


# ----------------------------------------------------------------------------- decision
def _as_response(r: FeatureReason) -> FeatureReason:
    """Turn a counted feature of a treated lesion into a response-only (uncounted) one."""
    if not r.counted and r.status is not FeatureStatus.SECONDARY:
        return r
    side = {Label.BENIGN: "would favour benign / response",
            Label.MALIGNANT: "would favour viable tumour"}.get(r.favours or Label.INDETERMINATE,
                                                               "neutral")
    return dataclasses.replace(
        r, status=FeatureStatus.OUT_OF_SCOPE, weight=0.0, log_odds=0.0, favours=None,
        note=(f"treated lesion: response assessment only, not counted ({side}, "
              f"LR {r.likelihood_ratio:.3g}); " if r.likelihood_ratio else
              "treated lesion: response assessment only, not counted; ") + r.note)


def _response_statement(reasons: Sequence[FeatureReason], fat: _Fat) -> str:
    good: list[str] = []
    bad: list[str] = []
    if fat.present:
        good.append("fatty marrow (" + fat.sources[0] + ")")
    for r in reasons:
        if r.feature not in ("chemical_shift_ratio", "adc_mean_mm2_per_s") or r.likelihood_ratio \
                is None or not r.note.startswith("treated lesion"):
            continue
        what = "ADC" if r.feature == "adc_mean_mm2_per_s" else "SIR"
        value = f"{what} {r.value:.3g}" if r.value is not None else what
        if r.likelihood_ratio < 1.0:
            good.append(f"{value} in the benign range")
        elif r.likelihood_ratio > 1.0:
            bad.append(f"{value} in the malignant range")
    head = ("treated lesion: response assessment, not a benign/malignant call (the CT and MR "
            "rules were validated on untreated lesions; Azar 2021)")
    if good and not bad:
        return f"{head}: " + ", ".join(good) + " — consistent with response to treatment; " \
            "compare with pre-treatment imaging"
    if bad and not good:
        return f"{head}: " + ", ".join(bad) + " — suggests viable tumour; compare with " \
            "pre-treatment imaging"
    if good and bad:
        return f"{head}: mixed (" + ", ".join(good + bad) + "); compare with pre-treatment " \
            "imaging"
    return f"{head}: no reliable MR feature; compare with pre-treatment imaging"


def classify_lesion(
    m: LesionMeasurements, *, config: ClassifierConfig | None = None
) -> LesionCall:
    """Classify one lesion with graded literature evidence and explain the call.

    Parameters
    ----------
    m : LesionMeasurements
        The lesion's measurements (with their reliability fields) and annotations
        (``treated`` true/false/unknown, ``sclerotic``, ``medullary``, ``endplate_adjacent``,
        ``fat_dominant``, ``t1_bright``, ``signal_void``, ``sins_*``, ``escc_grade``).
    config : ClassifierConfig, optional
        Distributions, gates, bounds and the prior; defaults to the cited defaults.

    Returns
    -------
    LesionCall
        Label (never None), probability of malignancy, per-feature reasons (every feature set
        aside with why), decision notes, a one-line statement, SINS and ESCC. Invalid spine
        annotations are recorded in ``spine_problems``.

    Examples
    --------
    >>> from bonelesion.model.results import CtAttenuationResult, LesionMeasurements
    >>> ct = CtAttenuationResult(lesion_id="1", series_instance_uid="1.2", lesion_voxel_count=9,
    ...     lesion_volume_ml=0.1, core_voxel_count=8, attenuation_mean_hu=650.0,
    ...     attenuation_median_hu=650.0, attenuation_max_hu=800.0, attenuation_min_hu=500.0,
    ...     attenuation_sd_hu=50.0, attenuation_p05_hu=560.0, attenuation_p95_hu=740.0,
    ...     erosion_margin_mm=1.0)
    >>> untreated = LesionMeasurements(study_instance_uid="1", lesion_id="1", ct=ct,
    ...                                annotations={"treated": False})
    >>> call = classify_lesion(untreated)
    >>> call.label.value, round(call.probability_malignant, 3)
    ('malignant', 0.946)
    >>> unknown = LesionMeasurements(study_instance_uid="1", lesion_id="1", ct=ct)
    >>> classify_lesion(unknown).label.value  # Ulano's rule is for untreated lesions
    'indeterminate'
    """
    config = config or ClassifierConfig()
    fusion = config.fusion
    treatment = treatment_status(m, config)
    sig = _mr_signal(m, config)
    fat = _fat_evidence(m, config, sig)
    adc_reason, adc_statement = _adc_reason(m, config, sig)
    reasons = [*_ct_reasons(m, config, treatment, fat), _fat_reason(config, fat, treatment[0]),
               _csi_reason(m, config, sig, fat), adc_reason]
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
                "marrow-fat-related MR feature (SIR and ADC both reflect fat replacement, "
                "Dieckmeyer 2017)"),
        )
    prior = fusion.prior_probability_malignant
    decision: list[str] = [f"treatment: {treatment[1]}"]
    statements: list[str] = []
    ct_counted = any(r.counted for r in reasons if r.feature.startswith("ct_"))
    if sig.void:
        if ct_counted:
            then = "MR set aside, called on CT attenuation"
        elif m.ct is None:
            then = ("recommend CT: a sclerotic focus dark on every MR image is a bone island or "
                    "a blastic metastasis, and CT attenuation decides between them")
        else:
            then = "CT attenuation not applicable here either (see the CT reasons)"
        statements.append(f"MR not evaluable: signal void; {then}")
    if adc_statement:
        statements.append(adc_statement)
    if treatment[0] == TREATED:
        reasons = [_as_response(r) for r in reasons]
        p = prior
        decision.append(f"prior probability {prior:g} ({fusion.prior_source}); nothing counted")
        decision.append("indeterminate: treated lesion — response assessment, never 'benign'")
        statements.insert(0, _response_statement(reasons, fat))
        label = Label.INDETERMINATE
    else:
        log_odds = logit(prior) + sum(r.log_odds for r in reasons)
        p = sigmoid(log_odds)
        decision.append(f"prior probability {prior:g} ({fusion.prior_source}); posterior "
                        f"{p:.3f} (log-odds {log_odds:+.3f})")
        label = _decide(reasons, p, config, decision)
    if treatment[0] != TREATED:
        summary = _summary(label, p, reasons, decision[-1])
        # a definitive call leads with its evidence; an indeterminate one with what to do
        statements = ([summary, *statements] if label is not Label.INDETERMINATE
                      else [*statements, summary])
    sins, escc, problems = _spine(m, config)
    return LesionCall(
        study_instance_uid=m.study_instance_uid, lesion_id=m.lesion_id, label=label,
        probability_malignant=p, method="rules", reasons=tuple(reasons),
        decision=tuple(decision), sins=sins, escc=escc, spine_problems=problems,
        statement="; ".join(statements), prior=prior, prior_source=fusion.prior_source,
    )


def _first_clause(text: str, limit: int = 160) -> str:
    cut = text.split(". ")[0].split("; ")[0]
    return cut if len(cut) <= limit else cut[: limit - 1] + "…"


def _summary(label: Label, p: float, reasons: Sequence[FeatureReason], why: str) -> str:
    """One-line reading of an untreated lesion's call: the evidence, or why there is none."""
    counted = [r for r in reasons if r.counted]
    lead = ", ".join(f"{r.feature} {r.value:.4g} (LR {math.exp(r.log_odds):.3g})"
                     for r in counted if r.value is not None)
    head = f"{label.value} (posterior {p:.2f})"
    if label is not Label.INDETERMINATE:
        return f"{head}: {lead}" if lead else head
    why = why.removeprefix("indeterminate: ")
    if counted:
        return f"{head}: {_first_clause(why)}; evidence: {lead}"
    aside = "; ".join(f"{r.feature}: {_first_clause(r.note)}" for r in reasons
                      if r.status in (FeatureStatus.OUT_OF_SCOPE, FeatureStatus.UNRELIABLE))
    return f"{head}: no applicable evidence" + (f" ({aside})" if aside else "")


def _decide(reasons: Sequence[FeatureReason], p: float, config: ClassifierConfig,
            decision: list[str]) -> Label:
    """Label of an untreated (or unknown-status) lesion; appends the why to ``decision``."""
    fusion = config.fusion
    counted = [r for r in reasons if r.counted]
    if not counted:
        decision.append("indeterminate: no applicable evidence (every feature missing, "
                        "disabled, unreliable or out of scope)")
        return Label.INDETERMINATE
    conflict_lr = math.log(fusion.conflict_min_likelihood_ratio)
    strong = [r for r in counted if not r.unreliable and abs(r.log_odds) >= conflict_lr]
    if fusion.conflict_is_indeterminate and len({r.favours for r in strong}) > 1:
        decision.append("indeterminate: conflicting evidence: " + "; ".join(
            f"{r.feature} favours {r.favours.value if r.favours else '?'} "
            f"(LR {math.exp(r.log_odds):.3g})" for r in strong))
        return Label.INDETERMINATE
    for r in counted:
        if r.unreliable and strong and r.favours not in {s.favours for s in strong}:
            decision.append(f"{r.feature} favours {r.favours.value if r.favours else '?'} but "
                            "is down-weighted as unreliable: not treated as conflicting")
    mean = next((r for r in reasons if r.feature == "ct_attenuation_mean_hu"), None)
    peak = next((r for r in reasons if r.feature == "ct_attenuation_max_hu"), None)
    if (fusion.conflict_is_indeterminate and mean is not None and peak is not None
            and mean.counted and peak.status is FeatureStatus.SECONDARY
            and peak.likelihood_ratio is not None and mean.favours is not None
            and peak.favours is not None and mean.favours != peak.favours
            and abs(math.log(peak.likelihood_ratio)) >= conflict_lr
            and abs(mean.log_odds) >= conflict_lr):
        decision.append(
            f"indeterminate: conflicting evidence: CT mean favours {mean.favours.value}, the "
            f"ROI maximum ({peak.value:.0f} {UNIT_HU}) favours {peak.favours.value} "
            f"(LR {peak.likelihood_ratio:.3g})")
        return Label.INDETERMINATE
    label, why = label_from_posterior(
        p, malignant_min_probability=fusion.malignant_min_probability,
        benign_max_probability=fusion.benign_max_probability)
    if label is Label.INDETERMINATE:
        decision.append(why)
        return label
    side = [r for r in counted if r.favours is label]
    prior_lo = logit(fusion.prior_probability_malignant)
    bound = (logit(fusion.malignant_min_probability) if label is Label.MALIGNANT
             else logit(fusion.benign_max_probability))
    alone = [r for r in side if r.feature in fusion.sufficient_alone and not r.unreliable
             and (prior_lo + r.log_odds >= bound if label is Label.MALIGNANT
                  else prior_lo + r.log_odds <= bound)]
    near = math.log(fusion.near_threshold_likelihood_ratio)
    agreeing = [r for r in side if not r.unreliable and abs(r.log_odds) >= near * r.weight]
    if alone:
        decision.append(f"{why}; sufficient on its own: {alone[0].feature} (validated in scope, "
                        f"LR {math.exp(alone[0].log_odds):.3g})")
        return label
    if len(agreeing) >= fusion.min_agreeing_features:
        decision.append(f"{why}; {len(agreeing)} reliable features agree: "
                        + ", ".join(r.feature for r in agreeing))
        return label
    decision.append(
        f"indeterminate: the posterior is {label.value} but the evidence is not enough for a "
        f"definitive label (needs one feature strong enough on its own among "
        f"{', '.join(fusion.sufficient_alone)}, or {fusion.min_agreeing_features} reliable "
        f"agreeing features; found {', '.join(r.feature for r in side) or 'none'})")
    return Label.INDETERMINATE


def classify_lesions(
    measurements: Sequence[LesionMeasurements], *, config: ClassifierConfig | None = None
) -> list[LesionCall]:
    """`classify_lesion` over a sequence, in order."""
    return [classify_lesion(m, config=config) for m in measurements]
