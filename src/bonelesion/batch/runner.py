"""The batch runner: plan every study, run what is missing, store, and rebuild the tables.

Flow of `run_batch`::

    inventory ─▶ plan each study ─▶ key (input hash, pipeline hash)
                     │                       │ current in the store? ─▶ skip
                     │ refused ─▶ store failure (stage "plan")
                     ▼
              StudyTask ─▶ executor (local | process | dask) ─▶ StudyOutcome
                                                                     │
           work dir ─rename─▶ OUT/studies/<patient>/<study>/ ◀───────┤
                                 results store (one transaction) ◀───┘
                                           │
               OUT/lesions.csv, results.json, failures.csv, bad_files.csv, summary.txt,
               index.html (rebuilt from the store, each written to a temporary file and renamed)

Resume after ``kill -9``: a study is either committed in the store (with its output folder
already in place) or it is not and runs again; the tables are always rebuilt from the store,
so there are no duplicate rows and the result equals an uninterrupted run's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion import __version__
from bonelesion.batch.executors import RunInterrupted, execute, stop_on_signals
from bonelesion.batch.names import Pseudonymiser, safe_component
from bonelesion.batch.progress import Progress
from bonelesion.batch.store import ResultsStore, StoredStudy, input_hash
from bonelesion.errors import InputError
from bonelesion.pipeline.definition import PipelineDefinition, pipeline_hash
from bonelesion.pipeline.inventory import NOT_INPUT_STATUSES, BadFile, Inventory, InventoryStudy
from bonelesion.pipeline.per_study import StudyOutcome, StudyTask, failed_outcome, run_study
from bonelesion.pipeline.plan import StudyPlan
from bonelesion.pipeline.selection import plan_study
from bonelesion.report.outputs import OutputOptions

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "run_batch",
    "rebuild_tables",
    "TABLE_FILES",
    "STORE_NAME",
]

logger = logging.getLogger(__name__)

STORE_NAME = "results.sqlite"
STUDIES_DIR = "studies"
WORK_DIR = ".work"
TABLE_FILES = ("lesions.csv", "results.json", "failures.csv", "bad_files.csv", "warnings.csv",
               "summary.txt", "index.html")
#: Columns of warnings.csv (run-level warnings: they never change the exit code).
WARNING_COLUMNS = ("kind", "study_instance_uid", "lesion_id", "message")


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """How to run a batch (see ``bonelesion run --help``)."""

    out_dir: Path
    rois_path: Path | None = None
    workers: int = 1
    executor: str = "local"
    scheduler: str | None = None
    force: bool = False
    retry_failed: bool = False
    pseudonymiser: Pseudonymiser | None = None
    outputs: OutputOptions = field(default_factory=OutputOptions)
    model_path: Path | None = None
    command: tuple[str, ...] = ()
    warnings: tuple[Mapping[str, str], ...] = ()
    lesions: tuple[Any, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class BatchSummary:
    """What a batch did; ``exit_code`` is 0, or 4 when any study or file failed."""

    studies_total: int
    studies_run: int
    studies_skipped: int
    studies_ok: int
    studies_failed: int
    lesions: int
    failures: tuple[Mapping[str, str], ...]
    bad_files: tuple[BadFile, ...]
    out_dir: Path
    tables: tuple[Path, ...] = field(default_factory=tuple)
    warnings: tuple[Mapping[str, str], ...] = ()

    @property
    def exit_code(self) -> int:
        """4 ("completed with failures") when a study failed or a DICOM file was damaged.

        Files that are not DICOM at all (README, checksums, thumbnails) are listed in
        bad_files.csv but do not make a run fail.
        """
        return 4 if (self.studies_failed or any(b.is_failure for b in self.bad_files)) else 0


def _file_signature(path: str, sop_uid: str) -> str:
    st = os.stat(path)
    return f"{sop_uid}|{st.st_size}|{st.st_mtime_ns}"


def _file_digest(path: Path | None, what: str, option: str) -> str:
    if path is None:
        return f"{what}:none"
    try:
        return f"{what}:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(
            f"{what} file {path} cannot be read ({exc.strerror}). Potential fix: check {option}."
        ) from exc


def study_input_hash(plan: StudyPlan, rois_digest: str) -> str:
    """Hash of the exact instances a study's plan uses, plus its plan and ROI source.

    Raises
    ------
    OSError
        If a planned file vanished since indexing (caught by the caller as a study failure).
    """
    sigs: list[str] = []
    for cand in plan.inputs:
        if cand.file_signatures:
            sigs.extend(cand.file_signatures)
        else:
            uids = cand.sop_instance_uids or tuple("" for _ in cand.files)
            sigs.extend(_file_signature(f, u) for f, u in zip(cand.files, uids, strict=False))
    plan_blob = json.dumps(plan.to_dict(), sort_keys=True)
    return input_hash(sigs, extra=(rois_digest, plan_blob))


def _patient_label(record: InventoryStudy, pseudonymiser: Pseudonymiser | None) -> str:
    if pseudonymiser is not None:
        return pseudonymiser(record.patient_id) or "PSN-unknown"
    return record.patient_id or "unknown"


def _study_dir_rel(label: str, study_uid: str) -> str:
    patient = safe_component(label, fallback="patient")
    return f"{STUDIES_DIR}/{patient}/{safe_component(study_uid, fallback='study')}"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    # file names that are not UTF-8 (bad_files.csv, the summary) are written escaped
    with open(tmp, "w", encoding="utf-8", errors="backslashreplace", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _install_dir(work: Path, final: Path, trash_root: Path) -> None:
    """Move ``work`` to ``final``, replacing an older ``final`` (each step a rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        trash = trash_root / f"old-{uuid.uuid4().hex}"
        final.rename(trash)
        work.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        work.rename(final)


def run_batch(
    definition: PipelineDefinition,
    inventory: Inventory,
    options: BatchOptions,
    *,
    study_function: Callable[[StudyTask], StudyOutcome] = run_study,
    progress: Progress | None = None,
) -> BatchSummary:
    """Run ``definition`` over every study of ``inventory`` that is not yet current.

    Parameters
    ----------
    definition : PipelineDefinition
        The pipeline.
    inventory : Inventory
        Studies and bad files of the export (`build_inventory`).
    options : BatchOptions
        Output folder, ROI source, executor and workers, ``force``, pseudonymisation.
    study_function : callable
        The per-study function (top-level and picklable; default `run_study`).
    progress : Progress or None
        Display; a plain-lines `Progress` on stderr when None.

    Returns
    -------
    BatchSummary
        Counts, failures and bad files; its ``exit_code`` is 4 when anything failed.

    Raises
    ------
    RunInterrupted
        On SIGINT or SIGTERM: the worker processes are stopped, every study finished so far
        is stored and the tables are rebuilt from the store; a rerun resumes.
    """
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work_root = out / WORK_DIR
    if work_root.exists():  # leftovers of a killed run: never committed, safe to drop
        shutil.rmtree(work_root, ignore_errors=True)
    work_root.mkdir()
    p_hash = pipeline_hash(
        definition, version=__version__,
        extra={"pseudonymised": options.pseudonymiser is not None,
               "model": _file_digest(options.model_path, "model", "--model"),
               "outputs": [options.outputs.qc, options.outputs.dicom, options.outputs.html]},
    )
    rois_digest = _file_digest(options.rois_path, "ROI", "--rois")
    pipeline_dict = {**definition.to_dict(), "hash": p_hash}

    with ResultsStore(out / STORE_NAME, reset=options.force) as store:
        tasks: list[StudyTask] = []
        input_hashes: dict[str, str] = {}
        skipped = 0
        # (study UID, patient label, plan, input hash, error type, message)
        refused: list[tuple[str, str, StudyPlan, str, str, str]] = []
        for record in sorted(inventory.studies, key=lambda r: r.study_instance_uid):
            uid = record.study_instance_uid
            plan = plan_study(uid, record.candidates, definition)
            label = _patient_label(record, options.pseudonymiser)
            try:
                i_hash = study_input_hash(plan, rois_digest)
            except OSError as exc:
                refused.append(
                    (
                        uid,
                        label,
                        plan,
                        "",
                        "InputError",
                        f"Study {uid}: an input file vanished since "
                        f"indexing ({exc.strerror}: {Path(str(exc.filename)).name}). "
                        "Potential fix: rerun; the export is re-indexed each run.",
                    )
                )
                continue
            current = store.is_current(uid, i_hash, p_hash)
            if current and not (options.retry_failed and store.status_of(uid) == "failed"):
                skipped += 1
                continue
            if plan.refusal:
                refused.append((uid, label, plan, i_hash, "SeriesSelectionError", plan.refusal))
                continue
            input_hashes[uid] = i_hash
            work = work_root / f"{safe_component(uid, fallback='study')}-{uuid.uuid4().hex[:8]}"
            tasks.append(
                StudyTask(
                    study_instance_uid=uid,
                    patient_label=label,
                    plan=plan,
                    pipeline=pipeline_dict,
                    rois_path=str(options.rois_path) if options.rois_path else None,
                    work_dir=str(work),
                    lesions=None if options.lesions is None else tuple(
                        le for le in options.lesions if le.applies_to_study(uid)),
                    outputs=options.outputs,
                    model_path=str(options.model_path) if options.model_path else None,
                    pseudonymise=options.pseudonymiser is not None,
                    identifiers=record.identifiers() if options.pseudonymiser else (),
                    command=options.command,
                    study_date=record.study_date,
                    study_description=record.study_description,
                )
            )
        run_total = len(tasks) + len(refused)
        bar = progress or Progress(run_total, skipped=skipped)
        bar.total, bar.skipped = run_total, skipped
        bar.start()
        for uid, label, plan, i_hash, error_type, message in refused:
            logger.warning("study %s refused at plan: %s", uid, message)
            _remove_stale(out, work_root, label, uid)
            store.record(
                study_instance_uid=uid,
                input_hash=i_hash,
                pipeline_hash=p_hash,
                status="failed",
                output_dir="",
                record={"patient": label, "plan": plan.to_dict()},
                lesion_rows=(),
                duration_s=0.0,
                failure={
                    "stage": "plan",
                    "series_instance_uid": "",
                    "error_type": error_type,
                    "message": message,
                },
            )
            bar.update(uid, "failed", "plan")
        interrupted: RunInterrupted | None = None
        stored_now = 0
        try:
            with stop_on_signals():
                for task, outcome in execute(
                    study_function,
                    tasks,
                    executor=options.executor,
                    workers=options.workers,
                    scheduler=options.scheduler,
                    on_error=failed_outcome,
                ):
                    _commit(store, out, work_root, task, outcome,
                            input_hashes[task.study_instance_uid], p_hash)
                    stored_now += 1
                    detail = "" if outcome.failure is None else outcome.failure.stage
                    bar.update(task.study_instance_uid, outcome.status, detail)
        except KeyboardInterrupt as exc:  # SIGINT / SIGTERM: stored studies stay stored
            signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
            interrupted = RunInterrupted(signum, stored=stored_now,
                                         remaining=len(tasks) - stored_now)
            logger.warning("run %s: %d studies stored in this run, %d left for the rerun",
                           interrupted, stored_now, len(tasks) - stored_now)
        bar.close()
        replacements: tuple[tuple[str, str], ...] = ()
        if options.pseudonymiser is not None:
            pairs = {
                (ident, _patient_label(r, options.pseudonymiser))
                for r in inventory.studies
                for ident in r.identifiers()
            }
            replacements = tuple(sorted(pairs, key=lambda p: (-len(p[0]), p[0])))
        stored = store.studies(only={s.study_instance_uid for s in inventory.studies})
        tables = rebuild_tables(
            store, out, inventory, pipeline_dict, replacements=replacements, stored=stored,
            command=options.command, warnings=options.warnings,
        )
    shutil.rmtree(work_root, ignore_errors=True)
    if interrupted is not None:
        raise interrupted
    failures = tuple(
        {"study_instance_uid": s.study_instance_uid, **(s.failure or {})}
        for s in stored
        if s.status == "failed"
    )
    return BatchSummary(
        studies_total=len(inventory.studies),
        studies_run=len(tasks) + len(refused),
        studies_skipped=skipped,
        studies_ok=sum(s.status == "ok" for s in stored),
        studies_failed=len(failures),
        lesions=sum(len(s.lesion_rows) for s in stored),
        failures=failures,
        bad_files=inventory.bad_files,
        out_dir=out,
        tables=tables,
        warnings=options.warnings,
    )


def _remove_stale(out: Path, work_root: Path, label: str, uid: str) -> None:
    """Remove the outputs of an earlier success that no longer match the study's inputs."""
    stale = out / _study_dir_rel(label, uid)
    if stale.exists():
        trash = work_root / f"stale-{uuid.uuid4().hex}"
        stale.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def _commit(
    store: ResultsStore,
    out: Path,
    work_root: Path,
    task: StudyTask,
    outcome: StudyOutcome,
    i_hash: str,
    p_hash: str,
) -> None:
    uid = task.study_instance_uid
    work = Path(task.work_dir)
    rel = ""
    rows = [dict(r) for r in outcome.lesion_rows]
    for row in rows:
        row["patient"] = task.patient_label
        row["study_instance_uid"] = uid
    if outcome.status == "ok":
        rel = _study_dir_rel(task.patient_label, uid)
        work.mkdir(parents=True, exist_ok=True)
        (work / "plan.json").write_text(json.dumps(task.plan.to_dict(), indent=2, sort_keys=True))
        _install_dir(work, out / rel, work_root)
    else:
        shutil.rmtree(work, ignore_errors=True)
        _remove_stale(out, work_root, task.patient_label, uid)
        assert outcome.failure is not None
        logger.warning(
            "study %s failed at %s (series %s): %s",
            uid,
            outcome.failure.stage,
            outcome.failure.series_instance_uid or "-",
            outcome.failure.message,
        )
    store.record(
        study_instance_uid=uid,
        input_hash=i_hash,
        pipeline_hash=p_hash,
        status=outcome.status,
        output_dir=rel,
        record={
            "patient": task.patient_label,
            "plan": task.plan.to_dict(),
            "warnings": list(outcome.warnings),
            "files": list(outcome.files),
            "document": outcome.document,
            **dict(outcome.record),
        },
        lesion_rows=rows,
        duration_s=outcome.duration_s,
        failure=None if outcome.failure is None else outcome.failure.to_dict(),
    )


def _csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n",
                            extrasaction="raise")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: "" if r.get(c) is None else r.get(c) for c in columns})
    return buf.getvalue()


def rebuild_tables(
    store: ResultsStore,
    out: Path,
    inventory: Inventory,
    pipeline: Mapping[str, Any],
    *,
    replacements: Sequence[tuple[str, str]] = (),
    stored: Sequence[StoredStudy] | None = None,
    command: Sequence[str] | None = None,
    warnings: Sequence[Mapping[str, str]] = (),
) -> tuple[Path, ...]:
    """Write the batch tables from the store (each through a temporary file and a rename).

    Only studies present in ``inventory`` appear; studies are in UID order and lesions in
    their ROI-source order, so two runs over the same export give identical tables.
    ``replacements`` (raw identifier, pseudonym) are applied to the paths and reasons of
    unusable files (pseudonymised runs). ``stored`` is ``store.studies(only=<the
    inventory's studies>)`` when the caller already read it (it is read here otherwise).
    ``pipeline`` is `PipelineDefinition.to_dict()` with its ``hash``; ``warnings`` are the
    run's own (`WARNING_COLUMNS`), written to warnings.csv, the summary and results.json.
    """
    from bonelesion.report.document import batch_document, json_text
    from bonelesion.report.html_report import render_index_html
    from bonelesion.report.schema import validate_results
    from bonelesion.report.table import lesions_csv_text

    uids = {s.study_instance_uid for s in inventory.studies}
    if stored is None:
        stored = store.studies(only=uids)
    failures = [
        {
            "patient": s.record.get("patient", ""),
            "study_instance_uid": s.study_instance_uid,
            **(s.failure or {}),
        }
        for s in stored
        if s.status == "failed"
    ]
    bad = [
        {
            "path": _scrub(_rel_to(b.path, inventory.root), replacements),
            "status": b.status,
            "reason": _scrub(b.reason, replacements),
            "study_instance_uid": b.study_instance_uid,
            "series_instance_uid": b.series_instance_uid,
        }
        for b in sorted(inventory.bad_files, key=lambda b: b.path)
    ]
    not_run = sorted(uids - {s.study_instance_uid for s in stored})
    document = batch_document(
        pipeline=pipeline,
        studies=[
            {
                "study_instance_uid": s.study_instance_uid,
                "patient": s.record.get("patient", ""),
                "status": s.status,
                "output_dir": s.output_dir,
                "failure": s.failure,
                "warnings": s.record.get("warnings", []),
                "plan": s.record.get("plan"),
                "document": s.record.get("document"),
            }
            for s in stored
        ],
        bad_files=bad,
        not_run=not_run,
        warnings=[w["message"] for w in warnings],
        command=command,
    )
    validate_results(document, study_results_checked=True)  # each was, when written
    paths = {name: out / name for name in TABLE_FILES}
    _write_text_atomic(paths["lesions.csv"],
                       lesions_csv_text(r for s in stored for r in s.lesion_rows))
    _write_text_atomic(
        paths["results.json"],
        json_text(document) + "\n",
    )
    _write_text_atomic(
        paths["failures.csv"],
        _csv_text(failures, ("patient", "study_instance_uid", "stage", "series_instance_uid",
                             "error_type", "message")),
    )
    _write_text_atomic(
        paths["bad_files.csv"],
        _csv_text(bad, ("path", "status", "reason", "study_instance_uid", "series_instance_uid")),
    )
    _write_text_atomic(paths["warnings.csv"], _csv_text(warnings, WARNING_COLUMNS))
    _write_text_atomic(paths["summary.txt"],
                       _summary_text(stored, failures, bad, not_run, warnings))
    _write_text_atomic(paths["index.html"], render_index_html(document))
    return tuple(paths.values())


def _scrub(text: str, replacements: Sequence[tuple[str, str]]) -> str:
    for raw, pseudonym in replacements:
        text = text.replace(raw, pseudonym)
    return text


def _rel_to(path: str, root: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except (ValueError, RuntimeError, OSError):  # outside the root; a symbolic-link loop
        return path


def _summary_text(
    stored: Sequence[StoredStudy],
    failures: Sequence[Mapping[str, str]],
    bad: Sequence[Mapping[str, str]],
    not_run: Sequence[str],
    warnings: Sequence[Mapping[str, str]] = (),
) -> str:
    ok = sum(s.status == "ok" for s in stored)
    damaged = [b for b in bad if b.get("status") not in NOT_INPUT_STATUSES]
    lines = [
        f"studies: {len(stored) + len(not_run)} in export, {ok} measured, {len(failures)} failed"
        + (f", {len(not_run)} not run" if not_run else ""),
        f"lesions: {sum(len(s.lesion_rows) for s in stored)}",
        f"files not used: {len(bad)} ({len(damaged)} damaged or unusable DICOM, "
        f"{len(bad) - len(damaged)} not DICOM)",
    ]
    if failures:
        lines.append("")
        lines.append("failed studies (study UID | stage | series UID | message):")
        lines += [
            f"  {f['study_instance_uid']} | {f.get('stage', '')} | "
            f"{f.get('series_instance_uid', '') or '-'} | {f.get('message', '')}"
            for f in failures
        ]
    if bad:
        lines.append("")
        lines.append("files not used (path | reason):")
        lines += [f"  {b['path']} | {b['reason']}" for b in bad]
    if warnings:
        lines.append("")
        lines.append(f"warnings ({len(warnings)}, see warnings.csv):")
        lines += [f"  {w['message']}" for w in warnings]
    return "\n".join(lines) + "\n"
