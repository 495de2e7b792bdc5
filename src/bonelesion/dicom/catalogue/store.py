"""Catalogue storage: the SQLite schema, and writing and removing rows.

One SQLite connection in WAL mode, in the main process only; one transaction per chunk of
rows, so an interrupt leaves complete rows only. File names that are not valid UTF-8
(``surrogateescape`` strings) are stored reversibly by `stored_path` and read back by
`loaded_path`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from bonelesion.dicom.catalogue.records import (
    _FIELD_NAMES,
    SCHEMA_VERSION,
    _Entry,
    _sql_type,
    stored_path,
)
from bonelesion.dicom.discovery import WalkResult
from bonelesion.errors import (
    InputError,
)

__all__: list[str] = []


logger = logging.getLogger(__name__)


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    {', '.join(f'{n} {_sql_type(n)}' + (' PRIMARY KEY' if n == 'path' else '')
               for n in _FIELD_NAMES)},
    read_with TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS file_stacks (
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    stack_key TEXT NOT NULL,
    series_instance_uid TEXT,
    n_frames INTEGER NOT NULL,
    b_value_s_per_mm2 REAL,
    role TEXT,
    role_reason TEXT,
    PRIMARY KEY (path, stack_key)
);
CREATE TABLE IF NOT EXISTS pending_series (series_instance_uid TEXT PRIMARY KEY);
CREATE INDEX IF NOT EXISTS files_series ON files(series_instance_uid);
CREATE INDEX IF NOT EXISTS files_study ON files(study_instance_uid);
CREATE INDEX IF NOT EXISTS files_status ON files(status);
CREATE INDEX IF NOT EXISTS stacks_series ON file_stacks(series_instance_uid);
"""


# `read_with` stamps each row with READER_VERSION and the patient-key id it was read with:
# a row is re-read when its size, mtime or stamp differ (so a stopped run resumes, and a
# stopped full re-read after a reader or key change is finished next time).
_INSERT_FILE = (f"INSERT OR REPLACE INTO files ({', '.join(_FIELD_NAMES)}, read_with) "
                f"VALUES ({', '.join('?' for _ in _FIELD_NAMES)}, ?)")


_POS = {name: i for i, name in enumerate(_FIELD_NAMES)}


# The series a path belonged to before it is rewritten: its stack keys may change too.
_MARK_OLD_SERIES = ("INSERT OR IGNORE INTO pending_series SELECT series_instance_uid FROM "
                    "files WHERE path = ? AND series_instance_uid IS NOT NULL")


def _connect(db_path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(os.fspath(db_path), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InputError(
            f"Catalogue {db_path}: cannot be opened as an SQLite database ({exc}); expected "
            "a writable catalogue file written by `bonelesion index` (or none yet). "
            "Potential fix: pass --db with a new file in a writable folder."
        ) from exc
    return con


def _prepare(con: sqlite3.Connection, db_path: Path, root: Path) -> None:
    """Create the schema, or check that the catalogue belongs to ``root`` (rebuild if old)."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    meta: dict[str, str] = {}
    if "meta" in tables:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    elif tables:
        raise InputError(
            f"Catalogue {db_path}: an SQLite database with tables {sorted(tables)} but no "
            "`meta` table; expected a bonelesion catalogue. Potential fix: pass another "
            "--db file."
        )
    if meta.get("root") not in (None, os.fspath(root)):
        raise InputError(
            f"Catalogue {db_path}: it catalogues the export {meta['root']}, not {root}. "
            "Potential fix: pass --db with a separate catalogue file for each export."
        )
    rebuild = meta.get("schema_version") not in (None, str(SCHEMA_VERSION))
    con.execute("BEGIN IMMEDIATE")
    try:
        if rebuild:
            logger.info("Catalogue %s has schema %s (now %d): rebuilding it", db_path,
                        meta.get("schema_version"), SCHEMA_VERSION)
            con.execute("DROP TABLE IF EXISTS file_stacks")
            con.execute("DROP TABLE IF EXISTS files")
            con.execute("DROP TABLE IF EXISTS pending_series")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
        con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("schema_version", str(SCHEMA_VERSION)),
            ("root", os.fspath(root)),
        ])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _write_rows(con: sqlite3.Connection, entries: Sequence[_Entry], stamp: str,
                *, series_done: str | None = None, new_paths: bool = False) -> None:
    """Insert records' rows (read with ``stamp``) and their stack rows in one transaction.

    ``entries`` are `bonelesion.dicom.catalogue.records._to_entry` of the records.
    The series of the rows (and the series the same paths were in before) are marked for
    the series-context pass (`_apply_series_context`), unless ``series_done`` is given:
    the series-context pass of that series is writing, and it is marked done instead.
    ``new_paths``: no row's path is in the catalogue yet (a first index), so there is no
    former series to mark and no former stack membership to delete.
    """
    if not entries:
        return
    pi, si = _POS["path"], _POS["series_instance_uid"]
    rows = [row for row, _ in entries]
    stack_rows = [stack for _, stacks in entries for stack in stacks]
    if logger.isEnabledFor(logging.DEBUG):
        reason_i, status_i = _POS["reason"], _POS["status"]
        for row in rows:
            logger.debug("%s: %s %s", row[pi], row[status_i], row[reason_i])
    con.execute("BEGIN IMMEDIATE")
    try:
        if series_done is None:
            if not new_paths:
                con.executemany(_MARK_OLD_SERIES, [(r[pi],) for r in rows])
            con.executemany("INSERT OR IGNORE INTO pending_series VALUES (?)",
                            [(uid,) for uid in {r[si] for r in rows} if uid is not None])
        else:
            con.execute("DELETE FROM pending_series WHERE series_instance_uid = ?",
                        (series_done,))
        if not new_paths:
            con.executemany("DELETE FROM file_stacks WHERE path = ?", [(r[pi],) for r in rows])
        con.executemany(_INSERT_FILE, [(*row, stamp) for row in rows])
        con.executemany("INSERT INTO file_stacks VALUES (?, ?, ?, ?, ?, ?, ?)", stack_rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _remove_gone(con: sqlite3.Connection, walk: WalkResult) -> int:
    """Delete entries not seen by this walk (except under folders that could not be listed)."""
    seen = [(stored_path(f[0]),) for f in walk.files] + \
        [(stored_path(p.rel),) for p in walk.problems]
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("CREATE TEMP TABLE IF NOT EXISTS seen (path TEXT PRIMARY KEY)")
        con.execute("DELETE FROM seen")
        con.executemany("INSERT OR IGNORE INTO seen VALUES (?)", seen)
        gone = [r[0] for r in con.execute(
            "SELECT path FROM files WHERE path NOT IN (SELECT path FROM seen)")]
        keep = tuple(stored_path(d) + "/" for d in walk.unlisted_dirs if d)
        if "" in walk.unlisted_dirs:
            gone = []
        gone = [p for p in gone if not p.startswith(keep)] if keep else gone
        con.executemany(_MARK_OLD_SERIES, [(p,) for p in gone])
        con.executemany("DELETE FROM file_stacks WHERE path = ?", [(p,) for p in gone])
        con.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
        con.execute("DELETE FROM seen")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(gone)
