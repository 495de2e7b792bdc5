"""Catalogue header values: attribute values decoded straight from raw elements.

pydicom's generic value conversion (charset handling, validation) costs most of the read
time of a small file; ASCII-only strings and binary numbers need none of it.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from bonelesion.dicom import values
from bonelesion.dicom.fastheader import NUMBER_STRUCT_FORMATS
from bonelesion.errors import InputError

__all__: list[str] = []

logger = logging.getLogger(__name__)


_ASCII_VRS = frozenset({"UI", "CS", "IS", "DS", "AS", "DA", "TM", "DT", "AE"})


_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC"})


#: Standard (not native) sizes: "L" is 4 bytes in a file, 8 in a C long.
_NUMBER_SIZES = {fmt: struct.calcsize("<" + fmt) for fmt in NUMBER_STRUCT_FORMATS.values()}


_TAG_VR_CACHE: dict[str, tuple[BaseTag, str]] = {}


def _tag_vr(keyword: str) -> tuple[BaseTag, str]:
    found = _TAG_VR_CACHE.get(keyword)
    if found is None:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(keyword)
        found = (values.canonical_tag(tag), pydicom.datadict.dictionary_VR(tag))
        _TAG_VR_CACHE[keyword] = found
    return found


#: `_fast_value` results of short values, shared by every header of this process (the
#: files of a series repeat most values): {(VR, little endian, bytes): (simple, value)}.
_DECODED: dict[tuple[str, bool, bytes], tuple[bool, Any]] = {}
#: Entries of `_DECODED` (emptied when full) and the longest value kept in it.
_DECODED_MAX_ENTRIES = 4096
_DECODED_MAX_BYTES = 64


def _fast_value(raw: RawDataElement, vr: str) -> tuple[bool, Any]:
    """Decode the value of a raw element of a simple VR; (False, None) when not simple.

    pydicom's generic conversion (charset handling, validation) costs most of the read
    time of a small file; ASCII-only strings and binary numbers need none of it. Short
    values are decoded once per process (`_DECODED`; a list value is returned as a copy).
    """
    data = raw.value
    if data is None:
        return False, None
    if type(data) is not bytes or len(data) > _DECODED_MAX_BYTES:
        return _decoded(data, vr, raw.is_little_endian)
    memo = (vr, bool(raw.is_little_endian), data)
    found = _DECODED.get(memo)
    if found is None:
        found = _decoded(data, vr, raw.is_little_endian)
        if len(_DECODED) >= _DECODED_MAX_ENTRIES:
            _DECODED.clear()
        _DECODED[memo] = found
    if type(found[1]) is list:
        return True, list(found[1])
    return found


def _decoded(data: Any, vr: str, little: bool) -> tuple[bool, Any]:
    """`_fast_value` of the bytes ``data`` of VR ``vr``: a pure function of its inputs."""
    if vr in _ASCII_VRS or (vr in _TEXT_VRS and data.isascii()):
        text = data.decode("ascii", "replace").rstrip("\x00 ")
        if vr in _ASCII_VRS and "\\" in text:
            return True, [v.strip() for v in text.split("\\")]
        return True, text.strip()
    fmt = NUMBER_STRUCT_FORMATS.get(vr)
    if fmt is not None:
        size = _NUMBER_SIZES[fmt]
        count = len(data) // size
        if count == 0:
            return True, None
        values = struct.unpack(("<" if little else ">") + fmt * count,
                               data[:count * size])
        return True, values[0] if count == 1 else list(values)
    return False, None


def _raw(ds: Dataset | None, keyword: str) -> Any:
    """Value of an attribute, None when absent, empty or unreadable."""
    if ds is None:
        return None
    tag, vr = _tag_vr(keyword)
    elem = ds._dict.get(tag)  # no conversion of the other elements
    if elem is None:
        return None
    return _element_value(ds, tag, vr, elem)


def _element_value(ds: Dataset, tag: BaseTag, vr: str, elem: Any) -> Any:
    """`_raw` of the element ``elem`` (tag ``tag``, dictionary VR ``vr``) of ``ds``."""
    if isinstance(elem, RawDataElement):
        simple, value = _fast_value(elem, elem.VR or vr)
        if simple:
            return None if value == "" else value
        try:
            value = values.converted_value(ds, tag)
        except InputError:  # a malformed value must not fail the file
            return None
    else:
        value = elem.value  # already converted (e.g. by stack_key): no lookup again
    if value is None or value == "":
        return None
    return value


def _str(ds: Dataset | None, keyword: str) -> str | None:
    value = _raw(ds, keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(ds: Dataset | None, keyword: str) -> int | None:
    """First integer value (`bonelesion.dicom.values.get_int`); None when absent or invalid."""
    return values.get_int(ds, keyword, strict=False)


def _float(ds: Dataset | None, keyword: str) -> float | None:
    """First number (`bonelesion.dicom.values.get_float`); None when absent or invalid."""
    return values.get_float(ds, keyword, strict=False)


def _floats(ds: Dataset | None, keyword: str) -> tuple[float, ...] | None:
    """Every number of an element; None when absent or invalid."""
    return values.get_floats(ds, keyword, strict=False)


def _joined(ds: Dataset | None, keyword: str) -> str:
    value = _raw(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """First item of a sequence; None when absent, empty or not a sequence (warned)."""
    found = values.items(ds, keyword, strict=False)
    return found[0] if found else None
