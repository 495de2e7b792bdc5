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

The functional groups of a header read by the fast reader are raw Explicit VR Little
Endian sequences: `bonelesion.dicom.framegroups` walks their checked bytes once and gives
the first item of each group of each frame, without a pydicom data set per item (the
819-frame XA30 DWI: ~60 000 elements). Any other encoding, or anything unusual in the
items, goes through pydicom (``flatten_frames(ds, fast=False)`` forces that path); both
give the same flat headers (tests/dicom/test_framegroups.py).

The stack signature moved to `bonelesion.dicom.stack_key`; its names are re-exported here
for existing callers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag

from bonelesion.dicom import values, vendors
from bonelesion.dicom.fastheader import new_dataset
from bonelesion.dicom.framegroups import (
    Item,
    NotPlain,
    items_with_firsts,
    raw_sequence_bytes,
    sequence_items,
)

# Re-exported: the stack signature now lives in its own module.
from bonelesion.dicom.stack_key import (  # noqa: E402
    StackKey,
    series_context_role,
    series_stack_keys,
    stack_key,
)
from bonelesion.dicom.structure import PIXEL_TAGS
from bonelesion.dicom.vendors.philips import PHILIPS_PRIVATE_FRAME_TAG
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


_PHILIPS_PRIVATE_PER_FRAME = Tag(PHILIPS_PRIVATE_FRAME_TAG)


#: Tags `_merge_item` treats apart (renamed, or with their inner item copied).
_SPECIAL_TAGS = frozenset({int(_FRAME_TYPE), int(_EFFECTIVE_ECHO_TIME),
                           int(_DIFFUSION_GRADIENT_DIRECTION_SEQ)})


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


def _merge_item(target: dict[BaseTag, DataElement | RawDataElement],
                item: Mapping[BaseTag, DataElement | RawDataElement],
                first_inner: Callable[[BaseTag], Mapping[BaseTag, DataElement | RawDataElement]
                                      | None]) -> None:
    """Copy the elements of one functional-group macro item into ``target`` (a tag dict).

    Elements are copied as they are (raw ones stay raw: nothing is converted here).
    Private elements are copied only when their private creator does not clash with the
    creator already at that slot (a clash would relabel the top-level private block).
    ``first_inner(tag)`` gives the elements of the first item of the item's sequence
    ``tag`` (the Diffusion Gradient Direction item, copied to the top level too).
    """
    blocked: set[tuple[int, int]] = set()
    for tag, elem in item.items():
        tag_int = int(tag)
        if tag_int & 0x10000:  # an odd group: private (BaseTag's properties, inlined)
            group, element = tag_int >> 16, tag_int & 0xFFFF
            if 0x0010 <= element < 0x0100:  # a private creator
                existing = target.get(tag)
                if existing is not None and _creator_text(existing) != _creator_text(elem):
                    blocked.add((group, element))
                    continue
            elif (group, element >> 8) in blocked:
                continue
        elif tag_int in _SPECIAL_TAGS:
            if tag_int == _FRAME_TYPE:
                target[_IMAGE_TYPE] = _renamed(elem, _FRAME_TYPE, _IMAGE_TYPE)
                continue
            if tag_int == _EFFECTIVE_ECHO_TIME:
                target[_ECHO_TIME] = _renamed(elem, _EFFECTIVE_ECHO_TIME, _ECHO_TIME)
            if tag_int == _DIFFUSION_GRADIENT_DIRECTION_SEQ:
                target[tag] = elem
                inner = first_inner(tag)
                if inner is not None:
                    target.update(inner)
                continue
        target[tag] = elem


def _first_items_of_groups(item: Dataset) -> list[Dataset]:
    """First item of every (standard) functional group sequence inside one item."""
    out: list[Dataset] = []
    for key in list(item._dict):
        tag = BaseTag(key)
        if tag.is_private or values.vr_of(item, tag) != "SQ":
            continue
        out.extend(values.items(item, tag)[:1])
    return out


#: Elements of one item, and how to get the first item of one of its sequences.
_GroupItem = tuple[Mapping[BaseTag, DataElement | RawDataElement],
                   Callable[[BaseTag], Mapping[BaseTag, DataElement | RawDataElement] | None]]
#: Per frame: (Philips private items, functional-group items), or None (no per-frame item).
_FrameItems = tuple[list[_GroupItem], list[_GroupItem]] | None


def _dataset_group_item(item: Dataset) -> _GroupItem:
    def first_inner(tag: BaseTag) -> Mapping[BaseTag, DataElement | RawDataElement] | None:
        found = values.items(item, tag)[:1]
        return found[0]._dict if found else None
    return item._dict, first_inner


def _generic_group_items(ds: Dataset) -> tuple[list[_GroupItem], list[_FrameItems]]:
    """Shared and per-frame group items through pydicom (every element of every item)."""
    shared_items: list[_GroupItem] = []
    for shared in values.items(ds, _SHARED)[:1]:
        shared_items = [_dataset_group_item(i) for i in _first_items_of_groups(shared)]
    frames: list[_FrameItems] = []
    for frame_item in values.items(ds, _PER_FRAME):
        frames.append(([_dataset_group_item(i)
                        for i in vendors.philips_private_frame_items(frame_item)],
                       [_dataset_group_item(i) for i in _first_items_of_groups(frame_item)]))
    return shared_items, frames


def _no_inner(tag: BaseTag) -> None:
    """``first_inner`` of an item without a Diffusion Gradient Direction Sequence."""
    return None


def _raw_group_item(item: Item, source: Dataset) -> _GroupItem:
    """Return a raw item ready for `_merge_item`, its gradient sequence parsed once.

    Every frame's diffusion direction is read from the Diffusion Gradient Direction
    Sequence: it is parsed here, from the walked items, into data sets (as the pydicom
    path holds it), not again by pydicom for every frame.
    """
    elem = item.get(_DIFFUSION_GRADIENT_DIRECTION_SEQ)
    if elem is None:
        return item, _no_inner
    if elem.VR != "SQ":
        raise NotPlain
    inner = sequence_items(raw_sequence_bytes(elem))
    datasets = []
    for found in inner:
        ds = Dataset(found)  # type: ignore[arg-type]
        values.inherit_source(ds, source)
        datasets.append(ds)
    out: dict[BaseTag, DataElement | RawDataElement] = dict(item)
    out[_DIFFUSION_GRADIENT_DIRECTION_SEQ] = DataElement(
        _DIFFUSION_GRADIENT_DIRECTION_SEQ, "SQ", DicomSequence(datasets))
    first = inner[0] if inner else None
    return out, lambda tag: first


def _raw_group_items(item: Item, firsts: dict[BaseTag, Item], source: Dataset
                     ) -> list[_GroupItem]:
    """First item of every standard functional group sequence of one raw item.

    ``firsts`` holds the first item of each sequence of ``item`` (`items_with_firsts`).
    """
    out: list[_GroupItem] = []
    for tag, elem in item.items():
        if tag & 0x10000 or elem.VR != "SQ":  # private, or not a sequence
            continue
        first = firsts.get(tag)
        if first is not None:
            out.append(_raw_group_item(first, source))
    return out


def _philips_raw_items(item: Item, firsts: dict[BaseTag, Item], source: Dataset
                       ) -> list[_GroupItem]:
    """`bonelesion.dicom.vendors.philips_private_frame_items` of one raw per-frame item."""
    elem = item.get(_PHILIPS_PRIVATE_PER_FRAME)
    if elem is None:
        return []
    if elem.VR != "SQ":
        if elem.VR in ("UN", "OB", "OW"):
            return []  # what the pydicom path makes of it (an opaque value, ignored)
        raise NotPlain  # the pydicom path warns about it
    first = firsts.get(_PHILIPS_PRIVATE_PER_FRAME)
    return [] if first is None else [_raw_group_item(first, source)]


def _fast_group_items(ds: Dataset) -> tuple[list[_GroupItem], list[_FrameItems]] | None:
    """Shared and per-frame group items read from their bytes (`framegroups`), or None.

    None when the sequences are not raw Explicit VR Little Endian ones: the caller then
    reads them through pydicom. Only the first item of each functional group of each
    frame becomes a mapping; every element keeps its raw bytes, exactly as pydicom would
    have read them.
    """
    per_frame_elem = values.raw_sequence(ds, _PER_FRAME)
    if per_frame_elem is None:
        return None
    shared_elem = None
    if _SHARED in ds._dict:
        shared_elem = values.raw_sequence(ds, _SHARED)
        if shared_elem is None:
            return None
    try:
        shared_items: list[_GroupItem] = []
        if shared_elem is not None:
            for shared, firsts in items_with_firsts(raw_sequence_bytes(shared_elem))[:1]:
                shared_items = _raw_group_items(shared, firsts, ds)
        frames: list[_FrameItems] = [
            (_philips_raw_items(item, firsts, ds), _raw_group_items(item, firsts, ds))
            for item, firsts in items_with_firsts(raw_sequence_bytes(per_frame_elem))]
    except NotPlain:
        return None
    return shared_items, frames


def flatten_frames(ds: Dataset, *, fast: bool = True) -> list[Dataset]:
    """Return one flat header per frame of ``ds``; a classic single-frame object → ``[ds]``.

    Parameters
    ----------
    ds : pydicom.Dataset
        A data set read with or without its pixel data.
    fast : bool
        Read the functional groups straight from their bytes (`bonelesion.dicom.framegroups`)
        when they are raw Explicit VR Little Endian sequences; False (or any other
        encoding) parses them with pydicom. Both give the same flat headers.

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
        base[key] = elem  # the header's own tag objects (shared, see values.canonical_tag)
    found = _fast_group_items(ds) if fast else None
    shared_items, per_frame = found if found is not None else _generic_group_items(ds)
    n_frames = values.get_int(ds, "NumberOfFrames") or len(per_frame) or 1
    if not 1 <= n_frames <= MAX_FRAMES:
        raise InputError(
            f"File {values.source_of(ds)}: NumberOfFrames (0028,0008) is {n_frames}; expected "
            f"1–{MAX_FRAMES}. Potential fix: the header is damaged; re-export the file.")
    creator = DataElement(_FRAME_NUMBER_CREATOR_TAG, "LO", FRAME_NUMBER_PRIVATE_CREATOR)
    flats: list[Dataset] = []
    meta = ds.__dict__.get("file_meta")
    with_shared: dict[BaseTag, DataElement | RawDataElement] | None = None
    for index in range(n_frames):
        frame_items = per_frame[index] if index < len(per_frame) else None
        if frame_items is None or not frame_items[0]:
            # no Philips private item: top level < shared is the same for every frame,
            # merged once (the same merges, in the same order, as below)
            if with_shared is None:
                with_shared = dict(base)
                for item, first_inner in shared_items:
                    _merge_item(with_shared, item, first_inner)
            tags = dict(with_shared)
        else:
            tags = dict(base)
            for item, first_inner in frame_items[0]:
                _merge_item(tags, item, first_inner)
            for item, first_inner in shared_items:
                _merge_item(tags, item, first_inner)
        if frame_items is not None:
            for item, first_inner in frame_items[1]:
                _merge_item(tags, item, first_inner)
        tags[_FRAME_NUMBER_CREATOR_TAG] = creator
        tags[_FRAME_NUMBER_TAG] = DataElement(_FRAME_NUMBER_TAG, "UL", index + 1)
        flat = new_dataset(tags)  # Dataset(tags), without its constructor's setattr calls
        values.inherit_source(flat, ds)
        if meta is not None:
            flat.file_meta = meta
        flats.append(flat)
    values.share_value_cache(flats)
    return flats
