"""Discovery: what an export holds, as plain records — studies with candidate stacks, bad files.

`build_inventory` indexes the export with `bonelesion.dicom.index` (the SQLite catalogue;
one walk of the export for every command) and turns the catalogue into an `Inventory`: plain,
picklable records the planner (`bonelesion.pipeline.selection`) and the batch runner use.
Nothing here reads pixel data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion.errors import InputError
from bonelesion.pipeline.plan import StackCandidate

__all__ = ["InventoryStudy", "BadFile", "Inventory", "build_inventory", "NOT_INPUT_STATUSES"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class InventoryStudy:
    """One study of the export.

    ``patient_id`` and ``patient_name`` are kept for output naming and pseudonymisation
    only; they are never logged. ``study_date`` (DICOM DA, ``YYYYMMDD``) and
    ``study_description`` are the context the reports show; "" when absent.
    ``problems`` are study-level notes from the index (e.g. refused stacks), as
    ``(series_instance_uid, reason)`` pairs.
    """

    study_instance_uid: str
    patient_id: str
    candidates: tuple[StackCandidate, ...]
    problems: tuple[tuple[str, str], ...] = ()
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""

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
    studies: tuple[InventoryStudy, ...]
    bad_files: tuple[BadFile, ...] = ()

    def study(self, study_instance_uid: str) -> InventoryStudy:
        """Return the record of one study."""
        for s in self.studies:
            if s.study_instance_uid == study_instance_uid:
                return s
        raise KeyError(study_instance_uid)


def _split_image_type(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip().upper() for v in value.replace("/", "\\").split("\\"))


def build_inventory(
    export_dir: str | Path,
    catalogue_path: str | Path,
    *,
    workers: int | None = None,
    progress: Callable[..., Any] | None = None,
) -> Inventory:
    """Index ``export_dir`` into the catalogue at ``catalogue_path`` and read it back.

    The index is incremental: a rerun reads only new or changed files.

    Every stack of the catalogue becomes a `StackCandidate` with the stack's own role (also
    for one of several stacks of an enhanced multi-frame object); the patient of each study
    comes from `Catalogue.patient_identity` (read from a header, never stored or logged).

    Raises
    ------
    InputError
        If the export folder does not exist or is not a folder.
    """
    from bonelesion.dicom.index import Catalogue, index_export

    root = Path(export_dir)
    if not root.is_dir():
        raise InputError(
            f"Export folder {root} does not exist or is not a folder. Potential fix: give the "
            "folder holding the DICOM export."
        )
    summary = index_export(root, catalogue_path, workers=workers, progress=progress)
    logger.info(
        "indexed %d entries (%d read, %d unchanged) in %.1f s",
        summary.files_seen,
        summary.files_read,
        summary.files_unchanged,
        summary.duration_s,
    )
    studies: list[InventoryStudy] = []
    with Catalogue(catalogue_path) as cat:
        base = Path(cat.root)
        for study in cat.studies():
            candidates: list[StackCandidate] = []
            for series in cat.series(study.study_instance_uid):
                records = {r.path: r for r in cat.files(series.series_instance_uid)}
                for stack in cat.stacks(series.series_instance_uid):
                    recs = [records[p] for p in stack.paths if p in records]
                    if not recs:
                        continue
                    head = recs[0]
                    bvals = sorted(
                        {r.b_value_s_per_mm2 for r in recs if r.b_value_s_per_mm2 is not None}
                    )
                    candidates.append(
                        StackCandidate(
                            study_instance_uid=study.study_instance_uid,
                            series_instance_uid=series.series_instance_uid,
                            stack_key=stack.stack_key,
                            modality=head.modality or series.modality,
                            role=stack.role,
                            files=tuple(str(base / r.path) for r in recs),
                            sop_instance_uids=tuple(r.sop_instance_uid or "" for r in recs),
                            file_signatures=tuple(
                                f"{r.sop_instance_uid}|{r.size_bytes}|{r.mtime_ns}" for r in recs
                            ),
                            series_number=series.series_number,
                            series_description=series.series_description,
                            slice_thickness_mm=head.slice_thickness_mm,
                            convolution_kernel=head.convolution_kernel or "",
                            b_values_s_per_mm2=tuple(float(b) for b in bvals),
                            image_type=_split_image_type(head.image_type),
                            echo_time_ms=head.echo_time_ms,
                            n_frames=stack.n_frames,
                            sop_class_uid=head.sop_class_uid or "",
                            frame_of_reference_uid=head.frame_of_reference_uid or "",
                            image_orientation_lps=head.image_orientation_lps,
                            rows=head.rows,
                            columns=head.columns,
                            pixel_spacing_mm=head.pixel_spacing_mm,
                        )
                    )
            context = cat.study_context(study.study_instance_uid)
            patient_id, patient_name = context.patient_id, context.patient_name
            study_date, study_description = context.study_date, context.study_description
            studies.append(
                InventoryStudy(
                    study_instance_uid=study.study_instance_uid,
                    patient_id=patient_id,
                    patient_name=patient_name,
                    candidates=tuple(candidates),
                    study_date=study_date,
                    study_description=study_description,
                )
            )
        bad = tuple(
            BadFile(
                path=str(base / r.path),
                reason=f"{r.status}: {r.reason}".rstrip(": "),
                study_instance_uid=r.study_instance_uid or "",
                series_instance_uid=r.series_instance_uid or "",
                status=r.status,
            )
            for r in cat.problems()
        )
    return Inventory(root=str(root), studies=tuple(studies), bad_files=bad)
