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
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag, Tag

from bonelesion.dicom import values, vendors

# Re-exported: the stack signature now lives in its own module.
from bonelesion.dicom.stack_key import (  # noqa: E402
    StackKey,
    series_context_role,
    series_stack_keys,
    stack_key,
)
from bonelesion.dicom.structure import PIXEL_TAGS
from bonelesion.dicom.vendors.siemens import is_mosaic  # noqa: E402
from bonelesion.errors import InputError

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


#: Most frames one object may declare (NumberOfFrames), before any flat header is built.
MAX_FRAMES = 100_000


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
    return _PER_FRAME in ds._dict or _SHARED in ds._dict


def frame_number(flat: Dataset) -> int | None:
    """1-based frame number recorded by `flatten_frames`, None for a classic header."""
    if _FRAME_NUMBER_TAG not in flat._dict:
        return None
    return values.get_int(flat, _FRAME_NUMBER_TAG)


def _creator_text(elem: DataElement | RawDataElement) -> str:
    value = elem.value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1").strip("\x00 ")
    return str(value).strip("\x00 ")


def _renamed(elem: DataElement | RawDataElement, old: BaseTag, new: BaseTag
             ) -> DataElement | RawDataElement:
    """``elem`` under another tag, keeping its VR (and its raw bytes: no conversion)."""
    if isinstance(elem, RawDataElement):
        return elem._replace(tag=new, VR=elem.VR or _dictionary_vr(old))
    return DataElement(new, elem.VR, elem.value)


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _merge_item(target: dict[BaseTag, DataElement | RawDataElement], item: Dataset) -> None:
    """Copy the elements of one functional-group macro item into ``target`` (a tag dict).

    Elements are copied as they are (raw ones stay raw: nothing is converted here).
    Private elements are copied only when their private creator does not clash with the
    creator already at that slot (a clash would relabel the top-level private block).
    """
    blocked: set[tuple[int, int]] = set()
    for key, elem in item._dict.items():
        tag = BaseTag(key)
        if tag.is_private_creator:
            existing = target.get(tag)
            if existing is not None and _creator_text(existing) != _creator_text(elem):
                blocked.add((tag.group, tag.element))
                continue
        elif tag.is_private:
            if (tag.group, tag.element >> 8) in blocked:
                continue
        if tag == _FRAME_TYPE:
            target[_IMAGE_TYPE] = _renamed(elem, _FRAME_TYPE, _IMAGE_TYPE)
            continue
        if tag == _EFFECTIVE_ECHO_TIME:
            target[_ECHO_TIME] = _renamed(elem, _EFFECTIVE_ECHO_TIME, _ECHO_TIME)
        target[tag] = elem
        if tag == _DIFFUSION_GRADIENT_DIRECTION_SEQ:
            for inner in values.items(item, tag)[:1]:
                for inner_key, inner_elem in inner._dict.items():
                    target[BaseTag(inner_key)] = inner_elem


def _first_items_of_groups(item: Dataset) -> list[Dataset]:
    """First item of every (standard) functional group sequence inside one item."""
    out: list[Dataset] = []
    for key in list(item._dict):
        tag = BaseTag(key)
        if tag.is_private or values.vr_of(item, tag) != "SQ":
            continue
        out.extend(values.items(item, tag)[:1])
    return out


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
        read-only; raw elements stay raw), carries its 1-based frame number (see
        `frame_number`) and the file of ``ds`` (`bonelesion.dicom.values.source_of`).

    Raises
    ------
    InputError
        If a functional-group element is not a sequence, or NumberOfFrames is not a
        number from 1 to `MAX_FRAMES` (names the file, the element and the value).

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
    base: dict[BaseTag, DataElement | RawDataElement] = {}
    for key, elem in ds._dict.items():
        if key in PIXEL_TAGS or key in (_SHARED, _PER_FRAME):
            continue
        base[BaseTag(key)] = elem
    shared_items: list[Dataset] = []
    for shared in values.items(ds, _SHARED)[:1]:
        shared_items = _first_items_of_groups(shared)
    per_frame = values.items(ds, _PER_FRAME)
    n_frames = values.get_int(ds, "NumberOfFrames") or len(per_frame) or 1
    if not 1 <= n_frames <= MAX_FRAMES:
        raise InputError(
            f"File {values.source_of(ds)}: NumberOfFrames (0028,0008) is {n_frames}; expected "
            f"1–{MAX_FRAMES}. Potential fix: the header is damaged; re-export the file.")
    creator = DataElement(_FRAME_NUMBER_CREATOR_TAG, "LO", FRAME_NUMBER_PRIVATE_CREATOR)
    flats: list[Dataset] = []
    meta = ds.__dict__.get("file_meta")
    for index in range(n_frames):
        tags = dict(base)
        frame_item = per_frame[index] if index < len(per_frame) else None
        if frame_item is not None:
            for private_item in vendors.philips_private_frame_items(frame_item):
                _merge_item(tags, private_item)
        for item in shared_items:
            _merge_item(tags, item)
        if frame_item is not None:
            for item in _first_items_of_groups(frame_item):
                _merge_item(tags, item)
        tags[_FRAME_NUMBER_CREATOR_TAG] = creator
        tags[_FRAME_NUMBER_TAG] = DataElement(_FRAME_NUMBER_TAG, "UL", index + 1)
        flat = Dataset(tags)  # type: ignore[arg-type]
        values.inherit_source(flat, ds)
        if meta is not None:
            flat.file_meta = meta
        flats.append(flat)
    return flats
