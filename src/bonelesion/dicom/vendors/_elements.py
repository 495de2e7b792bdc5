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
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag

from bonelesion.dicom import values
from bonelesion.dicom.fastheader import NUMBER_STRUCT_FORMATS
from bonelesion.errors import DataQualityWarning

__all__: list[str] = []

logger = logging.getLogger(__name__)


# Description / protocol keywords; "separator" = start, end or a non-alphanumeric character.
_SEP_L = r"(?<![A-Z0-9])"


_SEP_R = r"(?![A-Z0-9])"


#: A gradient vector shorter than this is "no gradient" (b0 or isotropic image).
_ZERO_GRADIENT_NORM = 1e-3


def _text(ds: Dataset, keyword: str) -> str:
    """Return a string attribute upper-cased and stripped ("" when absent, empty or invalid).

    Read through `bonelesion.dicom.values` (an invalid value is a `DataQualityWarning`).
    """
    return (values.get_text(ds, keyword, strict=False) or "").upper()


def _image_type_tokens(ds: Dataset) -> list[str]:
    """ImageType values, upper-case, stripped (FrameType for an unflattened frame)."""
    for keyword in ("ImageType", "FrameType"):
        if values.has(ds, keyword):
            return list(values.get_cs(ds, keyword, strict=False))
    return []


def _series_uid(ds: Dataset) -> str:
    uid = values.get_text(ds, "SeriesInstanceUID", strict=False)
    return uid if uid else "<unknown series>"


def _float_or_none(value: Any) -> float | None:
    """First numeric value of an already typed value (CSA item, list), None if unusable."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return None
    if not isinstance(value, str) and isinstance(value, Iterable):
        items = list(value)
        if not items:
            return None
        value = items[0]
    if isinstance(value, str):
        parsed = values.parse_number_tokens(value)
        value = parsed[0] if parsed else None
        if value is None:
            return None
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def _finite_int(value: float) -> int | None:
    """``value`` as an int when it is a finite whole number, else None."""
    if math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def _quality_warning(message: str) -> None:
    """Report a data-quality issue: warn (DataQualityWarning) and log (STYLE.md §5)."""
    logger.warning(message)
    warnings.warn(message, DataQualityWarning, stacklevel=3)


def _element_numbers(elem: DataElement | RawDataElement, vr: str) -> list[float]:
    """Numeric values of a private element read as `vr`, without pydicom's conversion.

    Private elements arrive as raw bytes (VR UN when their creator was removed or the file
    is implicit VR without a private dictionary entry): binary VRs are decoded as the
    vendor writes them (little endian), text is read token by token
    (`bonelesion.dicom.values.parse_number_tokens`). Never raises.
    """
    value = elem.value
    own_vr = elem.VR if elem.VR not in (None, "UN", "OB", "OW") else vr
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        fmt = NUMBER_STRUCT_FORMATS.get(own_vr)
        if fmt is not None:
            size = struct.calcsize("<" + fmt)
            count = len(raw) // size
            if count == 0:
                return []
            little = getattr(elem, "is_little_endian", True) if type(elem) is RawDataElement \
                and own_vr == elem.VR else True
            order = "<" if little else ">"
            return [float(v) for v in struct.unpack(order + fmt * count, raw[: count * size])]
        return values.parse_number_tokens(raw)
    if isinstance(value, str):
        return values.parse_number_tokens(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, Iterable):
        out: list[float] = []
        for v in value:
            if isinstance(v, int | float) and not isinstance(v, bool):
                out.append(float(v))
            elif isinstance(v, str | bytes):
                out.extend(values.parse_number_tokens(v))
        return out
    return []


def _creator_text(elem: DataElement | RawDataElement) -> str:
    raw = elem.value
    if isinstance(raw, bytes | bytearray):
        return bytes(raw).decode("latin-1").strip("\x00 ").upper()
    return str(raw).strip("\x00 ").upper()


def _private_element(
    ds: Dataset,
    group: int,
    creators: Sequence[str],
    element_offset: int,
    *,
    conventional_block: int = 0x10,
) -> DataElement | RawDataElement | None:
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
    DataElement, RawDataElement or None
        As stored (raw elements are not converted); None when absent, or when the group's
        creators name another owner.
    """
    blocks = _creator_blocks(ds, group)
    matches = [blocks[c] for c in {c.strip().upper() for c in creators} if c in blocks]
    block = min(matches) if matches else None
    if block is None:
        if blocks:
            return None
        block = conventional_block
    return ds._dict.get(BaseTag(group << 16 | (block << 8) | element_offset))


def _creator_blocks(ds: Dataset, group: int) -> dict[str, int]:
    """{private creator (upper case): its lowest block} of one group, cached per header."""
    cache = ds.__dict__.setdefault("_bonelesion_creators", {})
    found: dict[str, int] | None = cache.get(group)
    if found is None:
        found = {}
        for key, elem in ds._dict.items():  # raw: nothing is converted
            if key >> 16 == group and 0x10 <= key & 0xFFFF <= 0xFF:
                text = _creator_text(elem)
                found[text] = min(found.get(text, 0x100), key & 0xFF)
        cache[group] = found
    return found


def _private_numbers(
    ds: Dataset, group: int, creators: Sequence[str], element_offset: int, vr: str
) -> list[float]:
    elem = _private_element(ds, group, creators, element_offset)
    return [] if elem is None else _element_numbers(elem, vr)


def _private_creators(ds: Dataset) -> list[str]:
    """Every private creator string of the header (top level only)."""
    creators: list[str] = []
    for key, elem in ds._dict.items():  # raw: nothing is converted
        # a private creator: odd group, element 0x0010-0x00FF (integer tests: no Tag objects)
        if key & 0x10000 and 0x10 <= key & 0xFFFF <= 0xFF:
            creators.append(_creator_text(elem))
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
