"""Typed, frozen configuration of the rule-based classifier (configs/classifier.toml).

Every number is a published figure of CLINICAL_REFERENCE.md (or a stated design choice) and
carries its citation in ``configs/classifier.toml``; the dataclass defaults below equal that
file (a test checks it), so code and configuration cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from bonelesion.config import build_config, read_toml
from bonelesion.errors import ConfigError

__all__ = [
    "MaxStatistic",
    "TreatmentConfig",
    "CtRuleConfig",
    "FatConfig",
    "SignalConfig",
    "AdcProtocol",
    "FEATURE_NAMES",
    "ChemicalShiftRuleConfig",
    "AdcRuleConfig",
    "FusionConfig",
    "SpineConfig",
    "ClassifierConfig",
    "load_classifier_config",
    "classifier_config_from_mapping",
    "likelihood_ratios",
]


def likelihood_ratios(sensitivity: float, specificity: float) -> tuple[float, float]:
    """Return (LR+, LR−) of a test with the given sensitivity and specificity.

    Notes
    -----
    LR+ = sens / (1 − spec); LR− = (1 − sens) / spec.

    Examples
    --------
    >>> [round(x, 3) for x in likelihood_ratios(0.95, 0.96)]
    [23.75, 0.052]
    """
    return sensitivity / (1.0 - specificity), (1.0 - sensitivity) / specificity


def _check_accuracy(where: str, sensitivity: float, specificity: float) -> None:
    for name, value in (("sensitivity", sensitivity), ("specificity", specificity)):
        if not (0.5 < value < 1.0):
            raise ConfigError(
                f"{where}.{name}: must lie in (0.5, 1.0) for the rule to carry evidence, found "
                f"{value}. Potential fix: use the published value (e.g. 0.95)."
            )


def _check_positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0.0):
            raise ConfigError(
                f"{where}.{name}: must be a finite number ≥ 0, found {value}. "
                "Potential fix: see configs/classifier.toml for the cited default."
            )


def _check_weight(where: str, name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ConfigError(
            f"{where}.{name}: a weight must lie in [0, 1], found {value}. "
            "Potential fix: 1 = full evidence, 0 = reported but not counted."
        )


def _check_sd(where: str, **values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0.0):
            raise ConfigError(
                f"{where}.{name}: a published group SD must be a finite number > 0, found "
                f"{value}. Potential fix: see configs/classifier.toml for the cited value."
            )


class MaxStatistic(str, Enum):
    """Which CT statistic stands for Ulano's ROI maximum."""

    CENTRAL_SLICE_MAX = "central_slice_max"
    """Maximum of the core ROI on its largest cross-section (a 2-D ROI maximum)."""
    P95 = "p95"
    """95th percentile of the core ROI (size-independent, ~0.5 SD below an ROI maximum)."""


@dataclass(frozen=True, kw_only=True)
class TreatmentConfig:
    """Treatment status is tri-state (annotation ``treated``: true / false / empty = unknown).

    ``assume_untreated`` takes an unknown status as untreated (said in every call's reasons).
    """

    assume_untreated: bool = False


@dataclass(frozen=True, kw_only=True)
class CtRuleConfig:
    """CT attenuation: untreated osteoblastic metastasis vs enostosis (Ulano 2016).

    The evidence is the ratio of the Gaussian densities of Ulano's two groups at the
    measured value, clamped to the LRs of the published cutoff; the scope gates keep the rule
    to the population it was validated in.
    """

    enabled: bool = True
    mean_threshold_hu: float = 885.0
    max_threshold_hu: float = 1060.0
    metastasis_mean_hu: float = 654.0
    metastasis_mean_sd_hu: float = 176.0
    enostosis_mean_hu: float = 1190.0
    enostosis_mean_sd_hu: float = 239.0
    metastasis_max_hu: float = 787.0
    metastasis_max_sd_hu: float = 194.0
    enostosis_max_hu: float = 1323.0
    enostosis_max_sd_hu: float = 234.0
    calibration_sd_hu: float = 0.0
    max_statistic: MaxStatistic = MaxStatistic.CENTRAL_SLICE_MAX
    max_rule_weight: float = 0.0
    sclerotic_floor_hu: float = 300.0
    lytic_ceiling_hu: float = 150.0
    max_diameter_mm: float = 30.0
    max_sd_hu: float = 300.0
    min_core_voxels: int = 4
    sensitivity: float = 0.95
    specificity: float = 0.96
    citation: str = "Ulano A et al. AJR 2016;207(2):362-368"

    def __post_init__(self) -> None:
        _check_accuracy("ct", self.sensitivity, self.specificity)
        _check_positive("ct", calibration_sd_hu=self.calibration_sd_hu,
                        max_diameter_mm=self.max_diameter_mm, max_sd_hu=self.max_sd_hu)
        _check_sd("ct", metastasis_mean_sd_hu=self.metastasis_mean_sd_hu,
                  enostosis_mean_sd_hu=self.enostosis_mean_sd_hu,
                  metastasis_max_sd_hu=self.metastasis_max_sd_hu,
                  enostosis_max_sd_hu=self.enostosis_max_sd_hu)
        _check_weight("ct", "max_rule_weight", self.max_rule_weight)
        if self.min_core_voxels < 1:
            raise ConfigError(f"ct.min_core_voxels: must be ≥ 1, found {self.min_core_voxels}.")
        if not self.lytic_ceiling_hu < self.sclerotic_floor_hu < self.mean_threshold_hu:
            raise ConfigError(
                "ct: need lytic_ceiling_hu < sclerotic_floor_hu < mean_threshold_hu, found "
                f"{self.lytic_ceiling_hu} / {self.sclerotic_floor_hu} / {self.mean_threshold_hu}. "
                "Potential fix: restore the defaults 150 / 300 / 885 HU."
            )
        if not (self.metastasis_mean_hu < self.mean_threshold_hu < self.enostosis_mean_hu
                and self.metastasis_max_hu < self.max_threshold_hu < self.enostosis_max_hu):
            raise ConfigError(
                "ct: each threshold must lie between the metastasis and enostosis group means "
                f"(mean: {self.metastasis_mean_hu} < {self.mean_threshold_hu} < "
                f"{self.enostosis_mean_hu}; max: {self.metastasis_max_hu} < "
                f"{self.max_threshold_hu} < {self.enostosis_max_hu}). Potential fix: restore "
                "Ulano's values (654 / 885 / 1190 and 787 / 1060 / 1323 HU)."
            )


@dataclass(frozen=True, kw_only=True)
class FatConfig:
    """Macroscopic fat in a lesion is benign evidence (haemangioma, focal fat)."""

    enabled: bool = True
    likelihood_ratio: float = 0.052
    ct_fat_p05_max_hu: float = -30.0
    #: Below this the low voxels are gas or air, not fat: adipose tissue is taken as
    #: −190 to −30 HU on CT (the body-composition convention, Kvist 1988 Am J Clin Nutr
    #: 48:1351; Yoshizumi 1999 Radiology 211:283). An ROI reaching air is not fat evidence.
    ct_fat_p05_min_hu: float = -190.0
    citation: str = (
        "Eur Radiol Exp 2025;9 (Dixon fat % > 18.3 %: sensitivity 96.3 %, specificity 70.8 % "
        "for malignancy at <= 18.3 %, LR- 0.052); CLINICAL_REFERENCE Defaults 8 (fat dominance)"
    )

    def __post_init__(self) -> None:
        if not self.ct_fat_p05_min_hu < self.ct_fat_p05_max_hu:
            raise ConfigError(
                f"fat: need ct_fat_p05_min_hu < ct_fat_p05_max_hu, found "
                f"{self.ct_fat_p05_min_hu} / {self.ct_fat_p05_max_hu}. Potential fix: "
                "-190 / -30 (the CT attenuation window of adipose tissue).")
        if not 0.0 < self.likelihood_ratio < 1.0:
            raise ConfigError(
                f"fat.likelihood_ratio: benign evidence needs an LR in (0, 1), found "
                f"{self.likelihood_ratio}. Potential fix: 0.052 (Eur Radiol Exp 2025)."
            )


@dataclass(frozen=True, kw_only=True)
class SignalConfig:
    """When MR signal is too low to measure ratios on (judged against reference marrow)."""

    void_in_phase_max_relative: float = 0.35
    dark_water_max_relative: float = 0.75
    min_snr: float = 5.0
    min_voxels: int = 4

    def __post_init__(self) -> None:
        _check_positive("mr_signal", void_in_phase_max_relative=self.void_in_phase_max_relative,
                        dark_water_max_relative=self.dark_water_max_relative,
                        min_snr=self.min_snr)
        if self.min_voxels < 1:
            raise ConfigError(
                f"mr_signal.min_voxels: must be ≥ 1, found {self.min_voxels}.")


@dataclass(frozen=True, kw_only=True)
class ChemicalShiftRuleConfig:
    """Chemical shift: SIR = SI_OP / SI_IP; high SIR favours marrow replacement."""

    enabled: bool = True
    sir_threshold_ratio: float = 0.80
    malignant_mean_ratio: float = 0.98
    malignant_sd_ratio: float = 0.11
    benign_mean_ratio: float = 0.75
    benign_sd_ratio: float = 0.19
    fat_dominant_fraction: float = 0.5
    fat_excluded_max_relative: float = 0.8
    t1_bright_min_relative: float = 1.1
    sensitivity: float = 0.92
    specificity: float = 0.89
    citation: str = (
        "Zajick DC et al. Radiology 2005;237:590-596 (cutoff); AJNR 2017 predictive models "
        "(group SIR: malignant 0.98 +- 0.11, benign 0.75 +- 0.19); Suh CH et al. AJR "
        "2018;211(4):W188-W197 (pooled sensitivity/specificity)"
    )

    def __post_init__(self) -> None:
        _check_accuracy("chemical_shift", self.sensitivity, self.specificity)
        _check_positive("chemical_shift", sir_threshold_ratio=self.sir_threshold_ratio)
        _check_sd("chemical_shift", malignant_sd_ratio=self.malignant_sd_ratio,
                  benign_sd_ratio=self.benign_sd_ratio)
        if not 0.0 < self.fat_dominant_fraction <= 1.0:
            raise ConfigError(
                f"chemical_shift.fat_dominant_fraction: must lie in (0, 1], found "
                f"{self.fat_dominant_fraction}. Potential fix: 0.5 (two-point model fold)."
            )
        if not 0.0 < self.fat_excluded_max_relative < self.t1_bright_min_relative:
            raise ConfigError(
                "chemical_shift: need 0 < fat_excluded_max_relative < t1_bright_min_relative, "
                f"found {self.fat_excluded_max_relative} / {self.t1_bright_min_relative}. "
                "Potential fix: restore the defaults 0.8 / 1.1."
            )
        if not self.benign_mean_ratio < self.sir_threshold_ratio < self.malignant_mean_ratio:
            raise ConfigError(
                "chemical_shift: sir_threshold_ratio must lie between the benign and malignant "
                f"group means, found {self.benign_mean_ratio} / {self.sir_threshold_ratio} / "
                f"{self.malignant_mean_ratio}. Potential fix: 0.75 / 0.80 / 0.98."
            )


@dataclass(frozen=True, kw_only=True)
class AdcProtocol:
    """An ADC protocol with a validated cutoff: chosen by the highest b-value of the fit."""

    name: str
    max_b_from_s_per_mm2: float
    max_b_to_s_per_mm2: float
    cutoff_mm2_per_s: float
    malignant_mean_mm2_per_s: float
    malignant_sd_mm2_per_s: float
    benign_mean_mm2_per_s: float
    benign_sd_mm2_per_s: float
    red_marrow_max_mm2_per_s: float | None = None
    citation: str = ""

    def __post_init__(self) -> None:
        where = f"adc.protocols[{self.name}]"
        if not self.name:
            raise ConfigError("adc.protocols: every protocol needs a name.")
        if not 0.0 <= self.max_b_from_s_per_mm2 < self.max_b_to_s_per_mm2:
            raise ConfigError(
                f"{where}: need 0 ≤ max_b_from_s_per_mm2 < max_b_to_s_per_mm2, found "
                f"{self.max_b_from_s_per_mm2} / {self.max_b_to_s_per_mm2}.")
        values = {"cutoff_mm2_per_s": self.cutoff_mm2_per_s,
                  "malignant_mean_mm2_per_s": self.malignant_mean_mm2_per_s,
                  "malignant_sd_mm2_per_s": self.malignant_sd_mm2_per_s,
                  "benign_mean_mm2_per_s": self.benign_mean_mm2_per_s,
                  "benign_sd_mm2_per_s": self.benign_sd_mm2_per_s,
                  **({"red_marrow_max_mm2_per_s": self.red_marrow_max_mm2_per_s}
                     if self.red_marrow_max_mm2_per_s is not None else {})}
        for name, value in values.items():
            if not 1e-5 <= value <= 4e-3:
                raise ConfigError(
                    f"{where}.{name}: {value} is outside 1e-5 – 4e-3 mm²/s; the value looks "
                    "like ×10⁻³ or µm²/s units. Potential fix: write e.g. 1.14e-3.")
        if not self.malignant_mean_mm2_per_s < self.cutoff_mm2_per_s < self.benign_mean_mm2_per_s:
            raise ConfigError(
                f"{where}: the cutoff must lie between the malignant and benign group means, "
                f"found {self.malignant_mean_mm2_per_s} / {self.cutoff_mm2_per_s} / "
                f"{self.benign_mean_mm2_per_s}.")


_EPI = AdcProtocol(
    name="epi_b800_1000", max_b_from_s_per_mm2=700.0, max_b_to_s_per_mm2=1100.0,
    cutoff_mm2_per_s=1.14e-3, malignant_mean_mm2_per_s=1.01e-3, malignant_sd_mm2_per_s=0.22e-3,
    benign_mean_mm2_per_s=1.41e-3, benign_sd_mm2_per_s=0.31e-3,
    red_marrow_max_mm2_per_s=0.695e-3,
    citation=("Park HJ et al. Korean J Radiol 2016;17(5):590-597 (cutoff 1.14e-3, b 0/400/1000; "
              "red marrow vs malignant 0.695e-3, b 0/800); AJNR 2017 predictive models (groups: "
              "malignant 1.01 +- 0.22, non-infectious benign 1.41 +- 0.31 e-3 mm2/s)"),
)
_LOW_B = AdcProtocol(
    name="low_b_400_500", max_b_from_s_per_mm2=300.0, max_b_to_s_per_mm2=600.0,
    cutoff_mm2_per_s=1.7e-3, malignant_mean_mm2_per_s=0.9e-3, malignant_sd_mm2_per_s=0.39e-3,
    benign_mean_mm2_per_s=1.9e-3, benign_sd_mm2_per_s=0.39e-3, red_marrow_max_mm2_per_s=None,
    citation=("Geith T et al. AJR 2014;203(3):582-588 (cutoff 1.7e-3, b 100/250/400 single-shot "
              "TSE); Eur J Radiol 2009;69(3):560-566 (b 0/500: benign osteoporotic 1.9 +- 0.39, "
              "untreated metastases ~0.9 e-3 mm2/s; metastasis SD not legible, taken equal to "
              "the benign SD)"),
)


@dataclass(frozen=True, kw_only=True)
class AdcRuleConfig:
    """ADC: low ADC favours malignancy, with a cutoff and group distributions per protocol."""

    enabled: bool = True
    protocols: tuple[AdcProtocol, ...] = (_EPI, _LOW_B)
    assume_protocol: str = ""
    dense_sclerosis_floor_hu: float = 500.0
    dense_sclerosis_weight: float = 0.5
    sensitivity: float = 0.89
    specificity: float = 0.87
    citation: str = "Suh CH et al. Eur Radiol 2018 (pooled sensitivity/specificity)"

    def __post_init__(self) -> None:
        _check_accuracy("adc", self.sensitivity, self.specificity)
        _check_weight("adc", "dense_sclerosis_weight", self.dense_sclerosis_weight)
        names = [p.name for p in self.protocols]
        if len(set(names)) != len(names):
            raise ConfigError(f"adc.protocols: names must be unique, found {names}.")
        if self.assume_protocol and self.assume_protocol not in names:
            raise ConfigError(
                f"adc.assume_protocol: {self.assume_protocol!r} is not a configured protocol "
                f"({', '.join(names)}). Potential fix: name one of them, or leave it empty.")

    def protocol_for(self, b_values_s_per_mm2: tuple[float, ...]) -> AdcProtocol | None:
        """Return the protocol whose highest-b range holds the fit's highest b-value.

        With unknown b-values, the ``assume_protocol`` (if set); None when none applies.
        """
        by_name = {p.name: p for p in self.protocols}
        if not b_values_s_per_mm2:
            return by_name.get(self.assume_protocol)
        top = max(b_values_s_per_mm2)
        return next((p for p in self.protocols
                     if p.max_b_from_s_per_mm2 <= top <= p.max_b_to_s_per_mm2), None)


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    """Log-odds fusion of the evidence and the (asymmetric) decision bounds."""

    prior_probability_malignant: float = 0.5
    prior_source: str = (
        "configuration default: no preference between benign and malignant; set the pre-test "
        "probability of your population (classifier fusion.prior_probability_malignant, or "
        "--prior)"
    )
    malignant_min_probability: float = 0.85
    benign_max_probability: float = 0.10
    second_marrow_feature_weight: float = 0.5
    conflict_is_indeterminate: bool = True
    conflict_min_likelihood_ratio: float = 2.0
    near_threshold_likelihood_ratio: float = 2.0
    min_agreeing_features: int = 2
    sufficient_alone: tuple[str, ...] = (
        "ct_attenuation_mean_hu", "ct_attenuation_max_hu", "macroscopic_fat")

    def __post_init__(self) -> None:
        if not 0.0 < self.prior_probability_malignant < 1.0:
            raise ConfigError(
                "fusion.prior_probability_malignant: must lie in (0, 1), found "
                f"{self.prior_probability_malignant}. Potential fix: 0.5 (no prior preference)."
            )
        if not (
            0.0 < self.benign_max_probability < 0.5 < self.malignant_min_probability < 1.0
        ):
            raise ConfigError(
                "fusion: need 0 < benign_max_probability < 0.5 < malignant_min_probability < 1, "
                f"found {self.benign_max_probability} / {self.malignant_min_probability}. "
                "Potential fix: restore the defaults 0.10 / 0.85."
            )
        _check_weight("fusion", "second_marrow_feature_weight", self.second_marrow_feature_weight)
        for name in ("conflict_min_likelihood_ratio", "near_threshold_likelihood_ratio"):
            if not getattr(self, name) >= 1.0:
                raise ConfigError(f"fusion.{name}: must be ≥ 1, found {getattr(self, name)}.")
        if self.min_agreeing_features < 1:
            raise ConfigError(
                f"fusion.min_agreeing_features: must be ≥ 1, found {self.min_agreeing_features}.")
        unknown = set(self.sufficient_alone) - set(FEATURE_NAMES)
        if unknown:
            raise ConfigError(
                f"fusion.sufficient_alone: unknown feature(s) {sorted(unknown)} (features: "
                f"{', '.join(FEATURE_NAMES)}).")


#: Names of the rule-based classifier's features, in the order of a call's reasons.
FEATURE_NAMES = ("ct_attenuation_mean_hu", "ct_attenuation_max_hu", "macroscopic_fat",
                 "chemical_shift_ratio", "adc_mean_mm2_per_s")


@dataclass(frozen=True, kw_only=True)
class SpineConfig:
    """SINS / ESCC reporting options."""

    derive_bone_lesion_from_ct: bool = True


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig:
    """Everything the rule-based classifier needs (see configs/classifier.toml)."""

    treatment: TreatmentConfig = field(default_factory=TreatmentConfig)
    ct: CtRuleConfig = field(default_factory=CtRuleConfig)
    fat: FatConfig = field(default_factory=FatConfig)
    mr_signal: SignalConfig = field(default_factory=SignalConfig)
    chemical_shift: ChemicalShiftRuleConfig = field(default_factory=ChemicalShiftRuleConfig)
    adc: AdcRuleConfig = field(default_factory=AdcRuleConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    spine: SpineConfig = field(default_factory=SpineConfig)

    def with_prior(self, probability: float, *, source: str) -> ClassifierConfig:
        """Copy with another prior probability of malignancy (and where it came from).

        Raises
        ------
        ConfigError
            If the probability is not in (0, 1).
        """
        fusion = dataclasses.replace(self.fusion, prior_probability_malignant=probability,
                                     prior_source=source)
        return dataclasses.replace(self, fusion=fusion)


def classifier_config_from_mapping(data: dict[str, Any]) -> ClassifierConfig:
    """Build a `ClassifierConfig` from a parsed TOML mapping (unknown keys are errors).

    A top-level ``[classifier]`` table is accepted too, so the same file can sit inside a
    larger pipeline config.

    Raises
    ------
    ConfigError
        On an unknown key, a wrong type or a value out of range; names the dotted key.
    """
    if set(data) == {"classifier"}:
        return build_config(ClassifierConfig, data["classifier"], prefix="classifier")
    return build_config(ClassifierConfig, data)


def load_classifier_config(path: str | Path | None = None) -> ClassifierConfig:
    """Read a classifier TOML file; ``None`` gives the cited defaults.

    Raises
    ------
    ConfigError
        If the file is missing, not TOML, or holds an unknown key or a bad value.
    """
    if path is None:
        return ClassifierConfig()
    return classifier_config_from_mapping(read_toml(path))
