r"""The value-reading layer: every value the reader takes from a file passes through here.

A DICOM file is hostile input. pydicom converts element values lazily, on first access,
and its conversions raise many exception types on damaged values (``BytesLengthException``,
``NotImplementedError`` for an unknown VR, ``UnicodeError`` …) or hand back the raw text
of an invalid number (IS ``"-rf"``, DS ``"nan\nan"``), which then breaks a bare ``int()``
far from the file. This module is the one place where values are converted:

* **typed parsers** (`parse_is`, `parse_ds`, `parse_binary`, `parse_ui`, `parse_cs`,
  `parse_text`, and the vendor text parsers `parse_ascconv`, `ascconv_number`,
  `parse_number_tokens`) are pure functions of the bytes; anything that is not a valid
  value raises `InputError` naming the file, the element and the value (property-tested,
  ``tests/dicom/test_values.py``);
* **accessors** (`get_int`, `get_ints`, `get_float`, `get_floats`, `get_text`, `get_uid`,
  `get_cs`, `items`, `element_bytes`) read an attribute of a header by keyword or tag, from
  the raw element bytes where possible (no pydicom conversion at all), through pydicom's
  own conversion inside a guard otherwise; each result is cached per header and element,
  so a value is converted once, not per access. ``strict=False`` turns an invalid value
  into a `DataQualityWarning` (naming file, element and value) and None: for descriptive
  values (SeriesNumber, EchoTime …) that must not cost an image;
* **the file of a header** is bound to it (`bind_source`, done by the header reader, the
  frame flattener and `items` for sequence items), so that every message names the file.

Geometry plausibility (`plausible_spacing_mm`, `plausible_position_mm`) bounds what the
reader accepts before a `Volume` is built.
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
from typing import Any, Final

from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.errors import BytesLengthException
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from bonelesion.dicom.structure import check_elements
from bonelesion.errors import DataQualityWarning, InputError

__all__ = [
    "bind_source",
    "inherit_source",
    "mark_checked",
    "share_value_cache",
    "canonical_tag",
    "empty_raw",
    "raw_sequence",
    "source_of",
    "printable",
    "element_label",
    "parse_is",
    "parse_ds",
    "parse_binary",
    "parse_ui",
    "parse_cs",
    "parse_text",
    "parse_ascconv",
    "ascconv_number",
    "parse_number_tokens",
    "has",
    "is_empty",
    "vr_of",
    "get_int",
    "get_ints",
    "get_float",
    "get_floats",
    "get_text",
    "get_uid",
    "get_cs",
    "items",
    "element_bytes",
    "converted_value",
    "plausible_spacing_mm",
    "plausible_position_mm",
    "MIN_SPACING_MM",
    "MAX_SPACING_MM",
    "MAX_POSITION_MM",
    "MAX_ASCCONV_BYTES",
    "BINARY_FORMATS",
]

#: Attribute of a `Dataset` holding the path of the file it was read from.
_SOURCE_ATTR: Final = "_bonelesion_source"
#: Attribute of a `Dataset` caching typed values: {(tag, kind): (element, value)}.
_CACHE_ATTR: Final = "_bonelesion_values"
#: Attribute of a `Dataset`: {tag: raw element} of sequences whose items were checked when
#: the header was read (not checked again before pydicom parses them).
_CHECKED_ATTR: Final = "_bonelesion_checked"
#: Key marking a value cache shared by the flat headers of one file (`share_value_cache`).
_SHARED: Final = ("shared by frames",)

#: struct format of each binary numeric VR (PS3.5 §6.2).
BINARY_FORMATS: Final = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d",
                         "UV": "Q", "SV": "q", "OF": "f", "OD": "d", "OL": "L", "OV": "Q"}
_INTEGER_VRS: Final = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "OL", "OV"})
_STRING_VRS: Final = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN",
                                "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_OPAQUE_VRS: Final = frozenset({"OB", "OW", "UN", "OB or OW", "US or OW", "US or SS",
                                "US or SS or OW"})

#: Smallest and largest slice or pixel spacing accepted (a 1 µm microscope pixel to a
#: 1 m slab); DICOM DS allows 1e-320, nibabel's affine and every measurement do not.
MIN_SPACING_MM: Final = 1e-3
MAX_SPACING_MM: Final = 1e3
#: Largest |coordinate| of a position (10 m from the scanner's origin).
MAX_POSITION_MM: Final = 1e4
#: Longest Siemens ASCCONV protocol text parsed (real ones are ≈ 100 KiB).
MAX_ASCCONV_BYTES: Final = 4 * 1024**2
#: Integers are refused beyond ±2⁶³ (UV/SV values, integral DS).
_INT64_MAX: Final = 2**63
#: Largest IS magnitude (PS3.5 §6.2: −2³¹ … 2³¹−1).
_IS_MAX: Final = 2**31

_IS_VALUE: Final = re.compile(r"[+-]?[0-9]+(\.0*)?")
_DS_VALUE: Final = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_UID_VALUE: Final = re.compile(r"[0-9A-Za-z._-]+")
_ASCCONV: Final = re.compile(rb"### ASCCONV BEGIN[^\n]*\n(.*?)### ASCCONV END ###", re.S)
_ASCCONV_NUMBER: Final = re.compile(
    r"[+-]?(0[xX][0-9a-fA-F]+|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)")
_MAX_SHOWN: Final = 60

_MISSING: Final = object()
_KEYS: dict[str | int, tuple[BaseTag, str]] = {}

#: Valid values parsed from raw bytes, shared by every header of this process: the typed
#: parsers are pure functions of the bytes, VR and byte order, and the files of a series
#: repeat most values (UIDs, orientation, spacing, matrix, ImageType). Only valid results
#: of short values are kept: an invalid value is parsed again, and named with its own file,
#: every time. {(kind, VR, little endian, bytes): value}
_PARSED: dict[tuple[str, str, bool, bytes], Any] = {}
#: Entries of `_PARSED` (emptied when full) and the longest value kept in it.
_PARSED_MAX_ENTRIES: Final = 4096
_PARSED_MAX_BYTES: Final = 64


# ---------------------------------------------------------------------- the file of a header
def bind_source(ds: Dataset, path: str | os.PathLike[str] | None) -> None:
    """Record the file ``ds`` was read from (messages name it).

    Parameters
    ----------
    ds : Dataset
        A header, a flat frame header or a sequence item.
    path : path or None
        The file.
    """
    if path is not None:
        ds.__dict__[_SOURCE_ATTR] = os.fspath(path)


def inherit_source(child: Dataset, parent: Dataset) -> None:
    """Bind ``child`` (a flat header, an item) to the file of ``parent`` (and its checks)."""
    found = parent.__dict__.get(_SOURCE_ATTR) or parent.__dict__.get("filename")
    if found is not None:
        child.__dict__[_SOURCE_ATTR] = found
    checked = parent.__dict__.get(_CHECKED_ATTR)
    if checked:
        child.__dict__[_CHECKED_ATTR] = checked


def share_value_cache(datasets: list[Dataset]) -> None:
    """Give ``datasets`` one cache of typed values (the flat headers of one file's frames).

    Frames share most of their elements (the same objects): a value parsed for one frame
    is then not parsed again for the next. Every cache entry holds the element it was
    parsed from and is used only for that very element, so frames whose elements differ
    still get their own values.
    """
    cache: dict[Any, Any] = {_SHARED: True}
    for ds in datasets:
        ds.__dict__[_CACHE_ATTR] = cache


def mark_checked(ds: Dataset, elements: dict[BaseTag, Any]) -> None:
    """Record raw sequence elements whose items `check_elements` has already checked."""
    ds.__dict__.setdefault(_CHECKED_ATTR, {}).update(elements)


def source_of(ds: Dataset | None) -> str:
    """Printable name of the file a header was read from ("an unnamed header" if unknown)."""
    if ds is None:
        return "an unnamed header"
    found = ds.__dict__.get(_SOURCE_ATTR) or ds.__dict__.get("filename")
    if isinstance(found, str | bytes | os.PathLike):
        return printable(found)
    return "an unnamed header"


def printable(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    r"""Return a path as text any output accepts: bytes that are not UTF-8 as ``\xNN``.

    Examples
    --------
    >>> printable(b"/export/caf\xe9.dcm")
    '/export/caf\\xe9.dcm'
    """
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")


def _show(value: Any) -> str:
    """Render a value for messages: short, printable, unambiguous."""
    if isinstance(value, bytes | bytearray):
        text = repr(bytes(value[:_MAX_SHOWN]))
        return text + ("…" if len(value) > _MAX_SHOWN else "")
    text = str(value)
    shown = ascii(text[:_MAX_SHOWN])
    return shown + ("…" if len(text) > _MAX_SHOWN else "")


def element_label(tag: int, keyword: str = "") -> str:
    """``(gggg,eeee) Keyword`` of a tag."""
    if not keyword:
        try:
            keyword = keyword_for_tag(tag)
        except (ValueError, TypeError):
            keyword = ""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}){' ' + keyword if keyword else ''}"


def _invalid(where: str | Where, what: str, value: Any, expected: str) -> InputError:
    return InputError(
        f"{where}: {what} {_show(value)} is not {expected}. Potential fix: the file is "
        "damaged or was written by a non-conforming exporter; re-export it, or remove it "
        "from the export.")


# ------------------------------------------------------------------------- typed parsers
def _components(text: str) -> list[str]:
    return [c.strip(" \x00") for c in text.rstrip("\x00 ").split("\\")]


def _as_text(raw: bytes | str, where: str | Where, what: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise _invalid(where, what, raw, "ASCII text") from None


def parse_is(raw: bytes | str, *, where: str | Where = "value") -> tuple[int, ...]:
    r"""Integer String (IS) values, PS3.5 §6.2; () for an empty value.

    Leading and trailing spaces (and NUL padding) are allowed, as is a zero fraction
    (``"3.0"``, written by some exporters); hexadecimal, exponents, words, NaN and values
    beyond −2³¹ … 2³¹−1 are not.

    Parameters
    ----------
    raw : bytes or str
        The value, backslash-separated for several.
    where : str
        File and element, for the message.

    Returns
    -------
    tuple of int

    Raises
    ------
    InputError
        If any component is not an integer string.

    Examples
    --------
    >>> parse_is(b" 12\\-3 ")
    (12, -3)
    """
    text = _as_text(raw, where, "integer string (IS)")
    if not text.strip(" \x00"):
        return ()
    out = []
    for comp in _components(text):
        if not _IS_VALUE.fullmatch(comp):
            raise _invalid(where, "integer string (IS)", raw, "an integer")
        value = int(comp.split(".")[0])
        if not -_IS_MAX <= value < _IS_MAX:
            raise _invalid(where, "integer string (IS)", raw,
                           "within −2147483648 … 2147483647")
        out.append(value)
    return tuple(out)


def parse_ds(raw: bytes | str, *, where: str | Where = "value") -> tuple[float, ...]:
    r"""Decimal String (DS) values, PS3.5 §6.2; () for an empty value.

    Raises
    ------
    InputError
        If a component is not a decimal number, or is not finite once parsed
        (``"1e309"``); NaN and infinity are not DS values.

    Examples
    --------
    >>> parse_ds(b"0.5\\-1e-2 ")
    (0.5, -0.01)
    """
    text = _as_text(raw, where, "decimal string (DS)")
    if not text.strip(" \x00"):
        return ()
    out = []
    for comp in _components(text):
        if not _DS_VALUE.fullmatch(comp):
            raise _invalid(where, "decimal string (DS)", raw, "a decimal number")
        value = float(comp)
        if not math.isfinite(value):
            raise _invalid(where, "decimal string (DS)", raw, "a finite decimal number")
        out.append(value)
    return tuple(out)


def parse_binary(raw: bytes, vr: str, *, little: bool = True, where: str | Where = "value"
                 ) -> tuple[int | float, ...]:
    r"""Binary numbers of VR US, SS, UL, SL, UV, SV, FL, FD (and OF, OD, OL, OV).

    Raises
    ------
    InputError
        If the length is not a multiple of the value size (PS3.5 §6.2), or ``vr`` is not a
        binary numeric VR.

    Examples
    --------
    >>> parse_binary(b"\x00\x02\x01\x00", "US")
    (512, 1)
    """
    fmt = BINARY_FORMATS.get(vr)
    if fmt is None:
        raise _invalid(where, f"value of VR {vr!r}", raw, "a binary number")
    size = struct.calcsize("<" + fmt)
    if len(raw) % size:
        raise _invalid(where, f"{vr} value of {len(raw)} bytes", raw,
                       f"a whole number of {size}-byte values")
    count = len(raw) // size
    return struct.unpack(("<" if little else ">") + fmt * count, raw)


def parse_ui(raw: bytes | str, *, where: str | Where = "value") -> str | None:
    r"""Parse a Unique Identifier (UI); None when empty.

    Accepts the digits and dots of PS3.5 §9.1 and, as real exporters write them, letters,
    ``_`` and ``-``, up to 128 characters; control characters, non-ASCII bytes, spaces,
    path separators and several values are refused.

    Raises
    ------
    InputError
        For anything else.

    Examples
    --------
    >>> parse_ui(b"1.2.840.10008.1.2.1\x00")
    '1.2.840.10008.1.2.1'
    """
    text = _as_text(raw, where, "UID (UI)").rstrip("\x00 ").lstrip(" ")
    if not text:
        return None
    if len(text) > 128 or not _UID_VALUE.fullmatch(text):
        raise _invalid(where, "UID (UI)", raw, "a UID (digits and dots, at most 64 characters)")
    return text


def parse_cs(raw: bytes | str, *, where: str | Where = "value") -> tuple[str, ...]:
    r"""Code String (CS) values, stripped; () when empty.

    Printable ASCII is accepted (upper case, digits, space and ``_`` by the standard;
    lower case and other punctuation from real exporters); control characters and
    non-ASCII bytes are refused.

    Raises
    ------
    InputError

    Examples
    --------
    >>> parse_cs(b"ORIGINAL\\PRIMARY\\M\\ND ")
    ('ORIGINAL', 'PRIMARY', 'M', 'ND')
    """
    text = _as_text(raw, where, "code string (CS)")
    if not text.strip(" \x00"):
        return ()
    comps = _components(text)
    for comp in comps:
        if not comp.isprintable() or not comp.isascii():
            raise _invalid(where, "code string (CS)", raw, "printable ASCII")
    return tuple(comps)


def parse_text(raw: bytes | str, *, where: str | Where = "value") -> str:
    r"""Text of an ASCII string value, padding removed, NULs dropped.

    Non-ASCII text is decoded by `get_text` with the header's character set; here it is
    refused.

    Raises
    ------
    InputError
        If ``raw`` is bytes that are not ASCII.

    Examples
    --------
    >>> parse_text(b"T1 DUAL \x00")
    'T1 DUAL'
    """
    text = _as_text(raw, where, "text")
    return text.replace("\x00", "").strip()


def parse_number_tokens(raw: bytes | str) -> list[float]:
    r"""Numbers in vendor text (``"1000\\0\\0"``, ``" 64*64"``): tokens that parse, in order.

    Private elements arrive as text of any VR (or as undecoded bytes): tokens separated by
    backslashes are read as numbers and the ones that are not numbers are skipped, as the
    vendor tools do. Never raises.

    Examples
    --------
    >>> parse_number_tokens(b"1000000500\\8\\x\\nan")
    [1000000500.0, 8.0, nan]
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else str(raw)
    out: list[float] = []
    for token in text.strip("\x00 ").split("\\"):
        token = token.strip("\x00 ")
        if len(token) > 64:
            continue
        try:
            out.append(float(token))
        except ValueError:
            continue
    return out


def parse_ascconv(raw: bytes, *, where: str | Where = "value") -> dict[str, str]:
    r"""Parse the Siemens ASCCONV protocol (``### ASCCONV BEGIN …`` … ``END ###``), key → text.

    Parameters
    ----------
    raw : bytes
        The value of the Siemens MR protocol element ((0029,xx20) or (0021,xx19)).
    where : str
        File and element, for the message.

    Returns
    -------
    dict of str to str
        Empty when the text holds no ASCCONV block. Comments (``#``) are removed; values
        keep their text (convert them with `ascconv_number`).

    Raises
    ------
    InputError
        If the block is longer than `MAX_ASCCONV_BYTES`.

    Examples
    --------
    >>> parse_ascconv(b"### ASCCONV BEGIN ###\nsSliceArray.lSize = 3 # n\n### ASCCONV END ###")
    {'sSliceArray.lSize': '3'}
    """
    match = _ASCCONV.search(raw)
    if match is None:
        return {}
    body = match.group(1)
    if len(body) > MAX_ASCCONV_BYTES:
        raise _invalid(where, f"ASCCONV protocol of {len(body)} bytes", body[:40],
                       f"at most {MAX_ASCCONV_BYTES} bytes long")
    out: dict[str, str] = {}
    for line in body.decode("latin-1").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip(" \t\x00")] = value.split("#", 1)[0].strip(" \t\x00")
    return out


def ascconv_number(asc: dict[str, str], key: str, *, where: str = "ASCCONV"
                   ) -> float | None:
    """Return a number of the ASCCONV protocol (decimal, exponent or ``0x`` hexadecimal).

    Returns
    -------
    float or None
        None when ``key`` is absent.

    Raises
    ------
    InputError
        If the value is not a finite number; names the key and the value.

    Examples
    --------
    >>> ascconv_number({"sSliceArray.lSize": "0x1e"}, "sSliceArray.lSize")
    30.0
    """
    text = asc.get(key)
    if text is None:
        return None
    if not _ASCCONV_NUMBER.fullmatch(text):
        raise _invalid(f"{where}, ASCCONV {key}", "value", text, "a number")
    stripped = text.lstrip("+-")
    value = float(int(stripped, 16)) if stripped[:2].lower() == "0x" else float(stripped)
    value = -value if text.startswith("-") else value
    if not math.isfinite(value):
        raise _invalid(f"{where}, ASCCONV {key}", "value", text, "a finite number")
    return value


# ----------------------------------------------------------------------------- accessors
#: One `BaseTag` object per tag number (see `canonical_tag`; read-only for others).
CANONICAL_TAGS: dict[int, BaseTag] = {}
#: Bound of `CANONICAL_TAGS` (hostile files may hold many private tags).
_MAX_CANONICAL_TAGS: Final = 200_000


def canonical_tag(tag_int: int) -> BaseTag:
    """Return the one shared `BaseTag` object of a tag number.

    Header readers key their data sets with these objects, and the accessors look them up
    with the same ones: a dictionary lookup then matches by identity, without calling
    ``BaseTag.__eq__`` (a Python method) for every element read.
    """
    tag = CANONICAL_TAGS.get(tag_int)
    if tag is None:
        if len(CANONICAL_TAGS) >= _MAX_CANONICAL_TAGS:
            CANONICAL_TAGS.clear()
        tag = CANONICAL_TAGS[tag_int] = BaseTag(tag_int)
    return tag


#: ``empty_value_for_VR(vr, raw=True)`` by VR (and pydicom's empty-text option).
_EMPTY_RAW: dict[tuple[str | None, bool], Any] = {}


def empty_raw(vr: str | None) -> Any:
    """Return ``pydicom.dataelem.empty_value_for_VR(vr, raw=True)``, looked up once per VR.

    The value of an empty raw element, as pydicom's parser gives it (the readers of
    `bonelesion.dicom.fastheader` and `bonelesion.dicom.framegroups` make thousands).
    """
    key = (vr, config.use_none_as_empty_text_VR_value)
    try:
        return _EMPTY_RAW[key]
    except KeyError:
        value = _EMPTY_RAW[key] = empty_value_for_VR(vr, raw=True)
        return value


def _key(key: str | int) -> tuple[BaseTag, str]:
    found = _KEYS.get(key)
    if found is None:
        if isinstance(key, str):
            tag_int = tag_for_keyword(key)
            if tag_int is None:
                raise KeyError(f"unknown DICOM keyword {key!r}")
        else:
            tag_int = int(key)
        tag = canonical_tag(tag_int)
        try:
            vr = str(dictionary_VR(tag))
        except KeyError:
            vr = "UN"
        found = _KEYS[key] = (tag, vr)
    return found


def has(ds: Dataset | None, key: str | int) -> bool:
    """Tell whether the header holds the element (empty or not); converts nothing."""
    return ds is not None and _key(key)[0] in ds._dict


def is_empty(ds: Dataset | None, key: str | int) -> bool:
    """Tell whether the element is absent or holds no value; converts nothing."""
    if ds is None:
        return True
    elem = ds._dict.get(_key(key)[0])
    if elem is None:
        return True
    value = elem.value
    if value is None:
        return True
    if isinstance(value, bytes | bytearray | str | list | tuple | MultiValue | Sequence):
        return len(value) == 0 or (isinstance(value, bytes | bytearray | str)
                                   and not bytes(value if not isinstance(value, str) else
                                                 value.encode("latin-1", "replace"))
                                   .strip(b" \x00"))
    return False


def vr_of(ds: Dataset, key: str | int) -> str | None:
    """Return the element's VR as written (the dictionary's for implicit VR); None if absent."""
    tag, dict_vr = _key(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    vr = elem.VR
    return str(vr) if vr else dict_vr


class Where:
    """Where a value is: "File …, (0028,0030) PixelSpacing", formatted only for a message.

    The typed accessors parse thousands of values per second; the file name and element
    label are put together only when a value is refused.
    """

    __slots__ = ("_ds", "_tag")

    def __init__(self, ds: Dataset, tag: int) -> None:
        self._ds = ds
        self._tag = tag

    def __str__(self) -> str:
        return _where(self._ds, self._tag)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _where(ds: Dataset, tag: int) -> str:
    return f"File {source_of(ds)}, {element_label(tag)}"


def _cached(ds: Dataset, tag: BaseTag, kind: str, elem: Any) -> Any:
    cache = ds.__dict__.get(_CACHE_ATTR)
    if cache is None:
        return _MISSING
    hit = cache.get((tag, kind))
    if hit is None or hit[0] is not elem:
        return _MISSING
    return hit[1]


def _store(ds: Dataset, tag: BaseTag, kind: str, elem: Any, value: Any) -> Any:
    cache = ds.__dict__.get(_CACHE_ATTR)
    if cache is None:
        cache = ds.__dict__[_CACHE_ATTR] = {}
    cache[(tag, kind)] = (elem, value)
    return value


def _twin_key(tag: BaseTag, kind: str, elem: Any) -> tuple[Any, ...] | None:
    """Cache key of a raw element by its bytes: equal raw elements give equal values."""
    if type(elem) is not RawDataElement or type(elem.value) is not bytes:
        return None
    return tag, kind, elem.VR, elem.is_little_endian, elem.value


def _twin_hit(cache: dict[Any, Any], tag: BaseTag, kind: str, elem: Any) -> Any:
    """Return the value (or error) parsed from another raw element of the same tag and bytes.

    A cache is shared only by the flat headers of one file (`share_value_cache`): the
    frames of an enhanced object repeat the same per-frame values (orientation, FrameType,
    spacing …) in distinct elements, whose bytes, VR, encoding, character set and file —
    everything a value and its error message depend on — are the same.
    """
    key = _twin_key(tag, kind, elem)
    if key is None:
        return _MISSING
    found = cache.get(key, _MISSING)
    if found is _MISSING:
        return _MISSING
    cache[(tag, kind)] = (elem, found)
    if isinstance(found, InputError):
        raise found
    return found


def _cache_hit(cache: dict[Any, Any] | None, tag: BaseTag, kind: str, elem: Any) -> Any:
    """Return the cached value (or raise the cached error) of ``elem``; `_MISSING` if none.

    ``cache`` is the header's value cache (None: it has none yet). The element's own
    entry first, then (flat headers of one file) a twin's (`_twin_hit`).
    """
    if cache is None:
        return _MISSING
    hit = cache.get((tag, kind))
    if hit is not None and hit[0] is elem:
        if isinstance(hit[1], InputError):
            raise hit[1]
        return hit[1]
    if _SHARED in cache:  # flat headers of one file: the same bytes, the same value
        return _twin_hit(cache, tag, kind, elem)
    return _MISSING


def _store_raw(ds: Dataset, tag: BaseTag, kind: str, elem: Any, value: Any) -> Any:
    """`_store`, also under the element's bytes (`_twin_hit`)."""
    _store(ds, tag, kind, elem, value)
    cache = ds.__dict__[_CACHE_ATTR]
    if _SHARED in cache:
        key = _twin_key(tag, kind, elem)
        if key is not None:
            cache[key] = value
    return value


def _converted(ds: Dataset, tag: BaseTag) -> DataElement:
    """Convert one element with pydicom, inside the guard (the only call of it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid values are judged by our parsers
            return ds[tag]
    except (BytesLengthException, NotImplementedError, ValueError, TypeError, struct.error,
            UnicodeError, LookupError, OverflowError, EOFError, IndexError,
            RecursionError) as exc:
        elem = ds._dict.get(tag)
        raw = getattr(elem, "value", b"")
        raise InputError(
            f"{_where(ds, tag)}: the value {_show(raw or b'')} (VR {getattr(elem, 'VR', '?')}) "
            f"cannot be read ({type(exc).__name__}: {_show(exc)}). Potential fix: the file is "
            "damaged; re-export it, or remove it from the export.") from exc


def converted_value(ds: Dataset, key: str | int) -> Any:
    """Return an element's value as pydicom converts it (inside the guard); None if absent.

    For values the typed accessors do not cover (person names, dates as pydicom types).

    Raises
    ------
    InputError
        If pydicom cannot convert the value (names file, element and value).
    """
    tag, _ = _key(key)
    if tag not in ds._dict:
        return None
    return _converted(ds, tag).value


def _plain(elem: Any, dict_vr: str) -> tuple[Any, str, bool, bool]:
    """(value, VR, is raw bytes, little endian) of an element (raw or converted).

    Raw elements give their bytes (no conversion); converted ones their value. An element
    written as UN (or OB/OW) is read as its dictionary VR.
    """
    if type(elem) is RawDataElement:
        vr = elem.VR or dict_vr
        if vr in _OPAQUE_VRS and dict_vr not in _OPAQUE_VRS:
            vr = dict_vr
        if vr == "SQ":
            return elem, "SQ", False, elem.is_little_endian
        return elem.value if elem.value is not None else b"", vr, True, elem.is_little_endian
    vr = str(elem.VR)
    value = elem.value
    if isinstance(value, bytes) and vr in _OPAQUE_VRS and dict_vr not in _OPAQUE_VRS:
        vr = dict_vr
        return value, vr, True, True
    return value, vr, isinstance(value, bytes | bytearray), True


def _strict_or_warn(exc: InputError, strict: bool) -> None:
    if strict:
        raise exc
    warnings.warn(f"{exc} The value is ignored.", DataQualityWarning, stacklevel=4)


def _numbers(ds: Dataset, tag: BaseTag, dict_vr: str, elem: Any,
             cache: dict[Any, Any] | None) -> tuple[float | int, ...] | None:
    """Numbers of the element ``elem`` (``ds``'s, present), parsed by VR; None when empty.

    ``cache`` is ``ds``'s value cache (None: none yet).
    """
    found = _cache_hit(cache, tag, "n", elem)
    if found is not _MISSING:
        return found  # type: ignore[no-any-return]
    try:
        value = _parse_numbers(ds, tag, dict_vr, elem)
    except InputError as exc:
        _store_raw(ds, tag, "n", elem, exc)
        raise
    return _store_raw(ds, tag, "n", elem, value)  # type: ignore[no-any-return]


def _parse_numbers(ds: Dataset, tag: BaseTag, dict_vr: str, elem: Any
                   ) -> tuple[float | int, ...] | None:
    value, vr, is_raw, little = _plain(elem, dict_vr)
    if is_raw:
        data = bytes(value)
        memo = ("n", vr, bool(little), data) if len(data) <= _PARSED_MAX_BYTES else None
        if memo is not None:
            found = _PARSED.get(memo, _MISSING)
            if found is not _MISSING:
                return found  # type: ignore[no-any-return]
        out = _parse_number_bytes(data, vr, little, Where(ds, tag))
        if memo is not None:
            _remember(memo, out)
        return out
    where = Where(ds, tag)
    if vr == "SQ" or isinstance(value, Sequence):
        raise _invalid(where, "sequence", "(items)", "a number")
    if value is None or value == "":
        return None
    seq = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    parsed: list[float | int] = []
    for v in seq:
        if isinstance(v, bool) or v is None:
            raise _invalid(where, "value", v, "a number")
        if isinstance(v, int):
            parsed.append(int(v))
        elif isinstance(v, float):
            parsed.append(float(v))
        elif isinstance(v, str):
            text = v.strip()
            parsed.extend(parse_is(text, where=where) if vr == "IS"
                          else parse_ds(text, where=where))
        else:
            raise _invalid(where, "value", v, "a number")
    return tuple(parsed) or None


def _remember(memo: tuple[str, str, bool, bytes], value: Any) -> None:
    """Keep a valid parsed value in `_PARSED` (emptied first when full)."""
    if len(_PARSED) >= _PARSED_MAX_ENTRIES:
        _PARSED.clear()
    _PARSED[memo] = value


def _memo_key(elem: Any, dict_vr: str, kind: str) -> tuple[str, str, bool, bytes] | None:
    """Return the `_PARSED` key of a raw element's bytes as `_plain` reads them (None: none)."""
    if type(elem) is not RawDataElement:
        return None
    vr = elem.VR or dict_vr
    if vr in _OPAQUE_VRS and dict_vr not in _OPAQUE_VRS:
        vr = dict_vr
    data = elem.value
    if vr == "SQ" or type(data) is not bytes or len(data) > _PARSED_MAX_BYTES:
        return None
    return kind, vr, bool(elem.is_little_endian), data


def _parse_number_bytes(data: bytes, vr: str, little: bool, where: Where
                        ) -> tuple[float | int, ...] | None:
    """Numbers of raw bytes of VR ``vr``; None when empty. A pure function of its inputs."""
    if vr in BINARY_FORMATS:
        out: tuple[float | int, ...] = parse_binary(data, vr, little=little, where=where)
    elif vr == "IS":
        out = parse_is(data, where=where)
    elif vr in _STRING_VRS:
        out = parse_ds(data, where=where)
    else:
        raise _invalid(where, f"value of VR {vr}", data, "a number")
    return out or None


def get_ints(ds: Dataset | None, key: str | int, *, strict: bool = True
             ) -> tuple[int, ...] | None:
    """Integer values of an element (IS, binary integers, or integral DS); None if absent.

    Raises
    ------
    InputError
        (``strict``) If the element holds anything else; names file, element and value.
    """
    if ds is None:
        return None
    tag, dict_vr = _KEYS.get(key) or _key(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    cache = ds.__dict__.get(_CACHE_ATTR)
    if cache is not None:
        hit = cache.get((tag, "ints"))
        if hit is not None and hit[0] is elem:
            return hit[1]  # type: ignore[no-any-return]
    memo = _memo_key(elem, dict_vr, "ints")  # the result is a function of the bytes
    if memo is not None:
        found = _PARSED.get(memo)
        if found is not None:
            return _store(ds, tag, "ints", elem, found)  # type: ignore[no-any-return]
    try:
        values = _numbers(ds, tag, dict_vr, elem, cache)
        if values is None:
            return None
        out = []
        for v in values:
            if isinstance(v, float):
                if not (math.isfinite(v) and v.is_integer()):
                    raise _invalid(_where(ds, tag), "value", values, "an integer")
                v = int(v)
            if not -_INT64_MAX <= v < _INT64_MAX:  # beyond any use, and any database column
                raise _invalid(_where(ds, tag), "value", values, "an integer within ±2**63")
            out.append(v)
        result = tuple(out)
        if memo is not None:
            _remember(memo, result)
        return _store(ds, tag, "ints", elem, result)  # type: ignore[no-any-return]
    except InputError as exc:
        _strict_or_warn(exc, strict)
        return None


def get_int(ds: Dataset | None, key: str | int, *, strict: bool = True) -> int | None:
    """Return the first integer value of an element; None when absent or empty.

    Raises
    ------
    InputError
        (``strict``) If the element holds anything else than integers.
    """
    values = get_ints(ds, key, strict=strict)
    return values[0] if values else None


def get_floats(ds: Dataset | None, key: str | int, *, strict: bool = True, count: int | None = None,
               finite: bool = True) -> tuple[float, ...] | None:
    """Finite numbers of an element (DS, IS, FD/FL, binary integers); None if absent.

    Parameters
    ----------
    count : int, optional
        Required number of values (e.g. 3 for ImagePositionPatient).
    finite : bool
        Refuse NaN and infinity (binary FD/FL values can hold them); False passes them on
        for the caller's own sanity check.

    Raises
    ------
    InputError
        (``strict``) If a value is not a finite number or the count differs.
    """
    if ds is None:
        return None
    tag, dict_vr = _KEYS.get(key) or _key(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    cache = ds.__dict__.get(_CACHE_ATTR)
    if finite and cache is not None:
        hit = cache.get((tag, "floats"))
        if hit is not None and hit[0] is elem and (count is None or len(hit[1]) == count):
            return hit[1]  # type: ignore[no-any-return]
    memo = _memo_key(elem, dict_vr, "floats") if finite else None
    if memo is not None:
        found = _PARSED.get(memo)
        if found is not None and (count is None or len(found) == count):
            return _store(ds, tag, "floats", elem, found)  # type: ignore[no-any-return]
    try:
        values = _numbers(ds, tag, dict_vr, elem, cache)
        if values is None:
            return None
        if finite:
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise _invalid(_where(ds, tag), "value", values, "finite")
        if count is not None and len(values) != count:
            raise _invalid(_where(ds, tag), f"value with {len(values)} number(s)",
                           values, f"{count} numbers")
        out = tuple([float(v) for v in values])
        if not finite:
            return out
        if memo is not None:
            _remember(memo, out)
        return _store(ds, tag, "floats", elem, out)  # type: ignore[no-any-return]
    except InputError as exc:
        _strict_or_warn(exc, strict)
        return None


def get_float(ds: Dataset | None, key: str | int, *, strict: bool = True,
              finite: bool = True) -> float | None:
    """Return the first number of an element; None when absent or empty.

    Raises
    ------
    InputError
        (``strict``) If a value is not a number (not a finite one, with ``finite``).
    """
    values = get_floats(ds, key, strict=strict, finite=finite)
    return values[0] if values else None


def _strings(ds: Dataset, key: str | int, kind: str) -> tuple[str, ...] | str | None:
    tag, dict_vr = _KEYS.get(key) or _key(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    found = _cache_hit(ds.__dict__.get(_CACHE_ATTR), tag, kind, elem)
    if found is not _MISSING:
        return found  # type: ignore[no-any-return]
    try:
        value = _parse_strings(ds, tag, dict_vr, kind, elem)
    except InputError as exc:
        _store_raw(ds, tag, kind, elem, exc)
        raise
    return _store_raw(ds, tag, kind, elem, value)  # type: ignore[no-any-return]


def _parse_strings(ds: Dataset, tag: BaseTag, dict_vr: str, kind: str, elem: Any
                   ) -> tuple[str, ...] | str | None:
    value, vr, is_raw, _ = _plain(elem, dict_vr)
    if is_raw and vr not in BINARY_FORMATS and vr != "SQ":
        data = bytes(value)
        if len(data) <= _PARSED_MAX_BYTES and (kind != "text" or data.isascii()):
            memo = (kind, vr, True, data)
            found = _PARSED.get(memo, _MISSING)
            if found is not _MISSING:
                return found  # type: ignore[no-any-return]
            where = Where(ds, tag)
            parsed = parse_ui(data, where=where) if kind == "uid" else \
                parse_cs(data, where=where) if kind == "cs" else parse_text(data, where=where)
            _remember(memo, parsed)
            return parsed
    where = Where(ds, tag)
    if vr == "SQ" or isinstance(value, Sequence):
        raise _invalid(where, "sequence", "(items)", "text")
    if is_raw:
        data = bytes(value)
        if vr in BINARY_FORMATS:
            raise _invalid(where, f"binary value (VR {vr})", data, "text")
        if kind == "uid":
            return parse_ui(data, where=where)
        if kind == "cs":
            return parse_cs(data, where=where)
        if data.isascii():
            return parse_text(data, where=where)
        text = _converted(ds, tag).value  # character set decoding by pydicom, guarded
        value = text
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        raise _invalid(where, "binary value", value, "text")
    if isinstance(value, MultiValue | list | tuple):
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    if kind == "uid":
        return parse_ui("\\".join(parts), where=where)
    if kind == "cs":
        return parse_cs("\\".join(parts), where=where)
    return "\\".join(p.replace("\x00", "").strip() for p in parts).strip()


def get_text(ds: Dataset | None, key: str | int, *, strict: bool = True) -> str | None:
    r"""Text of a string element (several values joined by ``\``); None if absent or empty.

    ASCII values are read from the raw bytes; others are decoded by pydicom with the
    header's Specific Character Set (inside the guard).

    Raises
    ------
    InputError
        (``strict``) If the element is binary, a sequence, or cannot be decoded.
    """
    if ds is None:
        return None
    try:
        text = _strings(ds, key, "text")
    except InputError as exc:
        _strict_or_warn(exc, strict)
        return None
    assert text is None or isinstance(text, str)
    return text or None


def get_uid(ds: Dataset | None, key: str | int, *, strict: bool = True) -> str | None:
    """Return a UID (see `parse_ui`); None when absent or empty.

    Raises
    ------
    InputError
        (``strict``) If the value is not a UID.
    """
    if ds is None:
        return None
    try:
        uid = _strings(ds, key, "uid")
    except InputError as exc:
        _strict_or_warn(exc, strict)
        return None
    assert uid is None or isinstance(uid, str)
    return uid


def get_cs(ds: Dataset | None, key: str | int, *, strict: bool = True) -> tuple[str, ...]:
    """Code String values, stripped, in upper case; () when absent or empty.

    Raises
    ------
    InputError
        (``strict``) If the value is not printable ASCII.
    """
    if ds is None:
        return ()
    try:
        values = _strings(ds, key, "cs")
    except InputError as exc:
        _strict_or_warn(exc, strict)
        return ()
    if not values:
        return ()
    assert isinstance(values, tuple)
    return tuple([v.upper() for v in values])


def element_bytes(ds: Dataset | None, key: str | int) -> bytes | None:
    """Return the undecoded value of an element (private blobs: CSA, ASCCONV); None if absent.

    Raises
    ------
    InputError
        If the element is a sequence.
    """
    if ds is None:
        return None
    tag, _ = _key(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if value is None:
        return b""
    if isinstance(value, Sequence) or elem.VR == "SQ":
        raise _invalid(_where(ds, tag), "sequence", "(items)", "a byte string")
    if isinstance(value, str):
        return value.encode("latin-1", "replace")
    return str(value).encode("latin-1", "replace")


def items(ds: Dataset | None, key: str | int, *, strict: bool = True) -> list[Dataset]:
    """Return the items of a sequence element, each bound to the header's file; [] if absent.

    Parameters
    ----------
    strict : bool
        An element that is not a sequence raises (True), or is treated as absent with a
        warning (False: private elements, which lose their VR in implicit VR files).

    Raises
    ------
    InputError
        (``strict``) If the element is not a sequence, or its items cannot be read.
    """
    if ds is None:
        return []
    tag, dict_vr = _key(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return []
    hit = _cached(ds, tag, "sq", elem)
    if hit is not _MISSING:
        return hit  # type: ignore[no-any-return]
    try:
        out = _items(ds, tag, dict_vr, elem)
    except InputError as exc:
        if strict:
            raise
        if (elem.VR or dict_vr) not in _OPAQUE_VRS:
            warnings.warn(f"{exc} The element is ignored.", DataQualityWarning, stacklevel=2)
        out = []
    return _store(ds, tag, "sq", elem, out)  # type: ignore[no-any-return]


def raw_sequence(ds: Dataset | None, key: str | int) -> RawDataElement | None:
    """Return a sequence element still in its raw (unparsed) form, its items checked.

    For readers that walk the items' bytes themselves (`bonelesion.dicom.framegroups`).
    The items are checked by `check_elements` first, unless the header reader checked
    them already.

    Returns
    -------
    RawDataElement or None
        None when the element is absent, already converted by pydicom, or not written as
        a sequence (VR SQ).

    Raises
    ------
    InputError
        If the items' encoding is damaged (names the file and the element).
    """
    if ds is None:
        return None
    tag, _ = _key(key)
    elem = ds._dict.get(tag)
    if type(elem) is not RawDataElement or elem.VR != "SQ":
        return None
    if ds.__dict__.get(_CHECKED_ATTR, {}).get(tag) is not elem:
        data = bytes(elem.value or b"")
        check_elements(data, 0, len(data), implicit=bool(elem.is_implicit_VR),
                       little=bool(elem.is_little_endian),
                       where=f"{source_of(ds)}, {element_label(tag)}", top_level=False,
                       sequence=True)
        mark_checked(ds, {tag: elem})
    return elem


def _items(ds: Dataset, tag: BaseTag, dict_vr: str, elem: Any) -> list[Dataset]:
    vr = elem.VR or dict_vr
    if type(elem) is RawDataElement:
        if vr != "SQ" and not (vr in _OPAQUE_VRS and dict_vr == "SQ"):
            raise _invalid(_where(ds, tag), f"value of VR {vr}", elem.value or b"", "a sequence")
        # the items are checked (lengths, depth, delimiters) before pydicom parses them,
        # unless the header reader checked them already
        if ds.__dict__.get(_CHECKED_ATTR, {}).get(tag) is not elem:
            data = bytes(elem.value or b"")
            check_elements(data, 0, len(data),
                           implicit=bool(elem.is_implicit_VR) or vr != "SQ",
                           little=bool(elem.is_little_endian),
                           where=f"{source_of(ds)}, {element_label(tag)}", top_level=False,
                           sequence=True)
        elem = _converted(ds, tag)
    value = elem.value
    if not isinstance(value, Sequence):
        raise _invalid(_where(ds, tag), f"value of VR {elem.VR}", value, "a sequence")
    source = ds.__dict__.get(_SOURCE_ATTR) or ds.__dict__.get("filename")
    out = []
    for item in value:
        if not isinstance(item, Dataset):
            raise _invalid(_where(ds, tag), "item", item, "a data set")
        if source is not None and _SOURCE_ATTR not in item.__dict__:
            item.__dict__[_SOURCE_ATTR] = source
        out.append(item)
    return out


# ------------------------------------------------------------------ geometry plausibility
def plausible_spacing_mm(value: float, *, what: str, where: str | Where) -> float:
    """``value`` if it is a plausible spacing in mm (`MIN_SPACING_MM` … `MAX_SPACING_MM`).

    Raises
    ------
    InputError
        Otherwise (e.g. SpacingBetweenSlices 1e-320, which makes no usable affine).

    Examples
    --------
    >>> plausible_spacing_mm(0.5, what="PixelSpacing", where="File a.dcm")
    0.5
    """
    if not (math.isfinite(value) and MIN_SPACING_MM <= value <= MAX_SPACING_MM):
        raise InputError(
            f"{where}: {what} {value!r} mm is not a plausible spacing (expected "
            f"{MIN_SPACING_MM:g}–{MAX_SPACING_MM:g} mm). Potential fix: the header is damaged; "
            "re-export the series.")
    return value


def plausible_position_mm(values: tuple[float, ...], *, what: str, where: str
                          ) -> tuple[float, ...]:
    """``values`` if every coordinate is within ±`MAX_POSITION_MM`.

    Raises
    ------
    InputError
        Otherwise.
    """
    if not all(math.isfinite(v) and abs(v) <= MAX_POSITION_MM for v in values):
        raise InputError(
            f"{where}: {what} {list(values)} mm is not a plausible position (expected "
            f"coordinates within ±{MAX_POSITION_MM:g} mm). Potential fix: the header is "
            "damaged; re-export the series.")
    return values

