"""Classify the lesions of a ``measure`` run and add the calls and report views to its outputs.

``bonelesion measure`` (stages) writes ``lesions.csv`` and ``results.json``. This module adds,
without changing what is there:

* the call columns (``label``, ``probability_malignant``, ``reasons`` (JSON), SINS/ESCC) at
  the end of every ``lesions.csv`` row;
* a ``call`` entry to every lesion of ``results.json``, and top-level ``classifier`` (method,
  thresholds with citations, trained model), ``provenance`` (dependency versions, input SOP
  Instance UIDs and file SHA-256) and ``outputs`` entries;
* ``report.html``, QC PNGs (``qc/``) and DICOM SEG + SR (``dicom/``), rendered from the same
  objects, when the stacks and lesions are given (or re-read from the export).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bonelesion.classify.call import LesionCall
from bonelesion.classify.config import ClassifierConfig
from bonelesion.classify.rules import classify_lesion
from bonelesion.config import config_to_dict
from bonelesion.errors import InputError
from bonelesion.model.results import (
    AdcResult,
    ChemicalShiftResult,
    CtAttenuationResult,
    LesionMeasurements,
    Provenance,
)
from bonelesion.model.volume import Volume
from bonelesion.report.json_report import to_jsonable
from bonelesion.report.study import ROLE_ORDER, StudyResult, study_result
from bonelesion.report.table import CALL_COLUMNS
from bonelesion.report.writer import ReportFiles, write_reports

__all__ = [
    "measurements_from_results_json",
    "classify_measurements",
    "study_results_from_stacks",
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
    return [classify_lesion(m, config=config) for m in measurements]


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
    calls = classify_measurements(measurements, config=config, model=model)
    studies = study_results_from_stacks(measurements, calls, stacks or (), lesions or ())
    # order the studies' lesions back to the measure order for the table and JSON
    views = write_reports(out, studies, config=config, model=model, command=command,
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
    mine = views.document
    doc["classifier"] = {
        "method": "trained_logistic_model" if model is not None else "rules",
        "thresholds": to_jsonable(config_to_dict(config)),
        "model": mine["provenance"]["model"],
    }
    doc["provenance"] = {k: v for k, v in mine["provenance"].items()
                         if k not in ("thresholds", "model", "config")}
    doc["provenance"]["inputs"] = [
        {"study_instance_uid": s["study_instance_uid"], **s["inputs"]} for s in mine["studies"]]
    doc["outputs"] = mine.get("outputs", {})
    doc["warnings"] = list(doc.get("warnings", [])) + list(views.problems)
    results_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                            encoding="utf-8")
    return ReportFiles(results_json=results_path, lesion_table=table if table.exists() else None,
                       html=views.html, qc_images=views.qc_images, dicom=views.dicom,
                       problems=views.problems, document=doc)
