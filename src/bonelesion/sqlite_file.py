"""The SQLite files bonelesion keeps between runs, opened and versioned one way.

The batch results store (`bonelesion.batch.store.ResultsStore`) and the PACS loop's state
(`bonelesion.pacs.state.PacsState`) are both a SQLite file in WAL mode with full
synchronisation (a crash loses no committed study), a schema script, a schema version in a
``meta`` table checked when the file is opened, and ``BEGIN IMMEDIATE`` transactions (one
writer at a time, waiting up to 30 s for another).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from bonelesion.errors import InputError

__all__ = ["SqliteFile"]


class SqliteFile:
    """A versioned SQLite file of ours; subclasses add its tables' operations.

    Parameters
    ----------
    path : path-like
        The database file (created, with its folder, when absent).
    schema : str
        Script of ``CREATE … IF NOT EXISTS`` statements, a ``meta (key, value)`` table among
        them.
    version : int
        The schema version this code reads and writes.
    what : str
        What the file is, for messages ("Results store").
    version_fix, damaged_fix : str
        The "Potential fix" of a file of another schema version, and of a file that is not
        SQLite.
    foreign_keys : bool
        Enforce foreign keys.

    Raises
    ------
    InputError
        If the file is not SQLite, or holds another schema version.
    """

    def __init__(self, path: str | Path, *, schema: str, version: int, what: str,
                 version_fix: str, damaged_fix: str, foreign_keys: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{what} {self.path} cannot be opened as SQLite ({exc}). "
                             f"Potential fix: {damaged_fix}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            if foreign_keys:
                self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(schema)
            with self._transaction() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
                elif int(row[0]) != version:
                    raise InputError(f"{what} {self.path}: schema version {row[0]}, expected "
                                     f"{version}. Potential fix: {version_fix}")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise InputError(f"{what} {self.path} cannot be opened as SQLite ({exc}). "
                             f"Potential fix: {damaged_fix}") from exc
        except InputError:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
