"""Functional-group items of an enhanced object, read straight from their checked bytes.

An 819-frame enhanced MR holds some 60 000 data elements in its Per-Frame Functional Groups
Sequence (5200,9230). Parsing all of them into pydicom data sets (``read_sequence``: one
`pydicom.Dataset` per item, a generator step per element) costs seconds; the reader needs
only the first item of each functional group of each frame, as a tag → element mapping.

`sequence_items` walks the items of a sequence value over its bytes — which the header
reader has already checked with `bonelesion.dicom.structure.check_elements` (lengths
against the bytes left, nesting depth, delimiters) — and returns each item as a plain dict
of `pydicom.dataelem.RawDataElement`: the same raw elements (tag, VR, length, value bytes)
pydicom's parser would make. A nested sequence stays one raw ``SQ`` element holding its
items' bytes (converted by pydicom, after a check, only if someone reads it).

It handles the plain case only — Explicit VR Little Endian items — and raises `NotPlain`
for anything else (an implicit VR item, an unknown VR, ``UN`` of undefined length, a
length that does not fit): the caller then reads the sequence through pydicom, as before.
It never reads outside the bytes it is given, and every loop advances.
"""

from __future__ import annotations

import struct
from typing import Final

from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from bonelesion.dicom.structure import (
    ITEM_DELIMITER_TAG,
    ITEM_TAG,
    LONG_VR_BYTES,
    MAX_SEQUENCE_DEPTH,
    SEQUENCE_DELIMITER_TAG,
    UNDEFINED_LENGTH,
    VR_BYTES,
)
from bonelesion.dicom.values import CANONICAL_TAGS, canonical_tag, empty_raw

__all__ = ["NotPlain", "Item", "sequence_items", "items_with_firsts", "raw_sequence_bytes"]

#: One sequence item: tag → raw element, in file order.
Item = dict[BaseTag, RawDataElement]

_L: Final = struct.Struct("<L")
_HHL: Final = struct.Struct("<HHL")
_EXPLICIT_SHORT: Final = struct.Struct("<HH2sH")
_VRS: Final = {vr: vr.decode("ascii") for vr in VR_BYTES}
_LONG: Final = LONG_VR_BYTES
#: ``RawDataElement(*fields)`` without the named tuple's keyword-argument layer: every call
#: passes all nine fields (is_raw True, is_buffered False: the defaults; pinned by
#: tests/dicom/test_decode.py).
_new_raw: Final = tuple.__new__


class NotPlain(Exception):
    """The bytes are not the plain case: read the sequence with pydicom instead."""


def raw_sequence_bytes(elem: RawDataElement) -> bytes:
    """Return the item bytes of a raw sequence element (no sequence delimiter)."""
    value = elem.value
    if not isinstance(value, bytes | bytearray) or elem.is_implicit_VR \
            or not elem.is_little_endian:
        raise NotPlain
    return bytes(value)


def _skip_sequence(buf: bytes, pos: int, limit: int, depth: int, want_first: bool = False
                   ) -> tuple[int, Item | None]:
    """Walk an undefined-length sequence at ``pos``.

    Returns the position after its sequence delimiter and (``want_first``) the elements
    of its first item (None when it has none).
    """
    if depth > MAX_SEQUENCE_DEPTH:
        raise NotPlain
    first: Item | None = None
    while True:
        if pos + 8 > limit:
            raise NotPlain
        group, element, length = _HHL.unpack_from(buf, pos)
        tag = group << 16 | element
        pos += 8
        if tag == SEQUENCE_DELIMITER_TAG:
            return pos, first
        if tag != ITEM_TAG:
            raise NotPlain
        keep = want_first and first is None
        if length == UNDEFINED_LENGTH:
            item, pos = _read_item(buf, pos, limit, True, depth + 1, keep, None)
        else:
            if pos + length > limit:
                raise NotPlain
            item = _read_item(buf, pos, pos + length, False, depth + 1, True, None)[0] \
                if keep else {}
            pos += length
        if keep:
            first = item


def _first_of_defined(buf: bytes, pos: int, end: int, depth: int) -> Item | None:
    """Elements of the first item of a defined-length sequence value ``buf[pos:end]``."""
    if pos >= end:
        return None
    if pos + 8 > end:
        raise NotPlain
    group, element, length = _HHL.unpack_from(buf, pos)
    if group << 16 | element != ITEM_TAG:
        raise NotPlain
    pos += 8
    if length == UNDEFINED_LENGTH:
        return _read_item(buf, pos, end, True, depth + 1, True, None)[0]
    if pos + length > end:
        raise NotPlain
    return _read_item(buf, pos, pos + length, False, depth + 1, True, None)[0]


def _read_item(buf: bytes, pos: int, limit: int, undefined: bool, depth: int, keep: bool,
               firsts: dict[BaseTag, Item] | None) -> tuple[Item, int]:
    """Elements of one item from ``pos`` to ``limit`` (or its item delimiter).

    Returns the elements (empty unless ``keep``) and the position after the item.
    ``firsts`` (with ``keep``) receives the first item of each of its sequences.
    """
    out: Item = {}
    vrs = _VRS
    tags = CANONICAL_TAGS
    unpack_explicit = _EXPLICIT_SHORT.unpack_from
    new_raw = _new_raw
    while True:
        if pos >= limit and not undefined:
            if pos > limit:
                raise NotPlain
            return out, pos
        if pos + 8 > limit:
            raise NotPlain
        group, element, vr_bytes, length = unpack_explicit(buf, pos)
        tag_int = group << 16 | element
        if tag_int == ITEM_DELIMITER_TAG:
            if not undefined:
                raise NotPlain
            return out, pos + 8
        vr = vrs.get(vr_bytes)
        if vr is None:
            raise NotPlain  # an implicit VR item, or an unknown VR: pydicom's business
        if vr_bytes in _LONG:
            if pos + 12 > limit:
                raise NotPlain
            length = _L.unpack_from(buf, pos + 8)[0]
            start = pos + 12
        else:
            start = pos + 8
        if length == UNDEFINED_LENGTH:
            if vr != "SQ":
                raise NotPlain
            end, first = _skip_sequence(buf, start, limit, depth + 1,
                                        keep and firsts is not None)
            if keep:
                tag = tags.get(tag_int) or canonical_tag(tag_int)
                item_bytes = buf[start:end - 8]
                out[tag] = new_raw(RawDataElement, (tag, vr, len(item_bytes), item_bytes,
                                                     start, False, True, True, False))
                if first is not None and firsts is not None:
                    firsts[tag] = first
            pos = end
            continue
        end = start + length
        if end > limit:
            raise NotPlain
        if keep:
            tag = tags.get(tag_int) or canonical_tag(tag_int)
            value = buf[start:end] if length else empty_raw(vr)
            out[tag] = new_raw(RawDataElement, (tag, vr, length, value, start, False, True,
                                                 True, False))
            if firsts is not None and vr == "SQ":
                first = _first_of_defined(buf, start, end, depth + 1)
                if first is not None:
                    firsts[tag] = first
        pos = end


def sequence_items(buf: bytes, *, first_only: bool = False) -> list[Item]:
    """Return the items of a sequence value (its bytes without a sequence delimiter).

    Parameters
    ----------
    buf : bytes
        The value of a sequence element, Explicit VR Little Endian, already checked by
        `bonelesion.dicom.structure.check_elements`.
    first_only : bool
        Return the first item only (the others are not read).

    Returns
    -------
    list of Item
        Each item as a dict tag → `pydicom.dataelem.RawDataElement` (nested sequences
        stay raw ``SQ`` elements).

    Raises
    ------
    NotPlain
        If the bytes are not plain Explicit VR Little Endian items (read them with pydicom).

    Examples
    --------
    >>> sequence_items(b"")
    []
    """
    return [item for item, _ in _items(buf, first_only, False)]


def items_with_firsts(buf: bytes, *, first_only: bool = False
                      ) -> list[tuple[Item, dict[BaseTag, Item]]]:
    """Return each item of a sequence value with the first item of each of its sequences.

    One walk over the bytes gives a per-frame functional groups item and the first item
    of each functional group in it (what `bonelesion.dicom.multiframe` needs);
    ``first_only`` stops after the first item (the catalogue's first frame).

    Raises
    ------
    NotPlain
        As `sequence_items`.
    """
    return _items(buf, first_only, True)


def _items(buf: bytes, first_only: bool, with_firsts: bool
           ) -> list[tuple[Item, dict[BaseTag, Item]]]:
    items: list[tuple[Item, dict[BaseTag, Item]]] = []
    pos = 0
    limit = len(buf)
    while pos < limit:
        if pos + 8 > limit:
            raise NotPlain
        group, element, length = _HHL.unpack_from(buf, pos)
        if group << 16 | element != ITEM_TAG:
            raise NotPlain
        pos += 8
        firsts: dict[BaseTag, Item] = {}
        if length == UNDEFINED_LENGTH:
            item, pos = _read_item(buf, pos, limit, True, 1, True,
                                   firsts if with_firsts else None)
        else:
            if pos + length > limit:
                raise NotPlain
            item, _ = _read_item(buf, pos, pos + length, False, 1, True,
                                 firsts if with_firsts else None)
            pos += length
        items.append((item, firsts))
        if first_only:
            break
    return items
