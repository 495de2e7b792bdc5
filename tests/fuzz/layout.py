"""Where the elements of a (valid) seed file are: the map structure-aware mutations need.

Independent of bonelesion's own readers on purpose (a fuzzer must not share the bugs of
what it tests). Explicit and implicit VR, little and big endian; sequences and items are
descended; a deflated data set is mapped up to its File Meta Information only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

__all__ = ["Element", "Layout", "layout", "VR_CODES", "LONG_VRS"]

VR_CODES = frozenset(v.value for v in VR if len(v.value) == 2)
LONG_VRS = frozenset(v.value for v in EXPLICIT_VR_LENGTH_32)
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
DEFLATED = "1.2.840.10008.1.2.1.99"
MAX_DEPTH = 64


@dataclass(frozen=True)
class Element:
    """One data element (or item) of a file, with the byte offsets a mutation needs."""

    tag: int
    vr: str
    offset: int
    vr_offset: int | None
    length_offset: int
    length_size: int
    value_offset: int
    length: int
    end: int
    depth: int
    little: bool
    #: (length offset, length size, little endian) of every enclosing defined-length
    #: sequence or item, innermost last: what must change when this element grows
    containers: tuple[tuple[int, int, bool], ...]
    in_meta: bool = False

    @property
    def keyword_tag(self) -> tuple[int, int]:
        """(group, element)."""
        return self.tag >> 16, self.tag & 0xFFFF


@dataclass(frozen=True)
class Layout:
    """Elements of a file in file order; the data set's encoding."""

    elements: tuple[Element, ...]
    implicit: bool
    little: bool
    deflated: bool
    meta_end: int
    part10: bool


class _Stop(Exception):
    pass


def _vr_of(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def layout(data: bytes) -> Layout | None:
    """Map the elements of ``data``; None when it does not start like DICOM."""
    part10 = len(data) >= 132 and data[128:132] == b"DICM"
    out: list[Element] = []
    pos = 132 if part10 else 0
    implicit, little, deflated = False, True, False
    meta_end = pos
    if part10:
        ts = ""
        while pos + 8 <= len(data):
            group = int.from_bytes(data[pos:pos + 2], "little")
            if group != 0x0002:
                break
            element = int.from_bytes(data[pos + 2:pos + 4], "little")
            vr = data[pos + 4:pos + 6].decode("latin-1")
            if vr in LONG_VRS:
                length = int.from_bytes(data[pos + 8:pos + 12], "little")
                lo, ls, vo = pos + 8, 4, pos + 12
            else:
                length = int.from_bytes(data[pos + 6:pos + 8], "little")
                lo, ls, vo = pos + 6, 2, pos + 8
            if length == UNDEFINED or vo + length > len(data):
                return None
            tag = group << 16 | element
            out.append(Element(tag, vr, pos, pos + 4, lo, ls, vo, length, vo + length, 0,
                               True, (), in_meta=True))
            if tag == 0x00020010:
                ts = data[vo:vo + length].rstrip(b"\x00 ").decode("latin-1")
            pos = vo + length
        meta_end = pos
        implicit = ts == "1.2.840.10008.1.2"
        little = ts != "1.2.840.10008.1.2.2"
        deflated = ts == DEFLATED
    else:
        implicit = data[4:6].decode("latin-1") not in VR_CODES if len(data) >= 6 else True
    if deflated:
        return Layout(tuple(out), implicit, little, True, meta_end, part10)
    try:
        _dataset(data, pos, len(data), implicit, little, 0, (), out, items=False)
    except (_Stop, struct.error, IndexError, UnicodeDecodeError):
        pass
    return Layout(tuple(out), implicit, little, False, meta_end, part10)


def _u16(data: bytes, pos: int, little: bool) -> int:
    return int.from_bytes(data[pos:pos + 2], "little" if little else "big")


def _u32(data: bytes, pos: int, little: bool) -> int:
    return int.from_bytes(data[pos:pos + 4], "little" if little else "big")


def _dataset(data: bytes, pos: int, end: int, implicit: bool, little: bool, depth: int,
             containers: tuple[tuple[int, int, bool], ...], out: list[Element],
             *, items: bool) -> int:
    """Walk elements from ``pos`` to ``end`` (or to an item delimiter); return the end."""
    if depth > MAX_DEPTH:
        raise _Stop
    while pos + 8 <= end:
        tag = _u16(data, pos, little) << 16 | _u16(data, pos + 2, little)
        if tag == ITEM_END:
            return pos + 8
        if tag == ITEM or tag == SEQ_END:
            raise _Stop  # malformed seed: stop mapping
        if implicit:
            vr = _vr_of(tag)
            length = _u32(data, pos + 4, little)
            vro, lo, ls, vo = None, pos + 4, 4, pos + 8
            if length == UNDEFINED and vr not in ("SQ", "OB", "OW"):
                vr = "SQ"
        else:
            vr = data[pos + 4:pos + 6].decode("latin-1")
            if vr not in VR_CODES:
                raise _Stop
            vro = pos + 4
            if vr in LONG_VRS:
                length = _u32(data, pos + 8, little)
                lo, ls, vo = pos + 8, 4, pos + 12
            else:
                length = _u16(data, pos + 6, little)
                lo, ls, vo = pos + 6, 2, pos + 8
        index = len(out)
        out.append(Element(tag, vr, pos, vro, lo, ls, vo, length, vo, depth, little, containers))
        if tag == 0x7FE00010 and length == UNDEFINED:
            stop = _fragments(data, vo, little)
        elif vr == "SQ" or (vr == "UN" and length == UNDEFINED):
            inner = containers if length == UNDEFINED else (*containers, (lo, ls, little))
            stop = _sequence(data, vo, length, implicit or vr == "UN", little, depth + 1, inner,
                             out)
        else:
            if length == UNDEFINED or vo + length > len(data):
                raise _Stop
            stop = vo + length
        old = out[index]
        out[index] = Element(old.tag, old.vr, old.offset, old.vr_offset, old.length_offset,
                             old.length_size, old.value_offset, old.length, stop, old.depth,
                             old.little, old.containers)
        pos = stop
    return pos


def _sequence(data: bytes, pos: int, length: int, implicit: bool, little: bool, depth: int,
              containers: tuple[tuple[int, int, bool], ...], out: list[Element]) -> int:
    end = len(data) if length == UNDEFINED else pos + length
    while pos + 8 <= end:
        tag = _u16(data, pos, little) << 16 | _u16(data, pos + 2, little)
        item_length = _u32(data, pos + 4, little)
        if tag == SEQ_END:
            return pos + 8
        if tag != ITEM:
            raise _Stop
        out.append(Element(ITEM, "", pos, None, pos + 4, 4, pos + 8, item_length, pos + 8,
                           depth, little, containers))
        if item_length == UNDEFINED:
            pos = _dataset(data, pos + 8, len(data), implicit, little, depth, containers, out,
                           items=True)
        else:
            inner = (*containers, (pos + 4, 4, little))
            _dataset(data, pos + 8, pos + 8 + item_length, implicit, little, depth, inner, out,
                     items=True)
            pos = pos + 8 + item_length
    return end if length != UNDEFINED else pos


def _fragments(data: bytes, pos: int, little: bool) -> int:
    while pos + 8 <= len(data):
        tag = _u16(data, pos, little) << 16 | _u16(data, pos + 2, little)
        n = _u32(data, pos + 4, little)
        if tag == SEQ_END:
            return pos + 8
        if tag != ITEM:
            raise _Stop
        pos += 8 + n
    return len(data)
