"""Structure check of a DICOM header before any parser allocates or recurses.

`check_elements` walks the encoded elements of a data set (or of one sequence's items)
*iteratively*, with the rules pydicom's parser follows (the implicit/explicit VR sniff at
the start of every data set, undefined-length sequences and items, implicit VR items in
explicit VR sequences, ``UN`` of undefined length holding implicit VR items), and checks
what a hostile file abuses:

* every value length against the bytes left in its container (the file, the sequence or
  the item) — before anything is read or allocated;
* sequence nesting depth against `MAX_SEQUENCE_DEPTH` (pydicom parses sequences
  recursively: 200 levels exhaust the interpreter's recursion limit);
* the number of elements against `MAX_ELEMENTS`;
* VRs: an upper-case VR that DICOM does not define (``OX``) is refused; other bytes mean
  an implicit VR element, as in pydicom;
* delimiters: items where items must be, a delimiter for every undefined length.

A violation raises `HeaderStructureError` (an `InputError`) naming the file, the element
(tag and byte offset) and what was wrong. `scan_header` applies the check to a whole file
(File Meta Information, transfer syntax, deflated data sets inflated with a bound) and
returns the validated header bytes and where the pixel data are, for
`bonelesion.dicom.header`.

References
----------
DICOM PS3.5 §7.1 (data elements), §7.5 (nesting of data sets), §A.4 (encapsulation),
PS3.10 §7.1 (File Meta Information).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from pydicom.datadict import dictionary_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from bonelesion.errors import InputError

__all__ = [
    "HeaderStructureError",
    "NeedMoreBytes",
    "PixelLocation",
    "HeaderScan",
    "check_elements",
    "check_charset",
    "scan_header",
    "inflate",
    "MAX_SEQUENCE_DEPTH",
    "MAX_ELEMENTS",
    "MAX_HEADER_BYTES",
    "MAX_INFLATED_BYTES",
    "UNDEFINED_LENGTH",
    "ITEM_TAG",
    "ITEM_DELIMITER_TAG",
    "SEQUENCE_DELIMITER_TAG",
    "PIXEL_TAGS",
    "VR_BYTES",
    "LONG_VR_BYTES",
    "DEFLATED",
]

#: Deepest nesting of sequences accepted (real objects: ≤ 10; pydicom needs ≈ 6 stack
#: frames per level).
MAX_SEQUENCE_DEPTH: Final = 64
#: Most data elements in one header (an 819-frame enhanced MR holds ≈ 60 000).
MAX_ELEMENTS: Final = 2_000_000
#: Largest header (everything before the pixel data) accepted.
MAX_HEADER_BYTES: Final = 256 * 1024**2
#: Largest inflated size of a deflated data set (a bound against deflate bombs).
MAX_INFLATED_BYTES: Final = 4 * 1024**3

UNDEFINED_LENGTH: Final = 0xFFFFFFFF
ITEM_TAG: Final = 0xFFFEE000
ITEM_DELIMITER_TAG: Final = 0xFFFEE00D
SEQUENCE_DELIMITER_TAG: Final = 0xFFFEE0DD
#: Pixel Data, Float Pixel Data, Double Float Pixel Data.
PIXEL_TAGS: Final = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
DEFLATED: Final = "1.2.840.10008.1.2.1.99"
_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
_IMPLICIT: Final = "1.2.840.10008.1.2"
#: The two-letter VRs of the standard, as they appear in an explicit VR element.
VR_BYTES: Final = frozenset(v.value.encode("ascii") for v in VR if len(v.value) == 2)
#: The text of each VR in `VR_BYTES`.
_VR_TEXT: Final = {v: v.decode("ascii") for v in VR_BYTES}
#: Explicit VRs with a 2-byte reserved field and a 4-byte value length.
LONG_VR_BYTES: Final = frozenset(v.value.encode("ascii") for v in EXPLICIT_VR_LENGTH_32)
_FIRST_CHUNK: Final = 64 * 1024
_DELIMITER_LE: Final = b"\xfe\xff\xdd\xe0"
_DELIMITER_BE: Final = b"\xff\xfe\xe0\xdd"


class HeaderStructureError(InputError):
    """A header whose encoding is damaged or hostile; the message names file and offset.

    ``truncated`` is True when the file simply ends too early (a copy interrupted).
    """

    def __init__(self, message: str, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated

    def __reduce__(self) -> tuple[type[HeaderStructureError], tuple[str, bool]]:
        return (type(self), (str(self), self.truncated))


class NeedMoreBytes(Exception):
    """The buffer ends before the walk does: read more of the file."""


_NeedMore = NeedMoreBytes


@dataclass(frozen=True)
class PixelLocation:
    """Where the pixel data value is: byte offset and length (0xFFFFFFFF: encapsulated).

    ``inflated`` is True for a deflated file: the offset is then in the inflated data set
    (see `inflate`), not in the file.
    """

    tag: int
    vr: str | None
    offset: int
    length: int
    inflated: bool = False
    #: For a deflated file: where the deflated data set starts in the file.
    data_offset: int = 0

    @property
    def encapsulated(self) -> bool:
        """True for encapsulated (compressed) pixel data."""
        return self.length == UNDEFINED_LENGTH


@dataclass(frozen=True)
class HeaderScan:
    """A file whose header passed the structure check.

    Parameters
    ----------
    header : bytes
        The file's bytes up to the pixel data element (for a deflated file: the preamble
        and File Meta Information followed by the *inflated* data set up to it).
    data_offset : int
        Offset in ``header`` where the data set begins (after the File Meta Information).
    part10 : bool
        The file has the 128-byte preamble and ``DICM``.
    transfer_syntax : str or None
        From the File Meta Information.
    implicit, little, deflated : bool
        The data set's encoding (as declared; pydicom sniffs implicit VR itself).
    pixel : PixelLocation or None
        The pixel data element, None when the file has none.
    file_size : int
        Size of the file in bytes.
    """

    header: bytes
    data_offset: int
    part10: bool
    transfer_syntax: str | None
    implicit: bool
    little: bool
    deflated: bool
    pixel: PixelLocation | None
    file_size: int


_CHARSET_TAG: Final = 0x00080005


def check_charset(value: bytes, where: str, at: int) -> None:
    """Refuse a Specific Character Set (0008,0005) that is not printable ASCII.

    pydicom looks its terms up as Python codec names while it parses: a NUL or a control
    character there raises (``ValueError: embedded null character``) in the middle of
    parsing. Unknown but printable names are left to pydicom (it warns and uses ASCII).

    Raises
    ------
    HeaderStructureError
    """
    text = value.rstrip(b"\x00 ")
    if all(0x20 <= b < 0x7F for b in text):
        return
    raise HeaderStructureError(
        f"File {where}: Specific Character Set (0008,0005) {value[:64]!r} is not printable "
        f"ASCII (byte {at}); the header is damaged. Potential fix: re-export the file, or "
        "remove it from the export.")


def _label(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _vr_of(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _explicit_first(buf: bytes, pos: int, limit: int) -> bool | None:
    """Sniff the VR at the start of a data set as pydicom does: True explicit, else False."""
    if pos + 6 > limit:
        return None
    a, b = buf[pos + 4], buf[pos + 5]
    return 0x40 < a < 0x5B and 0x40 < b < 0x5B


# Frames of the iterative walk: a data set (elements up to ``end`` or an item delimiter)
# or a sequence (items up to ``end`` or a sequence delimiter).
_DATASET = 0
_SEQUENCE = 1


def check_elements(buf: bytes, pos: int, end: int, *, implicit: bool, little: bool,
                   where: str, top_level: bool = True, complete: bool = True,
                   sequence: bool = False, undefined: bool = False,
                   max_depth: int = MAX_SEQUENCE_DEPTH,
                   max_elements: int = MAX_ELEMENTS) -> tuple[int, PixelLocation | None]:
    """Check the elements (or, ``sequence=True``, the items) from ``pos`` to ``end``.

    Parameters
    ----------
    buf : bytes
        The bytes (of the file, or of an inflated data set).
    pos, end : int
        Where the data set (or sequence value) starts and where its container ends.
    implicit, little : bool
        Encoding assumed (the data set sniffs implicit/explicit VR as pydicom does).
    where : str
        The file, for messages.
    top_level : bool
        A top-level data set: the walk stops at the pixel data element.
    complete : bool
        ``buf`` holds the whole file: running out of bytes is truncation, not a reason to
        read more.
    sequence : bool
        ``pos`` is the first item of a sequence value of ``end - pos`` bytes (or, with
        ``undefined``, of a sequence that ends with its delimiter before ``end``).
    undefined : bool
        With ``sequence``: the sequence has an undefined length.

    Returns
    -------
    (int, PixelLocation or None)
        Where the walk ended (the pixel data element's first byte, or ``end``), and the
        pixel data element of a top-level data set.

    Raises
    ------
    HeaderStructureError
        For a length beyond the bytes left, nesting deeper than ``max_depth``, more than
        ``max_elements`` elements, an unknown VR, or a missing delimiter.
    NeedMoreBytes
        When ``complete`` is False and the walk needs bytes beyond ``buf``.
    """
    order = "<" if little else ">"
    hh = struct.Struct(order + "HH")
    l32 = struct.Struct(order + "L")
    # tag, VR bytes and 16-bit length of an element header, in one unpack
    element_head = struct.Struct(order + "HH2sH")
    delimiter = _DELIMITER_LE if little else _DELIMITER_BE
    n_elements = 0
    # stack of (kind, end, implicit, undefined): ``end`` is the container's last byte + 1
    stack: list[tuple[int, int, bool, bool]] = []
    if sequence:
        stack.append((_SEQUENCE, end, implicit, undefined))
    else:
        sniff = _explicit_first(buf, pos, end)
        stack.append((_DATASET, end, implicit if sniff is None else not sniff, False))

    def fail(message: str, at: int, truncated: bool = False) -> HeaderStructureError:
        if truncated:
            return HeaderStructureError(
                f"File {where}: the header ends early: {message} (byte {at}; the file has "
                f"{len(buf)} bytes). Potential fix: copy the file again from the source.",
                truncated=True)
        return HeaderStructureError(
            f"File {where}: {message} (byte {at}); the header is damaged. Potential fix: "
            "re-export the file, or remove it from the export.")

    while stack:
        kind, limit, imp, undefined = stack[-1]
        if kind == _SEQUENCE:
            if not undefined and pos >= limit:
                if pos > limit:
                    raise fail("a sequence item runs past the end of its sequence", pos)
                stack.pop()
                continue
            if pos + 8 > limit:
                if not complete and limit >= len(buf):
                    raise _NeedMore
                raise fail("the file ends inside a sequence (no sequence delimiter)", pos,
                       complete and limit >= len(buf))
            group, element = hh.unpack_from(buf, pos)
            tag = group << 16 | element
            length = l32.unpack_from(buf, pos + 4)[0]
            if tag == SEQUENCE_DELIMITER_TAG and undefined:
                pos += 8
                stack.pop()
                continue
            if tag != ITEM_TAG:
                raise fail(f"{_label(tag)} where a sequence item (FFFE,E000) was expected", pos)
            pos += 8
            if length == UNDEFINED_LENGTH:
                item_end = limit
                item_undefined = True
            else:
                item_end = pos + length
                if item_end > limit:
                    if not complete and limit >= len(buf) and item_end > len(buf):
                        raise _NeedMore
                    raise fail(f"a sequence item of {length} bytes runs past its container "
                               f"({limit - pos} bytes left)", pos - 8)
                item_undefined = False
            # pydicom: items of an implicit VR sequence are implicit; others sniff
            sniff = None if imp else _explicit_first(buf, pos, item_end)
            item_implicit = imp if sniff is None else not sniff
            stack.append((_DATASET, item_end, item_implicit, item_undefined))
            continue
        # a data set
        if not undefined and pos >= limit:
            if pos > limit:
                raise fail("an element runs past the end of its item", pos)
            stack.pop()
            continue
        if pos + 8 > limit:
            if not complete and limit >= len(buf):
                raise _NeedMore
            if len(stack) == 1 and pos == limit:
                break
            raise fail("the file ends inside an element header", pos,
                       complete and limit >= len(buf))
        group, element, vr_bytes, length16 = element_head.unpack_from(buf, pos)
        tag = group << 16 | element
        header = 8
        vr: str | None
        if tag == ITEM_DELIMITER_TAG:
            if not undefined:
                raise fail("an item delimiter (FFFE,E00D) outside an item of undefined "
                           "length", pos)
            pos += 8
            stack.pop()
            continue
        if tag in (ITEM_TAG, SEQUENCE_DELIMITER_TAG):
            raise fail(f"a delimiter {_label(tag)} where a data element was expected", pos)
        if imp:
            vr = None
            length = l32.unpack_from(buf, pos + 4)[0]
        else:
            vr = _VR_TEXT.get(vr_bytes)
            if vr is not None:
                if vr_bytes in LONG_VR_BYTES:
                    if pos + 12 > limit:
                        if not complete and limit >= len(buf):
                            raise _NeedMore
                        raise fail("the file ends inside an element header", pos,
                       complete and limit >= len(buf))
                    length = l32.unpack_from(buf, pos + 8)[0]
                    header = 12
                else:
                    length = length16
            elif b"AA" <= vr_bytes <= b"ZZ":
                raise fail(f"element {_label(tag)} has the unknown VR "
                           f"{vr_bytes.decode('ascii', 'replace')!r}", pos)
            else:  # pydicom reads it as an implicit VR element
                vr = None
                length = l32.unpack_from(buf, pos + 4)[0]
        n_elements += 1
        if n_elements > max_elements:
            raise fail(f"more than {max_elements} data elements", pos)
        value_at = pos + header
        if top_level and len(stack) == 1 and tag in PIXEL_TAGS:
            return pos, PixelLocation(tag, vr, value_at, length)
        if length == UNDEFINED_LENGTH:
            seq_vr = vr
            if seq_vr is None or seq_vr == "UN":
                seq_vr = _vr_of(tag) if vr is None else "SQ"
                if seq_vr == "UN":
                    if value_at + 4 > limit:
                        if not complete and limit >= len(buf):
                            raise _NeedMore
                        raise fail("the file ends inside an element", pos,
                       complete and limit >= len(buf))
                    g2, e2 = hh.unpack_from(buf, value_at)
                    seq_vr = "SQ" if (g2 << 16 | e2) == ITEM_TAG else "UN"
            if seq_vr == "SQ":
                if len(stack) // 2 + 1 > max_depth:
                    raise fail(f"sequences nested deeper than {max_depth} levels at "
                               f"{_label(tag)}", pos)
                pos = value_at
                stack.append((_SEQUENCE, limit, imp or vr == "UN", True))
                continue
            found = buf.find(delimiter, value_at, limit)
            if found < 0 or (found - value_at) % 2:
                if not complete and limit >= len(buf):
                    raise _NeedMore
                raise fail(f"element {_label(tag)} of undefined length has no sequence "
                           "delimiter", pos,
                       complete and limit >= len(buf))
            pos = found + 8
            continue
        value_end = value_at + length
        if value_end > limit:
            if not complete and limit >= len(buf) and value_end > len(buf):
                raise _NeedMore
            raise fail(f"element {_label(tag)} declares {length} bytes but only "
                       f"{max(0, limit - value_at)} are left", pos,
                       complete and limit >= len(buf) and length != UNDEFINED_LENGTH
                       and length < 1 << 31)
        if tag == _CHARSET_TAG:
            check_charset(buf[value_at:value_end], where, value_at)
        is_sq = vr == "SQ" or ((vr is None or vr == "UN") and _vr_of(tag) == "SQ")
        if not is_sq and vr is None and length >= 8 and group & 1:
            # an implicit VR private element: pydicom's private dictionary may make it a
            # sequence; its items are checked like any other when it looks like one
            g2, e2 = hh.unpack_from(buf, value_at)
            is_sq = (g2 << 16 | e2) == ITEM_TAG
        if is_sq and length:
            if len(stack) // 2 + 1 > max_depth:
                raise fail(f"sequences nested deeper than {max_depth} levels at "
                           f"{_label(tag)}", pos)
            pos = value_at
            stack.append((_SEQUENCE, value_end, imp or vr == "UN", False))
            continue
        pos = value_end
    return pos, None


def inflate(data: bytes, *, limit: int, where: str) -> bytes:
    """Inflate a deflated data set (raw deflate, PS3.5 §A.5) to at most ``limit`` bytes.

    Raises
    ------
    HeaderStructureError
        If the stream is not deflate data, or inflates beyond ``limit``.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise HeaderStructureError(
            f"File {where}: the transfer syntax is Deflated Explicit VR Little Endian but the "
            f"data set does not inflate ({exc}). Potential fix: re-export the file (with "
            "another transfer syntax), or remove it from the export.") from None
    if inflater.unconsumed_tail:
        raise HeaderStructureError(
            f"File {where}: the deflated data set inflates to more than {limit} bytes; "
            "refused. Potential fix: re-export the file with another transfer syntax.")
    if not inflater.eof:
        raise HeaderStructureError(
            f"File {where}: the deflated data set cannot be inflated (incomplete or "
            f"truncated stream: {len(data)} deflated bytes end before the stream does). "
            "Potential fix: copy the file again from the source.", truncated=True)
    return out


def _meta(buf: bytes, where: str, start: int = 132) -> tuple[int, str | None]:
    """Walk the File Meta Information (explicit VR little endian) from ``start``."""
    pos = start
    ts: str | None = None
    while True:
        if pos + 8 > len(buf):
            raise _NeedMore
        group = int.from_bytes(buf[pos:pos + 2], "little")
        if group != 0x0002:
            return pos, ts
        element = int.from_bytes(buf[pos + 2:pos + 4], "little")
        vr = buf[pos + 4:pos + 6]
        if vr not in VR_BYTES:
            raise HeaderStructureError(
                f"File {where}: File Meta Information element (0002,{element:04X}) has the "
                f"VR {vr!r}; expected explicit VR little endian (byte {pos}). Potential fix: "
                "re-export the file.")
        if vr in LONG_VR_BYTES:
            if pos + 12 > len(buf):
                raise _NeedMore
            length = int.from_bytes(buf[pos + 8:pos + 12], "little")
            start = pos + 12
        else:
            length = int.from_bytes(buf[pos + 6:pos + 8], "little")
            start = pos + 8
        if length == UNDEFINED_LENGTH:
            raise HeaderStructureError(
                f"File {where}: File Meta Information element (0002,{element:04X}) has an "
                f"undefined length (byte {pos}). Potential fix: re-export the file.")
        if start + length > len(buf):
            raise _NeedMore
        if element == 0x0010:
            ts = buf[start:start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length


def scan_header(path: str | os.PathLike[str], *, where: str | None = None,
                max_header_bytes: int = MAX_HEADER_BYTES) -> HeaderScan:
    """Read a file's header and check its structure (see the module docstring).

    Parameters
    ----------
    path : path
        A regular file (discovery opens nothing else).
    where : str, optional
        How messages name the file (default: the path).
    max_header_bytes : int
        Refuse headers (bytes before the pixel data) longer than this.

    Returns
    -------
    HeaderScan

    Raises
    ------
    HeaderStructureError
        For a damaged or hostile structure (including a header that ends early).
    OSError
        If the file cannot be read.
    """
    name = where if where is not None else os.fsdecode(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        buf = fh.read(min(_FIRST_CHUNK, size))
        while True:
            complete = len(buf) >= size
            try:
                return _scan(buf, name, complete, size, max_header_bytes)
            except _NeedMore:
                if complete:
                    raise HeaderStructureError(
                        f"File {name}: the header ends early: the file ends inside its "
                        f"header ({size} bytes). Potential fix: copy the file again from the "
                        "source.", truncated=True) from None
                if len(buf) >= max_header_bytes:
                    raise HeaderStructureError(
                        f"File {name}: the header is longer than {max_header_bytes} bytes; "
                        "refused. Potential fix: check the file.") from None
                buf += fh.read(min(len(buf) * 3, size - len(buf)))


def _scan(buf: bytes, name: str, complete: bool, size: int, max_header_bytes: int
          ) -> HeaderScan:
    part10 = len(buf) >= 132 and buf[128:132] == b"DICM"
    if not part10 and len(buf) < 132 and not complete:
        raise _NeedMore
    ts: str | None = None
    if part10:
        data_at, ts = _meta(buf, name)
    elif len(buf) >= 2 and int.from_bytes(buf[0:2], "little") == 0x0002:
        data_at, ts = _meta(buf, name, 0)  # File Meta Information without a preamble
    else:
        data_at = 0
    implicit = ts == _IMPLICIT if ts else True
    little = ts != _BIG_ENDIAN
    deflated = ts == DEFLATED
    if ts and ts not in (_IMPLICIT, _BIG_ENDIAN):
        implicit = False
    if deflated:
        if not complete:
            raise _NeedMore  # the whole stream is inflated at once
        data = inflate(buf[data_at:], limit=min(MAX_INFLATED_BYTES, max_header_bytes * 4),
                       where=name)
        end, pixel = check_elements(data, 0, len(data), implicit=False, little=True,
                                    where=name, complete=True)
        if pixel is not None:
            pixel = PixelLocation(pixel.tag, pixel.vr, pixel.offset, pixel.length, inflated=True,
                                  data_offset=data_at)
        header = buf[:data_at] + data[:end]
        return HeaderScan(header, data_at, part10, ts, False, True, True, pixel, size)
    end, pixel = check_elements(buf, data_at, len(buf) if not complete else size,
                                implicit=implicit, little=little, where=name,
                                complete=complete)
    if end > max_header_bytes:
        raise HeaderStructureError(
            f"File {name}: the header is longer than {max_header_bytes} bytes; refused. "
            "Potential fix: check the file.")
    return HeaderScan(buf[:end], data_at, part10, ts, implicit, little, False, pixel, size)
