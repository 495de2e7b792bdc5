"""Catalogue queries: read-only questions the batch planner asks (`Catalogue`)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from bonelesion.dicom.catalogue.records import (
    _FIELD_NAMES,
    SCHEMA_VERSION,
    FileRecord,
    SeriesRecord,
    StackRecord,
    StudyRecord,
    _from_row,
    loaded_path,
)
from bonelesion.errors import (
    InputError,
)

__all__ = [
    "Catalogue",
]


from bonelesion.dicom.identity import StudyContext, study_context

logger = logging.getLogger(__name__)


class Catalogue:
    """Read-only queries over a catalogue written by `index_export`.

    Parameters
    ----------
    db_path : path
        The catalogue file.

    Raises
    ------
    InputError
        When the file does not exist or is not a bonelesion catalogue.

    Examples
    --------
    >>> with Catalogue("bonelesion-index.sqlite") as cat:  # doctest: +SKIP
    ...     for study in cat.studies():
    ...         print(study.study_instance_uid, study.n_series)
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        if not self.db_path.is_file():
            raise InputError(
                f"Catalogue {db_path}: file not found; expected the output of "
                "`bonelesion index`. Potential fix: run `bonelesion index EXPORT --db "
                f"{db_path}` first."
            )
        try:
            self._con = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro",
                                        uri=True)
            meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"Catalogue {db_path}: not a bonelesion catalogue ({exc}); expected an "
                "SQLite file with `meta` and `files` tables. Potential fix: re-run "
                "`bonelesion index` with this --db."
            ) from exc
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            self._con.close()
            raise InputError(
                f"Catalogue {db_path}: schema version {meta.get('schema_version')}, expected "
                f"{SCHEMA_VERSION}. Potential fix: re-run `bonelesion index` to rebuild it."
            )
        self.root = Path(meta["root"])

    def close(self) -> None:
        """Close the database connection."""
        self._con.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def studies(self) -> list[StudyRecord]:
        """Studies with at least one ``ok`` file, sorted by StudyInstanceUID."""
        rows = self._con.execute(
            "SELECT study_instance_uid, min(patient_key), group_concat(DISTINCT modality), "
            "count(DISTINCT series_instance_uid), count(*) FROM files WHERE status = 'ok' "
            "GROUP BY study_instance_uid ORDER BY study_instance_uid").fetchall()
        return [StudyRecord(study_instance_uid=r[0], patient_key=r[1],
                            modalities=tuple(sorted((r[2] or "").split(",")) if r[2] else ()),
                            n_series=r[3], n_files=r[4]) for r in rows]

    def series(self, study_uid: str | None = None) -> list[SeriesRecord]:
        """Series with ``ok`` files (of one study, or all), sorted by series number."""
        where, params = ("AND f.study_instance_uid = ?", (study_uid,)) if study_uid else ("", ())
        rows = self._con.execute(
            "SELECT f.series_instance_uid, min(f.study_instance_uid), min(f.modality), "
            "min(f.manufacturer), min(f.series_description), min(f.series_number), "
            "group_concat(DISTINCT f.frame_of_reference_uid), "
            "group_concat(DISTINCT f.sop_class_uid), count(*), "
            "sum(coalesce(f.number_of_frames, 1)), "
            "(SELECT count(DISTINCT s.stack_key) FROM file_stacks s JOIN files g "
            " ON g.path = s.path WHERE s.series_instance_uid = f.series_instance_uid "
            " AND g.status = 'ok') "
            f"FROM files f WHERE f.status = 'ok' {where} GROUP BY f.series_instance_uid "
            "ORDER BY min(f.series_number), f.series_instance_uid", params).fetchall()
        return [SeriesRecord(
            series_instance_uid=r[0], study_instance_uid=r[1], modality=r[2] or "",
            manufacturer=r[3] or "", series_description=r[4] or "", series_number=r[5],
            frame_of_reference_uids=tuple(sorted(r[6].split(","))) if r[6] else (),
            sop_class_uids=tuple(sorted(r[7].split(","))) if r[7] else (),
            n_files=r[8], n_frames=r[9], n_stacks=r[10]) for r in rows]

    def files(self, series_uid: str | None = None, *, status: str | None = "ok"
              ) -> list[FileRecord]:
        """Return the records of one series (or all), ``ok`` only unless ``status`` says so.

        Parameters
        ----------
        series_uid : str, optional
            SeriesInstanceUID; every series when omitted.
        status : str or None
            Only entries with this `FileStatus` value; None for every status.
        """
        clauses, params = [], []
        if series_uid is not None:
            clauses.append("series_instance_uid = ?")
            params.append(series_uid)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._con.execute(
            f"SELECT {', '.join(_FIELD_NAMES)} FROM files {where} ORDER BY path", params)
        return [_from_row(r) for r in rows]

    def stacks(self, series_uid: str) -> list[StackRecord]:
        """Stacks of a series (``ok`` files only), sorted by stack key, with their roles."""
        rows = self._con.execute(
            "SELECT s.stack_key, count(*), sum(s.n_frames), group_concat(s.path, char(10)), "
            "min(coalesce(s.role, 'other')), max(coalesce(s.role_reason, '')) "
            "FROM file_stacks s JOIN files f ON f.path = s.path "
            "WHERE s.series_instance_uid = ? AND f.status = 'ok' "
            "GROUP BY s.stack_key ORDER BY s.stack_key", (series_uid,)).fetchall()
        return [StackRecord(series_instance_uid=series_uid, stack_key=r[0], n_files=r[1],
                            n_frames=r[2],
                            paths=tuple(sorted(loaded_path(p) for p in r[3].split("\n"))),
                            role=r[4], role_reason=r[5])
                for r in rows]

    def patient_identity(self, study_uid: str) -> tuple[str, str]:
        """PatientID and PatientName of a study, read from one of its files' headers.

        The catalogue never stores them (only a keyed hash, see `index_export`): they are
        read here, on request, for output naming and pseudonymisation. Never log them.

        Parameters
        ----------
        study_uid : str
            StudyInstanceUID of a study with ``ok`` files.

        Returns
        -------
        (patient_id, patient_name) : tuple of str
            "" for each that is absent or unreadable (also for an unknown study).
        """
        context = self.study_context(study_uid)
        return context.patient_id, context.patient_name

    def study_context(self, study_uid: str) -> StudyContext:
        """Patient identity, study date and description of a study, from one file's header.

        Read on request (the catalogue stores none of them but a keyed hash of PatientID);
        an unknown study gives empty values. Never log them.
        """
        row = self._con.execute(
            "SELECT path FROM files WHERE status = 'ok' AND study_instance_uid = ? "
            "ORDER BY path LIMIT 1", (study_uid,)).fetchone()
        if row is None:
            return StudyContext()
        return study_context(self.root / loaded_path(row[0]))

    def problems(self) -> list[FileRecord]:
        """Entries that are not usable and not merely of another kind.

        Everything except ``ok``, ``dicomdir`` and ``unsupported_sop_class``, sorted by path.
        """
        rows = self._con.execute(
            f"SELECT {', '.join(_FIELD_NAMES)} FROM files WHERE status NOT IN "
            "('ok', 'dicomdir', 'unsupported_sop_class') ORDER BY path")
        return [_from_row(r) for r in rows]

    def duplicates(self) -> dict[str, tuple[str, ...]]:
        """SOP Instance UIDs held by more than one ``ok`` file, with their paths."""
        rows = self._con.execute(
            "SELECT sop_instance_uid, group_concat(path, char(10)) FROM files "
            "WHERE status = 'ok' GROUP BY sop_instance_uid HAVING count(*) > 1 "
            "ORDER BY sop_instance_uid").fetchall()
        return {r[0]: tuple(sorted(loaded_path(p) for p in r[1].split("\n"))) for r in rows}

    def status_counts(self) -> dict[str, int]:
        """Return the number of entries per status."""
        return dict(self._con.execute("SELECT status, count(*) FROM files GROUP BY status"))
