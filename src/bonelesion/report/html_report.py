"""report.html of a study and index.html of a run, rendered from the results documents.

Inline CSS, QC images as relative links (``qc/…png``), every text HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["render_study_html", "render_index_html"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
vertical-align:top;font-size:.9em}th{background:#f3f3f3;text-align:left}
.malignant{color:#a00;font-weight:bold}.benign{color:#070;font-weight:bold}
.indeterminate{color:#a60;font-weight:bold}.qc img{max-width:420px;margin:.25em}
.small{font-size:.8em;color:#555}ul{margin:.2em 0;padding-left:1.2em}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _measurement_cells(lesion: Mapping[str, Any]) -> str:
    meas = lesion["measurements"]
    parts = []
    if meas.get("ct"):
        ct = meas["ct"]
        parts.append(f"CT mean {_fmt(ct['attenuation_mean_hu'])} HU, max "
                     f"{_fmt(ct['attenuation_max_hu'])} HU")
    if meas.get("chemical_shift"):
        cs = meas["chemical_shift"]
        text = f"SIR {_fmt(cs['chemical_shift_ratio'])} (drop {_fmt(cs['signal_drop_pct'])} %)"
        if cs.get("fat_fraction") is not None:
            text += f", FF {_fmt(cs['fat_fraction'])}"
        parts.append(text)
    if meas.get("adc"):
        parts.append(f"ADC {_fmt(meas['adc']['adc_mean_mm2_per_s'])} mm²/s")
    for key, why in (lesion.get("missing") or {}).items():
        parts.append(f"{key}: missing ({why})")
    return "<br>".join(_e(p) for p in parts)


def _reasons(call: Mapping[str, Any]) -> str:
    items = []
    for f in call["features"]:
        lr = f" LR {_fmt(f['likelihood_ratio'])}" if f.get("likelihood_ratio") else ""
        fav = f" → {f['favours']}" if f.get("favours") else ""
        log_odds = f"{f['log_odds']:+.3f}"
        items.append(
            f"<li><b>{_e(f['feature'])}</b> = {_e(_fmt(f['value']))} {_e(f['unit'])} "
            f"[{_e(f['status'])}]{_e(fav)}; weight {_e(_fmt(f['weight']))}{_e(lr)}; "
            f"log-odds {_e(log_odds)}<br><span class=small>{_e(f['direction'])}"
            f"{'; ' if f['direction'] and f['note'] else ''}{_e(f['note'])}"
            f"{' — ' + _e(f['citation']) if f['citation'] else ''}</span></li>")
    decision = "".join(f"<li>{_e(d)}</li>" for d in call["decision"])
    return f"<ul>{decision}</ul><ul>{''.join(items)}</ul>"


def _spine(call: Mapping[str, Any]) -> str:
    out = []
    sins = call.get("sins")
    if sins:
        low, high = sins["total_min_points"], sins["total_max_points"]
        total = str(low) if low == high else f"{low}–{high}"
        out.append(f"SINS {total} ({sins['band']})")
        out.extend(sins["flags"])
    escc = call.get("escc")
    if escc:
        out.append(f"ESCC {escc['grade']}" + (" high grade" if escc["high_grade"] else "")
                   + (" (borderline)" if escc["borderline"] else ""))
    out.extend(call.get("spine_problems") or [])
    return "<br>".join(_e(o) for o in out)


def _page(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>", f"<style>{_CSS}</style></head><body>", *body,
        "</body></html>"])


def render_study_html(document: Mapping[str, Any]) -> str:
    """Render the report of one study from its results document.

    Parameters
    ----------
    document : mapping
        A study document (`bonelesion.report.document.study_document`) with its
        ``outputs`` (QC images and DICOM files, relative to the study folder).

    Returns
    -------
    str
        A complete HTML5 page.
    """
    outputs = document.get("outputs") or {}
    qc_images: Mapping[str, Mapping[str, str]] = outputs.get("qc_images") or {}
    dicom_files: Sequence[str] = outputs.get("dicom") or ()
    prov = document["provenance"]
    study = document["study"]
    uid = study["study_instance_uid"]
    out = [
        f"<h1>bonelesion report: study {_e(uid)}</h1>",
        f"<p class=small>patient {_e(study['patient'])}; pipeline "
        f"{_e(document['pipeline']['name'])}; bonelesion {_e(prov['package']['version'])}, "
        f"schema {_e(document['schema_version'])}, written {_e(document['run']['generated_utc'])}"
        f"; classifier: {_e(document['classifier']['method'])}. Calls are decision support, "
        "not a diagnosis.</p>",
    ]
    for s in document["series"]:
        out.append("<p class=small>" + _e(
            f"{s['role']}: series {s['series_number']} {s['series_description']!r} "
            f"({s['series_instance_uid']}, {len(s['files'])} files)") + "</p>")
    if dicom_files:
        out.append("<p class=small>DICOM: " + ", ".join(
            f'<a href="{_e(p)}">{_e(p)}</a>' for p in dicom_files) + "</p>")
    out.append("<table><tr><th>lesion</th><th>call</th><th>P(malignant)</th>"
               "<th>measurements</th><th>spine</th><th>reasons</th></tr>")
    for lesion in document["lesions"]:
        call = lesion["call"]
        label = call["label"]
        lesion_id = lesion["lesion_id"]
        out.append(
            f'<tr class="lesion" id="{_e(f"lesion-{uid}-{lesion_id}")}">'
            f'<td class="lesion-id">{_e(lesion_id)}</td>'
            f'<td class="label {_e(label)}">{_e(label)}</td>'
            f"<td>{call['probability_malignant']:.3f}</td>"
            f"<td>{_measurement_cells(lesion)}</td><td>{_spine(call)}</td>"
            f"<td>{_reasons(call)}</td></tr>")
        images = qc_images.get(lesion_id) or {}
        if images:
            imgs = "".join(
                f'<a href="{_e(p)}"><img src="{_e(p)}" '
                f'alt="{_e(f"QC lesion {lesion_id} {role}")}"></a>'
                for role, p in images.items())
            out.append(f'<tr><td colspan="6" class="qc">{imgs}</td></tr>')
    out.append("</table>")
    if document.get("warnings"):
        out.append("<h2>Warnings</h2><ul>")
        out.extend(f"<li>{_e(w)}</li>" for w in document["warnings"])
        out.append("</ul>")
    out.append("<h2>Thresholds</h2><table>")
    for section, values in (document["config"].get("classifier") or {}).items():
        if isinstance(values, Mapping):
            for key, value in values.items():
                out.append(f"<tr><td>{_e(section)}.{_e(key)}</td><td>{_e(value)}</td></tr>")
    out.append("</table>")
    return _page(f"bonelesion report {uid}", out)


#: Order of concern of a call, most concerning first.
_CONCERN = {"malignant": 0, "indeterminate": 1, "benign": 2}


def render_index_html(document: Mapping[str, Any]) -> str:
    """Render the batch index: every study, its most concerning call, a link to its report.

    Parameters
    ----------
    document : mapping
        A batch document (`bonelesion.report.document.batch_document`).
    """
    out = ["<h1>bonelesion run</h1>",
           f"<p class=small>pipeline {_e(document['pipeline']['name'])}; "
           f"{len(document['studies'])} studies; written {_e(document['run']['generated_utc'])}."
           "</p>",
           "<table><tr><th>patient</th><th>study</th><th>status</th><th>lesions</th>"
           "<th>most concerning call</th></tr>"]
    for s in document["studies"]:
        result = s.get("result") or {}
        labels = [le["call"]["label"] for le in result.get("lesions", ())]
        worst = min(labels, key=lambda lab: _CONCERN.get(lab, 3)) if labels else ""
        link = (f'<a href="{_e(s["output_dir"])}/report.html">{_e(s["study_instance_uid"])}</a>'
                if s["status"] == "ok" and (result.get("outputs") or {}).get("report_html")
                else _e(s["study_instance_uid"]))
        status = s["status"] if s["failure"] is None else (
            f"failed at {s['failure']['stage']}: {s['failure']['message']}")
        out.append(f"<tr><td>{_e(s['patient'])}</td><td>{link}</td><td>{_e(status)}</td>"
                   f"<td>{len(labels)}</td><td class=\"{_e(worst)}\">{_e(worst)}</td></tr>")
    out.append("</table>")
    return _page("bonelesion run", out)
