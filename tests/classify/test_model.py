"""Trainable logistic model: recovers a known separation, refuses mismatched labels."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from support.classify_factory import lesion

from bonelesion.classify import FeatureStatus, Label
from bonelesion.classify.model import (
    fit_logistic_model,
    load_model,
    read_labels_csv,
    read_lesion_features_csv,
    roc_auc,
    train_model_from_csv,
)
from bonelesion.cli import main
from bonelesion.errors import InputError

MIN_AUC = 0.95  # brief: the model must recover a clear separation
ATOL_AUC = 1e-12  # exact rational arithmetic on small cases

NAMES = ["ct_attenuation_mean_hu", "chemical_shift_ratio", "adc_mean_mm2_per_s"]


def synthetic(rng: np.random.Generator, n: int = 160, missing: float = 0.2
              ) -> tuple[np.ndarray, np.ndarray]:
    """Malignant/benign features drawn from the published group means ± SD.

    CT: Ulano 2016 metastasis 654 ± 176 vs enostosis 1190 ± 239 HU; SIR: AJNR 2017 malignant
    0.98 ± 0.11 vs benign 0.75 ± 0.19; ADC: 0.9 vs 1.9 ×10⁻³ mm²/s (Eur J Radiol 2009).
    """
    y = np.tile([0.0, 1.0], n // 2)
    ct = np.where(y == 1, rng.normal(654, 176, n), rng.normal(1190, 239, n))
    sir = np.where(y == 1, rng.normal(0.98, 0.11, n), rng.normal(0.75, 0.19, n))
    adc = np.where(y == 1, rng.normal(0.9e-3, 0.2e-3, n), rng.normal(1.9e-3, 0.39e-3, n))
    raw = np.column_stack([ct, sir, adc])
    raw[rng.random(raw.shape) < missing] = np.nan
    return raw, y


def test_roc_auc_against_hand_count() -> None:
    # pairs (pos, neg): 0.35>0.1 ✓, 0.35<0.4 ✗, 0.8>both ✓✓ → 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75, abs=ATOL_AUC)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5, abs=ATOL_AUC)
    assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))


def test_recovers_known_separation(rng: np.random.Generator) -> None:
    raw, y = synthetic(rng)
    model = fit_logistic_model(raw, y, NAMES, folds=5, seed=1)
    assert model.cv["auc"] > MIN_AUC
    coef = dict(zip(model.columns, model.coefficients, strict=False))
    assert coef["ct_attenuation_mean_hu"] < 0  # lower HU → malignant (Ulano)
    assert coef["chemical_shift_ratio"] > 0  # higher SIR → malignant
    assert coef["adc_mean_mm2_per_s"] < 0  # lower ADC → malignant
    assert set(model.indicators) == set(NAMES)  # every feature had missing values
    assert model.cv["folds"] == 5 and model.cv["n_out_of_fold"] == len(y)
    assert sum(b["count"] for b in model.cv["reliability_bins"]) == len(y)
    assert math.isfinite(model.cv["calibration_slope"])
    # the means/SDs are the training statistics of the present values
    ct = raw[:, 0][np.isfinite(raw[:, 0])]
    assert model.means[0] == pytest.approx(ct.mean(), rel=1e-12)
    assert model.sds[0] == pytest.approx(ct.std(ddof=1), rel=1e-12)


def test_uninformative_feature_gives_chance_auc(rng: np.random.Generator) -> None:
    y = np.tile([0.0, 1.0], 100)
    raw = rng.normal(0, 1, (200, 1))
    model = fit_logistic_model(raw, y, ["chemical_shift_ratio"])
    assert 0.3 < model.cv["auc"] < 0.7  # cannot fail upward by construction of the data


def test_json_round_trip_and_call(tmp_path: Path, rng: np.random.Generator) -> None:
    raw, y = synthetic(rng)
    model = fit_logistic_model(raw, y, NAMES)
    path = model.to_json(tmp_path / "m.json")
    data = json.loads(path.read_text())
    assert data["format"] == "bonelesion-logistic" and data["format_version"] == 1
    for key in ("coefficients", "features", "means", "sds", "imputation_values", "cv",
                "missing_indicators", "intercept", "l2_penalty"):
        assert key in data
    again = load_model(path)
    assert again.coefficients == model.coefficients and again.features == model.features
    probe = np.array([[650.0, 1.0, 0.8e-3], [1200.0, 0.5, 2.0e-3]])
    np.testing.assert_allclose(again.predict_proba(probe, NAMES), model.predict_proba(probe, NAMES),
                               rtol=1e-12)
    mal = again.call(lesion(ct=650.0, sir=1.0, adc=0.8e-3))
    ben = again.call(lesion(ct=1250.0, sir=0.5, adc=2.0e-3))
    assert mal.label is Label.MALIGNANT and ben.label is Label.BENIGN
    # contributions = coefficient × z, summing with the intercept to the log-odds
    lo = math.log(mal.probability_malignant / (1 - mal.probability_malignant))
    assert sum(r.log_odds for r in mal.reasons) + again.intercept == pytest.approx(lo, abs=1e-9)
    z_ct = (650.0 - again.means[0]) / again.sds[0]
    ct_reason = next(r for r in mal.reasons if r.feature == "ct_attenuation_mean_hu")
    k_ind = again.columns.index("ct_attenuation_mean_hu_missing")
    assert ct_reason.log_odds == pytest.approx(again.coefficients[0] * z_ct, rel=1e-9)
    assert again.coefficients[k_ind] != 0.0
    # missing feature → imputed, with its indicator's contribution
    part = again.call(lesion(ct=650.0, missing={"adc": "no DWI"}))
    adc_reason = next(r for r in part.reasons if r.feature == "adc_mean_mm2_per_s")
    assert adc_reason.status is FeatureStatus.IMPUTED and "no DWI" in adc_reason.note
    assert adc_reason.log_odds == pytest.approx(
        again.coefficients[again.columns.index("adc_mean_mm2_per_s_missing")], rel=1e-9)
    none = again.call(lesion())
    assert none.label is Label.INDETERMINATE
    assert none.reasons_dict()["method"] == "trained_logistic_model"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: {**d, "format": "x"}, "expected format 'bonelesion-logistic'"),
        (lambda d: {**d, "format_version": 99}, "format_version 99"),
        (lambda d: {**d, "coefficients": [1.0]}, "inconsistent arrays"),
        (lambda d: {k: v for k, v in d.items() if k != "intercept"}, "missing or malformed"),
    ],
)
def test_load_model_refuses_bad_files(tmp_path: Path, rng: np.random.Generator, edit, match
                                      ) -> None:  # type: ignore[no-untyped-def]
    raw, y = synthetic(rng, n=40)
    data = fit_logistic_model(raw, y, NAMES).to_dict()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(edit(data)))
    with pytest.raises(InputError, match=match):
        load_model(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot be read as JSON"):
        load_model(path)


def test_too_few_per_class_refused() -> None:
    with pytest.raises(InputError, match="need ≥ 2 malignant and ≥ 2 benign"):
        fit_logistic_model(np.ones((3, 1)), [1, 1, 0], ["chemical_shift_ratio"])
    with pytest.raises(InputError, match="no feature column holds a single value"):
        fit_logistic_model(np.full((4, 1), np.nan), [1, 1, 0, 0], ["chemical_shift_ratio"])


# ----------------------------------------------------------------------------- CSV + CLI
def write_csvs(tmp_path: Path, raw: np.ndarray, y: np.ndarray) -> tuple[Path, Path]:
    lesions = tmp_path / "lesions.csv"
    labels = tmp_path / "labels.csv"
    with lesions.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study_instance_uid", "lesion_id", *NAMES])
        for i, row in enumerate(raw):
            w.writerow([f"1.2.{i % 3}", f"L{i}", *("" if np.isnan(v) else repr(float(v))
                                                  for v in row)])
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study_instance_uid", "lesion_id", "label"])
        for i, lab in enumerate(y):
            w.writerow([f"1.2.{i % 3}", f"L{i}", "malignant" if lab else "benign"])
    return lesions, labels


def test_cli_train(tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
                   ) -> None:
    raw, y = synthetic(rng)
    lesions, labels = write_csvs(tmp_path, raw, y)
    out = tmp_path / "model.json"
    assert main(["train", str(lesions), "--labels", str(labels), "--out", str(out)]) == 0
    assert "CV AUC" in capsys.readouterr().out
    model = load_model(out)
    assert model.cv["auc"] > MIN_AUC
    assert model.training["n_lesions"] == len(y)
    # refuses to overwrite; --force overwrites
    assert main(["train", str(lesions), "--labels", str(labels), "--out", str(out)]) == 3
    assert "already exists" in capsys.readouterr().err
    assert main(["train", str(lesions), "--labels", str(labels), "--out", str(out), "--force",
                 "--l2", "-1"]) == 2
    assert main(["train", str(lesions), "--labels", str(labels), "--out", str(out),
                 "--force"]) == 0


def _labels(tmp_path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    path = tmp_path / "labels_bad.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header or ["study_instance_uid", "lesion_id", "label"])
        w.writerows(rows)
    return path


KEYS = [("1.2.0", "L0"), ("1.2.1", "L1"), ("1.2.2", "L2")]


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        ([["1.2.0", "L0", "malignant"], ["1.2.1", "L1", "benign"]], None,
         r"1 lesion\(s\) of the lesion table have no label, e\.g\. 1\.2\.2/L2"),
        ([["1.2.0", "L0", "malignant"], ["1.2.1", "L1", "benign"], ["1.2.2", "L2", "benign"],
          ["1.2.9", "L9", "benign"]], None, r"name lesions not in the lesion table.*1\.2\.9/L9"),
        ([["1.2.0", "L0", "malignant"], ["1.2.0", "L0", "benign"]], None, "labelled twice"),
        ([["1.2.0", "L0", "maybe"]], None, "'maybe' for lesion 1.2.0/L0 is not malignant/benign"),
        ([["L0", "malignant"]], ["lesion", "label"], "no 'lesion_id' column"),
        ([["1.2.0", "L0"]], ["study_instance_uid", "lesion_id"], "no 'label' column"),
    ],
)
def test_mismatched_labels_refused(tmp_path: Path, rows: list[list[str]],
                                   header: list[str] | None, match: str) -> None:
    with pytest.raises(InputError, match=match):
        read_labels_csv(_labels(tmp_path, rows, header), KEYS, lesions_have_study=True)


def test_labels_without_study_column_need_unique_ids(tmp_path: Path) -> None:
    path = _labels(tmp_path, [["L0", "1"], ["L1", "0"]], ["lesion_id", "label"])
    y = read_labels_csv(path, [("a", "L0"), ("b", "L1")], lesions_have_study=True)
    assert y.tolist() == [1.0, 0.0]
    with pytest.raises(InputError, match="repeat across studies"):
        read_labels_csv(path, [("a", "L0"), ("b", "L0")], lesions_have_study=True)


def test_lesion_table_errors(tmp_path: Path) -> None:
    bad = tmp_path / "l.csv"
    bad.write_text("lesion_id,chemical_shift_ratio\nL0,0.9\nL0,0.8\n")
    with pytest.raises(InputError, match="lesion L0 appears twice"):
        read_lesion_features_csv(bad)
    bad.write_text("lesion_id,chemical_shift_ratio\nL0,high\n")
    with pytest.raises(InputError, match=r"line 2, column chemical_shift_ratio: expected a number"):
        read_lesion_features_csv(bad)
    bad.write_text("lesion_id,colour\nL0,red\n")
    with pytest.raises(InputError, match="none of the feature columns"):
        read_lesion_features_csv(bad)
    with pytest.raises(InputError, match="cannot be read"):
        read_lesion_features_csv(tmp_path / "missing.csv")


def test_aliases_and_missing_markers(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("lesion_id,ct.attenuation_mean_hu,sir\nA,700,NA\nB,,0.9\n")
    keys, raw, names, has_study = read_lesion_features_csv(path)
    assert names == ["ct_attenuation_mean_hu", "chemical_shift_ratio"] and not has_study
    assert keys == [("", "A"), ("", "B")]
    assert raw[0, 0] == 700.0 and np.isnan(raw[0, 1]) and np.isnan(raw[1, 0])


def test_train_from_csv_records_files(tmp_path: Path, rng: np.random.Generator) -> None:
    raw, y = synthetic(rng, n=40, missing=0.0)
    lesions, labels = write_csvs(tmp_path, raw, y)
    model = train_model_from_csv(lesions, labels, folds=4)
    assert model.training["lesions_csv"] == str(lesions) and model.indicators == ()
    assert model.cv["folds"] == 4


def test_reads_the_lesion_table_written_by_measure(tmp_path: Path) -> None:
    from support.report_series import write_study_views

    from bonelesion.report.result import study_result

    ms = [lesion(ct=650.0, sir=0.95, fat_fraction=0.02, adc=0.8e-3, lesion_id="A"),
          lesion(ct=1200.0, lesion_id="B")]
    write_study_views(tmp_path, study_result(ms), qc=False, dicom=False, html=False)
    path = tmp_path / "lesions.csv"
    keys, raw, names, has_study = read_lesion_features_csv(path)
    assert has_study and [k[1] for k in keys] == ["A", "B"]
    assert set(names) == {"ct_attenuation_mean_hu", "ct_attenuation_max_hu",
                          "chemical_shift_ratio", "fat_fraction", "adc_mean_mm2_per_s"}
    row = dict(zip(names, raw[0], strict=True))
    assert row["chemical_shift_ratio"] == 0.95 and row["adc_mean_mm2_per_s"] == 0.8e-3
    assert np.isnan(dict(zip(names, raw[1], strict=True))["chemical_shift_ratio"])
