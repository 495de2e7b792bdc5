"""The canonical results.json: schema version, provenance, inputs, lesions, calls, warnings."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bonelesion.classify.config import ClassifierConfig
from bonelesion.config import config_to_dict
from bonelesion.report.study import StudyResult
from bonelesion.stages.output import DEPENDENCIES, dependency_versions, to_jsonable, write_json

__all__ = [
    "SCHEMA_VERSION",
    "DEPENDENCIES",
    "to_jsonable",
    "sha256_file",
    "dependency_versions",
    "build_results_document",
    "write_results_json",
]

#: Version of the results.json layout; bump on any incompatible change.
SCHEMA_VERSION = "1.0"


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inputs(study: StudyResult, hashes: dict[str, str]) -> dict[str, Any]:
    def file_entry(path: str, sop_uid: str | None) -> dict[str, Any]:
        if path not in hashes:
            try:
                hashes[path] = sha256_file(path)
            except OSError as exc:
                hashes[path] = f"unreadable: {exc.strerror or exc}"
        entry: dict[str, Any] = {"path": path, "sha256": hashes[path]}
        if sop_uid is not None:
            entry["sop_instance_uid"] = sop_uid
        return entry

    series = []
    for role, vol in study.ordered_volumes():
        info = vol.series
        files = list(info.source_files)
        sops: list[str | None] = list(info.sop_instance_uids)
        if len(sops) != len(files):
            sops = [None] * len(files)
        series.append({
            "role": role,
            "series_instance_uid": info.series_instance_uid,
            "frame_of_reference_uid": info.frame_of_reference_uid,
            "modality": info.modality,
            "manufacturer": info.manufacturer,
            "series_description": info.series_description,
            "sop_instance_uids": list(info.sop_instance_uids),
            "files": [file_entry(f, s) for f, s in zip(files, sops, strict=True)],
            "notes": list(info.notes),
        })
    return {"series": series,
            "other_files": [file_entry(f, None) for f in study.input_files]}


def build_results_document(
    studies: Sequence[StudyResult],
    *,
    config: ClassifierConfig | None = None,
    resolved_config: Mapping[str, Any] | None = None,
    model: Any | None = None,
    warnings: Sequence[str] = (),
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Build the canonical results document (see docs in `write_reports`).

    Parameters
    ----------
    studies : sequence of StudyResult
    config : ClassifierConfig, optional
        The classifier thresholds used (recorded under ``provenance.thresholds``).
    resolved_config : mapping, optional
        The rest of the resolved pipeline configuration (stages, CLI overrides).
    model : LogisticModel, optional
        Trained model used instead of the rules (recorded in full).
    warnings : sequence of str
        Run-level warnings.
    command : sequence of str, optional
        The command line.
    """
    from bonelesion import __version__

    config = config or ClassifierConfig()
    hashes: dict[str, str] = {}
    doc_studies = []
    all_warnings = list(warnings)
    for study in studies:
        lesions = []
        for m, call in zip(study.lesions, study.calls, strict=True):
            lesion_warnings = list(m.warnings)
            for part in (m.ct, m.chemical_shift, m.adc):
                if part is not None:
                    lesion_warnings.extend(part.warnings)
            lesions.append({
                "lesion_id": m.lesion_id,
                "measurements": {
                    "ct": to_jsonable(m.ct),
                    "chemical_shift": to_jsonable(m.chemical_shift),
                    "adc": to_jsonable(m.adc),
                },
                "missing": to_jsonable(m.missing),
                "annotations": to_jsonable(m.annotations),
                "call": to_jsonable(call.to_dict()),
                "warnings": lesion_warnings,
            })
            all_warnings.extend(f"study {study.study_instance_uid}, lesion {m.lesion_id}: {w}"
                                for w in lesion_warnings)
        all_warnings.extend(f"study {study.study_instance_uid}: {w}" for w in study.warnings)
        doc_studies.append({
            "study_instance_uid": study.study_instance_uid,
            "inputs": _inputs(study, hashes),
            "lesions": lesions,
            "warnings": list(study.warnings),
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "provenance": {
            "package": {"name": "bonelesion", "version": __version__},
            "dependencies": dependency_versions(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "command": list(command) if command is not None else None,
            "classifier": "trained_logistic_model" if model is not None else "rules",
            "thresholds": to_jsonable(config_to_dict(config)),
            "model": to_jsonable(model.to_dict()) if model is not None else None,
            "config": to_jsonable(resolved_config) if resolved_config is not None else None,
        },
        "studies": doc_studies,
        "warnings": all_warnings,
    }


def write_results_json(path: str | Path, document: Mapping[str, Any]) -> Path:
    """Write a results document as UTF-8 JSON (no NaN); returns the path."""
    return write_json(path, document)
