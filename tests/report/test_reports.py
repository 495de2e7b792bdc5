"""The views of one study: results.json provenance, lesions.csv call columns, QC PNGs, report.html."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support.classify_factory import lesion
from support.report_series import lesion_masks, write_ct_series, write_study_views

from bonelesion.classify import Label
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.report.result import study_result
from bonelesion.report.schema import SCHEMA_VERSION
from bonelesion.units import IntensityUnit

NASTY_ID = '<script>alert("x")</script>&L3'


def mr_volume(ct: Volume, role: str, unit: IntensityUnit, value: float) -> Volume:
    """A coarser MR grid in the CT's frame of reference (mask must be resampled onto it)."""
    info = SeriesInfo(series_instance_uid=f"1.2.826.0.1.3680043.8.498.{len(role)}9",
                      frame_of_reference_uid=ct.series.frame_of_reference_uid, modality="MR",
                      role=role)
    shape = (5, 20, 24)
    arr = np.full(shape, value)
    return Volume(array=arr, spacing_mm=(4.0, 1.6, 1.4), origin_lps_mm=ct.origin_lps_mm,
                  direction_lps=ct.direction_lps, intensity_unit=unit, series=info)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("run")
    ct = write_ct_series(root / "ct")
    uid = ct.series.study_instance_uid
    masks = lesion_masks(ct)
    masks[NASTY_ID] = masks["L1"]
    lesions = [
        lesion(ct=(700.0, 820.0), sir=1.0, fat_fraction=0.05, adc=0.8e-3, lesion_id="L1",
               study=uid, annotations={"treated": False}),
        lesion(ct=(1200.0, 1310.0), lesion_id="L2", study=uid,
               annotations={"escc_grade": "1c", "sins_location": "T12", "treated": False}),
        lesion(ct=(880.0, 990.0), lesion_id=NASTY_ID, study=uid,
               missing={"adc": "no DWI <b>series</b>"}),
    ]
    volumes = {"ct": ct,
               "dixon_in_phase": mr_volume(ct, "dixon_in_phase", IntensityUnit.ARBITRARY, 500.0),
               "adc": mr_volume(ct, "adc", IntensityUnit.MM2_PER_S, 1.0e-3)}
    study = study_result(lesions, volumes=volumes, masks=masks, warnings=["one DWI slice dropped"])
    out = root / "out"
    document, _ = write_study_views(out, study, command=["bonelesion", "measure", "x"])
    return root, study, out


def test_results_json_schema_and_provenance(run) -> None:  # type: ignore[no-untyped-def]
    root, study, out = run
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == "2.0" and doc["document"] == "study"
    prov = doc["provenance"]
    assert prov["package"]["name"] == "bonelesion"
    assert prov["dependencies"]["pydicom"] == pydicom.__version__
    assert doc["config"]["classifier"]["ct"]["mean_threshold_hu"] == 885.0
    epi = doc["config"]["classifier"]["adc"]["protocols"][0]
    assert epi["cutoff_mm2_per_s"] == pytest.approx(1.14e-3)
    assert doc["run"]["command"] == ["bonelesion", "measure", "x"]
    s = doc
    ct_series = next(x for x in s["series"] if x["role"] == "ct")
    assert len(ct_series["files"]) == 8
    for entry in ct_series["files"]:
        data = Path(entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["sop_instance_uid"] == pydicom.dcmread(entry["path"]).SOPInstanceUID
    ids = [x["lesion_id"] for x in s["lesions"]]
    assert ids == ["L1", "L2", NASTY_ID]
    l1 = s["lesions"][0]
    assert l1["measurements"]["ct"]["attenuation_mean_hu"] == 700.0
    # L1 700 HU < 885, SIR 1.0 >= 0.80, ADC 0.8e-3 <= 1.14e-3 mm2/s; L2 1200 HU >= 885
    # (enostosis side); L3 880 HU lies within the +-60 HU band of 885
    assert [x["call"]["label"] for x in s["lesions"]] == ["malignant", "benign",
                                                         "indeterminate"]
    assert any("one DWI slice dropped" in w for w in doc["warnings"])
    assert [Path(p).name.split("_")[0] for p in doc["outputs"]["dicom"]] == ["seg", "sr"]


def test_lesion_table_has_call_columns(run) -> None:  # type: ignore[no-untyped-def]
    _, study, out = run
    with (out / "lesions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["lesion_id"] for r in rows] == ["L1", "L2", NASTY_ID]
    for row, call in zip(rows, study.calls, strict=True):
        assert row["label"] == call.label.value
        assert float(row["probability_malignant"]) == pytest.approx(call.probability_malignant,
                                                                    abs=1e-6)
        reasons = json.loads(row["reasons"])
        assert {f["feature"] for f in reasons["features"]} >= {"ct_attenuation_mean_hu",
                                                              "adc_mean_mm2_per_s"}
    assert rows[0]["ct_attenuation_mean_hu"] == "700.0"
    assert rows[0]["mr_chemical_shift_ratio"] == "1.0"
    assert rows[1]["escc_grade"] == "1c" and rows[1]["adc_mean_mm2_per_s"] == ""
    assert rows[2]["label"] == Label.INDETERMINATE.value  # 880 HU: inside the ±60 HU band


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and "lesion" in (a.get("class") or "").split():
            # the summary row of a lesion names it and its call (the browser test reads the
            # rendered text)
            self.rows.append({"lesion-id": a.get("data-lesion") or "",
                              "label": a.get("data-label") or ""})
        if tag == "img":
            self.images.append(a.get("src") or "")


def test_html_lists_every_lesion_label_and_qc_image(run) -> None:  # type: ignore[no-untyped-def]
    root, study, out = run
    html = (out / "report.html").read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(html)
    assert parser.scripts == 0  # the nasty lesion id was escaped, not executed
    found = {r["lesion-id"]: r["label"] for r in parser.rows}
    assert found == {c.lesion_id: c.label.value for c in study.calls}
    doc = json.loads((out / "results.json").read_text())
    for call in study.calls:
        images = doc["outputs"]["qc_images"][call.lesion_id]
        assert set(images) == {"ct", "dixon_in_phase", "adc"}
        for rel in images.values():
            # embedded in the page (self-contained); qc/ holds the same PNG
            data = base64.b64encode((out / rel).read_bytes()).decode("ascii")
            assert f"data:image/png;base64,{data}" in parser.images
    assert "no DWI &lt;b&gt;series&lt;/b&gt;" in html


def test_reports_without_images_record_why(tmp_path: Path) -> None:
    study = study_result([lesion(sir=1.0)])
    doc, rows = write_study_views(tmp_path, study)
    assert doc["outputs"]["dicom"] == [] and doc["outputs"]["qc_images"] == {}
    assert any("no DICOM SEG/SR" in w for w in doc["warnings"])
    assert json.loads((tmp_path / "results.json").read_text()) == doc
    assert "L1" in (tmp_path / "report.html").read_text() and rows[0]["lesion_id"] == "L1"


