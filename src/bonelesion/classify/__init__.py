"""Per-lesion calls that explain themselves: literature rules, LR fusion, a trainable model.

Public API
----------
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

from bonelesion.classify.call import FeatureReason, FeatureStatus, Label, LesionCall
from bonelesion.classify.config import ClassifierConfig, load_classifier_config
from bonelesion.classify.rules import classify_lesion, classify_lesions
from bonelesion.classify.spine import EsccGrade, SinsBand, SinsScore, grade_escc, score_sins

__all__ = [
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
