"""Phantom studies for the PACS-loop tests (``support.pacs_kit``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bonelesion.phantom import StudyTruth


@dataclass(frozen=True)
class PhantomStudy:
    """One phantom study on disk, with its truth."""

    folder: Path
    truth: StudyTruth

    @property
    def uid(self) -> str:
        return self.truth.study_instance_uid

    def dicom_files(self) -> list[Path]:
        return sorted(self.folder.rglob("*.dcm"))


@dataclass(frozen=True)
class PhantomSet:
    """Two good phantom studies and one ROI file covering both."""

    studies: tuple[PhantomStudy, ...]
    rois: Path

    @property
    def uids(self) -> list[str]:
        return sorted(s.uid for s in self.studies)


def merge_rois(paths: list[Path], out: Path) -> Path:
    """One annotations CSV holding the rows of several phantoms' rois.csv."""
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for path in paths:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = fields or list(reader.fieldnames or [])
            rows += list(reader)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return out
