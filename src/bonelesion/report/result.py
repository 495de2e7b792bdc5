"""What the reports are rendered from: one `StudyResult` per study.

The canonical results.json and every other view (lesion table, DICOM SEG/SR, QC images,
report.html) are rendered from the same objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from bonelesion.classify.call import LesionCall
from bonelesion.classify.config import ClassifierConfig
from bonelesion.classify.rules import classify_lesions
from bonelesion.errors import InputError
from bonelesion.model.results import LesionMeasurements
from bonelesion.model.volume import IndexBox, Volume
from bonelesion.roi.lesion import Lesion

__all__ = ["StudyResult", "study_result", "safe_name", "mask_array_on", "ROLE_ORDER",
           "LesionShape", "as_lesion", "lesion_in_box", "mask_drawn_on"]

#: What a view draws a lesion from: a mask `Volume` (any grid of the study's frame of
#: reference) or the `Lesion` itself (rasterised on each series' grid, within its box).
LesionShape = Volume | Lesion

#: Preferred order of series roles (QC images, choice of the SEG source series).
ROLE_ORDER = ("ct", "dixon_in_phase", "dixon_opposed_phase", "dixon_water", "dixon_fat", "adc",
              "dwi", "other")


def safe_name(text: str) -> str:
    """Return a file-name-safe version of an identifier (keeps letters, digits, ``.-_``).

    Examples
    --------
    >>> safe_name("lesion 3/a")
    'lesion_3_a'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def mask_array_on(mask: Volume, volume: Volume) -> NDArray[np.bool_]:
    """Voxels of a lesion ``mask`` on ``volume``'s grid, as a boolean (S, R, C) array.

    A mask on another grid is resampled onto ``volume`` (nearest neighbour, through LPS;
    `Volume.resample_like` raises if the frames of reference differ).
    """
    if mask.geometry_equal(volume):
        return np.asarray(mask.array) != 0
    return np.asarray(mask.resample_like(volume, order=0).array) != 0


def as_lesion(lesion_id: str, shape: LesionShape) -> Lesion:
    """Return ``shape`` as a `Lesion` (a mask Volume becomes a mask lesion of its frame)."""
    if isinstance(shape, Lesion):
        return shape
    return Lesion(lesion_id=lesion_id, source="mask", mask=shape,
                  frame_of_reference_uid=shape.series.frame_of_reference_uid)


def lesion_in_box(
    shape: LesionShape, volume: Volume, *, lesion_id: str = "", margin_voxels: int = 0
) -> tuple[IndexBox, NDArray[np.bool_]]:
    """Put the lesion on ``volume``'s grid within its bounding box (no full-volume mask).

    Returns
    -------
    box : IndexBox
        The lesion's box on ``volume`` (`Lesion.box_on`); empty when it lies outside.
    mask : ndarray of bool, ``box.shape``
        The lesion's voxels in the box (may be all False).

    Raises
    ------
    FrameOfReferenceError
        Lesion and volume are in different (known) frames of reference.
    GeometryMismatchError
        Contours not parallel to the volume's slices.
    """
    lesion = as_lesion(lesion_id, shape)
    box = lesion.box_on(volume, margin_voxels=margin_voxels)
    if box.is_empty:
        return box, np.zeros(box.shape, dtype=bool)
    return box, lesion.mask_in_box(volume, box)


def mask_drawn_on(shape: LesionShape, volume: Volume) -> bool:
    """Tell whether a lesion is drawn on ``volume``'s grid (a `Lesion` is drawn on any grid)."""
    return isinstance(shape, Lesion) or shape.geometry_equal(volume)


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    """Measurements, calls and (optionally) images of one study.

    Parameters
    ----------
    study_instance_uid : str
    lesions : sequence of LesionMeasurements
    calls : sequence of LesionCall
        One per lesion, same order.
    volumes : mapping of str to Volume, optional
        Source series by role (``ct``, ``dixon_in_phase``, ``dixon_opposed_phase``, ``adc`` …);
        their ``series.source_files`` and ``sop_instance_uids`` feed provenance and DICOM out.
    masks : mapping of str to Volume or Lesion, optional
        Lesion id → boolean mask Volume (any grid in the study's frame of reference), or
        the `Lesion` itself: the views rasterise it on each series' grid within its
        bounding box (`lesion_in_box`), so no full-volume mask is ever built.
    warnings : sequence of str
        Study-level data-quality warnings.
    lesion_sources : mapping of str to str
        Lesion id → where the lesion came from (ROI file and row, SEG segment, detection).
    mask_sources : mapping of str to callable, optional
        Lesion id → a function putting the lesion on any grid (``Lesion.mask_on``), as the
        stages did: the figures outline on each series what was measured there, on a crop
        around the lesion. Without it, ``masks`` is resampled onto each series.
    """

    study_instance_uid: str
    lesions: tuple[LesionMeasurements, ...]
    calls: tuple[LesionCall, ...]
    volumes: Mapping[str, Volume] = field(default_factory=dict)
    masks: Mapping[str, LesionShape] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    lesion_sources: Mapping[str, str] = field(default_factory=dict)
    mask_sources: Mapping[str, Callable[[Volume], Volume]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lesions", tuple(self.lesions))
        object.__setattr__(self, "calls", tuple(self.calls))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        if [c.lesion_id for c in self.calls] != [m.lesion_id for m in self.lesions]:
            raise InputError(
                f"StudyResult {self.study_instance_uid}: calls and lesions differ in order or "
                f"number ({len(self.calls)} calls for {len(self.lesions)} lesions); expected one "
                "call per lesion, same order. Potential fix: build it with study_result(...)."
            )

    def ordered_volumes(self) -> list[tuple[str, Volume]]:
        """(role, volume) pairs in `ROLE_ORDER`, unknown roles last."""
        rank = {r: i for i, r in enumerate(ROLE_ORDER)}
        return sorted(self.volumes.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def study_result(
    lesions: Sequence[LesionMeasurements],
    *,
    calls: Sequence[LesionCall] | None = None,
    config: ClassifierConfig | None = None,
    study_instance_uid: str | None = None,
    volumes: Mapping[str, Volume] | None = None,
    masks: Mapping[str, LesionShape] | None = None,
    warnings: Sequence[str] = (),
    lesion_sources: Mapping[str, str] | None = None,
    mask_sources: Mapping[str, Callable[[Volume], Volume]] | None = None,
) -> StudyResult:
    """Build a `StudyResult`, classifying the lesions with the rules when no calls are given."""
    lesions = tuple(lesions)
    if calls is None:
        calls = classify_lesions(lesions, config=config)
    uid = study_instance_uid
    if uid is None:
        uid = lesions[0].study_instance_uid if lesions else ""
    return StudyResult(
        study_instance_uid=uid, lesions=lesions, calls=tuple(calls), volumes=dict(volumes or {}),
        masks=dict(masks or {}), warnings=tuple(warnings),
        lesion_sources=dict(lesion_sources or {}), mask_sources=dict(mask_sources or {}),
    )
