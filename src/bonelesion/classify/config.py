"""Typed, frozen configuration of the rule-based classifier (configs/classifier.toml).

Every number is a default from CLINICAL_REFERENCE.md ("Defaults" 1–21) and carries its
citation in ``configs/classifier.toml``; the dataclass defaults below equal that file (a test
checks it), so code and configuration cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.config import build_config, read_toml
from bonelesion.errors import ConfigError

__all__ = [
    "CtRuleConfig",
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


@dataclass(frozen=True, kw_only=True)
class CtRuleConfig:
    """CT attenuation rule: untreated osteoblastic metastasis vs enostosis (Ulano 2016)."""

    enabled: bool = True
    mean_threshold_hu: float = 885.0
    max_threshold_hu: float = 1060.0
    near_threshold_band_hu: float = 60.0
    sclerotic_floor_hu: float = 300.0
    lytic_ceiling_hu: float = 150.0
    max_rule_weight: float = 0.0
    max_conflict_is_indeterminate: bool = True
    sensitivity: float = 0.95
    specificity: float = 0.96
    citation: str = "Ulano A et al. AJR 2016;207(2):362-368"

    def __post_init__(self) -> None:
        _check_accuracy("ct", self.sensitivity, self.specificity)
        _check_positive("ct", near_threshold_band_hu=self.near_threshold_band_hu)
        _check_weight("ct", "max_rule_weight", self.max_rule_weight)
        if not self.lytic_ceiling_hu < self.sclerotic_floor_hu < self.mean_threshold_hu:
            raise ConfigError(
                "ct: need lytic_ceiling_hu < sclerotic_floor_hu < mean_threshold_hu, found "
                f"{self.lytic_ceiling_hu} / {self.sclerotic_floor_hu} / {self.mean_threshold_hu}. "
                "Potential fix: restore the defaults 150 / 300 / 885 HU."
            )


@dataclass(frozen=True, kw_only=True)
class ChemicalShiftRuleConfig:
    """Chemical-shift rule: SIR = SI_OP / SI_IP ≥ threshold favours marrow replacement."""

    enabled: bool = True
    sir_threshold_ratio: float = 0.80
    near_threshold_band_ratio: float = 0.03
    fat_dominant_fraction: float = 0.5
    sensitivity: float = 0.92
    specificity: float = 0.89
    citation: str = (
        "Zajick DC et al. Radiology 2005;237:590-596 (cutoff); Suh CH et al. AJR "
        "2018;211(4):W188-W197 (pooled sensitivity/specificity)"
    )

    def __post_init__(self) -> None:
        _check_accuracy("chemical_shift", self.sensitivity, self.specificity)
        _check_positive(
            "chemical_shift",
            sir_threshold_ratio=self.sir_threshold_ratio,
            near_threshold_band_ratio=self.near_threshold_band_ratio,
        )
        if not 0.0 < self.fat_dominant_fraction <= 1.0:
            raise ConfigError(
                f"chemical_shift.fat_dominant_fraction: must lie in (0, 1], found "
                f"{self.fat_dominant_fraction}. Potential fix: 0.5 (two-point model fold)."
            )


@dataclass(frozen=True, kw_only=True)
class AdcRuleConfig:
    """ADC rule: ADC ≤ protocol cutoff favours malignancy (Park 2016; Suh 2018 pooled)."""

    enabled: bool = True
    cutoff_mm2_per_s: float = 1.14e-3
    near_threshold_band_mm2_per_s: float = 0.10e-3
    dense_sclerosis_floor_hu: float = 500.0
    dense_sclerosis_weight: float = 0.5
    sensitivity: float = 0.89
    specificity: float = 0.87
    citation: str = (
        "Park HJ et al. Korean J Radiol 2016;17(5):590-597 (cutoff); Suh CH et al. Eur Radiol "
        "2018 (pooled sensitivity/specificity)"
    )

    def __post_init__(self) -> None:
        _check_accuracy("adc", self.sensitivity, self.specificity)
        _check_positive(
            "adc",
            cutoff_mm2_per_s=self.cutoff_mm2_per_s,
            near_threshold_band_mm2_per_s=self.near_threshold_band_mm2_per_s,
        )
        _check_weight("adc", "dense_sclerosis_weight", self.dense_sclerosis_weight)
        if not 1e-4 <= self.cutoff_mm2_per_s <= 4e-3:
            raise ConfigError(
                f"adc.cutoff_mm2_per_s: {self.cutoff_mm2_per_s} is outside 1e-4 – 4e-3 mm²/s; "
                "the value looks like ×10⁻³ or µm²/s units. Potential fix: write 1.14e-3."
            )


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    """Log-odds fusion of the rules and the decision bounds."""

    prior_probability_malignant: float = 0.5
    malignant_min_probability: float = 0.85
    benign_max_probability: float = 0.15
    second_marrow_feature_weight: float = 0.5
    conflict_is_indeterminate: bool = True

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
                "Potential fix: restore the defaults 0.15 / 0.85."
            )
        _check_weight("fusion", "second_marrow_feature_weight", self.second_marrow_feature_weight)


@dataclass(frozen=True, kw_only=True)
class SpineConfig:
    """SINS / ESCC reporting options."""

    derive_bone_lesion_from_ct: bool = True


@dataclass(frozen=True, kw_only=True)
class ClassifierConfig:
    """Everything the rule-based classifier needs (see configs/classifier.toml)."""

    ct: CtRuleConfig = field(default_factory=CtRuleConfig)
    chemical_shift: ChemicalShiftRuleConfig = field(default_factory=ChemicalShiftRuleConfig)
    adc: AdcRuleConfig = field(default_factory=AdcRuleConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    spine: SpineConfig = field(default_factory=SpineConfig)


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
