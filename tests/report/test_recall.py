"""`bonelesion classify`: re-calling a lesions.csv reproduces the in-memory call of each lesion.

Truth: the calls of `classify_lesion` on the `LesionMeasurements` the table was written from
(by the stages' own writer), the file's SHA-256 from hashlib, and hand-made bad cells.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from support.classify_factory import lesion
from support.report_series import measurement_table as write_lesions_csv

from bonelesion.classify import classify_lesion
from bonelesion.classify.model import FEATURES, fit_logistic_model
from bonelesion.cli import EXIT_CONFIG, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, main
from bonelesion.report.recall import measurements_from_row, recall_table
from bonelesion.report.table import CALL_COLUMNS

UNTREATED = {"treated": False}


def _lesions():  # type: ignore[no-untyped-def]
    return [
        lesion(ct=(650.0, 800.0), sir=1.0, fat_fraction=0.05, adc=0.8e-3, lesion_id="A",
               annotations={**UNTREATED, "escc_grade": "2", "sins_location": "T12",
                            "sins_pain": "no"},
               cs_kw={"in_phase_relative_to_reference": 0.6, "snr_in_phase": 30.0},
               adc_kw={"low_b_relative_to_reference": 2.1, "snr_low_b": 25.0}),
        lesion(ct=1250.0, lesion_id="B", missing={"adc": "no DWI"},
               annotations=UNTREATED, ct_kw={"attenuation_central_slice_max_hu": 1300.0}),
        lesion(ct=700.0, lesion_id="C", annotations=UNTREATED,
               ct_kw={"erosion_fell_back": True, "core_voxel_count": 5,
                      "attenuation_central_slice_max_hu": 1240.0}),
        lesion(sir=0.84, adc=0.4e-3, lesion_id="D",
               cs_kw={"in_phase_relative_to_reference": 1.3}),
        lesion(lesion_id="E", missing={"ct": "no CT", "adc": "no DWI",
                                       "chemical_shift": "no Dixon"}),
        lesion(sir=1.0, adc=0.9e-3, lesion_id="F",
               cs_kw={"in_phase_relative_to_reference": 0.1},
               adc_kw={"low_b_relative_to_reference": 0.3}),
    ]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_recall_reproduces_the_in_memory_calls(tmp_path: Path) -> None:
    ms = _lesions()
    table = write_lesions_csv(ms, tmp_path / "lesions.csv")
    result = recall_table(table, tmp_path / "out")
    expected = [classify_lesion(m) for m in ms]
    assert [c.label for c in result.calls] == [c.label for c in expected]
    for got, want in zip(result.calls, expected, strict=True):
        assert got.probability_malignant == pytest.approx(want.probability_malignant, rel=1e-12)
        assert got.statement == want.statement
        assert [r.status for r in got.reasons] == [r.status for r in want.reasons]
        assert (got.sins, got.escc) == (want.sins, want.escc)
    assert [c.label.value for c in result.calls] == [
        "malignant", "benign", "benign", "benign", "indeterminate", "indeterminate"]
    assert result.problems == ()


def test_output_keeps_every_column_and_replaces_the_call(tmp_path: Path) -> None:
    table = write_lesions_csv(_lesions(), tmp_path / "lesions.csv")
    first = recall_table(table, tmp_path / "one")
    rows = _rows(first.lesions_csv)
    # a column of the user's own is kept; stale call columns are replaced, not duplicated
    with table.open(newline="") as fh:
        header = next(csv.reader(fh))
    edited = [*header, "my_note", *(c for c in CALL_COLUMNS if c not in header)]
    with (tmp_path / "edited.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=edited)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "my_note": "keep me", "label": "benign",
                             "probability_malignant": "0.01", "reasons": "{}"})
    again = _rows(recall_table(tmp_path / "edited.csv", tmp_path / "two").lesions_csv)
    assert list(again[0]) == edited
    assert all(r["my_note"] == "keep me" for r in again)
    assert [r["label"] for r in again] == [r["label"] for r in rows]
    assert again[0]["escc_grade"] == "2" and again[0]["sins_total_min_points"] == "4"


def test_classify_json_records_input_config_and_prior(tmp_path: Path) -> None:
    table = write_lesions_csv(_lesions(), tmp_path / "lesions.csv")
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "o"),
                 "--prior", "0.3"]) == EXIT_OK
    doc = json.loads((tmp_path / "o" / "classify.json").read_text())
    assert doc["input"]["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert doc["classifier"]["fusion"]["prior_probability_malignant"] == 0.3
    assert doc["method"] == "rules" and sum(doc["labels"].values()) == 6
    assert all(c["prior"]["probability_malignant"] == 0.3 for c in doc["calls"])


def test_bad_cells_are_reported_per_row_and_the_row_is_still_called(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = write_lesions_csv(_lesions()[:2], tmp_path / "lesions.csv")
    rows = _rows(table)
    rows[0]["ct_attenuation_mean_hu"] = "six hundred"
    rows[0]["treated"] = "maybe"
    rows[1]["adc_b_values_s_per_mm2"] = "0;x"
    with (tmp_path / "bad.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code = main(["-q", "classify", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")])
    assert code == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "line 2 (lesion 'A'), column 'ct_attenuation_mean_hu': expected a number, found " \
           "'six hundred'" in err
    assert "line 2 (lesion 'A'), column 'treated': expected true, false or empty" in err
    assert "line 3 (lesion 'B'), column 'adc_b_values_s_per_mm2'" in err
    out = _rows(tmp_path / "o" / "lesions.csv")
    assert [r["lesion_id"] for r in out] == ["A", "B"]  # nothing dropped
    reasons = json.loads(out[0]["reasons"])
    ct_mean = next(f for f in reasons["features"] if f["feature"] == "ct_attenuation_mean_hu")
    assert ct_mean["status"] == "missing" and "six hundred" in ct_mean["note"]
    # A is still called on its MR; unknown treatment since "maybe" could not be read
    assert out[0]["label"] == "malignant"


def test_refusals_have_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = write_lesions_csv(_lesions(), tmp_path / "lesions.csv")
    assert main(["-q", "classify", str(table), "--out", str(tmp_path)]) == EXIT_INPUT
    assert "is the input table" in capsys.readouterr().err
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "o")]) == EXIT_OK
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "o")]) == EXIT_INPUT
    assert "--force" in capsys.readouterr().err
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "o"), "--force"]) == 0
    (tmp_path / "foreign.csv").write_text("a,b\n1,2\n")
    assert main(["-q", "classify", str(tmp_path / "foreign.csv"), "--out",
                 str(tmp_path / "f")]) == EXIT_INPUT
    assert "no 'lesion_id' column" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classify", str(table), "--out", str(tmp_path / "p"), "--prior", "1.5"])


def test_trained_model_instead_of_the_rules(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120).astype(float)
    raw = np.column_stack([rng.normal(1000.0 - 400.0 * y, 150.0) for _ in FEATURES])
    model = fit_logistic_model(raw, y, [f.name for f in FEATURES], folds=4, seed=0)
    path = model.to_json(tmp_path / "model.json")
    table = write_lesions_csv(_lesions(), tmp_path / "lesions.csv")
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "o"), "--model",
                 str(path)]) == EXIT_OK
    rows = _rows(tmp_path / "o" / "lesions.csv")
    assert {json.loads(r["reasons"])["method"] for r in rows} == {"trained_logistic_model"}
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "p"), "--model",
                 str(path), "--prior", "0.2"]) == EXIT_CONFIG


def test_rows_missing_features_are_called_on_what_they_have() -> None:
    m, problems = measurements_from_row({"lesion_id": "X", "adc_mean_mm2_per_s": "0.0008",
                                         "adc_b_values_s_per_mm2": "0;800"}, line=7)
    assert problems == [] and m.ct is None and m.chemical_shift is None
    assert m.adc is not None and m.adc.b_values_s_per_mm2 == (0.0, 800.0)
    assert m.adc.voxel_count is None  # not in the table: unknown, not zero
    assert "no value in column 'ct_attenuation_mean_hu'" in m.missing["ct"]
    call = classify_lesion(m)
    adc = next(r for r in call.reasons if r.feature == "adc_mean_mm2_per_s")
    assert adc.counted
