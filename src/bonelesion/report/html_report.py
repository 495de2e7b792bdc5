"""report.html of a study and index.html of a run, rendered from the results documents.

Both pages come from Jinja2 templates shipped as package data
(``bonelesion/report/templates/*.html.j2``; autoescaped). A study report is one
self-contained file: its CSS is inline, its images are PNGs embedded as ``data:`` URIs, it
loads no font, script or stylesheet, and it reads without JavaScript, so it can be moved or
mailed alone. Every number shown is in the unit people write (`bonelesion.report.wording`);
UCUM codes stay in the machine outputs.

What the page is made of is built here as plain dictionaries (the view), so the templates
only lay it out. The templates read the view's keys by subscript (``le['label']``), not as
attributes (``le.label``): Jinja tries an attribute first, and that failed look-up, once
for each of the ~25 000 values of a 200-lesion report, took about a third of its rendering.
"""

from __future__ import annotations

import base64
import functools
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bonelesion.report.figures import (
    CALL_COLOURS,
    CORE_COLOUR,
    ROI_COLOUR,
    KeyImage,
    LesionGeometry,
    StudyFigures,
)
from bonelesion.report.wording import (
    STATUS_NAMES,
    feature_name,
    format_adc,
    format_dicom_date,
    format_feature_value,
    format_hu,
    format_lr,
    format_pct,
    format_probability,
    format_ratio,
    humanise,
    role_name,
    vertebral_level,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import jinja2

__all__ = ["render_study_html", "render_index_html", "prepare_study_template", "CONCERN_ORDER"]

#: Order of concern of a call, most concerning first.
CONCERN_ORDER = {"malignant": 0, "indeterminate": 1, "benign": 2}

_LABEL_TITLES = {"malignant": "Malignant", "benign": "Benign", "indeterminate": "Indeterminate"}


def _new_environment(*, compiled: Path | None) -> jinja2.Environment:
    """Make the template environment.

    Its templates come from those compiled ahead of time in `compiled` when these are up to
    date (`bonelesion.report.precompile`), else they are compiled in this process.
    """
    import jinja2

    from bonelesion.report.precompile import environment_options, precompiled_loader

    loader = precompiled_loader(compiled) if compiled is not None else None
    return jinja2.Environment(
        loader=loader or jinja2.PackageLoader("bonelesion.report", "templates"),
        **environment_options())


@functools.cache
def _environment() -> jinja2.Environment:
    from bonelesion.report.precompile import COMPILED

    return _new_environment(compiled=COMPILED)


def prepare_study_template() -> None:
    """Load the study report's templates now, not at the first render.

    The per-study run calls this while the CT's vertebrae are labelled on another thread.
    From the templates compiled when the package was built, ~1 ms; compiling them (a source
    checkout whose templates changed since ``make install``), ~30-60 ms.
    """
    env = _environment()
    env.get_template("study.html.j2")
    env.get_template("_base.html.j2")


_UNIT_GAP = re.compile(r"(?<=\d) (?=HU\b|×10⁻³ mm²/s|mm\b|mL\b|%|s/mm²)")


def _nbsp(text: str) -> str:
    """Keep a number and its unit on one line (no-break spaces)."""
    return _UNIT_GAP.sub("\u00a0", text).replace("×10⁻³ mm²/s", "×10⁻³\u00a0mm²/s")


@functools.lru_cache(maxsize=4096)
def _h(text: str) -> str:
    """`humanise`, with numbers kept beside their units.

    Cached: a study repeats most of its texts in every lesion (the same notes, citations,
    reasons), and a text's reading depends on nothing else.
    """
    return _nbsp(humanise(text))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _dedupe(items: Sequence[str], *, exclude: Sequence[str] = ()) -> list[str]:
    """Items in order, each once, without those in ``exclude``."""
    seen = set(exclude)
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


# ---------------------------------------------------------------------------- the call
def _bounds(document: Mapping[str, Any]) -> tuple[float | None, float | None]:
    fusion = (document.get("config") or {}).get("classifier", {}).get("fusion") or {}
    benign, malignant = fusion.get("benign_max_probability"), fusion.get(
        "malignant_min_probability")
    return (float(benign) if isinstance(benign, (int, float)) else None,
            float(malignant) if isinstance(malignant, (int, float)) else None)


def _probability_text(call: Mapping[str, Any], bounds: tuple[float | None, float | None]
                      ) -> str:
    """Say what the probability beside a call means (never bare beside indeterminate)."""
    label = call["label"]
    p = call.get("probability_malignant")
    benign, malignant = bounds
    if label == "malignant":
        limit = f" ≥ {malignant:.2f}" if malignant is not None else ""
        return f"P(malignant) {format_probability(p)}{limit}"
    if label == "benign":
        limit = f" ≤ {benign:.2f}" if benign is not None else ""
        return f"P(malignant) {format_probability(p)}{limit}"
    why = next((d.split(":", 1)[1].strip() for d in reversed(call.get("decision") or ())
                if d.startswith("indeterminate:")), "")
    if "treated lesion" in why:
        return ("Treated lesion: response assessment; no probability of malignancy is given "
                "(" + _h(why) + ")")
    if why.startswith("posterior between") and benign is not None and malignant is not None:
        return (f"P(malignant) {format_probability(p)} does not decide: it lies between the "
                f"benign (≤ {benign:.2f}) and malignant (≥ {malignant:.2f}) bounds")
    return (f"P(malignant) {format_probability(p)} does not decide: "
            + (_h(why) if why else "the evidence does not reach either bound"))


_LEADING_SUMMARY = re.compile(r"(?:^|(?<=; ))(?:malignant|benign|indeterminate) "
                              r"\(posterior [0-9.]+\):\s*"
                              r"(?:posterior between the decision bounds [0-9.]+ and [0-9.]+"
                              r"(?:;\s*|$))?")


def _reason(call: Mapping[str, Any]) -> str:
    """Return the call's one-line reading in human words (call and P are shown beside it)."""
    statement = call.get("statement") or "; ".join(call.get("decision") or ())
    return _LEADING_SUMMARY.sub("", _h(statement)).strip("; ")


def _feature_rows(call: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for f in call.get("features") or ():
        feature, unit = f["feature"], f.get("unit") or ""
        rows.append({
            "name": feature_name(feature),
            "status": f["status"],
            "status_text": STATUS_NAMES.get(f["status"], f["status"].replace("_", " ")),
            "counted": f["status"] in ("applied", "near_threshold") and f.get("weight", 0) > 0,
            "value": _nbsp(format_feature_value(f.get("value"), unit, feature)),
            "threshold": _nbsp(format_feature_value(f.get("threshold"), unit, feature)),
            "favours": f.get("favours") or "—",
            "likelihood_ratio": format_lr(f.get("likelihood_ratio")),
            "weight": f"{f.get('weight', 0):g}",
            "log_odds": f"{f.get('log_odds', 0.0):+.2f}",
            "direction": _h(f.get("direction") or ""),
            "note": _h(f.get("note") or ""),
            "citation": (f.get("citation") or "").replace("[hnsf'U]", "HU"),
            "unreliable": bool(f.get("unreliable")),
        })
    return rows


def _spine(call: Mapping[str, Any]) -> list[str]:
    out = []
    sins = call.get("sins")
    if sins:
        low, high = sins["total_min_points"], sins["total_max_points"]
        total = str(low) if low == high else f"{low}–{high}"
        out.append(f"SINS {total} ({sins['band']})")
        out.extend(sins.get("flags") or ())
    escc = call.get("escc")
    if escc:
        out.append(f"ESCC grade {escc['grade']}" + (", high grade" if escc["high_grade"] else "")
                   + (" (borderline)" if escc["borderline"] else ""))
    out.extend(call.get("spine_problems") or ())
    return [_h(o) for o in out]


# ---------------------------------------------------------------------------- measurements
def _size_text(lesion: Mapping[str, Any], geometry: LesionGeometry | None) -> str:
    if geometry is not None:
        return f"{geometry.long_axis_mm:.0f}\u00a0×\u00a0{geometry.short_axis_mm:.0f} mm"
    ct = (lesion.get("measurements") or {}).get("ct") or {}
    volume = ct.get("lesion_volume_ml")
    if isinstance(volume, (int, float)) and volume > 0:
        return f"≈ {(6.0 * volume * 1000.0 / math.pi) ** (1.0 / 3.0):.0f} mm"
    return "—"


def _measurement_lines(lesion: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return (what, value) pairs of the lesion's measurements, in human units."""
    meas = lesion.get("measurements") or {}
    out: list[tuple[str, str]] = []
    ct = meas.get("ct")
    if ct:
        out.append(("CT attenuation (core)",
                    f"mean {format_hu(ct['attenuation_mean_hu'])} ± "
                    f"{format_hu(ct.get('attenuation_sd_hu'))} SD; median "
                    f"{format_hu(ct.get('attenuation_median_hu'))}; 5th–95th percentile "
                    f"{format_hu(ct.get('attenuation_p05_hu'))} to "
                    f"{format_hu(ct.get('attenuation_p95_hu'))}; maximum "
                    f"{format_hu(ct.get('attenuation_max_hu'))} (largest cross-section "
                    f"{format_hu(ct.get('attenuation_central_slice_max_hu'))})"))
        margin = ct.get("erosion_margin_mm")
        core = (f"{ct.get('core_voxel_count')} of {ct.get('lesion_voxel_count')} voxels "
                f"after a {margin:.1f} mm erosion" if isinstance(margin, (int, float))
                else f"{ct.get('core_voxel_count')} voxels")
        if ct.get("erosion_fell_back"):
            core += " (the erosion emptied the ROI: the whole ROI was measured)"
        volume = ct.get("lesion_volume_ml")
        if isinstance(volume, (int, float)):
            core = f"ROI {volume:.1f} mL; core {core}"
        out.append(("CT ROI", core))
    cs = meas.get("chemical_shift")
    if cs:
        text = (f"SIR {format_ratio(cs['chemical_shift_ratio'])} (signal drop "
                f"{format_pct((cs.get('signal_drop_pct') or 0.0) / 100.0)})")
        if cs.get("fat_fraction") is not None:
            text += f"; Dixon fat fraction {format_pct(cs['fat_fraction'])}"
        ip, op = cs.get("signal_in_phase_mean"), cs.get("signal_opposed_phase_mean")
        if isinstance(ip, (int, float)) and isinstance(op, (int, float)):
            text += f"; mean signal in-phase {ip:.0f}, opposed-phase {op:.0f}"
        te_in, te_op = cs.get("echo_time_in_phase_ms"), cs.get("echo_time_opposed_phase_ms")
        if isinstance(te_in, (int, float)) and isinstance(te_op, (int, float)):
            text += f" (TE {te_in:.2f} / {te_op:.2f} ms"
            field_t = cs.get("magnetic_field_strength_t")
            text += f", {field_t:g} T)" if isinstance(field_t, (int, float)) else ")"
        text += f"; {cs.get('voxel_count')} voxels"
        out.append(("Chemical shift (Dixon)", text))
    adc = meas.get("adc")
    if adc:
        text = (f"mean {format_adc(adc['adc_mean_mm2_per_s'])}; median "
                f"{format_adc(adc.get('adc_median_mm2_per_s'), unit=False)}, 10th–90th "
                f"percentile {format_adc(adc.get('adc_p10_mm2_per_s'), unit=False)}–"
                f"{format_adc(adc.get('adc_p90_mm2_per_s'))}")
        source = {"scanner": "scanner ADC map", "fitted": "fitted from the DWI"}.get(
            adc.get("adc_source") or "", adc.get("adc_source") or "")
        bvals = adc.get("b_values_s_per_mm2") or ()
        if bvals:
            source += ", b " + ", ".join(f"{b:g}" for b in bvals) + " s/mm²"
        text += f" ({source}; {adc.get('voxel_count')} voxels)"
        out.append(("ADC", text))
    return [(what, _nbsp(text)) for what, text in out]


def _summary_values(lesion: Mapping[str, Any]) -> dict[str, str]:
    meas = lesion.get("measurements") or {}
    ct = meas.get("ct") or {}
    cs = meas.get("chemical_shift") or {}
    adc = meas.get("adc") or {}
    return {
        "ct_mean": format_hu(ct.get("attenuation_mean_hu")).replace(" HU", ""),
        "ct_max": format_hu(ct.get("attenuation_max_hu")).replace(" HU", ""),
        "sir": format_ratio(cs.get("chemical_shift_ratio")),
        "fat": format_pct(cs.get("fat_fraction")).replace(" %", ""),
        "adc": format_adc(adc.get("adc_mean_mm2_per_s"), unit=False),
    }


# ---------------------------------------------------------------------------- views
def _key_image_view(image: KeyImage, lesion: Mapping[str, Any]) -> dict[str, Any]:
    what = role_name(image.role)
    core = (f"measured core {image.core_voxel_count} voxels (ROI eroded by "
            f"{image.core_margin_mm:.1f} mm)" if not image.core_fell_back
            else f"whole ROI measured ({image.roi_voxel_count} voxels: the erosion emptied it)")
    return {
        "role": image.role,
        "title": what,
        "src": _data_uri(image.png),
        "width": image.width_px,
        "height": image.height_px,
        "alt": f"Lesion {lesion['lesion_id']} on {what}, {image.plane} slice "
               f"{image.slice_number}",
        "caption": f"{image.plane} slice {image.slice_number}/{image.slice_count}; "
                   f"window {image.window}; ROI {image.roi_voxel_count} voxels, {core}; "
                   f"field of view {image.field_of_view_mm:.0f} mm",
    }


def _lesion_view(lesion: Mapping[str, Any], uid: str, index: int,
                 bounds: tuple[float | None, float | None], figures: StudyFigures,
                 study_warnings: Sequence[str]) -> dict[str, Any]:
    call = lesion["call"]
    lesion_id = lesion["lesion_id"]
    geometry = figures.geometry.get(lesion_id)
    missing = [f"{k.replace('_', ' ')}: {_h(v)}" for k, v in
               (lesion.get("missing") or {}).items()]
    warnings = _dedupe([_h(w) for w in lesion.get("warnings") or ()],
                       exclude=list(study_warnings))
    return {
        "number": index + 1,
        "lesion_id": lesion_id,
        "anchor": f"lesion-{uid}-{lesion_id}",
        "source": lesion.get("source") or "",
        "level": vertebral_level(lesion),
        "size": _nbsp(_size_text(lesion, geometry)),
        "size_plane": geometry.plane if geometry is not None else "",
        "volume_ml": f"{geometry.volume_ml:.1f}" if geometry is not None else "",
        "values": _summary_values(lesion),
        "label": call["label"],
        "label_title": _LABEL_TITLES.get(call["label"], call["label"]),
        "probability_text": _probability_text(call, bounds),
        "reason": _reason(call),
        "measurements": _measurement_lines(lesion),
        "missing": missing,
        "warnings": warnings,
        "features": _feature_rows(call),
        "set_aside": [{"name": feature_name(s["feature"]),
                       "status": STATUS_NAMES.get(s["status"], s["status"]),
                       "why": _h(s["why"])} for s in call.get("set_aside") or ()],
        "decision": [_h(d) for d in call.get("decision") or ()],
        "spine": _spine(call),
        "method": call.get("method") or "",
        "images": [_key_image_view(im, lesion) for im in figures.key_images.get(lesion_id, ())],
    }


def _series_views(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    plan_roles = {r["role"]: r for r in (document.get("plan") or {}).get("roles") or ()}
    out = []
    for s in document.get("series") or ():
        plan = plan_roles.get(s["role"]) or {}
        excluded = [f"{_h(e.get('candidate', ''))}: {_h(e.get('reason', ''))}"
                    for e in plan.get("excluded") or ()]
        number = s.get("series_number")
        out.append({
            "role": role_name(s["role"]),
            "number": "" if number is None else str(number),
            "description": s.get("series_description") or "(no description)",
            "modality": " ".join(x for x in (s.get("modality"), s.get("manufacturer")) if x),
            "images": len(s.get("files") or ()),
            "why": _h(plan.get("reason") or ""),
            "candidates": len(plan.get("candidates") or ()),
            "excluded": excluded,
            "notes": [_h(n) for n in s.get("notes") or ()],
            "uid": s.get("series_instance_uid") or "",
        })
    return out


def _config_rows(config: Mapping[str, Any], prefix: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            rows.extend(_config_rows(value, name))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                rows.extend(_config_rows(item, f"{name}[{i}]"))
        else:
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append((name, _h(text)))
    return rows


def render_study_html(document: Mapping[str, Any], *,
                      figures: StudyFigures | None = None) -> str:
    """Render the report of one study from its results document.

    Parameters
    ----------
    document : mapping
        A study document (`bonelesion.report.document.study_document`) with its
        ``outputs`` (DICOM files, relative to the study folder).
    figures : StudyFigures, optional
        Key images, overview and lesion sizes to embed; without them the page has the
        same text and no images.

    Returns
    -------
    str
        A complete, self-contained HTML5 page.
    """
    figures = figures or StudyFigures()
    study = document["study"]
    uid = study["study_instance_uid"]
    bounds = _bounds(document)
    study_warnings = _dedupe([_h(w) for w in document.get("warnings") or ()])
    lesions = [_lesion_view(le, uid, i, bounds, figures, study_warnings)
               for i, le in enumerate(document.get("lesions") or ())]
    counts = {label: sum(1 for le in lesions if le["label"] == label) for label in CONCERN_ORDER}
    prior = ((document.get("config") or {}).get("classifier", {}).get("fusion") or {})
    prov = document.get("provenance") or {}
    outputs = document.get("outputs") or {}
    overview = None
    if figures.overview is not None:
        overview = {"src": _data_uri(figures.overview.png), "width": figures.overview.width_px,
                    "height": figures.overview.height_px,
                    "caption": figures.overview.description}
    view = {
        "title": f"Bone lesion report — {study.get('patient') or 'unknown patient'}",
        "patient": study.get("patient") or "",
        "study_uid": uid,
        "study_date": format_dicom_date(study.get("study_date") or ""),
        "study_description": study.get("study_description") or "",
        "pipeline": document.get("pipeline") or {},
        "classifier": (document.get("classifier") or {}).get("method", ""),
        "prior": prior.get("prior_probability_malignant"),
        "prior_source": _h(str(prior.get("prior_source") or "")),
        "bounds": bounds,
        "version": (prov.get("package") or {}).get("version", ""),
        "generated": (document.get("run") or {}).get("generated_utc", ""),
        "command": " ".join((document.get("run") or {}).get("command") or ()),
        "series": _series_views(document),
        "lesions": lesions,
        "counts": counts,
        "show_level": any(le["level"] for le in lesions),
        "overview": overview,
        "warnings": study_warnings,
        "thresholds": _config_rows((document.get("config") or {}).get("classifier") or {}, ""),
        "stage_config": _config_rows((document.get("config") or {}).get("stages") or {}, ""),
        "dependencies": sorted((prov.get("dependencies") or {}).items()),
        "python": prov.get("python", ""),
        "rois": document.get("rois") or {},
        "dicom": list(outputs.get("dicom") or ()),
        "roi_colour": ROI_COLOUR,
        "core_colour": CORE_COLOUR,
        "call_colours": CALL_COLOURS,
    }
    return _environment().get_template("study.html.j2").render(**view)


def _most_concerning(lesions: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    if not lesions:
        return None
    return min(lesions, key=lambda le: (CONCERN_ORDER.get(le["call"]["label"], 3),
                                        -le["call"].get("probability_malignant", 0.0)))


def render_index_html(document: Mapping[str, Any]) -> str:
    """Render the batch index: every study, its most concerning call, a link to its report.

    Studies are listed most concerning first (malignant, indeterminate, benign, none,
    failed), so a reader starts where it matters.

    Parameters
    ----------
    document : mapping
        A batch document (`bonelesion.report.document.batch_document`).
    """
    rows = []
    for s in document["studies"]:
        result = s.get("result") or {}
        lesions = result.get("lesions") or ()
        worst = _most_concerning(lesions)
        study = result.get("study") or {}
        bounds = _bounds(result) if result else (None, None)
        failure = s.get("failure")
        link = ""
        if s["status"] == "ok" and (result.get("outputs") or {}).get("report_html"):
            link = f"{s['output_dir']}/{result['outputs']['report_html']}"
        counts = {label: sum(1 for le in lesions if le["call"]["label"] == label)
                  for label in CONCERN_ORDER}
        rank = CONCERN_ORDER.get(worst["call"]["label"], 3) if worst else (
            3 if s["status"] == "ok" else -1)
        rows.append({
            "rank": rank,
            "patient": s.get("patient") or "",
            "study_uid": s["study_instance_uid"],
            "study_date": format_dicom_date(study.get("study_date") or ""),
            "study_description": study.get("study_description") or "",
            "status": s["status"],
            "failure": (f"failed at {failure['stage']}: {_h(failure['message'])}"
                        if failure else ""),
            "link": link,
            "n_lesions": len(lesions),
            "counts": counts,
            "worst": None if worst is None else {
                "lesion_id": worst["lesion_id"],
                "label": worst["call"]["label"],
                "label_title": _LABEL_TITLES.get(worst["call"]["label"], ""),
                "probability_text": _probability_text(worst["call"], bounds),
                "reason": _reason(worst["call"]),
                "level": vertebral_level(worst),
                "anchor": f"lesion-{s['study_instance_uid']}-{worst['lesion_id']}",
            },
            "warnings": len(s.get("warnings") or ()),
        })
    rows.sort(key=lambda r: (r["rank"], r["patient"], r["study_date"], r["study_uid"]))
    return _environment().get_template("index.html.j2").render(
        title="bonelesion run", rows=rows, pipeline=document.get("pipeline") or {},
        generated=(document.get("run") or {}).get("generated_utc", ""),
        n_studies=len(rows), n_failed=sum(1 for r in rows if r["status"] != "ok"),
        bad_files=len(document.get("bad_files") or ()),
        not_run=list(document.get("not_run") or ()), call_colours=CALL_COLOURS,
        warnings=_dedupe([_h(w) for w in document.get("warnings") or ()]))
