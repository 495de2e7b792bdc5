"""`bonelesion measure` on a phantom study: calls against truth.json, and every report view.

Truth: the phantom's truth.json (expected nature per lesion) and the source DICOM it wrote.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import highdicom as hd
import pytest
from support.dciodvfy import dciodvfy_errors
from support.report_series import study_documents

from bonelesion.cli import EXIT_INPUT, EXIT_OK, main
from bonelesion.phantom import load_truth, write_study
from bonelesion.report.dicom_sr import CODES

pytestmark = pytest.mark.slow  # writes and measures a full phantom study per variant (~8 s)

#: (vendor, seed, enhanced multi-frame, compressed): classic Siemens 1.5 T, and GE 3 T enhanced
#: objects with compressed pixel data (the SEG then references one multi-frame CT object).
VARIANTS = [("siemens", 3, False, False), ("ge", 4, True, True)]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: f"{v[0]}-enh{int(v[2])}")
def measured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ):  # type: ignore[no-untyped-def]
    vendor, seed, enhanced, compressed = request.param
    root = tmp_path_factory.mktemp("phantom")
    study = root / "study"
    write_study(study, vendor=vendor, seed=seed, enhanced=enhanced, compressed=compressed)
    out = root / "out"
    assert main(["-q", "measure", str(study), "--rois", str(study / "rois.csv"),
                 "--out", str(out)]) == EXIT_OK
    truth = load_truth(study / "truth.json")
    ((folder, doc),) = study_documents(out).values()
    return study, folder, truth, doc


def _calls(doc):  # type: ignore[no-untyped-def]
    return {e["lesion_id"]: e["call"] for e in doc["lesions"]}


def test_calls_never_contradict_truth(measured) -> None:  # type: ignore[no-untyped-def]
    _, _, truth, doc = measured
    calls = _calls(doc)
    assert set(calls) == {t.lesion_id for t in truth.lesions}
    for t in truth.lesions:
        assert calls[t.lesion_id]["label"] in (t.expected_nature, "indeterminate"), (
            t.lesion_id, calls[t.lesion_id]["decision"])


def test_near_threshold_and_enostoses(measured) -> None:  # type: ignore[no-untyped-def]
    _, _, truth, doc = measured
    calls = _calls(doc)
    for t in truth.lesions:
        if t.expected_nature in ("indeterminate", "benign"):
            assert calls[t.lesion_id]["label"] == t.expected_nature, calls[t.lesion_id]["decision"]
    near = [t for t in truth.lesions if t.kind == "near_threshold"]
    assert near and all(calls[t.lesion_id]["label"] == "indeterminate" for t in near)


def test_every_call_matches_truth(measured) -> None:  # type: ignore[no-untyped-def]
    _, _, truth, doc = measured
    calls = _calls(doc)
    assert {t.lesion_id: calls[t.lesion_id]["label"] for t in truth.lesions} == {
        t.lesion_id: t.expected_nature for t in truth.lesions}


def test_results_json_and_table_format(measured) -> None:  # type: ignore[no-untyped-def]
    from bonelesion.report.table import COLUMN_NAMES

    _, out, _, doc = measured
    assert doc["schema_version"] == "2.0" and doc["document"] == "study"
    assert doc["classifier"]["method"] == "rules"
    assert doc["config"]["classifier"]["ct"]["mean_threshold_hu"] == 885.0
    files = [f for series in doc["series"] for f in series["files"]]
    assert files and all(f["sop_instance_uid"] for f in files)
    # the provenance hashes (computed beside the labelling) are the files' own SHA-256
    assert all(f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
               for f in files)
    with (out / "lesions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMN_NAMES
    calls = _calls(doc)
    for row in rows:
        call = calls[row["lesion_id"]]
        assert row["label"] == call["label"]
        assert json.loads(row["reasons"])["features"] == call["features"]


def test_seg_and_sr_of_the_phantom(measured) -> None:  # type: ignore[no-untyped-def]
    study, out, truth, doc = measured
    seg_path, sr_path = (out / p for p in doc["outputs"]["dicom"])
    seg = hd.seg.segread(seg_path)
    assert len(seg.get_segment_numbers()) == len(truth.lesions)
    sr = hd.sr.srread(sr_path)
    groups = hd.sr.MeasurementReport.from_sequence([sr]).get_volumetric_roi_measurement_groups()
    calls = _calls(doc)
    for g in groups:
        lesion_id = g.tracking_identifier.removeprefix("lesion ")
        qual = {q.name.meaning: q.value for q in g.get_qualitative_evaluations()}
        assert qual[CODES["call"].meaning] == CODES[calls[lesion_id]["label"]]
    # the phantom's source images are valid (tests/phantom/test_dciodvfy.py), so SEG and SR
    # must be too: no error of their own and none inherited
    source = next(study.rglob("*.dcm"))
    assert dciodvfy_errors(source) == []
    assert dciodvfy_errors(seg_path) == []
    assert dciodvfy_errors(sr_path) == []


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.src.append(dict(attrs).get("src") or "")


def test_html_and_qc_of_the_phantom(measured) -> None:  # type: ignore[no-untyped-def]
    _, out, truth, doc = measured
    text = (out / "report.html").read_text(encoding="utf-8")
    parser = _Imgs()
    parser.feed(text)
    uid = doc["study"]["study_instance_uid"]
    for t in truth.lesions:
        assert f"lesion-{uid}-{t.lesion_id}" in text
        qc = doc["outputs"]["qc_images"][t.lesion_id]
        assert {"ct", "dixon_in_phase", "dixon_opposed_phase", "adc"} <= set(qc)
        for rel in qc.values():
            # the page embeds each key image (self-contained); qc/ holds the same PNG
            embedded = "data:image/png;base64," + base64.b64encode((out / rel).read_bytes()
                                                                   ).decode("ascii")
            assert embedded in parser.src


def test_bad_model_refused_before_measuring(measured, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    study, _, _, _ = measured
    bad = tmp_path / "m.json"
    bad.write_text("{}")
    out = tmp_path / "o"
    assert main(["-q", "measure", str(study), "--rois", str(study / "rois.csv"), "--out",
                 str(out), "--model", str(bad)]) == EXIT_INPUT
    assert not out.exists()


def test_trained_model_replaces_rules(measured, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from bonelesion.classify.model import fit_logistic_model

    study, _, _, _ = measured
    rng = np.random.default_rng(5)
    y = np.tile([0.0, 1.0], 40)
    # Ulano 2016 group means ± SD (metastasis 654 ± 176, enostosis 1190 ± 239 HU)
    ct = np.where(y == 1, rng.normal(654, 176, 80), rng.normal(1190, 239, 80))
    model = fit_logistic_model(ct[:, None], y, ["ct_attenuation_mean_hu"])
    model_path = model.to_json(tmp_path / "model.json")
    out = tmp_path / "out"
    assert main(["-q", "measure", str(study), "--rois", str(study / "rois.csv"), "--out",
                 str(out), "--model", str(model_path), "--no-dicom", "--no-qc"]) == EXIT_OK
    ((copy, doc),) = study_documents(out).values()
    assert doc["classifier"]["method"] == "trained_logistic_model"
    assert doc["classifier"]["model"]["features"] == ["ct_attenuation_mean_hu"]
    for entry in doc["lesions"]:
        assert entry["call"]["method"] == "trained_logistic_model"
        hu = entry["measurements"]["ct"]["attenuation_mean_hu"]
        # the fitted model is monotone in HU: the enostoses (≥ 1250 HU) come out benign
        if hu >= 1250:
            assert entry["call"]["label"] == "benign"
    with (copy / "lesions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == [e["call"]["label"] for e in doc["lesions"]]
