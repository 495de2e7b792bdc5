"""Catalogue of an export: `index_export` walks a folder and records every file in SQLite.

``index_export(root, db_path)`` walks any folder layout (`bonelesion.dicom.discovery`:
nested folders, DICOMDIR or none, files without extension, raw data sets without a Part 10
header, junk, zero-byte and truncated files, symbolic-link loops, named pipes), reads
headers only, and records one row per file with a status and a reason. It never stops
because of one bad file. ``Catalogue(db_path)`` answers the questions the batch planner
asks (studies, series, files, stacks with their roles, problems, a study's patient).

Modules: `bonelesion.dicom.catalogue.read` (file → record), `.store` (SQLite writes),
`.query` (`Catalogue`), `.records` (the record types); this module orchestrates them and
re-exports their public names.

* **Read** (worker processes): files are sent in chunks to a ``ProcessPoolExecutor``.
* **Series context** (main process, after the walk): a stack key can depend on the rest
  of its series (`bonelesion.dicom.stack_key.series_stack_keys`, the reader's rule). Every
  series written in a run is marked pending; a pending series whose own keys mix frames
  with and without a b-value (or that an earlier pass changed) has its files re-read and
  re-keyed. Other series are not read again.
* **Write** (main process only): one transaction per chunk of results. An interrupt
  (``KeyboardInterrupt``) rolls back the open chunk; the next run resumes from there.
* **Re-index**: files whose size and modification time (ns) are unchanged are not read
  again; files no longer present are deleted from the catalogue; changed files are re-read.
  Each row is stamped with ``READER_VERSION`` and the patient-key id it was read with; a
  change of either re-reads the files (also after an interrupted run).

Patient identifiers are never stored in plain text. With a secret key (argument
``patient_key_secret`` or the CLI's ``BONELESION_PATIENT_KEY`` environment variable) the
catalogue stores an HMAC-SHA256 of PatientID (``patient_key``) so that studies can be
grouped by patient; without a key nothing about the patient is stored
(`Catalogue.patient_identity` reads it from a file header when a caller needs it). File
paths are stored relative to the export root as they are: exports that name folders after
patients carry those names into the catalogue (and into its problem reasons).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from pydicom import Dataset

from bonelesion.dicom import kept_headers

# Re-exported: the catalogue's public names, from the modules that define them.
from bonelesion.dicom.catalogue.query import Catalogue  # noqa: E402
from bonelesion.dicom.catalogue.read import (
    _NOTES_MAX_CHARS,
    READER_VERSION,
    _FramesOut,
    _key_values,
    _read_file_record,
    read_file_record,
)
from bonelesion.dicom.catalogue.records import (  # noqa: E402
    SCHEMA_VERSION,
    SUPPORTED_SOP_CLASSES,
    FileRecord,
    FileStatus,
    IndexSummary,
    SeriesRecord,
    StackRecord,
    StudyRecord,
    _Entry,
    _to_entry,
    loaded_path,
    stored_path,
)
from bonelesion.dicom.catalogue.store import _connect, _prepare, _remove_gone, _write_rows
from bonelesion.dicom.discovery import EntryProblem, ProblemKind, walk_export
from bonelesion.dicom.stack_key import StackKey, series_context_role, series_stack_keys
from bonelesion.errors import (
    ConfigError,
    InputError,
)

__all__ = [
    "FileStatus",
    "FileRecord",
    "StudyRecord",
    "SeriesRecord",
    "StackRecord",
    "IndexSummary",
    "Catalogue",
    "index_export",
    "read_file_record",
    "SCHEMA_VERSION",
    "READER_VERSION",
    "DEFAULT_DB_NAME",
    "SUPPORTED_SOP_CLASSES",
]


logger = logging.getLogger(__name__)


#: Default catalogue file name (created in the current folder by the CLI).
DEFAULT_DB_NAME = "bonelesion-index.sqlite"


#: Files per work item sent to a worker process.
_CHUNK_FILES = 128

#: Fewer files to read than this are read in this process: starting worker processes costs
#: more than they save below it (bench/bench_index.py), and the headers read here are kept
#: for a load that follows (`bonelesion.dicom.kept_headers`).
_POOL_MIN_FILES = 600


def _read_chunk(
    root: str, items: Sequence[tuple[str, int, int]], secret: bytes | None,
    keep_headers: bool = False,
) -> list[_Entry]:
    """Worker entry point: read a chunk of files, return their database rows (`_to_entry`).

    ``keep_headers`` (in the main process only) keeps each usable file's parsed header for
    the series reader (`bonelesion.dicom.kept_headers`).
    """
    return [
        _to_entry(read_file_record(root, rel, size_bytes=size, mtime_ns=mtime,
                                 patient_key_secret=secret, keep_header=keep_headers))
        for rel, size, mtime in items
    ]


def _worker_init() -> None:
    """Ignore Ctrl-C in workers: the main process handles the interrupt and cleans up."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _key_id(secret: bytes | None) -> str:
    if secret is None:
        return ""
    return hmac.new(secret, b"bonelesion-patient-key-id", hashlib.sha256).hexdigest()[:16]


def index_export(
    root: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    patient_key_secret: bytes | None = None,
) -> IndexSummary:
    """Catalogue every file under ``root`` into the SQLite file ``db_path``.

    Parameters
    ----------
    root : path
        Export folder (any layout); opened read-only.
    db_path : path
        Catalogue file; created when absent, updated incrementally when present.
    workers : int, optional
        Worker processes reading headers; 1 reads in this process, as does any run with
        fewer than 600 files to read (worker start-up would cost more than it saves).
        Default: CPU count.
    progress : callable, optional
        Called as ``progress(files_done, files_to_read)`` after each chunk.
    patient_key_secret : bytes, optional
        Secret for the keyed hash of PatientID stored as ``patient_key``. Without it no
        patient information is stored. Changing it re-reads every file.

    Returns
    -------
    IndexSummary
        Counts of what was read, skipped and removed, and per status.

    Raises
    ------
    InputError
        ``root`` is not a folder, or ``db_path`` is not a catalogue of this export.
    ConfigError
        ``workers`` is below 1.

    Notes
    -----
    Each chunk of results is written in one transaction, so an interrupt leaves complete
    rows only, and the next run resumes (files already written are unchanged, hence
    skipped). Removed files are deleted only after a complete walk.
    """
    t0 = time.perf_counter()
    root_path = Path(root).resolve()
    db = Path(db_path).resolve()
    if not root_path.is_dir():
        raise InputError(
            f"Export folder {root}: not found or not a folder; expected the folder that "
            "holds the DICOM files. Potential fix: check the path."
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"workers: must be ≥ 1, found {workers}. Potential fix: omit it "
                          "to use every CPU.")
    n_workers = workers or len(os.sched_getaffinity(0))
    con = _connect(db)
    try:
        stamp = f"reader {READER_VERSION}, patient key {_key_id(patient_key_secret) or '-'}"
        _prepare(con, db, root_path)
        skip = set()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                skip.add(Path(os.fspath(db) + suffix).relative_to(root_path).as_posix())
            except ValueError:
                pass
        walk = walk_export(root_path, skip=skip)
        known = {p: (s, m, r) for p, s, m, r in
                 con.execute("SELECT path, size_bytes, mtime_ns, read_with FROM files")}
        todo = [f for f in walk.files if known.get(stored_path(f[0])) != (f[1], f[2], stamp)]
        unchanged = len(walk.files) - len(todo)
        logger.info("Index %s: %d files found, %d to read, %d unchanged", root_path,
                    len(walk.files), len(todo), unchanged)
        _write_rows(con, [_to_entry(_entry_record(p)) for p in walk.problems], stamp)
        used = _read_all(con, root_path, todo, n_workers, progress, patient_key_secret, stamp,
                         new_paths=not known)
        removed = _remove_gone(con, walk)
        reread = _apply_series_context(con, root_path, patient_key_secret, stamp)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = dict(con.execute("SELECT status, count(*) FROM files GROUP BY status"))
    finally:
        con.close()
    summary = IndexSummary(
        root=root_path, db_path=db, workers=used,
        files_seen=len(walk.files) + len(walk.problems), files_read=len(todo),
        files_unchanged=unchanged, files_removed=removed, files_reread=reread,
        status_counts=counts,
        duration_s=time.perf_counter() - t0,
    )
    logger.info("Indexed %s in %.2f s: %d read (%.0f files/s), %d unchanged, %d removed, "
                "%d re-read for series-level stack keys; %s", root_path, summary.duration_s,
                summary.files_read, summary.files_read_per_s, unchanged, removed, reread,
                counts)
    if summary.n_problems:
        # files that are simply not DICOM (a README, the export's CSVs) are worth a line,
        # not a warning; damaged or incomplete DICOM is
        not_dicom = summary.status_counts.get(FileStatus.NOT_DICOM.value, 0)
        damaged = summary.n_problems - not_dicom
        parts = ([f"{damaged} entries are truncated, damaged or lack required attributes"]
                 if damaged else []) + ([f"{not_dicom} files are not DICOM"] if not_dicom else [])
        (logger.warning if damaged else logger.info)(
            "%s: %s; list them with Catalogue(%r).problems()", root_path, " and ".join(parts),
            os.fspath(db))
    return summary


def _read_all(
    con: sqlite3.Connection,
    root: Path,
    todo: list[tuple[str, int, int]],
    n_workers: int,
    progress: Callable[[int, int], None] | None,
    secret: bytes | None,
    stamp: str,
    *,
    new_paths: bool = False,
) -> int:
    """Read every file of ``todo`` (in chunks, in workers) and write the rows chunk by chunk.

    Fewer than `_POOL_MIN_FILES` files are read in this process. Files read in this process
    keep their headers for a load that follows (`bonelesion.dicom.kept_headers`) when they
    are few enough to be kept all.
    A worker pool that breaks (a worker killed, e.g. out of memory) does not stop the run:
    the chunks not yet written are read in this process instead. Returns the number of
    worker processes used (1: this process).
    """
    total = len(todo)
    if total == 0:
        if progress is not None:
            progress(0, 0)
        return 1
    chunks = [todo[i:i + _CHUNK_FILES] for i in range(0, total, _CHUNK_FILES)]
    done = 0

    def write(rows: list[_Entry]) -> None:
        nonlocal done
        _write_rows(con, rows, stamp, new_paths=new_paths)
        done += len(rows)
        if progress is not None:
            progress(done, total)

    left: list[list[tuple[str, int, int]]] = chunks
    used = 1
    if n_workers > 1 and len(chunks) > 1 and total >= _POOL_MIN_FILES:
        used = min(n_workers, len(chunks))
        left = _read_in_pool(root, chunks, n_workers, secret, write)
    keep = total <= kept_headers.MAX_KEPT_HEADERS  # a larger export would only churn it
    for chunk in left:
        write(_read_chunk(os.fspath(root), chunk, secret, keep_headers=keep))
    return used


def _read_in_pool(
    root: Path,
    chunks: list[list[tuple[str, int, int]]],
    n_workers: int,
    secret: bytes | None,
    write: Callable[[list[_Entry]], None],
) -> list[list[tuple[str, int, int]]]:
    """Read chunks in a process pool; return the chunks left unread if the pool broke."""
    # here, not at module level: multiprocessing's import (~4 ms) is paid only by a pool
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    executor = ProcessPoolExecutor(max_workers=min(n_workers, len(chunks)),
                                   initializer=_worker_init)
    pending: dict[Future[list[_Entry]], list[tuple[str, int, int]]] = {}
    n_sent = 0

    def send() -> None:
        nonlocal n_sent
        chunk = chunks[n_sent]
        pending[executor.submit(_read_chunk, os.fspath(root), chunk, secret)] = chunk
        n_sent += 1  # only once submitted: a chunk is either pending or still to send

    try:
        # Keep a bounded number of chunks in flight so results stream into the database.
        while n_sent < len(chunks) and len(pending) < 4 * n_workers:
            send()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                rows = fut.result()
                pending.pop(fut)
                write(rows)
                if n_sent < len(chunks):
                    send()
    except BrokenProcessPool as exc:
        left = list(pending.values()) + chunks[n_sent:]
        logger.warning("Worker pool broke (%s); reading the %d remaining chunk(s) in this "
                       "process", exc, len(left))
        executor.shutdown(wait=True, cancel_futures=True)
        return left
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return []


# A series needs the series-context pass when its own keys mix frames with and without a
# b-value, or when an earlier pass gave some of its files a b-value (it may no longer hold).
_NEEDS_SERIES_CONTEXT = """
SELECT EXISTS (SELECT 1 FROM files WHERE series_instance_uid = ?1
               AND series_b_value_s_per_mm2 IS NOT NULL)
    OR (EXISTS (SELECT 1 FROM file_stacks WHERE series_instance_uid = ?1
                AND b_value_s_per_mm2 IS NULL)
        AND EXISTS (SELECT 1 FROM file_stacks WHERE series_instance_uid = ?1
                    AND b_value_s_per_mm2 IS NOT NULL))
"""


def _apply_series_context(con: sqlite3.Connection, root: Path, secret: bytes | None,
                          stamp: str) -> int:
    """Series-context pass: stack keys that depend on the rest of the series.

    Workers key each file on its own. For every series written or changed in this run
    (the ``pending_series`` table), a series whose keys mix frames with and without a
    b-value has its files re-read here and keyed by
    `bonelesion.dicom.multiframe.series_stack_keys`, the reader's rule; every other series
    is left as it is. Each series is written in one transaction with its pending mark, so
    an interrupted pass resumes in the next run. Returns the number of files re-read.
    """
    pending = [r[0] for r in con.execute(
        "SELECT series_instance_uid FROM pending_series ORDER BY series_instance_uid")]
    n_reread = 0
    idle: list[str] = []
    for uid in pending:
        rows: list[_Entry] = []
        if con.execute(_NEEDS_SERIES_CONTEXT, (uid,)).fetchone()[0]:
            files = con.execute(
                "SELECT DISTINCT f.path, f.size_bytes, f.mtime_ns FROM files f JOIN "
                "file_stacks s ON s.path = f.path WHERE s.series_instance_uid = ? "
                "ORDER BY f.path", (uid,)).fetchall()
            files = [(loaded_path(p), size, mtime) for p, size, mtime in files]
            rows = [_to_entry(rec) for rec in _series_context_records(root, files, secret)]
        if not rows:
            idle.append(uid)
            continue
        logger.debug("Series %s: %d files re-read for their series-level stack keys", uid,
                     len(rows))
        _write_rows(con, rows, stamp, series_done=uid)
        n_reread += len(rows)
    if idle:
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("DELETE FROM pending_series WHERE series_instance_uid = ?",
                            [(uid,) for uid in idle])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return n_reread


def _series_context_records(root: Path, files: Sequence[tuple[str, int, int]],
                            secret: bytes | None) -> list[FileRecord]:
    """Re-read the files of one series; their records with the series-level stack keys."""
    entries: list[tuple[FileRecord, list[Dataset], list[StackKey]]] = []
    for rel, size, mtime in files:
        frames: _FramesOut = []
        rec = _read_file_record(root, rel, size, mtime, secret, frames)
        flats, keys = frames[0] if frames else ([], [])
        entries.append((rec, flats, keys))
    keyed = series_stack_keys([f for _, flats, _ in entries for f in flats],
                              [k for _, _, keys in entries for k in keys])
    out: list[FileRecord] = []
    start = 0
    for rec, _, keys in entries:
        mine = keyed[start:start + len(keys)]
        start += len(keys)
        filled = [b for _, b in mine if b is not None]
        if filled:
            note = (f"stack key b = {filled[0]:g} s/mm² from the vendor b-value element, in "
                    "a series that also holds b > 0 images")
            first_frames: list[int] = []
            values = _key_values([k for k, _ in mine], rec.frame_stack_indices is not None,
                                 first_frames)
            # each new stack keeps the role of its first frame's old stack, with the context
            old_index = rec.frame_stack_indices or (0,) * len(keys)
            roles = tuple(series_context_role(rec.stack_roles[old_index[i]], mine[i][1])
                          for i in first_frames) if rec.stack_roles else ()
            reasons = tuple(rec.stack_role_reasons[old_index[i]] for i in first_frames) \
                if rec.stack_role_reasons else ()
            rec = dataclasses.replace(
                rec, **values, series_b_value_s_per_mm2=filled[0],
                role=None if rec.role is None else series_context_role(rec.role, mine[0][1]),
                stack_roles=roles, stack_role_reasons=reasons,
                notes="; ".join(t for t in (rec.notes, note) if t)[:_NOTES_MAX_CHARS])
        out.append(rec)
    return out


def _entry_record(problem: EntryProblem) -> FileRecord:
    """Catalogue entry of a walked entry that is not a regular file to read."""
    status = FileStatus.NOT_DICOM if problem.kind is ProblemKind.NOT_REGULAR else \
        FileStatus.ERROR
    return FileRecord(path=problem.rel, size_bytes=0, mtime_ns=0, status=status.value,
                      reason=problem.reason)
