"""DICOM out of one study: a SEG of the lesion masks and a TID 1500 SR, on a source series.

`write_study_dicom` writes the SEG (`bonelesion.report.dicom_seg`) on the series the masks
are drawn on and the SR (`bonelesion.report.dicom_sr`) referencing it; the source images
are read and matched to the volume by `bonelesion.report.dicom_sources`. A source highdicom
cannot build on raises `UnsupportedInputError` naming the series, and the study's next
series is tried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bonelesion.errors import (
    InputError,
    UnsupportedInputError,
)
from bonelesion.model.volume import Volume
from bonelesion.report.dicom_seg import write_segmentation
from bonelesion.report.dicom_sources import read_source
from bonelesion.report.dicom_sr import write_measurement_report
from bonelesion.report.result import StudyResult, mask_drawn_on, safe_name

__all__ = ["StudyDicom", "write_study_dicom"]

logger = logging.getLogger(__name__)



@dataclass(frozen=True, kw_only=True)
class StudyDicom:
    """Paths of the DICOM objects written for one study.

    ``skipped`` holds, for every series tried before ``source_role`` and refused, the
    reason (its series UID included).
    """

    seg_path: Path
    sr_path: Path
    source_role: str
    segment_numbers: Mapping[str, int]
    skipped: tuple[str, ...] = ()


def _source_candidates(study: StudyResult) -> list[tuple[str, Volume]]:
    """Series that can carry the SEG, the grid the masks are drawn on first."""
    candidates = [(r, v) for r, v in study.ordered_volumes()
                  if len(v.series.source_files) in (1, v.shape[0])]
    if not candidates:
        raise UnsupportedInputError(
            f"DICOM out for study {study.study_instance_uid}: no series with its source files "
            "(one per slice, or one multi-frame object) to reference. Potential fix: keep "
            "SeriesInfo.source_files when loading, or skip DICOM output.")
    on_grid = [(r, v) for r, v in candidates
               if all(mask_drawn_on(mask, v) for mask in study.masks.values())]
    return on_grid + [c for c in candidates if c not in on_grid]


def _pick_source(study: StudyResult) -> tuple[str, Volume]:
    return _source_candidates(study)[0]


def write_study_dicom(study: StudyResult, out_dir: str | Path) -> StudyDicom:
    """Write ``seg_<study>.dcm`` and ``sr_<study>.dcm`` of one study into ``out_dir`` (created).

    The SEG goes on the series the masks are drawn on. If that series cannot carry it
    (source files missing or changed, a source highdicom cannot build on), the next series
    of the study is tried; each refusal is logged as a warning naming the series and kept
    in `StudyDicom.skipped`.

    Raises
    ------
    InputError
        No masks, or no series of the study can carry the SEG and SR; the message names
        every series tried and why it was refused.
    """
    out = Path(out_dir)
    masks = {m.lesion_id: study.masks[m.lesion_id] for m in study.lesions
             if m.lesion_id in study.masks}
    if not masks:
        raise InputError(
            f"DICOM out for study {study.study_instance_uid}: no lesion has a mask. "
            "Potential fix: pass the study's lesion masks.")
    candidates = _source_candidates(study)
    out.mkdir(parents=True, exist_ok=True)
    seg_path = out / f"seg_{safe_name(study.study_instance_uid)}.dcm"
    sr_path = out / f"sr_{safe_name(study.study_instance_uid)}.dcm"
    skipped: list[str] = []
    errors: list[InputError] = []
    for role, source in candidates:
        try:
            datasets, slices = read_source(source)
            seg, numbers = write_segmentation(source, masks, seg_path,
                                              source_datasets=datasets, frame_slices=slices)
            write_measurement_report(study, seg, numbers, datasets, sr_path)
        except InputError as exc:
            seg_path.unlink(missing_ok=True)
            sr_path.unlink(missing_ok=True)
            reason = (f"{role} series {source.series.series_instance_uid or '(no UID)'}: "
                      f"{exc}")
            logger.warning("study %s: DICOM SEG/SR not written on %s", study.study_instance_uid,
                           reason)
            skipped.append(reason)
            errors.append(exc)
            continue
        return StudyDicom(seg_path=seg_path, sr_path=sr_path, source_role=role,
                          segment_numbers=numbers, skipped=tuple(skipped))
    if len(errors) == 1:
        raise errors[0]  # the only series: its own error (type and message) says it all
    raise UnsupportedInputError(
        f"DICOM out for study {study.study_instance_uid}: no series can carry the SEG/SR; "
        f"tried {len(skipped)}: " + " | ".join(skipped) + " Potential fix: see each series' "
        "own fix, or skip DICOM output (--no-dicom).")
