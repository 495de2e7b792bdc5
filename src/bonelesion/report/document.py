"""The one results document (schema "2.0"): per study, and per batch run.

Every results.json is one of two documents, both validated against the shipped JSON Schema
(`bonelesion.report.schema`):

``document = "study"``
    One study: the study (patient label, date, description), the pipeline, the plan
    (which series plays which role, and why), the series used with their files and
    SHA-256, the ROI source, every
    lesion (measurements, missing features with reasons, annotations, the call with its
    reasons), the resolved configuration, the classifier, outputs, warnings, provenance.
``document = "batch"``
    A run over an export: the pipeline, and per study its status, failure, warnings, plan and
    its study document's content (``result``) with native JSON types; files not used; studies
    not run.

``provenance`` (package and dependency versions, Python, platform) and ``run`` (command
line, time written) are the only parts that differ between two runs over the same inputs.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import hashlib
import json
import math
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bonelesion.report.result import StudyResult
from bonelesion.report.schema import SCHEMA_VERSION, validate_results

__all__ = [
    "SCHEMA_VERSION",
    "DEPENDENCIES",
    "to_jsonable",
    "sha256_file",
    "file_hashes",
    "dependency_versions",
    "provenance",
    "run_record",
    "study_document",
    "batch_document",
    "write_json",
    "json_text",
    "STUDY_CONTENT_KEYS",
    "NO_LOCATION",
]

#: Distributions whose versions every document records.
DEPENDENCIES = ("numpy", "scipy", "scikit-image", "pydicom", "highdicom", "SimpleITK", "nibabel",
                "pillow", "pylibjpeg", "dask", "jinja2", "matplotlib")

#: Keys of a study document that a batch document repeats under each study's ``result``.
STUDY_CONTENT_KEYS = ("study", "pipeline", "plan", "series", "rois", "spine", "lesions",
                      "config", "classifier", "outputs", "warnings")

#: A lesion's location fields when nothing locates it (no CT, no labelling).
NO_LOCATION: Mapping[str, Any] = {"vertebra": "", "vertebra_confidence": None,
                                  "center_lps_mm": None, "detected": False,
                                  "detection_score": None, "detection": None}


def to_jsonable(obj: Any) -> Any:
    """Plain JSON form of dataclasses, mappings, enums and numbers (NaN/inf → None).

    Plain ``str``, ``int``, ``bool``, ``None``, ``float``, ``dict``, ``list`` and ``tuple``
    values (nearly every node of a study document) are dispatched on their exact type
    first; everything else (subclasses such as str enums included) goes through
    `_jsonable_other`, in the order that decides what an enum or a dataclass becomes.
    """
    kind = type(obj)
    if kind is str or kind is int or kind is bool or obj is None:
        return obj
    if kind is float:
        return obj if math.isfinite(obj) else None
    if kind is dict:
        return {k if type(k) is str else str(k): to_jsonable(v) for k, v in obj.items()}
    if kind is list or kind is tuple:
        return [to_jsonable(v) for v in obj]
    return _jsonable_other(obj)


#: Field names of each type `_jsonable_other` met (None: not a dataclass).
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _dataclass_field_names(kind: type) -> tuple[str, ...] | None:
    """Names of the fields of a dataclass type, in order (None: not a dataclass)."""
    if kind not in _FIELD_NAMES:
        _FIELD_NAMES[kind] = (tuple(f.name for f in dataclasses.fields(kind))
                              if dataclasses.is_dataclass(kind) else None)
    return _FIELD_NAMES[kind]


def _jsonable_other(obj: Any) -> Any:
    """`to_jsonable` of any value that is not one of the plain types it dispatches on."""
    names = None if isinstance(obj, type) else _dataclass_field_names(type(obj))
    if names is not None:
        return {name: to_jsonable(getattr(obj, name)) for name in names}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return to_jsonable(obj.item())
    return str(obj)


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(paths: Iterable[str]) -> dict[str, str]:
    """SHA-256 of each file (``"unreadable: <why>"`` for one that cannot be read).

    The provenance of every source file of a study document: `study_document` takes the
    result, so a caller can compute it while other work runs (`hashlib` releases the GIL).
    """
    out: dict[str, str] = {}
    for path in paths:
        if path not in out:
            try:
                out[path] = sha256_file(path)
            except OSError as exc:
                out[path] = f"unreadable: {exc.strerror or exc}"
    return out


def dependency_versions() -> dict[str, str]:
    """Installed versions of bonelesion's dependencies ("not installed" when absent).

    Looked up once per process (~10 ms, reading each package's metadata): the study and the
    batch documents of a run, and every study of a batch, state the same versions.
    """
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    from importlib.metadata import PackageNotFoundError, version

    out: list[tuple[str, str]] = []
    for name in DEPENDENCIES:
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            out.append((name, "not installed"))
    return tuple(out)


def provenance() -> dict[str, Any]:
    """Package and dependency versions, Python and platform."""
    from bonelesion import __version__

    return {
        "package": {"name": "bonelesion", "version": __version__},
        "dependencies": dependency_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def run_record(command: Sequence[str] | None) -> dict[str, Any]:
    """Return the command line and the time a document is written (UTC)."""
    return {
        "command": [str(c) for c in command] if command is not None else None,
        "generated_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _series(result: StudyResult, hashes: Mapping[str, str]) -> list[dict[str, Any]]:
    missing = [f for _, vol in result.ordered_volumes() for f in vol.series.source_files
               if f not in hashes]
    hashes = {**hashes, **file_hashes(missing)} if missing else hashes

    def file_entry(path: str, sop_uid: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": path, "sha256": hashes[path]}
        if sop_uid is not None:
            entry["sop_instance_uid"] = sop_uid
        return entry

    out = []
    for role, vol in result.ordered_volumes():
        info = vol.series
        files = list(info.source_files)
        sops: list[str | None] = list(info.sop_instance_uids)
        if len(sops) != len(files):
            sops = [None] * len(files)
        out.append({
            "role": role,
            "series_instance_uid": info.series_instance_uid,
            "series_number": info.series_number,
            "series_description": info.series_description,
            "modality": info.modality,
            "manufacturer": info.manufacturer,
            "frame_of_reference_uid": info.frame_of_reference_uid,
            "files": [file_entry(f, s) for f, s in zip(files, sops, strict=True)],
            "notes": list(info.notes),
        })
    return out


def _lesions(result: StudyResult, locations: Mapping[str, Mapping[str, Any]]
             ) -> list[dict[str, Any]]:
    out = []
    for m, call in zip(result.lesions, result.calls, strict=True):
        where = {**NO_LOCATION, **dict(locations.get(m.lesion_id) or {})}
        warnings = list(m.warnings)
        for part in (m.ct, m.chemical_shift, m.adc):
            if part is not None:
                warnings.extend(w for w in part.warnings if w not in warnings)
        out.append({
            "lesion_id": m.lesion_id,
            "source": result.lesion_sources.get(m.lesion_id, ""),
            "vertebra": str(where["vertebra"] or ""),
            "vertebra_confidence": to_jsonable(where["vertebra_confidence"]),
            "center_lps_mm": to_jsonable(where["center_lps_mm"]),
            "detected": bool(where["detected"]),
            "detection_score": to_jsonable(where["detection_score"]),
            "detection": to_jsonable(where["detection"]),
            "measurements": {
                "ct": to_jsonable(m.ct),
                "chemical_shift": to_jsonable(m.chemical_shift),
                "adc": to_jsonable(m.adc),
            },
            "missing": {str(k): str(v) for k, v in m.missing.items()},
            "annotations": to_jsonable(m.annotations),
            "call": to_jsonable(call.to_dict()),
            "warnings": warnings,
        })
    return out


def study_document(
    result: StudyResult,
    *,
    patient: str,
    pipeline: Mapping[str, Any],
    plan: Mapping[str, Any],
    config: Mapping[str, Any],
    model: Mapping[str, Any] | None,
    rois: Mapping[str, Any],
    command: Sequence[str] | None = None,
    warnings: Sequence[str] = (),
    study_date: str = "",
    study_description: str = "",
    spine: Mapping[str, Any] | None = None,
    lesion_locations: Mapping[str, Mapping[str, Any]] | None = None,
    source_hashes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the study document of one study (its ``outputs`` are filled when written).

    Parameters
    ----------
    result : StudyResult
        Measurements, calls and source volumes of the study.
    patient : str
        What outputs call the patient (PatientID, or its pseudonym).
    pipeline : mapping
        ``name``, ``description`` and ``hash`` of the pipeline.
    plan : mapping
        `StudyPlan.to_dict()`.
    config : mapping
        The resolved configuration: ``stages`` and ``classifier`` tables.
    model : mapping or None
        The trained model used instead of the rules (`LogisticModel.to_dict()`).
    rois : mapping
        ``kind`` (file, detection, none), ``path`` and ``sha256`` of the ROI source.
    command : sequence of str, optional
        The command line.
    warnings : sequence of str
        Study-level warnings (lesion warnings sit with each lesion).
    study_date, study_description : str
        DICOM StudyDate (``YYYYMMDD``) and StudyDescription, "" when unknown: the context
        the reports show beside the patient label.
    spine : mapping, optional
        The vertebra labelling of the study's CT (`bonelesion.pipeline.detection.
        spine_section`): vertebrae with level, confidence, trabecular attenuation; anchors;
        bone density at the screening level with its thresholds; notes. None: not labelled.
    lesion_locations : mapping, optional
        Lesion id → ``vertebra``, ``vertebra_confidence``, ``center_lps_mm``, ``detected``,
        ``detection_score``, ``detection`` (the candidate's features and reasons).
    source_hashes : mapping, optional
        `file_hashes` of the listed series' source files, when already computed (the files
        not in it are hashed here).
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "document": "study",
        "study": {"study_instance_uid": result.study_instance_uid, "patient": patient,
                  "study_date": study_date, "study_description": study_description},
        "pipeline": {k: str(pipeline.get(k, "")) for k in ("name", "description", "hash")},
        "plan": to_jsonable(plan),
        "series": _series(result, source_hashes or {}),
        "rois": dict(rois),
        "spine": to_jsonable(spine) if spine is not None else None,
        "lesions": _lesions(result, lesion_locations or {}),
        "config": {"stages": to_jsonable(config.get("stages") or {}),
                   "classifier": to_jsonable(config.get("classifier") or {})},
        "classifier": {"method": "trained_logistic_model" if model is not None else "rules",
                       "model": to_jsonable(model) if model is not None else None},
        "outputs": {"results_json": "results.json", "lesions_csv": "lesions.csv",
                    "report_html": None, "qc_images": {}, "dicom": [],
                    "overview_image": None},
        "warnings": [str(w) for w in warnings],
        "provenance": provenance(),
        "run": run_record(command),
    }


def batch_document(
    *,
    pipeline: Mapping[str, Any],
    studies: Sequence[Mapping[str, Any]],
    bad_files: Sequence[Mapping[str, str]],
    not_run: Sequence[str],
    warnings: Sequence[str] = (),
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Build the batch document of a run.

    ``studies`` entries hold ``study_instance_uid``, ``patient``, ``status``,
    ``output_dir``, ``failure``, ``warnings``, ``plan`` and ``document`` (the stored study
    document, or None); the document's content (`STUDY_CONTENT_KEYS`) becomes ``result``.
    """
    entries = []
    for s in studies:
        doc = s.get("document")
        entries.append({
            "study_instance_uid": s["study_instance_uid"],
            "patient": s.get("patient", ""),
            "status": s["status"],
            "output_dir": s.get("output_dir", ""),
            "failure": s.get("failure"),
            "warnings": list(s.get("warnings") or ()),
            "plan": s.get("plan"),
            "result": {k: doc[k] for k in STUDY_CONTENT_KEYS} if doc else None,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "document": "batch",
        "pipeline": {k: str(pipeline.get(k, "")) for k in ("name", "description", "hash")},
        "studies": entries,
        "bad_files": [dict(b) for b in bad_files],
        "not_run": list(not_run),
        "warnings": [str(w) for w in warnings],
        "provenance": provenance(),
        "run": run_record(command),
    }


class _NotPlain(Exception):
    """A value `json_text`'s fast path does not write itself (json.dumps then writes all)."""


_encode_str = json.encoder.encode_basestring  # the C function json.dumps uses (ensure_ascii off)


def _indented(value: Any, newline: str) -> str:
    """JSON text of a plain value as ``json.dumps(indent=2)`` writes it at one depth."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = newline + "  "
        # a key that is not a str makes _encode_str raise TypeError (json.dumps then writes
        # it); a str subclass is written as its text, as json.dumps does
        items = ("," + inner).join([f"{_encode_str(k)}: {_indented(v, inner)}"
                                    for k, v in value.items()])
        return f"{{{inner}{items}{newline}}}"  # one copy of a long text per level
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = newline + "  "
        items = ("," + inner).join([_indented(v, inner) for v in value])
        return f"[{inner}{items}{newline}]"
    if kind is float:
        if value != value or value == math.inf or value == -math.inf:
            raise _NotPlain
        return float.__repr__(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise _NotPlain


def json_text(document: Any) -> str:
    """Return ``json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)``.

    The same text, written without the pure-Python encoder that `json.dumps` falls back
    to whenever it indents (a study document of 200 lesions: ~30 ms → ~10 ms). A value it
    does not write itself (a subclass of a JSON type, a non-string key, NaN …) hands the
    whole document to `json.dumps`, so its text, and its errors, stay exactly those.
    """
    try:
        return _indented(document, "\n")
    except (_NotPlain, TypeError, RecursionError):
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)


def write_json(path: str | Path, document: Mapping[str, Any], *, validate: bool = True) -> Path:
    """Write a document as indented UTF-8 JSON (NaN refused); returns the path.

    Results documents (those with a ``schema_version``) are validated first.

    Raises
    ------
    SchemaError
        If a results document does not match the shipped schema.
    """
    if validate and "schema_version" in document:
        validate_results(document)
    path = Path(path)
    path.write_text(json_text(document) + "\n", encoding="utf-8")
    return path
