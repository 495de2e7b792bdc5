"""The measuring part of one study: lesions → measurements → calls → per-study reports.

Called by `bonelesion.pipeline.study.run_study` with the stacks the plan chose, each
wrapped in a stage context that names the stage (``roi``, ``measure``, ``classify``,
``report``) and series of any failure. Only the chosen stacks reach `measure_study`, so the
study's series choice is the plan's, recorded in ``plan.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bonelesion.config import build_config
from bonelesion.errors import InputError
from bonelesion.pipeline.definition import STAGE_OPTIONAL_ROLES, STAGE_ROLES

__all__ = ["measure_and_report", "stage_roles"]

logger = logging.getLogger(__name__)


def stage_roles(stage: str) -> tuple[str, ...]:
    """Every role a stage can use (required, alternative and optional)."""
    all_of, any_of = STAGE_ROLES[stage]
    return all_of + any_of + STAGE_OPTIONAL_ROLES.get(stage, ())


def measure_and_report(
    task: Any, stacks_by_role: Mapping[str, list[Any]], work: Path,
    *, stage: Callable[..., Any],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Measure, classify and write the per-study reports of one study.

    Returns
    -------
    rows : list of dict
        One row per lesion for the batch ``lesions.csv`` (measurements + call columns).
    files : list of str
        Files written, relative to ``work``.
    """
    from bonelesion.classify import classify_lesions
    from bonelesion.classify.config import classifier_config_from_mapping
    from bonelesion.roi.sources import load_lesions
    from bonelesion.stages.config import PipelineConfig
    from bonelesion.stages.output import lesion_row, write_lesions_csv, write_results_json
    from bonelesion.stages.study import measure_study

    plan = task.plan
    pipeline = task.pipeline
    with stage("config"):
        cfg = build_config(PipelineConfig, dict(pipeline.get("config") or {}), prefix="config")
    with stage("roi"):
        if not task.rois_path:
            raise InputError(
                f"Study {task.study_instance_uid}: no ROI source given. Potential fix: pass "
                "--rois FILE (annotations CSV, DICOM SEG, RTSTRUCT or NIfTI labels)."
            )
        lesions = [le for le in load_lesions(task.rois_path)
                   if le.applies_to_study(task.study_instance_uid)]
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
        calls = classify_lesions(measurements,
                                 config=classifier_config_from_mapping(dict(cfg.classifier)))
    rows: list[dict[str, Any]] = []
    for m, call in zip(measurements, calls, strict=True):
        row = {k: v for k, v in lesion_row(m).items() if k != "study_instance_uid"}
        row.update(call.table_columns())
        rows.append(row)
    with stage("report"):
        inputs = {
            "study_instance_uid": task.study_instance_uid,
            "pipeline": pipeline.get("name", ""),
            "plan": plan.to_dict(),
            "series": [
                {"role": role, "series_instance_uid": s.info.series_instance_uid,
                 "series_number": s.info.series_number,
                 "sop_instance_uids": list(s.info.sop_instance_uids)}
                for role, ss in stacks_by_role.items() for s in ss
            ],
        }
        write_lesions_csv(measurements, work / "lesions.csv")
        write_results_json(measurements, cfg, work / "results.json", inputs=inputs,
                           warnings=[f"{k}: {v}" for k, v in plan.skipped_stages.items()])
        files = ["lesions.csv", "results.json"]
        files += _classify_reports(task, measurements, calls, cfg, work)
    if not lesions:
        logger.warning("study %s: no lesion of the ROI source applies to this study",
                       task.study_instance_uid)
    return rows, files


def _classify_reports(task: Any, measurements: Any, calls: Any, cfg: Any, work: Path) -> list[str]:
    """The classifier's reports (calls JSON …) for one study."""
    import json

    doc = {"study_instance_uid": task.study_instance_uid,
           "calls": [c.to_dict() for c in calls]}
    (work / "calls.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    return ["calls.json"]
