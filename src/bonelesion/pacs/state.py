"""What the PACS loop knows between passes: ``OUT/pacs.sqlite``, beside the results store.

The results store (``OUT/results.sqlite``) records what was measured, with which inputs;
this file records the PACS side of the loop:

* ``studies``: per study, the *signature* of the instances retrieved (SHA-256 over their
  sorted SOP Instance UIDs, our own pushed objects left out), the PACS's instance count when
  last looked at (a cheap "has anything changed?" test), and how far the study got:
  ``retrieved`` → ``measured`` (status ``ok`` or ``failed``) → ``pushed``.
* ``pushed``: every SOP Instance UID we sent to a PACS (its study, series, modality,
  destination). These never count as a change of a study. A UID is recorded *before* it is
  sent (state ``pending``) and marked ``stored`` once the PACS acknowledged it, so an
  interrupted push can never make our own objects look like someone else's.

Each change is one SQLite transaction (WAL, ``synchronous=FULL``): a process killed at any
moment leaves the old state or the new one. The file keeps its own schema version.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from bonelesion.sqlite_file import SqliteFile

__all__ = ["PacsState", "StudyState", "Phase", "PushedSeries", "signature", "STATE_NAME",
           "STATE_SCHEMA_VERSION"]

STATE_NAME = "pacs.sqlite"
STATE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    signature TEXT NOT NULL,
    instances INTEGER NOT NULL,
    remote_instances INTEGER,
    phase TEXT NOT NULL CHECK (phase IN ('retrieved', 'measured', 'pushed')),
    status TEXT NOT NULL DEFAULT '' CHECK (status IN ('', 'ok', 'failed')),
    message TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pushed (
    sop_instance_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    modality TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'stored')),
    pushed_at TEXT NOT NULL,
    PRIMARY KEY (sop_instance_uid, destination)
);
CREATE INDEX IF NOT EXISTS pushed_by_study ON pushed (study_instance_uid);
"""


class Phase(str, Enum):
    """How far a study got in the loop."""

    RETRIEVED = "retrieved"
    MEASURED = "measured"
    PUSHED = "pushed"


def signature(sop_instance_uids: Iterable[str]) -> str:
    """SHA-256 over the sorted, distinct SOP Instance UIDs (one per line).

    Examples
    --------
    >>> signature(["1.2", "1.1"]) == signature(["1.1", "1.2", "1.1"])
    True
    """
    h = hashlib.sha256()
    for uid in sorted(set(sop_instance_uids)):
        h.update(uid.encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class StudyState:
    """One row of ``studies``."""

    study_instance_uid: str
    source: str
    signature: str
    instances: int
    remote_instances: int | None
    phase: Phase
    status: str
    message: str


@dataclass(frozen=True, kw_only=True)
class PushedSeries:
    """A series we pushed earlier (for the log when a study is done again)."""

    series_instance_uid: str
    modality: str
    destination: str
    pushed_at: str


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class PacsState(SqliteFile):
    """The loop's SQLite state file (see module docstring).

    Raises
    ------
    InputError
        If the file is not a state file of a known schema.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(
            path, schema=_SCHEMA, version=STATE_SCHEMA_VERSION, what="PACS state",
            version_fix="use the bonelesion version that wrote it, or a new --out folder.",
            damaged_fix="choose another --out folder, or move the damaged file away (the next "
                        "pass then retrieves every study again).")

    # ---- studies ----

    def study(self, study_instance_uid: str) -> StudyState | None:
        """Return the stored row of one study, or None."""
        row = self._conn.execute(
            "SELECT study_instance_uid, source, signature, instances, remote_instances, phase, "
            "status, message FROM studies WHERE study_instance_uid = ?", (study_instance_uid,)
        ).fetchone()
        if row is None:
            return None
        return StudyState(study_instance_uid=row[0], source=row[1], signature=row[2],
                          instances=int(row[3]),
                          remote_instances=None if row[4] is None else int(row[4]),
                          phase=Phase(row[5]), status=row[6], message=row[7])

    def studies(self) -> list[StudyState]:
        """Every study row, sorted by UID."""
        uids = [r[0] for r in self._conn.execute(
            "SELECT study_instance_uid FROM studies ORDER BY study_instance_uid")]
        return [s for s in (self.study(u) for u in uids) if s is not None]

    def set_retrieved(self, study_instance_uid: str, *, source: str, signature: str,
                      instances: int, remote_instances: int | None) -> None:
        """Record a complete retrieval in the inbox (the study must be measured again)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO studies VALUES (?, ?, ?, ?, ?, 'retrieved', '', '', ?)",
                (study_instance_uid, source, signature, instances, remote_instances, _now()))

    def set_measured(self, study_instance_uid: str, *, status: str, message: str = "") -> None:
        """Record that the pipeline ran over the study's inbox folder."""
        with self._transaction() as conn:
            conn.execute("UPDATE studies SET phase = 'measured', status = ?, message = ?, "
                         "updated_at = ? WHERE study_instance_uid = ?",
                         (status, message, _now(), study_instance_uid))

    def set_pushed(self, study_instance_uid: str) -> None:
        """Record that the study's results are in the PACS."""
        with self._transaction() as conn:
            conn.execute("UPDATE studies SET phase = 'pushed', updated_at = ? "
                         "WHERE study_instance_uid = ?", (_now(), study_instance_uid))

    def set_remote_instances(self, study_instance_uid: str, remote_instances: int | None) -> None:
        """Remember the PACS's instance count of an unchanged study."""
        with self._transaction() as conn:
            conn.execute("UPDATE studies SET remote_instances = ? WHERE study_instance_uid = ?",
                         (remote_instances, study_instance_uid))

    # ---- our pushed instances ----

    def ours(self, study_instance_uid: str | None = None) -> frozenset[str]:
        """SOP Instance UIDs we pushed (or are pushing), of one study or of all."""
        if study_instance_uid is None:
            rows = self._conn.execute("SELECT sop_instance_uid FROM pushed")
        else:
            rows = self._conn.execute(
                "SELECT sop_instance_uid FROM pushed WHERE study_instance_uid = ?",
                (study_instance_uid,))
        return frozenset(r[0] for r in rows)

    def stored_at(self, destination: str) -> frozenset[str]:
        """SOP Instance UIDs that ``destination`` acknowledged."""
        return frozenset(r[0] for r in self._conn.execute(
            "SELECT sop_instance_uid FROM pushed WHERE destination = ? AND state = 'stored'",
            (destination,)))

    def pushed_series(self, study_instance_uid: str) -> list[PushedSeries]:
        """Series we pushed for one study, oldest first."""
        rows = self._conn.execute(
            "SELECT series_instance_uid, modality, destination, MIN(pushed_at) FROM pushed "
            "WHERE study_instance_uid = ? AND state = 'stored' "
            "GROUP BY series_instance_uid, modality, destination ORDER BY MIN(pushed_at), "
            "series_instance_uid", (study_instance_uid,))
        return [PushedSeries(series_instance_uid=r[0], modality=r[1], destination=r[2],
                             pushed_at=r[3]) for r in rows]

    def record_pending(self, items: Iterable[tuple[str, str, str, str]], *,
                       destination: str) -> None:
        """Record instances about to be sent: (SOP UID, study UID, series UID, modality)."""
        now = _now()
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO pushed VALUES (?, ?, ?, ?, ?, 'pending', ?) "
                "ON CONFLICT (sop_instance_uid, destination) DO NOTHING",
                [(sop, destination, study, series, modality, now)
                 for sop, study, series, modality in items])

    def record_stored(self, sop_instance_uids: Iterable[str], *, destination: str) -> None:
        """Mark instances as acknowledged by ``destination``."""
        now = _now()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE pushed SET state = 'stored', pushed_at = ? "
                "WHERE sop_instance_uid = ? AND destination = ?",
                [(now, sop, destination) for sop in sop_instance_uids])

    # ---- the batch tables ----

    def tables_current(self) -> bool:
        """Tell whether the tables cover the whole inbox (False after a study measured alone)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'tables_current'").fetchone()
        return row is None or row[0] == "1"

    def set_tables_current(self, current: bool) -> None:
        """Record whether OUT's tables cover the whole inbox."""
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('tables_current', ?)",
                         ("1" if current else "0",))
