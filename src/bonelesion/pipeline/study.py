"""Run one study: the per-study function every executor calls.

`run_study(task) -> StudyOutcome` takes and returns plain, picklable data (paths, UIDs,
dicts), so the same function runs in this process, in a process pool or on a Dask worker.
It never raises for a problem of the study: a failure becomes ``StudyOutcome(status="failed")``
naming the stage, the series and the message (isolation). It writes its outputs under
``task.work_dir`` only; the batch runner moves that folder into place atomically.
"""

from __future__ import annotations

import logging
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.errors import PipelineError
from bonelesion.pipeline.plan import StackCandidate, StudyPlan

__all__ = ["StudyTask", "StudyOutcome", "StudyFailure", "run_study", "failed_outcome"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StudyTask:
    """Everything a worker needs to run one study (plain data only).

    Parameters
    ----------
    study_instance_uid : str
        The study.
    patient_label : str
        What outputs call the patient: the PatientID, or its keyed pseudonym with
        ``--pseudonymise``. Never logged.
    plan : StudyPlan
        The chosen stack(s) per role, with file paths.
    pipeline : mapping
        `PipelineDefinition.to_dict()` (stages, roles, resolved measurement config).
    rois_path : str or None
        ROI source (annotations CSV, SEG, RTSTRUCT, NIfTI) or None for CT candidate detection.
    work_dir : str
        Empty folder the study writes its outputs into.
    pseudonymise : bool
        Replace patient identifiers in the DICOM outputs (SEG, SR) by ``patient_label``.
    identifiers : tuple of str
        With ``pseudonymise``: the raw identifier strings (PatientID, PatientName) replaced
        by ``patient_label`` in every text output (JSON, HTML, CSV), e.g. inside file paths.
    """

    study_instance_uid: str
    patient_label: str
    plan: StudyPlan
    pipeline: Mapping[str, Any]
    rois_path: str | None
    work_dir: str
    pseudonymise: bool = False
    identifiers: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StudyFailure:
    """Where and why a study failed."""

    stage: str
    series_instance_uid: str
    error_type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """Plain form."""
        return {
            "stage": self.stage,
            "series_instance_uid": self.series_instance_uid,
            "error_type": self.error_type,
            "message": self.message,
        }


@dataclass(frozen=True, kw_only=True)
class StudyOutcome:
    """What one study produced: lesion rows for the tables, or the failure."""

    study_instance_uid: str
    status: str
    lesion_rows: tuple[Mapping[str, Any], ...] = ()
    failure: StudyFailure | None = None
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    duration_s: float = 0.0
    record: Mapping[str, Any] = field(default_factory=dict)


def failed_outcome(
    task: StudyTask,
    error: BaseException | str,
    *,
    stage: str = "worker",
    series_instance_uid: str = "",
) -> StudyOutcome:
    """Build a failed `StudyOutcome` for an error caught outside `run_study` (lost worker …)."""
    if isinstance(error, BaseException):
        error_type, message = type(error).__name__, str(error)
    else:
        error_type, message = "WorkerError", error
    return StudyOutcome(
        study_instance_uid=task.study_instance_uid,
        status="failed",
        failure=StudyFailure(
            stage=stage,
            series_instance_uid=series_instance_uid,
            error_type=error_type,
            message=f"Study {task.study_instance_uid}: {message}",
        ),
    )


class _StageFailed(Exception):
    def __init__(self, stage: str, series_uid: str, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.stage = stage
        self.series_uid = series_uid
        self.exc = exc


def run_study(task: StudyTask) -> StudyOutcome:
    """Load, measure, classify and report one study; never raises for a study problem.

    Parameters
    ----------
    task : StudyTask
        The study, its plan and where to write.

    Returns
    -------
    StudyOutcome
        ``status="ok"`` with one row per lesion, or ``status="failed"`` with the stage
        (``load``, ``roi``, ``measure``, ``classify``, ``report``), the series UID and the
        message of the first failure.
    """
    start = time.perf_counter()
    work = Path(task.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            rows, files = _run(task, work)
        caught = sorted({f"{w.category.__name__}: {w.message}" for w in record})
        for w in caught:
            logger.warning("study %s: %s", task.study_instance_uid, w)
    except _StageFailed as failed:
        exc = failed.exc
        unexpected = not isinstance(exc, PipelineError)
        message = str(exc)
        if unexpected:
            logger.error(
                "study %s: unexpected error in stage %s:\n%s",
                task.study_instance_uid,
                failed.stage,
                "".join(traceback.format_exception(exc)),
            )
            message = (
                f"Study {task.study_instance_uid}, stage {failed.stage}: unexpected "
                f"{type(exc).__name__}: {exc}. Potential fix: this is a bug; rerun with -v "
                "and report the traceback."
            )
        return StudyOutcome(
            study_instance_uid=task.study_instance_uid,
            status="failed",
            failure=StudyFailure(
                stage=failed.stage,
                series_instance_uid=failed.series_uid,
                error_type=type(exc).__name__,
                message=message,
            ),
            warnings=tuple(caught),
            duration_s=time.perf_counter() - start,
        )
    return StudyOutcome(
        study_instance_uid=task.study_instance_uid,
        status="ok",
        lesion_rows=tuple(rows),
        warnings=tuple(caught),
        files=tuple(files),
        duration_s=time.perf_counter() - start,
    )


@contextmanager
def _stage(name: str, series_uid: str = "") -> Iterator[None]:
    """Attribute any exception raised inside to stage ``name`` and series ``series_uid``."""
    try:
        yield
    except _StageFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - isolation: recorded with stage and series
        raise _StageFailed(name, series_uid, exc) from exc


def _pick_stack(stacks: list[Any], cand: StackCandidate) -> Any:
    """Find the loaded stack the plan chose (by stack key, else by its files, else by role)."""
    from bonelesion.errors import SeriesSelectionError

    same = [s for s in stacks if s.info.series_instance_uid == cand.series_instance_uid]
    wanted_files = {str(Path(f).resolve()) for f in cand.files}
    for match in (
        lambda s: str(s.key) == cand.stack_key,
        lambda s: {str(Path(f).resolve()) for f in s.files} == wanted_files,
        lambda s: s.info.role == cand.role,
    ):
        found = [s for s in same if match(s)]
        if len(found) == 1:
            found[0].raise_if_refused()
            return found[0]
    raise SeriesSelectionError(
        f"Series {cand.series_instance_uid}: stack {cand.stack_key!r} (role {cand.role}) not found "
        f"among the {len(same)} stacks the reader made of its files. Potential fix: re-index the "
        "export (files may have changed since indexing)."
    )


def _roles_not_needed(task: StudyTask) -> set[str]:
    """Chosen roles whose images the stages will not read (not loaded, to save time).

    With a scanner ADC map chosen and ``stages.dwi_adc.prefer_scanner_adc`` (the default),
    the ADC stage measures the scanner map, so the DWI series is not decoded.
    """
    from bonelesion.stages.config import DwiAdcConfig

    config = task.pipeline.get("config") or {}
    prefer = ((config.get("stages") or {}).get("dwi_adc") or {}).get(
        "prefer_scanner_adc", DwiAdcConfig.prefer_scanner_adc
    )
    chosen = {c.role for c in task.plan.choices if c.chosen}
    return {"dwi"} if prefer and "adc" in chosen else set()


def _run(task: StudyTask, work: Path) -> tuple[list[dict[str, Any]], list[str]]:
    from bonelesion.dicom.series import load_series

    plan = task.plan
    with _stage("roi"):
        if not task.rois_path:
            from bonelesion.errors import InputError

            raise InputError(
                f"Study {task.study_instance_uid}: no ROI source given. Potential fix: pass "
                "--rois FILE (annotations CSV, DICOM SEG, RTSTRUCT or NIfTI labels)."
            )
    skip = _roles_not_needed(task)
    stacks_by_role: dict[str, list[Any]] = {}
    cache: dict[str, list[Any]] = {}
    for choice in plan.choices:
        if choice.role in skip:
            continue
        for cand in choice.chosen:
            with _stage("load", cand.series_instance_uid):
                # One read per series: a Dixon or DWI series holds several chosen stacks.
                if cand.series_instance_uid not in cache:
                    files = sorted(
                        {
                            f
                            for c in plan.inputs
                            if c.series_instance_uid == cand.series_instance_uid
                            for f in c.files
                        }
                    )
                    cache[cand.series_instance_uid] = load_series(files)
                loaded = cache[cand.series_instance_uid]
                role_spec = (task.pipeline.get("roles") or {}).get(choice.role) or {}
                if role_spec.get("unit") == "series":
                    # The whole series plays the role (one DWI stack per b-value/direction):
                    # take every loaded stack of it with an accepted role.
                    accepted = set(role_spec.get("stack_roles") or (cand.role,))
                    found = [
                        st
                        for st in loaded
                        if st.info.series_instance_uid == cand.series_instance_uid
                        and st.info.role in accepted
                    ]
                    for st in found:
                        st.raise_if_refused()
                    for st in found:
                        if all(st is not seen for seen in stacks_by_role.get(choice.role, [])):
                            stacks_by_role.setdefault(choice.role, []).append(st)
                    if not found:
                        stacks_by_role.setdefault(choice.role, []).append(_pick_stack(loaded, cand))
                else:
                    stacks_by_role.setdefault(choice.role, []).append(_pick_stack(loaded, cand))
    from bonelesion.pipeline import measure

    return measure.measure_and_report(task, stacks_by_role, work, stage=_stage)

