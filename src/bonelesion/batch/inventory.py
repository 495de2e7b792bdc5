"""What an export holds, as plain records: studies with their candidate stacks, and bad files.

`build_inventory` indexes the export with `bonelesion.dicom.index` (SQLite catalogue) and
turns the catalogue into `Inventory`: plain, picklable records the planner and the batch
runner use. Nothing here reads pixel data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion.pipeline.plan import StackCandidate

__all__ = ["StudyRecord", "BadFile", "Inventory", "build_inventory", "NOT_INPUT_STATUSES"]


@dataclass(frozen=True, kw_only=True)
class StudyRecord:
    """One study of the export.

    ``patient_id`` and ``patient_name`` are kept for output naming and pseudonymisation
    only; they are never logged.
    ``problems`` are study-level notes from the index (e.g. refused stacks), as
    ``(series_instance_uid, reason)`` pairs.
    """

    study_instance_uid: str
    patient_id: str
    candidates: tuple[StackCandidate, ...]
    problems: tuple[tuple[str, str], ...] = ()
    patient_name: str = ""

    def identifiers(self) -> tuple[str, ...]:
        """Patient identifier strings to scrub from pseudonymised text outputs.

        PatientID and PatientName, the name also with its ``^`` separators as spaces and
        underscores (as they appear in folder names); values shorter than 3 characters are
        left out (they would match inside unrelated text). Longest first.
        """
        name = self.patient_name
        values = {
            self.patient_id,
            name,
            name.replace("^", " ").strip(),
            name.replace("^", "_").strip("_"),
        }
        return tuple(sorted((v for v in values if len(v) >= 3), key=lambda v: (-len(v), v)))


#: Index statuses of files that are simply not DICOM (README, thumbnails, checksums):
#: listed in bad_files.csv, but not a failure of the run by themselves.
NOT_INPUT_STATUSES = frozenset({"not_dicom"})


@dataclass(frozen=True, kw_only=True)
class BadFile:
    """A file the index could not use, with the reason.

    ``status`` is the index's file status (``not_dicom``, ``truncated``,
    ``missing_attribute``, ``error`` …).
    """

    path: str
    reason: str
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    status: str = ""

    @property
    def is_failure(self) -> bool:
        """True for a damaged or unusable DICOM file; False for a file that is not DICOM."""
        return self.status not in NOT_INPUT_STATUSES


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """Studies and bad files of one export."""

    root: str
    studies: tuple[StudyRecord, ...]
    bad_files: tuple[BadFile, ...] = ()

    def study(self, study_instance_uid: str) -> StudyRecord:
        """Return the record of one study."""
        for s in self.studies:
            if s.study_instance_uid == study_instance_uid:
                return s
        raise KeyError(study_instance_uid)


def build_inventory(
    export_dir: str | Path,
    catalogue_path: str | Path,
    *,
    workers: int | None = None,
    progress: Callable[..., Any] | None = None,
) -> Inventory:
    """Index ``export_dir`` into the catalogue at ``catalogue_path`` and read it back.

    Raises
    ------
    InputError
        If the export folder does not exist or holds no readable DICOM.
    """
    from bonelesion.batch import _catalogue

    return _catalogue.inventory_from_index(
        export_dir, catalogue_path, workers=workers, progress=progress
    )
