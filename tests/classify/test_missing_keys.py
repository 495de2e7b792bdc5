"""The reason a feature is missing is stored and looked up under the same key.

The stages write ``LesionMeasurements.missing`` and the classifier (rules and trained model)
reads it; both must use the keys documented in `bonelesion.model.results`.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.classify_factory import lesion

from bonelesion.classify import FeatureStatus
from bonelesion.classify.model import fit_logistic_model
from bonelesion.classify.rules import classify_lesion
from bonelesion.model import results

FF_REASON = "fat fraction needs Dixon water and fat images (test reason 7f3a)"


def test_stage_keys_are_the_documented_keys() -> None:
    assert results.MISSING_CT == "ct"
    assert results.MISSING_CHEMICAL_SHIFT == "chemical_shift"
    assert results.MISSING_FAT_FRACTION == "fat_fraction"
    assert results.MISSING_ADC == "adc"
    for key in ("ct", "chemical_shift", "fat_fraction", "adc"):
        assert f'``"{key}"``' in (results.LesionMeasurements.__doc__ or "")


def test_trained_model_reports_the_stage_fat_fraction_reason(rng: np.random.Generator) -> None:
    n = 120
    y = np.tile([0.0, 1.0], n // 2)
    sir = np.where(y == 1, rng.normal(0.98, 0.11, n), rng.normal(0.75, 0.19, n))
    ff = np.where(y == 1, rng.normal(0.05, 0.03, n), rng.normal(0.3, 0.1, n))
    raw = np.column_stack([sir, ff])
    raw[rng.random(n) < 0.25, 1] = np.nan  # fat fraction missing for a quarter: indicator
    model = fit_logistic_model(raw, y, ["chemical_shift_ratio", "fat_fraction"], folds=3)
    assert "fat_fraction" in model.indicators
    m = lesion(sir=0.95, missing={results.MISSING_FAT_FRACTION: FF_REASON})
    reason = next(r for r in model.call(m).reasons if r.feature == "fat_fraction")
    assert reason.status is FeatureStatus.IMPUTED
    assert FF_REASON in reason.note
    # no chemical shift at all: the fat fraction falls back to the chemical_shift reason
    none = lesion(missing={results.MISSING_CHEMICAL_SHIFT: "no Dixon stack (test)"})
    reason = next(r for r in model.call(none).reasons if r.feature == "fat_fraction")
    assert "no Dixon stack (test)" in reason.note


@pytest.mark.parametrize(("missing", "expected"), [
    ({results.MISSING_FAT_FRACTION: FF_REASON}, FF_REASON),
    ({}, "fat fraction unknown: not measured"),
])
def test_rules_report_the_stage_fat_fraction_reason(missing: dict[str, str],
                                                    expected: str) -> None:
    call = classify_lesion(lesion(sir=0.95, missing=missing))
    csi = next(r for r in call.reasons if r.feature == "chemical_shift_ratio")
    assert expected in csi.note


@pytest.mark.parametrize(("key", "feature"), [
    (results.MISSING_CT, "ct_attenuation_mean_hu"),
    (results.MISSING_CHEMICAL_SHIFT, "chemical_shift_ratio"),
    (results.MISSING_ADC, "adc_mean_mm2_per_s"),
])
def test_rules_report_each_missing_reason(key: str, feature: str) -> None:
    call = classify_lesion(lesion(missing={key: f"reason for {key} (test)"}))
    reason = next(r for r in call.reasons if r.feature == feature)
    assert reason.status is FeatureStatus.MISSING
    assert reason.note == f"reason for {key} (test)"
