"""Classify the lesions of a ``measure`` run and add the calls and report views to its outputs.

``bonelesion measure`` (stages) writes ``lesions.csv`` and ``results.json``. This module adds,
without changing what is there:

* the call columns (``label``, ``probability_malignant``, ``reasons`` (JSON), SINS/ESCC) at
  the end of every ``lesions.csv`` row;
* a ``call`` entry to every lesion of ``results.json``, and top-level ``classifier`` (method,
  thresholds with citations, trained model), ``provenance`` (dependency versions, input SOP
  Instance UIDs and file SHA-256) and ``outputs`` entries;
* ``report.html``, QC PNGs (``qc/``) and DICOM SEG + SR (``dicom/``), rendered from the same
  objects, when the stacks and lesions are given.

The export is read once: `StudyViewCollector` is the ``on_study`` callback of
`bonelesion.stages.commands.measure_export`; it renders each study's QC images and DICOM
SEG/SR from the stacks ``measure`` has just measured (one study at a time, nothing of the
volumes kept), and `add_calls_and_reports` (``views=collector.views``) merges them into the
outputs without loading any series again.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.classify.call import LesionCall
from bonelesion.classify.config import ClassifierConfig
from bonelesion.classify.rules import classify_lesions
from bonelesion.errors import InputError
from bonelesion.model.results import (
    AdcResult,
    ChemicalShiftResult,
    CtAttenuationResult,
    LesionMeasurements,
    Provenance,
)
from bonelesion.model.volume import Volume
from bonelesion.report.json_report import build_results_document, to_jsonable, write_results_json
from bonelesion.report.study import ROLE_ORDER, StudyResult, study_result
from bonelesion.report.table import CALL_COLUMNS
from bonelesion.report.writer import ReportFiles, attach_outputs, write_reports

__all__ = [
    "measurements_from_results_json",
    "classify_measurements",
    "study_results_from_stacks",
    "StudyViews",
    "render_study_views",
    "StudyViewCollector",
    "add_calls_and_reports",
]

logger = logging.getLogger(__name__)


def _result(cls: type[Any], data: Mapping[str, Any] | None) -> Any:
    if not data:
        return None
    data = dict(data)
    if data.get("provenance"):
        prov = dict(data["provenance"])
        prov["series_instance_uids"] = tuple(prov.get("series_instance_uids") or ())
        data["provenance"] = Provenance(**prov)
    for key in ("warnings", "b_values_s_per_mm2"):
        if key in data and data[key] is not None:
            data[key] = tuple(data[key])
    floats = {"attenuation_mean_hu", "attenuation_max_hu", "chemical_shift_ratio",
              "adc_mean_mm2_per_s"}
    for key in floats & set(data):
        if data[key] is None:
            data[key] = float("nan")
    return cls(**data)


def measurements_from_results_json(path: str | Path) -> list[LesionMeasurements]:
    """Rebuild the `LesionMeasurements` of a ``measure`` results.json.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or its lesion entries do not match the result
        records of `bonelesion.model.results`.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for entry in doc["lesions"]:
            out.append(LesionMeasurements(
                study_instance_uid=entry["study_instance_uid"], lesion_id=entry["lesion_id"],
                ct=_result(CtAttenuationResult, entry.get("ct")),
                chemical_shift=_result(ChemicalShiftResult, entry.get("chemical_shift")),
                adc=_result(AdcResult, entry.get("adc")),
                missing=dict(entry.get("missing") or {}),
                annotations=dict(entry.get("annotations") or {}),
                warnings=tuple(entry.get("warnings") or ()),
            ))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(
            f"results file {path}: cannot rebuild the lesion measurements ({exc!r}); expected "
            "the results.json written by `bonelesion measure`. Potential fix: re-run measure."
        ) from exc
    return out


def classify_measurements(
    measurements: Sequence[LesionMeasurements],
    *,
    config: ClassifierConfig | None = None,
    model: Any | None = None,
) -> list[LesionCall]:
    """Call every lesion with the trained ``model`` when given, else with the rules."""
    if model is not None:
        return [model.call(m, config=config) for m in measurements]
    return classify_lesions(measurements, config=config)


def study_results_from_stacks(
    measurements: Sequence[LesionMeasurements],
    calls: Sequence[LesionCall],
    stacks: Sequence[Any],
    lesions: Sequence[Any],
) -> list[StudyResult]:
    """Group measurements by study and attach source volumes (one per role) and lesion masks.

    ``stacks`` are loaded stacks (``.info`` with role and study UID, ``.volume``), ``lesions``
    are ROI lesions with ``mask_on(volume)``. Masks are drawn on the study's CT when present,
    else on its first volume in `ROLE_ORDER`; a lesion that cannot be drawn is left without a
    mask (the reason is logged and the other views still render).
    """
    by_study: dict[str, list[tuple[LesionMeasurements, LesionCall]]] = {}
    for m, c in zip(measurements, calls, strict=True):
        by_study.setdefault(m.study_instance_uid, []).append((m, c))
    out = []
    for uid, pairs in by_study.items():
        volumes: dict[str, Volume] = {}
        ranked = sorted(
            (s for s in stacks
             if s.volume is not None and s.info.study_instance_uid == uid
             and s.info.role in ROLE_ORDER and s.info.role != "dwi"),
            key=lambda s: (s.info.series_number or 0, s.info.series_instance_uid))
        for s in ranked:
            volumes.setdefault(s.info.role, s.volume)
        masks: dict[str, Volume] = {}
        if volumes:
            reference = next(v for r in ROLE_ORDER for k, v in volumes.items() if k == r)
            by_id = {le.lesion_id: le for le in lesions
                     if getattr(le, "applies_to_study", lambda _: True)(uid)}
            for m, _ in pairs:
                lesion = by_id.get(m.lesion_id)
                if lesion is None:
                    continue
                try:
                    masks[m.lesion_id] = lesion.mask_on(reference)
                except InputError as exc:
                    logger.warning("study %s, lesion %s: no mask for the report views: %s",
                                   uid, m.lesion_id, exc)
        out.append(study_result([m for m, _ in pairs], calls=[c for _, c in pairs],
                                study_instance_uid=uid, volumes=volumes, masks=masks))
    return out


@dataclass(frozen=True, kw_only=True)
class StudyViews:
    """The image-based views of one study, rendered while its stacks were loaded.

    Holds no voxel data: only the calls, the provenance inputs (series, files, SHA-256) and
    the paths of what was written, so that many studies can be collected in bounded memory.
    """

    study_instance_uid: str
    calls: tuple[LesionCall, ...]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    qc_images: Mapping[tuple[str, str], tuple[tuple[str, Path], ...]] = field(
        default_factory=dict)
    dicom: tuple[Path, ...] = ()
    problems: tuple[str, ...] = ()


def render_study_views(
    out_dir: str | Path,
    measurements: Sequence[LesionMeasurements],
    stacks: Sequence[Any],
    lesions: Sequence[Any],
    *,
    config: ClassifierConfig | None = None,
    model: Any | None = None,
    qc: bool = True,
    dicom: bool = True,
) -> StudyViews:
    """Classify one study's lesions and write its QC images and DICOM SEG + SR.

    Parameters
    ----------
    out_dir : path
        The ``measure`` output folder (``qc/`` and ``dicom/<study>/`` are written below it).
    measurements : sequence of LesionMeasurements
        The lesions of one study.
    stacks, lesions : sequence
        That study's loaded stacks and the ROI lesions.
    config, model
        Classifier thresholds, or a trained `LogisticModel` to use instead of the rules.
    qc, dicom : bool
        Which views to render.

    Returns
    -------
    StudyViews
        Calls, provenance inputs and written paths (no volumes).
    """
    config = config or ClassifierConfig()
    calls = classify_measurements(measurements, config=config, model=model)
    studies = study_results_from_stacks(measurements, calls, stacks, lesions)
    if not studies:
        uids = {s.info.study_instance_uid for s in stacks}
        return StudyViews(study_instance_uid=next(iter(uids)) if len(uids) == 1 else "",
                          calls=())
    if len(studies) != 1:
        raise InputError(
            f"render_study_views: measurements of {len(studies)} studies "
            f"({', '.join(s.study_instance_uid for s in studies)}); expected one study. "
            "Potential fix: call it once per study (measure_export's on_study does).")
    files = write_reports(out_dir, studies, config=config, model=model, table=False, qc=qc,
                          html=False, dicom=dicom, results_json=False)
    study = studies[0]
    return StudyViews(
        study_instance_uid=study.study_instance_uid, calls=study.calls,
        inputs=files.document["studies"][0]["inputs"], qc_images=dict(files.qc_images),
        dicom=tuple(files.dicom.get(study.study_instance_uid, ())), problems=files.problems)


class StudyViewCollector:
    """``on_study`` callback of `measure_export`: renders each study's views as it is measured.

    Parameters
    ----------
    out_dir : path
        The ``measure`` output folder.
    config, model, qc, dicom
        As for `render_study_views`.

    Examples
    --------
    >>> collector = StudyViewCollector("out")  # doctest: +SKIP
    >>> measure_export("export", "rois.csv", "out", on_study=collector)  # doctest: +SKIP
    >>> add_calls_and_reports("out", views=collector.views)  # doctest: +SKIP
    """

    def __init__(self, out_dir: str | Path, *, config: ClassifierConfig | None = None,
                 model: Any | None = None, qc: bool = True, dicom: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.config = config or ClassifierConfig()
        self.model = model
        self.qc = qc
        self.dicom = dicom
        self.views: list[StudyViews] = []

    def __call__(self, study_instance_uid: str, stacks: Sequence[Any], lesions: Sequence[Any],
                 measurements: Sequence[LesionMeasurements]) -> None:
        """Render the views of one study and keep its (voxel-free) `StudyViews`."""
        if not measurements:
            return
        self.views.append(render_study_views(
            self.out_dir, measurements, stacks, lesions, config=self.config, model=self.model,
            qc=self.qc, dicom=self.dicom))


def _merge_views(
    out: Path,
    measurements: Sequence[LesionMeasurements],
    views: Sequence[StudyViews],
    *,
    config: ClassifierConfig,
    model: Any | None,
    html: bool,
    command: Sequence[str] | None,
) -> tuple[list[LesionCall], ReportFiles]:
    """Return the calls (measurement order) and the combined document/HTML of the views."""
    by_key = {(v.study_instance_uid, c.lesion_id): c for v in views for c in v.calls}
    calls = []
    for m in measurements:
        call = by_key.get((m.study_instance_uid, m.lesion_id))
        if call is None:  # a study the views did not cover: same classifier, no images
            call = classify_measurements([m], config=config, model=model)[0]
        calls.append(call)
    studies = study_results_from_stacks(measurements, calls, (), ())
    problems = [p for v in views for p in v.problems]
    document = build_results_document(studies, config=config, model=model, warnings=problems,
                                      command=command)
    inputs = {v.study_instance_uid: v.inputs for v in views}
    for entry in document["studies"]:
        if entry["study_instance_uid"] in inputs:
            entry["inputs"] = inputs[entry["study_instance_uid"]]
    qc_paths = {k: imgs for v in views for k, imgs in v.qc_images.items()}
    dicom_paths = {v.study_instance_uid: v.dicom for v in views if v.dicom}
    html_path = attach_outputs(out, document, qc_paths, dicom_paths, html=html)
    return calls, ReportFiles(results_json=None, html=html_path, qc_images=qc_paths,
                              dicom=dicom_paths, problems=tuple(problems), document=document)


def _append_call_columns(path: Path, calls: Sequence[LesionCall]) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if len(rows) != len(calls) or any(
            (r.get("lesion_id"), r.get("study_instance_uid", c.study_instance_uid))
            != (c.lesion_id, c.study_instance_uid) for r, c in zip(rows, calls, strict=True)):
        raise InputError(
            f"lesion table {path}: its rows do not match the lesions of results.json (same "
            "order expected). Potential fix: re-run measure with --force.")
    header += [c for c in CALL_COLUMNS if c not in header]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row, call in zip(rows, calls, strict=True):
            writer.writerow({**row, **call.table_columns()})


def add_calls_and_reports(
    out_dir: str | Path,
    *,
    measurements: Sequence[LesionMeasurements] | None = None,
    stacks: Sequence[Any] | None = None,
    lesions: Sequence[Any] | None = None,
    config: ClassifierConfig | None = None,
    model: Any | None = None,
    qc: bool = True,
    html: bool = True,
    dicom: bool = True,
    command: Sequence[str] | None = None,
    views: Sequence[StudyViews] | None = None,
) -> ReportFiles:
    """Add calls and report views to the outputs of a ``measure`` run in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder holding ``lesions.csv`` and ``results.json`` of ``measure``.
    measurements : sequence of LesionMeasurements, optional
        As returned by ``measure``; read back from results.json when omitted.
    stacks, lesions : sequence, optional
        Loaded stacks and ROI lesions; without them no QC image and no DICOM SEG/SR is made.
    config, model
        Classifier thresholds, or a trained `LogisticModel` to use instead of the rules.
    qc, html, dicom : bool
        Which views to render.
    views : sequence of StudyViews, optional
        Per-study views already rendered while ``measure`` had the stacks loaded
        (`StudyViewCollector`); their calls, QC images and DICOM files are merged and
        ``stacks``/``lesions``/``qc``/``dicom`` are not used.

    Returns
    -------
    ReportFiles
        ``results_json`` is the updated results.json of ``measure``.

    Raises
    ------
    InputError
        If results.json or lesions.csv is missing or does not match.
    """
    out = Path(out_dir)
    results_path = out / "results.json"
    if measurements is None:
        measurements = measurements_from_results_json(results_path)
    config = config or ClassifierConfig()
    if views is not None:
        calls, rendered = _merge_views(out, measurements, views, config=config, model=model,
                                       html=html, command=command)
    else:
        calls = classify_measurements(measurements, config=config, model=model)
        studies = study_results_from_stacks(measurements, calls, stacks or (), lesions or ())
        rendered = write_reports(out, studies, config=config, model=model, command=command,
                                 table=False, qc=qc and stacks is not None, html=html,
                                 dicom=dicom and stacks is not None, results_json=False)
    table = out / "lesions.csv"
    if table.exists():
        _append_call_columns(table, calls)
    try:
        doc = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"results file {results_path}: cannot be read ({exc}). Potential fix: "
                         "re-run measure.") from exc
    for entry, call in zip(doc["lesions"], calls, strict=True):
        entry["call"] = to_jsonable(call.to_dict())
    mine = rendered.document
    doc["classifier"] = {
        "method": mine["provenance"]["classifier"],
        "thresholds": mine["provenance"]["thresholds"],
        "model": mine["provenance"]["model"],
    }
    doc["provenance"] = {k: v for k, v in mine["provenance"].items()
                         if k not in ("thresholds", "model", "config")}
    doc["provenance"]["inputs"] = [
        {"study_instance_uid": s["study_instance_uid"], **s["inputs"]} for s in mine["studies"]]
    doc["outputs"] = mine.get("outputs", {})
    doc["warnings"] = list(doc.get("warnings", [])) + list(rendered.problems)
    write_results_json(results_path, doc)
    return ReportFiles(results_json=results_path, lesion_table=table if table.exists() else None,
                       html=rendered.html, qc_images=rendered.qc_images, dicom=rendered.dicom,
                       problems=rendered.problems, document=doc)
