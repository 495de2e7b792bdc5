"""Discovery: what an export holds, as plain records — studies with candidate stacks, bad files.

`build_inventory` indexes the export with `bonelesion.dicom.index` (the SQLite catalogue;
one walk of the export for every command) and turns the catalogue into an `Inventory`: plain,
picklable records the planner (`bonelesion.pipeline.selection`) and the batch runner use.
Nothing here reads pixel data.
"""

from __future__ import annotations

import logging
import warnings
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


def _study_context(path: Path) -> tuple[str, str, str, str]:
    """PatientID, PatientName, StudyDate and StudyDescription of one file (header only).

    "" when absent or unreadable. Never logged.
    """
    import pydicom

    keywords = ["PatientID", "PatientName", "StudyDate", "StudyDescription"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=keywords,
                                 force=True)
        values = [str(ds.get(k, "") or "").strip() for k in keywords]
    except Exception:  # noqa: BLE001 - the index already read this file; naming only
        return "", "", "", ""
    return values[0], values[1], values[2], values[3]


def _role_of_multiframe_stack(path: Path, stack_key: str) -> str:
    """Role of one stack of an enhanced (multi-frame) file, which the index leaves empty.

    The frames of the file are flattened (`bonelesion.dicom.multiframe.flatten_frames`) and
    the frame of this stack is given to `bonelesion.dicom.vendors.stack_role`, as the reader
    does; "other" when the file cannot be read.
    """
    import pydicom

    from bonelesion.dicom.multiframe import flatten_frames
    from bonelesion.dicom.multiframe import stack_key as key_of
    from bonelesion.dicom.vendors import stack_role

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            frames = flatten_frames(ds)
            match = [f for f in frames if str(key_of(f)) == stack_key]
            role = stack_role((match or frames)[0])
    except Exception as exc:  # noqa: BLE001 - naming a role must not fail the inventory
        logger.warning("role of stack %s in %s: %s", stack_key, path.name, exc)
        return "other"
    return str(getattr(role, "value", role))


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
            first_file: Path | None = None
            for series in cat.series(study.study_instance_uid):
                records = {r.path: r for r in cat.files(series.series_instance_uid)}
                for stack in cat.stacks(series.series_instance_uid):
                    recs = [records[p] for p in stack.paths if p in records]
                    if not recs:
                        continue
                    head = recs[0]
                    if first_file is None:
                        first_file = base / head.path
                    roles = {r.role for r in recs if r.role}
                    if not roles and any((r.number_of_frames or 1) > 1 for r in recs):
                        roles = {_role_of_multiframe_stack(base / head.path, stack.stack_key)}
                    bvals = sorted(
                        {r.b_value_s_per_mm2 for r in recs if r.b_value_s_per_mm2 is not None}
                    )
                    candidates.append(
                        StackCandidate(
                            study_instance_uid=study.study_instance_uid,
                            series_instance_uid=series.series_instance_uid,
                            stack_key=stack.stack_key,
                            modality=head.modality or series.modality,
                            role=min(roles) if roles else "other",
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
            patient_id, patient_name, study_date, study_description = (
                _study_context(first_file) if first_file is not None else ("", "", "", "")
            )
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
