"""The results store: one SQLite file recording what finished, keyed for resume.

Each study has one row, keyed by its StudyInstanceUID and carrying

* ``input_hash``: SHA-256 of the exact input instances (sorted SOP Instance UIDs with each
  file's size and modification time, plus the ROI source), and
* ``pipeline_hash``: SHA-256 of the pipeline, its resolved configuration and the package
  version (`bonelesion.pipeline.definition.pipeline_hash`).

A study is *current* when both hashes match; a rerun redoes only studies that are missing or
not current. A study's lesion rows and its status are written in **one transaction**
(`ResultsStore.record`), so a process killed at any moment leaves either the old state or
the new one, never half of it, and never duplicate rows (primary keys). The final tables
are rebuilt from the store, not appended to.

Only the coordinating process writes to the store (workers return plain data), so there is
no write contention; WAL mode lets readers (a progress monitor, a test) look in meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion.sqlite_file import SqliteFile

__all__ = ["ResultsStore", "StoredStudy", "input_hash", "SCHEMA_VERSION"]

_FAILURE_FIELDS = ("stage", "series_instance_uid", "error_type", "message")

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    input_hash TEXT NOT NULL,
    pipeline_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    output_dir TEXT NOT NULL,
    record_json TEXT NOT NULL,
    duration_s REAL NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lesions (
    study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid) ON DELETE CASCADE,
    lesion_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    row_json TEXT NOT NULL,
    PRIMARY KEY (study_instance_uid, lesion_id)
);
CREATE TABLE IF NOT EXISTS failures (
    study_instance_uid TEXT PRIMARY KEY REFERENCES studies(study_instance_uid) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    error_type TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


def input_hash(signatures: Iterable[str], *, extra: Sequence[str] = ()) -> str:
    """SHA-256 over sorted per-instance signatures (``"<SOPInstanceUID>|<size>|<mtime_ns>"``).

    ``extra`` holds further inputs (the ROI file's content hash) that change the result.
    """
    h = hashlib.sha256()
    for sig in sorted(signatures):
        h.update(sig.encode())
        h.update(b"\n")
    h.update(b"--extra--\n")
    for e in extra:
        h.update(e.encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class StoredStudy:
    """One row of the store, with its lesion rows and failure (if any)."""

    study_instance_uid: str
    input_hash: str
    pipeline_hash: str
    status: str
    output_dir: str
    record: Mapping[str, Any]
    lesion_rows: tuple[Mapping[str, Any], ...]
    failure: Mapping[str, str] | None
    duration_s: float


class ResultsStore(SqliteFile):
    """SQLite results store (see module docstring).

    Parameters
    ----------
    path : path-like
        The database file (created when absent).
    reset : bool
        Start empty: a store of another schema version is replaced (``--force``).

    Raises
    ------
    InputError
        If the file exists but is not a bonelesion results store of this schema version
        (and ``reset`` is false).
    """

    def __init__(self, path: str | Path, *, reset: bool = False) -> None:
        if reset:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        super().__init__(
            path, schema=_SCHEMA, version=SCHEMA_VERSION, what="Results store",
            version_fix="it was written by another bonelesion version: use a new --out "
                        "folder, or rerun with --force.",
            damaged_fix="choose another --out folder, or delete the damaged file.",
            foreign_keys=True)

    def is_current(self, study_instance_uid: str, input_hash: str, pipeline_hash: str) -> bool:
        """Tell whether the store holds this study with these exact input and pipeline hashes."""
        row = self._conn.execute(
            "SELECT input_hash, pipeline_hash FROM studies WHERE study_instance_uid = ?",
            (study_instance_uid,),
        ).fetchone()
        return row is not None and row[0] == input_hash and row[1] == pipeline_hash

    def status_of(self, study_instance_uid: str) -> str | None:
        """Return the stored status (``ok``/``failed``) of a study, or None."""
        row = self._conn.execute(
            "SELECT status FROM studies WHERE study_instance_uid = ?", (study_instance_uid,)
        ).fetchone()
        return None if row is None else str(row[0])

    def record(
        self,
        *,
        study_instance_uid: str,
        input_hash: str,
        pipeline_hash: str,
        status: str,
        output_dir: str,
        record: Mapping[str, Any],
        lesion_rows: Sequence[Mapping[str, Any]],
        failure: Mapping[str, str] | None,
        duration_s: float,
    ) -> None:
        """Replace everything stored for one study, atomically."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM studies WHERE study_instance_uid = ?", (study_instance_uid,))
            conn.execute(
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    study_instance_uid,
                    input_hash,
                    pipeline_hash,
                    status,
                    output_dir,
                    json.dumps(record, sort_keys=True, default=str),
                    float(duration_s),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                ),
            )
            conn.executemany(
                "INSERT INTO lesions VALUES (?, ?, ?, ?)",
                [
                    (
                        study_instance_uid,
                        str(r["lesion_id"]),
                        position,
                        json.dumps(r, sort_keys=True, default=str),
                    )
                    for position, r in enumerate(lesion_rows)
                ],
            )
            if failure is not None:
                conn.execute(
                    "INSERT INTO failures VALUES (?, ?, ?, ?, ?)",
                    (
                        study_instance_uid,
                        failure.get("stage", ""),
                        failure.get("series_instance_uid", ""),
                        failure.get("error_type", ""),
                        failure.get("message", ""),
                    ),
                )

    def forget(self, study_instance_uids: Iterable[str] | None = None) -> None:
        """Delete some studies (all when None) — used by ``--force``."""
        with self._transaction() as conn:
            if study_instance_uids is None:
                conn.execute("DELETE FROM studies")
            else:
                conn.executemany(
                    "DELETE FROM studies WHERE study_instance_uid = ?",
                    [(u,) for u in study_instance_uids],
                )

    def studies(self, only: Iterable[str] | None = None) -> list[StoredStudy]:
        """Every stored study (or those in ``only``), sorted by UID, with rows and failure."""
        wanted = None if only is None else set(only)
        out: list[StoredStudy] = []
        rows = self._conn.execute(
            "SELECT study_instance_uid, input_hash, pipeline_hash, status, output_dir, "
            "record_json, "
            "duration_s FROM studies ORDER BY study_instance_uid"
        ).fetchall()
        for uid, ih, ph, status, out_dir, rec, dur in rows:
            if wanted is not None and uid not in wanted:
                continue
            lesions = tuple(
                json.loads(r[0])
                for r in self._conn.execute(
                    "SELECT row_json FROM lesions WHERE study_instance_uid = ? ORDER BY position",
                    (uid,),
                )
            )
            f = self._conn.execute(
                "SELECT stage, series_instance_uid, error_type, message FROM failures "
                "WHERE study_instance_uid = ?",
                (uid,),
            ).fetchone()
            failure = None if f is None else dict(zip(_FAILURE_FIELDS, f, strict=True))
            out.append(
                StoredStudy(
                    study_instance_uid=uid,
                    input_hash=ih,
                    pipeline_hash=ph,
                    status=status,
                    output_dir=out_dir,
                    record=json.loads(rec),
                    lesion_rows=lesions,
                    failure=failure,
                    duration_s=float(dur),
                )
            )
        return out

    def counts(self) -> dict[str, int]:
        """Count stored studies per status."""
        return {
            str(s): int(n)
            for s, n in self._conn.execute("SELECT status, COUNT(*) FROM studies GROUP BY status")
        }
