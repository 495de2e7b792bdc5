"""Enhanced multi-frame DICOM → one *flat* header per frame (`flatten_frames`).

An enhanced (multi-frame) object keeps per-frame geometry and acquisition values in the
Shared and Per-Frame Functional Groups Sequences (DICOM PS3.3 C.7.6.16). Every other part of
bonelesion (the vendor rules in `bonelesion.dicom.vendors`, the catalogue, the series
reader) works on *flat* headers that look like classic single-frame data sets: this module
builds them.

A flat header holds

* the top-level attributes of the object, without Pixel Data and the functional-group
  sequences;
* the contents of Philips private per-frame items (2005,140F), where present (lowest
  precedence: they repeat standard attributes with vendor-specific values);
* the contents of every Shared Functional Groups item, then of the frame's Per-Frame
  Functional Groups item (highest precedence), copied to the top level: Pixel Measures →
  PixelSpacing / SliceThickness / SpacingBetweenSlices, Plane Position →
  ImagePositionPatient, Plane Orientation → ImageOrientationPatient, Pixel Value
  Transformation → RescaleSlope / RescaleIntercept, Frame Content → StackID,
  InStackPositionNumber, TemporalPositionIndex, DimensionIndexValues, MR Diffusion →
  DiffusionBValue, DiffusionDirectionality, DiffusionGradientDirectionSequence (and its
  DiffusionGradientOrientation), and so on;
* two renamings: MR/CT Image Frame Type FrameType → ImageType, MR Echo EffectiveEchoTime →
  EchoTime;
* the frame number (1-based) in a private element of block ``bonelesion`` in group 0x0099,
  read back with `frame_number`.

Flat headers share (do not copy) the data elements of the source data set, so flattening
819 frames costs milliseconds, not a deep copy of the object per frame.

The stack signature moved to `bonelesion.dicom.stack_key`; its names are re-exported here
for existing callers.
"""

from __future__ import annotations

import logging

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag, Tag

from bonelesion.dicom import vendors
from bonelesion.dicom.fastheader import PIXEL_TAGS

# Re-exported: the stack signature now lives in its own module.
from bonelesion.dicom.stack_key import (  # noqa: E402
    StackKey,
    series_context_role,
    series_stack_keys,
    stack_key,
)
from bonelesion.dicom.vendors.siemens import is_mosaic  # noqa: E402

__all__ = [
    "flatten_frames",
    "is_multiframe",
    "frame_number",
    "StackKey",
    "stack_key",
    "series_stack_keys",
    "series_context_role",
    "is_mosaic",
    "FRAME_NUMBER_PRIVATE_GROUP",
    "FRAME_NUMBER_PRIVATE_CREATOR",
]

logger = logging.getLogger(__name__)


#: Private block that records which frame a flat header came from.
FRAME_NUMBER_PRIVATE_GROUP = 0x0099


FRAME_NUMBER_PRIVATE_CREATOR = "bonelesion"


_SHARED = Tag(0x5200, 0x9229)  # SharedFunctionalGroupsSequence


_PER_FRAME = Tag(0x5200, 0x9230)  # PerFrameFunctionalGroupsSequence


_FRAME_TYPE = Tag(0x0008, 0x9007)


_IMAGE_TYPE = Tag(0x0008, 0x0008)


_EFFECTIVE_ECHO_TIME = Tag(0x0018, 0x9082)


_ECHO_TIME = Tag(0x0018, 0x0081)


_DIFFUSION_GRADIENT_DIRECTION_SEQ = Tag(0x0018, 0x9076)


_FRAME_NUMBER_TAG = Tag(FRAME_NUMBER_PRIVATE_GROUP, 0x1001)


_FRAME_NUMBER_CREATOR_TAG = Tag(FRAME_NUMBER_PRIVATE_GROUP, 0x0010)


def is_multiframe(ds: Dataset) -> bool:
    """Return True for an object with functional groups (enhanced or legacy multi-frame)."""
    return _PER_FRAME in ds or _SHARED in ds


def frame_number(flat: Dataset) -> int | None:
    """1-based frame number recorded by `flatten_frames`, None for a classic header."""
    if _FRAME_NUMBER_TAG not in flat:
        return None
    return int(flat[_FRAME_NUMBER_TAG].value)


def _merge_item(target: dict[BaseTag, DataElement], item: Dataset) -> None:
    """Copy the elements of one functional-group macro item into ``target`` (a tag dict).

    Private elements are copied only when their private creator does not clash with the
    creator already at that slot (a clash would relabel the top-level private block).
    """
    blocked: set[tuple[int, int]] = set()
    for elem in item:
        tag = elem.tag
        if tag.is_private_creator:
            existing = target.get(tag)
            if existing is not None and existing.value != elem.value:
                blocked.add((tag.group, tag.element))
                continue
        elif tag.is_private:
            if (tag.group, tag.element >> 8) in blocked:
                continue
        if tag == _FRAME_TYPE:
            target[_IMAGE_TYPE] = DataElement(_IMAGE_TYPE, "CS", elem.value)
            continue
        if tag == _EFFECTIVE_ECHO_TIME:
            target[_ECHO_TIME] = DataElement(_ECHO_TIME, "DS", elem.value)
        target[tag] = elem
        if tag == _DIFFUSION_GRADIENT_DIRECTION_SEQ and elem.value:
            for inner in elem.value[0]:
                target[inner.tag] = inner


def flatten_frames(ds: Dataset) -> list[Dataset]:
    """Return one flat header per frame of ``ds``; a classic single-frame object → ``[ds]``.

    Parameters
    ----------
    ds : pydicom.Dataset
        A data set read with or without its pixel data.

    Returns
    -------
    list of pydicom.Dataset
        In frame order. Each flat header shares data elements with ``ds`` (treat them as
        read-only) and carries its 1-based frame number (see `frame_number`).

    Notes
    -----
    Precedence (last wins): top level < Philips private per-frame item < Shared Functional
    Groups < Per-Frame Functional Groups. A frame without a per-frame item (fewer items than
    NumberOfFrames) gets the shared values only.

    References
    ----------
    DICOM PS3.3 C.7.6.16 "Multi-frame Functional Groups Module".

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset(); ds.Rows = 2
    >>> flatten_frames(ds)[0] is ds
    True
    """
    if not is_multiframe(ds):
        return [ds]
    base: dict[BaseTag, DataElement] = {}
    for elem in ds:
        if elem.tag in PIXEL_TAGS or elem.tag in (_SHARED, _PER_FRAME):
            continue
        base[elem.tag] = elem
    shared_items: list[Dataset] = []
    shared_seq = ds.get(_SHARED)
    if shared_seq is not None and shared_seq.value:
        for elem in shared_seq.value[0]:
            if elem.VR == "SQ" and elem.value and not elem.tag.is_private:
                shared_items.append(elem.value[0])
    per_frame_seq = ds.get(_PER_FRAME)
    per_frame = list(per_frame_seq.value) if per_frame_seq is not None else []
    n_frames = int(ds.get("NumberOfFrames", None) or len(per_frame) or 1)
    creator = DataElement(_FRAME_NUMBER_CREATOR_TAG, "LO", FRAME_NUMBER_PRIVATE_CREATOR)
    flats: list[Dataset] = []
    for index in range(n_frames):
        tags = dict(base)
        frame_item = per_frame[index] if index < len(per_frame) else None
        if frame_item is not None:
            for private_item in vendors.philips_private_frame_items(frame_item):
                _merge_item(tags, private_item)
        for item in shared_items:
            _merge_item(tags, item)
        if frame_item is not None:
            for elem in frame_item:
                if elem.VR == "SQ" and elem.value and not elem.tag.is_private:
                    _merge_item(tags, elem.value[0])
        tags[_FRAME_NUMBER_CREATOR_TAG] = creator
        tags[_FRAME_NUMBER_TAG] = DataElement(_FRAME_NUMBER_TAG, "UL", index + 1)
        flat = Dataset(tags)  # type: ignore[arg-type]
        if hasattr(ds, "file_meta"):
            flat.file_meta = ds.file_meta
        flats.append(flat)
    return flats
