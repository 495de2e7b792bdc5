"""Header helpers shared by the vendor modules: text, numbers, private elements.

Private elements are looked up through their private creator (PS3.5 §7.8.1), so a block
that an exporter moved (e.g. to (0019,11xx)) is still found; when an anonymiser removed
every creator of a group, the conventional block (xx = 10) is used.
"""

from __future__ import annotations

import logging
import math
import struct
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import Tag

from bonelesion.dicom.fastheader import NUMBER_STRUCT_FORMATS
from bonelesion.errors import DataQualityWarning

__all__: list[str] = []

logger = logging.getLogger(__name__)


# Description / protocol keywords; "separator" = start, end or a non-alphanumeric character.
_SEP_L = r"(?<![A-Z0-9])"


_SEP_R = r"(?![A-Z0-9])"


#: A gradient vector shorter than this is "no gradient" (b0 or isotropic image).
_ZERO_GRADIENT_NORM = 1e-3


_TAGS: dict[str, int] = {}


def _raw_ascii(ds: Dataset, keyword: str) -> str | None:
    """Text of a single-valued, not yet converted, plain-ASCII element; None otherwise.

    Converting a raw element through pydicom (character sets, validation) costs more than
    the rule that reads it; a plain-ASCII single value needs none of that.
    """
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            return None
        tag = _TAGS[keyword] = int(found)
    elem = getattr(ds, "_dict", {}).get(tag)
    if type(elem) is not RawDataElement:
        return None
    raw = elem.value
    if raw is None:
        return ""
    if not isinstance(raw, bytes) or not raw.isascii() or b"\\" in raw or b"\x1b" in raw:
        return None
    return raw.decode("ascii").strip("\x00 ")


def _text(ds: Dataset, keyword: str) -> str:
    """Return a string attribute upper-cased and stripped ("" when absent or empty)."""
    fast = _raw_ascii(ds, keyword)
    if fast is not None:
        return fast.strip().upper()
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    if not isinstance(value, str) and isinstance(value, Iterable):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().upper()


def _image_type_tokens(ds: Dataset) -> list[str]:
    """ImageType values, upper-case, stripped (FrameType for an unflattened frame)."""
    for keyword in ("ImageType", "FrameType"):
        value = ds.get(keyword)
        if value is None:
            continue
        if isinstance(value, str):
            values = value.split("\\")
        else:
            values = [str(v) for v in value]
        return [v.strip().upper() for v in values if v is not None]
    return []


def _series_uid(ds: Dataset) -> str:
    uid = ds.get("SeriesInstanceUID")
    return str(uid) if uid else "<unknown series>"


def _float_or_none(value: Any) -> float | None:
    """First numeric value of an attribute value (DS/IS/FD/MultiValue), None if unusable."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return None
    if not isinstance(value, str) and isinstance(value, Iterable):
        items = list(value)
        if not items:
            return None
        value = items[0]
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _quality_warning(message: str) -> None:
    """Report a data-quality issue: warn (DataQualityWarning) and log (STYLE.md §5)."""
    logger.warning(message)
    warnings.warn(message, DataQualityWarning, stacklevel=3)


def _element_numbers(elem: DataElement, vr: str) -> list[float]:
    """Numeric values of a (possibly VR UN, undecoded) element read as `vr`.

    Private elements arrive as raw bytes (VR UN) when their creator was removed or the file
    is implicit VR without a private dictionary entry; they are decoded here as the vendor
    writes them (little endian).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = elem.value
    for w in caught:
        logger.debug("reading %s: %s", elem.tag, w.message)
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        if vr in NUMBER_STRUCT_FORMATS:
            code = NUMBER_STRUCT_FORMATS[vr]
            size = struct.calcsize("<" + code)
            count = len(raw) // size
            if count == 0:
                return []
            return [float(v) for v in struct.unpack("<" + code * count, raw[: count * size])]
        text = raw.decode("latin-1", errors="replace").strip("\x00 ")
        values: Iterable[Any] = text.split("\\")
    elif isinstance(value, str):
        values = value.split("\\")
    elif isinstance(value, Iterable):
        values = value
    else:
        values = [value]
    out: list[float] = []
    for v in values:
        try:
            if isinstance(v, bytes):
                v = v.decode("latin-1", errors="replace")
            number = float(v.strip()) if isinstance(v, str) else float(v)
        except (TypeError, ValueError):
            continue
        out.append(number)
    return out


def _private_element(
    ds: Dataset,
    group: int,
    creators: Sequence[str],
    element_offset: int,
    *,
    conventional_block: int = 0x10,
) -> DataElement | None:
    """Find the private element (group, BBxx) in the block reserved by one of `creators`.

    Parameters
    ----------
    ds : Dataset
        Flat header.
    group : int
        Odd group number.
    creators : sequence of str
        Private creator strings that own the element (compared case-insensitively).
    element_offset : int
        Low byte of the element number (``0x0C`` for (0019,100C)).
    conventional_block : int
        Block used when the header holds no private creator at all in `group` (creators
        removed by an anonymiser, as in the dicom2nifti test data).

    Returns
    -------
    DataElement or None
        None when absent, or when the group's creators name another owner.
    """
    wanted = {c.strip().upper() for c in creators}
    block: int | None = None
    any_creator = False
    for low in range(0x10, 0x100):
        tag = Tag(group, low)
        if tag not in ds:
            continue
        any_creator = True
        raw = ds[tag].value
        if isinstance(raw, bytes):
            raw = raw.decode("latin-1", errors="replace")
        if str(raw).strip("\x00 ").upper() in wanted:
            block = low
            break
    if block is None:
        if any_creator:
            return None
        block = conventional_block
    tag = Tag(group, (block << 8) | element_offset)
    return ds[tag] if tag in ds else None


def _private_numbers(
    ds: Dataset, group: int, creators: Sequence[str], element_offset: int, vr: str
) -> list[float]:
    elem = _private_element(ds, group, creators, element_offset)
    return [] if elem is None else _element_numbers(elem, vr)


def _private_creators(ds: Dataset) -> list[str]:
    """Every private creator string of the header (top level only)."""
    creators: list[str] = []
    for key in ds.keys():  # tags only: iterating the data set would decode every element
        tag = Tag(key)
        if tag.is_private and 0x10 <= tag.element <= 0xFF:
            value = ds[tag].value
            if isinstance(value, bytes):
                value = value.decode("latin-1", errors="replace")
            creators.append(str(value).strip("\x00 ").upper())
    return creators


def _unit_or_none(
    vector: Sequence[float] | NDArray[np.float64] | None,
) -> NDArray[np.float64] | None:
    if vector is None:
        return None
    array = np.asarray(vector, dtype=np.float64).reshape(-1)
    if array.size != 3 or not np.all(np.isfinite(array)):
        return None
    norm = float(np.linalg.norm(array))
    if norm < _ZERO_GRADIENT_NORM:
        return None
    return array / norm
