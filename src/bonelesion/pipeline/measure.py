"""The measuring part of one study: lesions → measurements → calls → per-study reports.

Called by `bonelesion.pipeline.study.run_study` with the stacks the plan chose, each
wrapped in a stage context that names the stage (``roi``, ``measure``, ``classify``,
``report``) and series of any failure. Only the chosen stacks reach `measure_study`, so the
study's series choice is the plan's, recorded in ``plan.json``.
"""

from __future__ import annotations

import logging
import shutil
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bonelesion.config import build_config, config_to_dict
from bonelesion.errors import InputError, PipelineError
from bonelesion.pipeline.definition import STAGE_OPTIONAL_ROLES, STAGE_ROLES

__all__ = ["measure_and_report", "stage_roles", "pseudonymise_dicom", "scrub_text_outputs"]

logger = logging.getLogger(__name__)


def stage_roles(stage: str) -> tuple[str, ...]:
    """Every role a stage can use (required, alternative and optional)."""
    all_of, any_of = STAGE_ROLES[stage]
    return all_of + any_of + STAGE_OPTIONAL_ROLES.get(stage, ())


def _primary_volume(volumes: Mapping[str, Any]) -> Any:
    for role in ("ct", "dixon_in_phase", "dixon_opposed_phase", "adc", "dixon_water", "dixon_fat"):
        if role in volumes:
            return volumes[role]
    return next(iter(volumes.values()), None)


def measure_and_report(
    task: Any,
    stacks_by_role: Mapping[str, list[Any]],
    work: Path,
    *,
    stage: Callable[..., Any],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Measure, classify and write the per-study reports of one study.

    The reports are those of ``bonelesion measure`` plus the classifier's views
    (`bonelesion.report.write_reports`): results.json, lesions.csv, QC PNGs, DICOM SEG +
    TID 1500 SR and report.html, all under ``work``.

    Returns
    -------
    rows : list of dict
        One row per lesion for the batch ``lesions.csv`` (measurements + call columns).
    files : list of str
        Files written, relative to ``work``.
    """
    from bonelesion.classify import classify_lesions
    from bonelesion.classify.config import classifier_config_from_mapping
    from bonelesion.report import study_result, write_reports
    from bonelesion.report.table import lesion_table_rows
    from bonelesion.roi.sources import load_lesions
    from bonelesion.stages.config import PipelineConfig
    from bonelesion.stages.study import measure_study

    plan = task.plan
    pipeline = task.pipeline
    with stage("config"):
        cfg = build_config(PipelineConfig, dict(pipeline.get("config") or {}), prefix="config")
        classifier_cfg = classifier_config_from_mapping(dict(cfg.classifier))
    with stage("roi"):
        # run_study has checked that task.rois_path is set (before loading any series)
        lesions = [
            le
            for le in load_lesions(task.rois_path)
            if le.applies_to_study(task.study_instance_uid)
        ]
    stacks: list[Any] = []
    seen: set[int] = set()
    for st in plan.stages:
        for role in stage_roles(st):
            for s in stacks_by_role.get(role, ()):
                if id(s) not in seen:
                    seen.add(id(s))
                    stacks.append(s)
    first_series = stacks[0].info.series_instance_uid if stacks else ""
    with stage("measure", first_series):
        measurements = measure_study(stacks, lesions, cfg)
    with stage("classify"):
        calls = classify_lesions(measurements, config=classifier_cfg)
    with stage("report"):
        volumes = {
            s.info.role: s.volume for s in stacks if s.volume is not None and s.info.role != "dwi"
        }
        primary = _primary_volume(volumes)
        masks: dict[str, Any] = {}
        problems: list[str] = [f"stage {k} skipped: {v}" for k, v in plan.skipped_stages.items()]
        by_id = {le.lesion_id: le for le in lesions}
        for m in measurements:
            if primary is None or m.lesion_id not in by_id:
                continue
            try:
                masks[m.lesion_id] = by_id[m.lesion_id].mask_on(primary)
            except InputError as exc:
                problems.append(f"lesion {m.lesion_id}: no mask for QC/SEG: {exc}")
        result = study_result(
            measurements,
            calls=calls,
            study_instance_uid=task.study_instance_uid,
            volumes=volumes,
            masks=masks,
            warnings=problems,
            input_files=[task.rois_path],
        )
        resolved = {
            "pipeline": pipeline.get("name", ""),
            "plan": plan.to_dict(),
            **config_to_dict(cfg),
        }
        try:
            write_reports(work, [result], config=classifier_cfg, resolved_config=resolved)
        except PipelineError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep the measurements; say what is missing
            # An unexpected failure (a bug) while writing the views: keep the canonical
            # results.json and lesions.csv, drop DICOM SEG/SR, and say so in the outputs.
            logger.error(
                "study %s: writing the reports failed; retrying without DICOM SEG/SR:\n%s",
                task.study_instance_uid,
                "".join(traceback.format_exception(exc)),
            )
            note = (
                f"DICOM SEG/SR not written: unexpected {type(exc).__name__}: {exc} "
                "(a bug; please report it with the log)"
            )
            shutil.rmtree(work / "dicom", ignore_errors=True)
            write_reports(
                work,
                [result],
                config=classifier_cfg,
                resolved_config=resolved,
                dicom=False,
                warnings=[note],
            )
            warnings.warn(note, RuntimeWarning, stacklevel=2)
        if task.pseudonymise:
            for dcm in sorted(work.rglob("*.dcm")):
                pseudonymise_dicom(dcm, task.patient_label)
            scrub_text_outputs(work, task.identifiers, task.patient_label)
        rows = [
            {k: v for k, v in r.items() if k != "study_instance_uid"}
            for r in lesion_table_rows([result])
        ]
        written = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    if not lesions:
        logger.warning(
            "study %s: no lesion of the ROI source applies to this study", task.study_instance_uid
        )
    return rows, written


#: Patient-identifying attributes replaced (ID, name) or removed in pseudonymised outputs
#: (DICOM PS3.15 Table E.1-1, Basic Profile: the Patient Module identifiers).
_REMOVE_KEYWORDS = (
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "IssuerOfPatientID",
    "PatientBirthName",
)


#: Text outputs scrubbed of raw identifiers in pseudonymised runs.
_TEXT_SUFFIXES = (".json", ".html", ".csv", ".txt", ".xml")


def scrub_text_outputs(folder: Path, identifiers: tuple[str, ...], pseudonym: str) -> None:
    """Replace each raw identifier by ``pseudonym`` in every text output under ``folder``.

    Catches identifiers inside provenance file paths of exports organised by patient
    (``export/<PatientID>/…``). ``identifiers`` are matched longest first, as plain text.
    """
    if not identifiers:
        return
    for path in sorted(folder.rglob("*")):
        if not (path.is_file() and path.suffix.lower() in _TEXT_SUFFIXES):
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        new = text
        for value in identifiers:
            new = new.replace(value, pseudonym)
        if new != text:
            path.write_text(new, encoding="utf-8", errors="surrogateescape")


def pseudonymise_dicom(path: Path, pseudonym: str) -> None:
    """Replace PatientID and PatientName by ``pseudonym`` and drop other patient identifiers.

    Sets PatientIdentityRemoved = YES and records the method in DeidentificationMethod.
    """
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PatientID = pseudonym
    ds.PatientName = pseudonym
    for keyword in _REMOVE_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = (
        "bonelesion: PatientID/PatientName replaced by HMAC-SHA256 pseudonym"
    )
    tmp = path.with_name(path.name + ".tmp")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
