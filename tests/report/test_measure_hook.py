"""The measure hook on outputs written by the stages' own writers (no DICOM needed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from classify_factory import lesion

from bonelesion.errors import InputError
from bonelesion.report.measure_hook import add_calls_and_reports, measurements_from_results_json
from bonelesion.stages.config import load_config
from bonelesion.stages.output import write_lesions_csv, write_results_json


@pytest.fixture
def outputs(tmp_path: Path):  # type: ignore[no-untyped-def]
    ms = [lesion(ct=(650.0, 800.0), sir=1.0, adc=0.8e-3, lesion_id="A",
                 annotations={"treated": False, "escc_grade": "2"}),
          lesion(ct=1250.0, lesion_id="B", missing={"adc": "no DWI"},
                 annotations={"treated": False}),
          lesion(lesion_id="C", missing={"ct": "no CT", "adc": "no DWI",
                                         "chemical_shift": "no Dixon"})]
    write_lesions_csv(ms, tmp_path / "lesions.csv")
    write_results_json(ms, load_config(None), tmp_path / "results.json")
    return tmp_path, ms


def test_round_trip_of_measure_results(outputs) -> None:  # type: ignore[no-untyped-def]
    out, ms = outputs
    back = measurements_from_results_json(out / "results.json")
    assert back == ms  # frozen dataclasses compare field by field


def test_calls_added_without_changing_measure_columns(outputs) -> None:  # type: ignore[no-untyped-def]
    out, ms = outputs
    before = list(csv.DictReader((out / "lesions.csv").open(newline="")))
    files = add_calls_and_reports(out)
    after = list(csv.DictReader((out / "lesions.csv").open(newline="")))
    for b, a in zip(before, after, strict=True):
        assert {k: a[k] for k in b} == b
    # A: 650 HU < 885, SIR 1.0, ADC 0.8e-3; B: 1250 HU (enostosis side); C: nothing measured
    assert [a["label"] for a in after] == ["malignant", "benign", "indeterminate"]
    assert after[0]["escc_grade"] == "2" and after[0]["escc_high_grade"] == "true"
    doc = json.loads((out / "results.json").read_text())
    assert [e["call"]["label"] for e in doc["lesions"]] == ["malignant", "benign",
                                                            "indeterminate"]
    assert doc["config"] and doc["classifier"]["method"] == "rules"
    assert files.html is not None and "no Dixon" in files.html.read_text()
    assert files.dicom == {} and files.qc_images == {}


def test_mismatched_table_refused(outputs) -> None:  # type: ignore[no-untyped-def]
    out, _ = outputs
    rows = (out / "lesions.csv").read_text().splitlines()
    (out / "lesions.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(InputError, match="do not match the lesions of results.json"):
        add_calls_and_reports(out)


def test_missing_or_foreign_results_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot rebuild the lesion measurements"):
        add_calls_and_reports(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"lesions": [{"lesion_id": "x"}]}))
    with pytest.raises(InputError, match="expected the results.json written by"):
        measurements_from_results_json(tmp_path / "results.json")
