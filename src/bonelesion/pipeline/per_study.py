"""Run one study: the per-study function every command and executor calls.

`run_study(task) -> StudyOutcome` goes load → lesions → measure → classify → report for one
study whose plan is already made (`bonelesion.pipeline.selection`). It takes and returns
plain, picklable data (paths, UIDs, dicts), so the same function runs in this process, in a
process pool or on a Dask worker. It never raises for a problem of the study: a failure
becomes ``StudyOutcome(status="failed")`` naming the stage, the series and the message
(isolation). It writes its outputs under ``task.work_dir`` only; the caller moves that
folder into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.errors import InputError, PipelineError
from bonelesion.pipeline import side
from bonelesion.pipeline.plan import StudyPlan
from bonelesion.report.outputs import LesionViews, OutputOptions

__all__ = ["StudyTask", "StudyOutcome", "StudyFailure", "run_study", "failed_outcome",
           "import_study_modules", "LABELLING_MODULES", "hash_while_idle"]

logger = logging.getLogger(__name__)


#: The third-party modules a study's run imports that the indexing does not: the vertebra
#: labelling's `scipy.ndimage` (~0.15 s) and, for report.html, the template engine. Only
#: these: two threads importing modules of one package that import each other (as a package
#: and its submodules do) could deadlock, and the indexing imports none of these.
_STUDY_MODULES = ("scipy.ndimage",)
_HTML_MODULES = ("jinja2",)


def import_study_modules(outputs: OutputOptions) -> threading.Thread | None:
    """Start importing the modules a study's run needs, on a background thread.

    For studies run in this process: the imports then overlap the indexing of the export
    instead of following it. The thread is not a daemon (an interpreter never stops in the
    middle of an import). An import that fails here is left to fail, with its own message,
    where the run imports the module.

    Returns
    -------
    threading.Thread or None
        The started thread; None when every module is imported already (a second run in
        the same process starts no thread).
    """
    names = tuple(name for name in _STUDY_MODULES + (_HTML_MODULES if outputs.html else ())
                  if name not in sys.modules)
    if not names:
        return None

    def load() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - raised again, in context, by the run's import
                return

    thread = threading.Thread(target=load, name="bonelesion-imports")
    thread.start()
    return thread


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
        `PipelineDefinition.to_dict()` (stages, roles, resolved configuration) plus its
        ``hash``.
    rois_path : str or None
        ROI source (annotations CSV, SEG, RTSTRUCT, NIfTI); None for automatic detection.
    lesions : tuple of Lesion or None
        This study's lesions, already read from ``rois_path`` (the batch reads an ROI file
        once); None to read them from ``rois_path`` here.
    work_dir : str
        Empty folder the study writes its outputs into.
    outputs : OutputOptions
        Which views to render (QC images, DICOM SEG/SR, report.html).
    model_path : str or None
        A trained model (`bonelesion train`) to call the lesions with instead of the rules.
    pseudonymise : bool
        Replace patient identifiers in every output by ``patient_label``.
    identifiers : tuple of str
        With ``pseudonymise``: the raw identifier strings (PatientID, PatientName) replaced
        by ``patient_label`` in every text output (e.g. inside file paths).
    command : tuple of str
        The command line, recorded in the study document.
    study_date, study_description : str
        DICOM StudyDate and StudyDescription (the reports' context); "" when unknown.
    """

    study_instance_uid: str
    patient_label: str
    plan: StudyPlan
    pipeline: Mapping[str, Any]
    rois_path: str | None
    work_dir: str
    lesions: tuple[Any, ...] | None = None
    outputs: OutputOptions = field(default_factory=OutputOptions)
    model_path: str | None = None
    pseudonymise: bool = False
    identifiers: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    study_date: str = ""
    study_description: str = ""


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
    """What one study produced: its document and lesion rows, or the failure."""

    study_instance_uid: str
    status: str
    lesion_rows: tuple[Mapping[str, Any], ...] = ()
    document: Mapping[str, Any] | None = None
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


@contextmanager
def _stage(name: str, series_uid: str = "") -> Iterator[None]:
    """Attribute any exception raised inside to stage ``name`` and series ``series_uid``."""
    try:
        yield
    except _StageFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - isolation: recorded with stage and series
        raise _StageFailed(name, series_uid, exc) from exc


def run_study(task: StudyTask) -> StudyOutcome:
    """Load, measure, classify and report one study; never raises for a study problem.

    Parameters
    ----------
    task : StudyTask
        The study, its plan and where to write.

    Returns
    -------
    StudyOutcome
        ``status="ok"`` with the study document and one row per lesion, or
        ``status="failed"`` with the stage (``roi``, ``load``, ``detect``, ``measure``,
        ``classify``, ``report``), the series UID and the message of the first failure.
    """
    start = time.perf_counter()
    work = Path(task.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            document, rows = _run(task, work)
        caught = sorted({f"{w.category.__name__}: {w.message}" for w in record})
        if caught:
            # one line per study (a study with many small lesions warns about each on each
            # series); every warning is stored with the results, and logged with -v
            logger.warning("study %s: %d warning(s), stored with its results (-v lists them); "
                           "the first: %s",
                           task.study_instance_uid, len(caught), caught[0])
        for w in caught:
            logger.debug("study %s: %s", task.study_instance_uid, w)
    except _StageFailed as failed:
        exc = failed.exc
        message = str(exc)
        if not isinstance(exc, PipelineError):
            logger.error("study %s: unexpected error in stage %s:\n%s", task.study_instance_uid,
                         failed.stage, "".join(traceback.format_exception(exc)))
            message = (
                f"Study {task.study_instance_uid}, stage {failed.stage}: unexpected "
                f"{type(exc).__name__}: {exc}. Potential fix: this is a bug; rerun with -v "
                "and report the traceback."
            )
        return StudyOutcome(
            study_instance_uid=task.study_instance_uid,
            status="failed",
            failure=StudyFailure(stage=failed.stage, series_instance_uid=failed.series_uid,
                                 error_type=type(exc).__name__, message=message),
            warnings=tuple(caught),
            duration_s=time.perf_counter() - start,
        )
    files = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    return StudyOutcome(
        study_instance_uid=task.study_instance_uid,
        status="ok",
        lesion_rows=tuple(rows),
        document=document,
        warnings=tuple(caught),
        files=tuple(files),
        duration_s=time.perf_counter() - start,
    )


def _lesions(task: StudyTask) -> list[Any] | None:
    """Read the study's lesions from the ROI source (stage ``roi``).

    None: no ROI source, and the pipeline detects lesions on the CT (``rois = "auto"``).
    """
    from bonelesion.roi.sources import load_lesions

    if task.lesions is not None:
        return list(task.lesions)
    if not task.rois_path:
        if str(task.pipeline.get("rois") or "auto") == "auto":
            return None
        raise InputError(
            f"Study {task.study_instance_uid}: no ROI source given and pipeline "
            f"{task.pipeline.get('name', '')!r} says rois = 'file'. Potential fix: pass "
            "--rois FILE (annotations CSV, DICOM SEG, RTSTRUCT or NIfTI labels), or use a "
            "pipeline with rois = 'auto' (lesion candidates detected on the CT)."
        )
    return [le for le in load_lesions(task.rois_path)
            if le.applies_to_study(task.study_instance_uid)]


def _rois_record(task: StudyTask) -> dict[str, Any]:
    from bonelesion.report.document import sha256_file

    if not task.rois_path:
        return {"kind": "detection", "path": None, "sha256": None}
    return {"kind": "file", "path": task.rois_path, "sha256": sha256_file(task.rois_path)}


def _masks(volumes: Mapping[str, Any], lesions: list[Any], warnings_out: list[str], *,
           draw: bool) -> tuple[dict[str, Any], LesionViews | None]:
    """Return the lesions the views can draw (QC, SEG): those with a voxel on the first volume.

    The first volume in report role order is the SEG's first choice. Each lesion is put on
    it within its bounding box only (`Lesion.box_mask_on`); the SEG rasterises the lesions
    on its own grids and boxes, so no full-volume mask is built. With ``draw`` (figures or
    report.html), those masks and their geometry are kept for the views, which then do not
    rasterise the lesions again.
    """
    from bonelesion.report.outputs import lesion_views
    from bonelesion.report.result import ROLE_ORDER

    primary = next((volumes[r] for r in ROLE_ORDER if r in volumes), None)
    masks: dict[str, Any] = {}
    drawn: dict[str, Any] = {}
    if primary is None:
        return masks, None
    for lesion in lesions:
        try:
            _, drawn[lesion.lesion_id] = lesion.box_mask_on(primary)
        except InputError as exc:
            warnings_out.append(f"lesion {lesion.lesion_id}: no mask for QC/SEG: {exc}")
            continue
        masks[lesion.lesion_id] = lesion
    return masks, lesion_views(drawn, list(drawn)) if draw else None


#: The labelling, named for the helper process (which imports it; this process need not).
_DETECT = "bonelesion.pipeline.detection:detect_on_ct"
#: What a run's helper process imports while the export is indexed: the labelling and
#: the candidate search import scipy.ndimage only where they use it, so it is named too.
LABELLING_MODULES = ("scipy.ndimage", "bonelesion.pipeline.detection",
                     "bonelesion.roi.candidates")


@contextmanager
def _collected(started: Mapping[str, Any]) -> Iterator[None]:
    """On the way out, take a helper call's answer nobody took (the study failed first).

    The helper then serves the next study; the thread's future is waited for by its pool.
    """
    try:
        yield
    finally:
        for call in started.values():
            if isinstance(call, side.PendingCall) and not call.collected:
                with contextlib.suppress(Exception):
                    call.result()


#: The provenance hashing, named for the helper process.
_HASH = "bonelesion.pipeline.per_study:hash_while_idle"


def hash_while_idle(paths: list[str]) -> dict[str, str]:
    """SHA-256 of ``paths`` in order, in the helper process, until the CT's labelling arrives.

    What it hashed comes back; the study's own process hashes the rest (and any file it
    could not read, which `file_hashes` then reports), so the labelling never waits behind
    the hashing, and the hashing fills the helper's time while the study's series are read.
    """
    from bonelesion.report.document import sha256_file

    out: dict[str, str] = {}
    for path in paths:
        if side.call_waiting():
            break
        with contextlib.suppress(OSError):
            out[path] = sha256_file(path)
    return out


def _shown_files(plan: StudyPlan) -> list[str]:
    """List the files of the series a study document shows (each role's chosen ones but DWI).

    A superset of the shown volumes' own files (a series may hold several stacks), known
    before any is read.
    """
    uids = {cand.series_instance_uid for choice in plan.choices
            if choice.used and choice.role != "dwi" for cand in choice.chosen}
    return sorted({str(f) for c in plan.inputs if c.series_instance_uid in uids
                   for f in c.files})


def _source_hashes(files: list[str], pending: Any) -> dict[str, str]:
    """`file_hashes(files)`, taking what the helper hashed meanwhile (``pending``) if any."""
    from bonelesion.report.document import file_hashes

    got: dict[str, str] = {}
    if pending is not None:
        with contextlib.suppress(side.SideProcessLost):
            got = pending.result()
    missing = file_hashes(f for f in files if f not in got)
    return {f: got[f] if f in got else missing[f] for f in dict.fromkeys(files)}


def _detect(ct: Any, config: Any, candidates: bool) -> Any:
    """`detect_on_ct` in this process (the thread, or after the helper failed)."""
    from bonelesion.pipeline.detection import detect_on_ct

    return detect_on_ct(ct, config, candidates=candidates)


def _run(task: StudyTask, work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from bonelesion.classify import call_lesions
    from bonelesion.classify.config import classifier_config_from_mapping
    from bonelesion.config import build_config, config_to_dict
    from bonelesion.dicom.decode import output_arrays
    from bonelesion.pipeline.loading import load_study_volumes
    from bonelesion.pipeline.measurement import measure_study
    from bonelesion.report.document import study_document
    from bonelesion.report.outputs import write_study_outputs
    from bonelesion.report.result import study_result
    from bonelesion.roi.config import detection_config_from_mapping
    from bonelesion.roi.sources import annotations_of
    from bonelesion.stages.config import PipelineConfig

    plan = task.plan
    uid = task.study_instance_uid
    with _stage("config"):
        cfg = build_config(PipelineConfig, dict(task.pipeline.get("config") or {}),
                           prefix="config")
        classifier_cfg = classifier_config_from_mapping(dict(cfg.classifier))
        model = None
        if task.model_path:
            from bonelesion.classify.model import load_model

            model = load_model(task.model_path)
        detection_cfg = detection_config_from_mapping(dict(task.pipeline.get("detection") or {}))
    with _stage("roi"):
        lesions = _lesions(task)
    study_warnings = [f"stage {k} skipped: {v}" for k, v in plan.skipped_stages.items()]
    auto = lesions is None
    measurements: list[Any] = []
    # The vertebra labelling (and, with rois = "auto", the candidates) starts the moment the
    # CT is read: in the run's helper process when there is one (`bonelesion.pipeline.side`;
    # the volumes are read into memory it maps), else on a second thread. Meanwhile this
    # thread reads the MR series, measures the given ROIs, which do not depend on it, and
    # hashes the source files for the provenance.
    helper = side.current()
    started: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bonelesion-detect") as thread, \
            _collected(started):
        if helper is not None:  # the helper hashes while this process reads the series
            with contextlib.suppress(side.SideProcessLost):
                started["hashes"] = helper.call(_HASH, _shown_files(plan))

        def start_labelling(role: str, volume: Any) -> None:
            if role != "ct":
                return
            if helper is not None:
                with contextlib.suppress(side.SideProcessLost):  # then labelled here
                    started[role] = helper.call(_DETECT, volume, detection_cfg,
                                                candidates=auto)
                    return
            started[role] = thread.submit(_detect, volume, detection_cfg, auto)

        with output_arrays(helper.ct_array if helper is not None else None):
            volumes = load_study_volumes(plan, stage=_stage, on_loaded=start_labelling,
                                         tilt=str(task.pipeline.get("tilt") or "refuse"))
        ct = volumes.one("ct")
        pending = started.get("ct")
        first_series = next((v.series.series_instance_uid for _, v in volumes.all()), "")
        if not auto:
            with _stage("measure", first_series):
                measurements = measure_study(volumes, lesions or [], cfg)
        # the series the study document lists (every role's first series; DWI's is not)
        shown = {role: vols[0] for role, vols in volumes.by_role.items()
                 if role != "dwi" and vols}
        hashes = _source_hashes([f for v in shown.values() for f in v.series.source_files],
                                started.get("hashes"))
        # the report's level-independent preparation, also while the labelling runs
        any_view = task.outputs.qc or task.outputs.dicom or task.outputs.html
        draw = task.outputs.qc or task.outputs.html
        drawable, drawn = (_masks(shown, lesions or [], study_warnings, draw=draw)
                           if any_view and not auto else ({}, None))
        if task.outputs.html:
            from bonelesion.report.html_report import prepare_study_template

            prepare_study_template()
        detection = None
        if pending is not None and ct is not None:
            with _stage("detect", ct.series.series_instance_uid):
                try:
                    try:
                        detection = pending.result()
                    except side.SideProcessLost:  # the helper failed: labelled here
                        detection = _detect(ct, detection_cfg, auto)
                except InputError as exc:  # a CT that cannot be analysed: said, not fatal
                    study_warnings.append(f"vertebrae not labelled, no candidates: {exc}")
    from bonelesion.pipeline.detection import (
        detected_lesions,
        lesion_location,
        spine_section,
        with_level,
    )

    if auto:
        lesions = detected_lesions(detection, uid, study_warnings)
    assert lesions is not None
    locations = {le.lesion_id: lesion_location(le, detection, detection_cfg) for le in lesions}
    levelled = [with_level(le, locations[le.lesion_id], detection_cfg) for le in lesions]
    if auto:
        with _stage("measure", first_series):
            measurements = measure_study(volumes, levelled, cfg)
    else:  # measured before their levels were known: the levels join their annotations
        measurements = [m if new is old else dataclasses.replace(m, annotations=annotations_of(new))
                        for m, old, new in zip(measurements, lesions, levelled, strict=True)]
    lesions = levelled
    with _stage("classify"):
        calls = call_lesions(measurements, config=classifier_cfg, model=model)
    with _stage("report"):
        if not lesions and not auto:
            study_warnings.append("no lesion of the ROI source applies to this study")
        if auto:
            masks, drawn = (_masks(shown, lesions, study_warnings, draw=draw)
                            if any_view else ({}, None))
        else:  # the lesions found drawable before their levels were known
            masks = {le.lesion_id: le for le in lesions if le.lesion_id in drawable}
        result = study_result(
            measurements, calls=calls, study_instance_uid=uid, volumes=shown, masks=masks,
            lesion_sources={le.lesion_id: le.source for le in lesions},
            mask_sources={le.lesion_id: le.mask_on for le in lesions},
        )
        document = study_document(
            result,
            patient=task.patient_label,
            pipeline={"name": task.pipeline.get("name", ""),
                      "description": task.pipeline.get("description", ""),
                      "hash": task.pipeline.get("hash", "")},
            plan=plan.to_dict(),
            config={"stages": config_to_dict(cfg.stages),
                    "classifier": config_to_dict(classifier_cfg)},
            model=model.to_dict() if model is not None else None,
            rois=_rois_record(task),
            command=task.command or None,
            warnings=study_warnings,
            study_date=task.study_date,
            study_description=task.study_description,
            spine=spine_section(detection, detection_cfg),
            lesion_locations=locations,
            source_hashes=hashes,
        )
        if task.pseudonymise:
            from bonelesion.pipeline.privacy import scrub

            document = scrub(document, [(i, task.patient_label) for i in task.identifiers])
        document, rows = write_study_outputs(work, result, document, options=task.outputs,
                                             views=drawn)
        if task.pseudonymise:
            from bonelesion.pipeline.privacy import pseudonymise_dicom

            for dcm in sorted(work.rglob("*.dcm")):
                pseudonymise_dicom(dcm, task.patient_label)
    return document, rows
