"""Per-lesion calls that explain themselves: literature rules, LR fusion, a trainable model.

Public API
----------
call_lesions(measurements, *, config, model=None) -> list of LesionCall
    The calls of a study's lesions: a trained model's when given, else the rules'.
classify_lesion(measurements, *, config) -> LesionCall
    Rule-based call with per-feature reasons (`bonelesion.classify.rules`).
load_classifier_config(path) -> ClassifierConfig
    Thresholds with citations (configs/classifier.toml).
LogisticModel, train_model_from_csv
    The trainable L2 logistic model (`bonelesion.classify.model`).
score_sins, grade_escc
    Spine scores reported beside the call (`bonelesion.classify.spine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bonelesion.classify.call import FeatureReason, FeatureStatus, Label, LesionCall
from bonelesion.classify.config import ClassifierConfig, load_classifier_config
from bonelesion.classify.rules import classify_lesion, classify_lesions
from bonelesion.classify.spine import EsccGrade, SinsBand, SinsScore, grade_escc, score_sins

__all__ = [
    "call_lesions",
    "Label",
    "FeatureStatus",
    "FeatureReason",
    "LesionCall",
    "ClassifierConfig",
    "load_classifier_config",
    "classify_lesion",
    "classify_lesions",
    "SinsBand",
    "SinsScore",
    "EsccGrade",
    "score_sins",
    "grade_escc",
]


def call_lesions(
    measurements: Sequence[Any],
    *,
    config: ClassifierConfig | None = None,
    model: Any | None = None,
) -> list[LesionCall]:
    """Call every lesion: with the trained ``model`` (`LogisticModel`) when given, else by rule.

    Parameters
    ----------
    measurements : sequence of LesionMeasurements
    config : ClassifierConfig, optional
        Thresholds and decision bounds (the cited defaults when None).
    model : LogisticModel, optional
        A model from ``bonelesion train``.
    """
    if model is not None:
        return [model.call(m, config=config) for m in measurements]
    return classify_lesions(measurements, config=config)
