"""report.html and index.html rendered by a real headless Chromium, read back from the page.

One phantom study is written as DICOM and measured with ``bonelesion measure`` (ROIs with
the vertebra of each lesion, from the phantom's truth); one browser session serves the whole
module (driven over the DevTools protocol, `chromium_cdp`). The checks read the rendered
page: text after layout, image natural sizes after decoding, a full-page screenshot, and the
report moved alone to another folder.

Truth: the phantom's truth.json (lesion radius, vertebra, expected call), the DICOM headers it
wrote (study date), and the stages' own results (core voxel counts, values) in results.json.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from support.chromium_cdp import Browser, Page, find_chromium
from support.report_series import study_documents

from bonelesion.cli import EXIT_OK, main
from bonelesion.phantom import load_truth, write_study

pytestmark = pytest.mark.slow  # one phantom study measured twice (~15 s) and one browser

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not installed (Debian package 'chromium'; `make install` adds it when "
           "apt-get is usable): the rendered-report tests need a real browser")

#: The phantom's lesion outline is a digitised sphere: its caliper diameter is within
#: 1.5 mm (one CT pixel plus rounding to whole mm) of the sphere's.
ATOL_DIAMETER_MM = 1.5
#: A key image as painted in the screenshot vs the embedded PNG scaled to the same box:
#: mean absolute difference in 8-bit levels (resampling only).
ATOL_PAINTED_LEVELS = 12.0

#: Read the page after load: images, rows, text, fetched resources, outside references.
PAGE_STATE_JS = r"""
(() => {
  const txt = el => el ? el.innerText.replace(/\u00a0/g, ' ').trim() : null;
  const imgs = Array.from(document.images).map(i => ({
    src: i.getAttribute('src').slice(0, 30), complete: i.complete,
    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
    width: i.getAttribute('width'), height: i.getAttribute('height'),
    role: i.closest('figure') && i.closest('figure').dataset.role || null,
    lesion: i.closest('article') && i.closest('article').dataset.lesion || null,
    caption: txt(i.closest('figure') && i.closest('figure').querySelector('figcaption')),
  }));
  const rows = Array.from(document.querySelectorAll('#summary tr.lesion')).map(tr => {
    const cell = c => txt(tr.querySelector('td.' + c));
    return {lesion: tr.dataset.lesion, level: cell('level'), size: cell('size'),
            ct_mean: cell('ct-mean'), ct_max: cell('ct-max'), sir: cell('sir'),
            fat: cell('fat'), adc: cell('adc'), call: cell('call'), reason: cell('reason')};
  });
  const outside = Array.from(document.querySelectorAll('[src],link[href],[style*="url("]'))
    .map(e => e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('style'))
    .filter(v => !v.startsWith('data:'));
  return {
    imgs, rows, text: txt(document.body),
    context: txt(document.querySelector('#context')),
    warnings: Array.from(document.querySelectorAll('#warnings + ul li')).map(txt),
    resources: performance.getEntriesByType('resource').map(e => e.name),
    scripts: document.scripts.length, outside,
    openDetails: document.querySelectorAll('details[open]').length,
    reasoning: document.querySelectorAll('article details.reasoning').length,
    firstImage: (() => { const r = document.querySelector('figure.key-image img')
                           .getBoundingClientRect();
                         return {x: r.x + scrollX, y: r.y + scrollY, w: r.width, h: r.height}; })(),
    summaryBox: (() => { const r = document.querySelector('#summary').getBoundingClientRect();
                         return {x: r.x + scrollX, y: r.y + scrollY, w: r.width, h: r.height}; })(),
  };
})()
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("browser")
    study = root / "study"
    write_study(study, seed=1)
    truth = load_truth(study / "truth.json")
    # the ROI file with each lesion's vertebra (a free annotation column)
    rois = root / "rois_levels.csv"
    with (study / "rois.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    level = {t.lesion_id: t.vertebra for t in truth.lesions}
    with rois.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], "vertebra"])
        writer.writeheader()
        writer.writerows({**r, "vertebra": level[r["lesion_id"]]} for r in rows)
    out = root / "out"
    assert main(["-q", "measure", str(study), "--rois", str(rois), "--out", str(out)]) == EXIT_OK
    key = root / "key.txt"
    key.write_text("a-test-key-of-enough-length-0123456789\n")
    psn = root / "psn"
    assert main(["-q", "measure", str(study), "--rois", str(rois), "--out", str(psn),
                 "--no-dicom", "--no-qc", "--pseudonymise", "--pseudonym-key-file", str(key)]) == EXIT_OK
    ((folder, doc),) = study_documents(out).values()
    ((psn_folder, psn_doc),) = study_documents(psn).values()
    first = next(p for p in sorted(study.rglob("*")) if p.is_file() and p.suffix != ".json"
                 and p.name not in ("rois.csv",) and _is_dicom(p))
    header = pydicom.dcmread(first, stop_before_pixels=True)
    return {"root": root, "study": study, "truth": truth, "out": out, "folder": folder,
            "doc": doc, "psn": psn, "psn_folder": psn_folder, "psn_doc": psn_doc,
            "header": header}


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


@pytest.fixture(scope="module")
def browser() -> Any:
    if CHROMIUM is None:
        pytest.skip("no Chromium")
    b = Browser(CHROMIUM)
    yield b
    b.close()


def _state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(PAGE_STATE_JS)
    return state


@pytest.fixture(scope="module")
def report(browser: Browser, runs: dict[str, Any]) -> dict[str, Any]:
    page = browser.open((runs["folder"] / "report.html").as_uri())
    state = _state(page)
    shot = page.screenshot(runs["root"] / "report.png")
    page.close()
    return {"state": state, "screenshot": shot}


def _check_images_decoded(state: dict[str, Any], doc: dict[str, Any]) -> None:
    images = state["imgs"]
    expected = sum(len(v) for v in doc["outputs"]["qc_images"].values()) + 1  # + overview
    assert len(images) == expected
    for im in images:
        assert im["src"].startswith("data:image/png;base64,")
        assert im["complete"] and im["naturalWidth"] > 0, im
        # the decoded PNG has the size the page reserves for it
        assert (im["naturalWidth"], im["naturalHeight"]) == (int(im["width"]),
                                                               int(im["height"]))
    assert state["resources"] == []  # nothing fetched: no font, script, stylesheet, image
    assert state["outside"] == [] and state["scripts"] == 0


@needs_chromium
def test_rendered_report_shows_every_lesion_with_decoded_key_images(
        report: dict[str, Any], runs: dict[str, Any]) -> None:
    state, doc = report["state"], runs["doc"]
    _check_images_decoded(state, doc)
    for lesion in doc["lesions"]:
        shown = {im["role"] for im in state["imgs"] if im["lesion"] == lesion["lesion_id"]}
        assert shown == set(doc["outputs"]["qc_images"][lesion["lesion_id"]])
    # each caption's core is the one the stage averaged on that series
    voxels = {le["lesion_id"]: le["measurements"] for le in doc["lesions"]}
    for im in state["imgs"]:
        if im["role"] is None:
            continue
        m = voxels[im["lesion"]]
        expected = {"ct": m["ct"]["core_voxel_count"], "adc": m["adc"]["voxel_count"]}.get(
            im["role"], m["chemical_shift"]["voxel_count"])
        core = int(re.search(r"measured core (\d+) voxels", im["caption"]).group(1))
        assert core == expected, (im["lesion"], im["role"])


@needs_chromium
def test_rendered_summary_in_radiologists_units(report: dict[str, Any],
                                                runs: dict[str, Any]) -> None:
    state, doc, truth = report["state"], runs["doc"], runs["truth"]
    by_id = {t.lesion_id: t for t in truth.lesions}
    rows = state["rows"]
    assert [r["lesion"] for r in rows] == [le["lesion_id"] for le in doc["lesions"]]
    for row, lesion in zip(rows, doc["lesions"], strict=True):
        m, call, t = lesion["measurements"], lesion["call"], by_id[row["lesion"]]
        assert row["level"] == t.vertebra
        assert row["ct_mean"] == f"{m['ct']['attenuation_mean_hu']:.0f}"
        assert row["ct_max"] == f"{m['ct']['attenuation_max_hu']:.0f}"
        assert row["sir"] == f"{m['chemical_shift']['chemical_shift_ratio']:.2f}"
        assert row["adc"] == f"{m['adc']['adc_mean_mm2_per_s'] * 1e3:.2f}"
        long_mm, short_mm = (float(x) for x in re.findall(r"\d+", row["size"]))
        assert long_mm == pytest.approx(2 * t.radius_mm, abs=ATOL_DIAMETER_MM)
        assert short_mm == pytest.approx(2 * t.radius_mm, abs=ATOL_DIAMETER_MM)
        assert call["label"] == t.expected_nature
        assert row["call"].lower().startswith(call["label"])
        if call["label"] == "indeterminate":
            # a probability beside an indeterminate call always says what it means
            assert "does not decide" in row["call"] and "bounds" in row["call"]
        assert row["reason"] and "posterior" not in row["reason"].split(":")[0]
    text = state["text"]
    for machine in ("[hnsf'U]", "mm2/s", "µm²/s", "um2/s", "_mm2_per_s", "_hu "):
        assert machine not in text, machine
    assert "×10⁻³ mm²/s" in text and " HU" in text
    assert len(state["warnings"]) == len(set(state["warnings"]))
    assert state["openDetails"] == 0 and state["reasoning"] == len(doc["lesions"])
    # context from the DICOM headers the phantom wrote
    header = runs["header"]
    date = str(header.StudyDate)
    assert f"{date[:4]}-{date[4:6]}-{date[6:]}" in state["context"]
    assert str(header.StudyDescription) in state["context"]
    assert str(header.PatientID) in state["context"]


@needs_chromium
def test_screenshot_shows_the_page_and_its_images(report: dict[str, Any],
                                                  runs: dict[str, Any]) -> None:
    state = report["state"]
    shot = np.asarray(Image.open(report["screenshot"]).convert("RGB")).astype(float)
    assert shot.shape[1] == 1280 and shot.shape[0] > 3000
    assert shot[:600].std() > 10  # the header and summary are drawn, not a blank page
    # the call badges are painted in the summary table
    box = state["summaryBox"]
    table = shot[int(box["y"]):int(box["y"] + box["h"]), int(box["x"]):int(box["x"] + box["w"])]
    red = np.all(np.abs(table - [0xD7, 0x26, 0x3D]) < 30, axis=-1)
    assert red.sum() > 100
    # the first key image is painted as decoded: compare with its PNG at the painted size
    r = state["firstImage"]
    painted = shot[round(r["y"]):round(r["y"] + r["h"]), round(r["x"]):round(r["x"] + r["w"])]
    src = _first_key_image_png(runs["folder"] / "report.html")
    scaled = np.asarray(src.convert("RGB").resize((painted.shape[1], painted.shape[0]),
                                                  Image.Resampling.BILINEAR)).astype(float)
    assert np.abs(painted - scaled).mean() < ATOL_PAINTED_LEVELS


def _first_key_image_png(html: Path) -> Image.Image:
    page = html.read_text(encoding="utf-8")
    first = re.search(r'<figure class="key-image"[^>]*>\s*<img src="data:image/png;base64,'
                      r'([A-Za-z0-9+/=]+)"', page)
    assert first is not None
    return Image.open(io.BytesIO(base64.b64decode(first.group(1))))


@needs_chromium
def test_report_moved_alone_still_reads(browser: Browser, runs: dict[str, Any],
                                        tmp_path: Path) -> None:
    alone = tmp_path / "mailed"
    alone.mkdir()
    shutil.copy(runs["folder"] / "report.html", alone / "report.html")
    page = browser.open((alone / "report.html").as_uri(), javascript=False)
    state = _state(page)
    page.close()
    _check_images_decoded(state, runs["doc"])
    assert [r["lesion"] for r in state["rows"]] == [le["lesion_id"]
                                                   for le in runs["doc"]["lesions"]]


@needs_chromium
def test_index_links_each_study_with_its_most_concerning_call(
        browser: Browser, runs: dict[str, Any]) -> None:
    page = browser.open((runs["out"] / "index.html").as_uri())
    rows = page.evaluate(r"""Array.from(document.querySelectorAll('#studies tr.study')).map(tr => ({
        study: tr.dataset.study, link: tr.querySelector('a.report-link').href,
        worst: tr.querySelector('td.worst').innerText.replace(/\u00a0/g, ' '),
        lesionLink: tr.querySelector('td.worst a').href}))""")
    page.close()
    doc = runs["doc"]
    assert [r["study"] for r in rows] == [doc["study"]["study_instance_uid"]]
    (row,) = rows
    target = Path(row["link"].removeprefix("file://"))
    assert target.resolve() == (runs["folder"] / "report.html").resolve()
    worst = max(doc["lesions"], key=lambda le: le["call"]["probability_malignant"])
    assert row["worst"].startswith("Malignant") and worst["lesion_id"] in row["worst"]
    anchor = row["lesionLink"].split("#", 1)[1]
    assert f'id="{anchor}"' in target.read_text(encoding="utf-8")


def test_pseudonymised_report_holds_no_patient_identifier(runs: dict[str, Any]) -> None:
    header = runs["header"]
    raw = {str(header.PatientID), str(header.PatientName),
           str(header.PatientName).replace("^", " ")}
    label = runs["psn_doc"]["study"]["patient"]
    assert label and label not in raw
    for page in (runs["psn_folder"] / "report.html", runs["psn"] / "index.html"):
        text = page.read_text(encoding="utf-8")
        assert label in text
        for identifier in raw:
            assert identifier not in text, (page.name, identifier)
    # the study context is kept, as in the pseudonymised DICOM outputs
    assert runs["psn_doc"]["study"]["study_date"] == str(header.StudyDate)
    assert json.dumps(runs["psn_doc"]).count(str(header.PatientID)) == 0
