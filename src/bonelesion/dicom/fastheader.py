"""Fast header reader: a Part 10 file's header as pydicom would read it, in one pass.

`read_header` returns the same data set as ``pydicom.dcmread(path, stop_before_pixels=True)``
— a `pydicom.dataset.FileDataset` of *raw* (not yet converted) data elements, whose values
the reader converts through `bonelesion.dicom.values` — plus the byte offset and length of
the Pixel Data value. It is several times faster than ``dcmread`` because it
reads the header with one or two ``read`` calls and walks the elements over an in-memory
buffer, instead of one file read (and its bookkeeping) per element.

It *declines* (returns None) whenever the file is not the plain case, and the caller then
reads it through `bonelesion.dicom.structure.scan_header` (a whole-header structure check)
and pydicom:

* no 128-byte preamble + ``DICM`` prefix;
* file meta that is not Explicit VR Little Endian, or no Transfer Syntax UID;
* a big-endian, deflated, private or unknown transfer syntax;
* an unknown VR (explicit VR), an Explicit VR data set in an Implicit VR file (or the
  reverse), an undefined-length element that is not a sequence, a truncated element.

Every sequence is checked first by `bonelesion.dicom.structure.check_elements`
(iteratively: lengths against the bytes left, at most 64 levels of nesting, delimiters),
which raises `bonelesion.dicom.structure.HeaderStructureError` naming the file for a
damaged or hostile one. Every sequence then stays a raw element (an undefined-length one
holds its items without the sequence delimiter), marked as checked
(`bonelesion.dicom.values.mark_checked`): pydicom parses its items only when they are read
(an enhanced object's functional groups are read by `bonelesion.dicom.framegroups`, not
pydicom). The Specific Character Set is checked
before pydicom looks its terms up.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import VR
from pydicom.values import convert_string

from bonelesion.dicom.structure import (
    ITEM_DELIMITER_TAG,
    ITEM_TAG,
    LONG_VR_BYTES,
    PIXEL_TAGS,
    SEQUENCE_DELIMITER_TAG,
    UNDEFINED_LENGTH,
    VR_BYTES,
    NeedMoreBytes,
    check_charset,
    check_elements,
)
from bonelesion.dicom.values import (
    BINARY_FORMATS,
    canonical_tag,
    empty_raw,
    mark_checked,
    printable,
)
from bonelesion.dicom.values import (
    CANONICAL_TAGS as _TAGS,
)

__all__ = ["HeaderRead", "read_header", "new_dataset", "HEADER_CHUNK_BYTES",
           "HEADER_LONG_READ_BYTES",
           "HEADER_MAX_BYTES",
           # encoding constants of `bonelesion.dicom.structure`, re-exported
           "UNDEFINED_LENGTH", "ITEM_TAG", "ITEM_DELIMITER_TAG", "SEQUENCE_DELIMITER_TAG",
           "PIXEL_TAGS", "VR_BYTES", "LONG_VR_BYTES", "NUMBER_STRUCT_FORMATS"]

#: First read of a file: most headers fit (Siemens MR CSA headers need a second read).
HEADER_CHUNK_BYTES = 16 * 1024
#: A header longer than four times the first read is read again with at least this many
#: bytes in all (then ×4 while it is still longer).
HEADER_LONG_READ_BYTES = 1024 * 1024
#: Give up (decline) on headers larger than this: pydicom reads them.
HEADER_MAX_BYTES = 64 * 1024 * 1024

# DICOM encoding constants (PS3.5 §7) live in `bonelesion.dicom.structure`; re-exported here
# for the other readers of this package.
_CHARSET = 0x00080005
#: struct format of each binary numeric VR (PS3.5 §6.2).
NUMBER_STRUCT_FORMATS = {vr: BINARY_FORMATS[vr] for vr in ("US", "SS", "UL", "SL", "FL", "FD")}
_VALID_VRS = {vr.value.encode("ascii"): vr.value for vr in VR if len(vr.value) == 2}
_HH = struct.Struct("<HH")
_L = struct.Struct("<L")
_H = struct.Struct("<H")
#: ``RawDataElement(*fields)`` without the named tuple's keyword-argument layer: every call
#: passes all nine fields (is_raw True, is_buffered False: the defaults; pinned by
#: tests/dicom/test_decode.py).
_new_raw = tuple.__new__
#: Tag, VR and 16-bit length of an explicit VR element, in one unpack.
_EXPLICIT_SHORT = struct.Struct("<HH2sH")


@dataclass(frozen=True)
class HeaderRead:
    """A header read by `read_header`.

    Parameters
    ----------
    dataset : pydicom.dataset.FileDataset
        The header, without Pixel Data (as ``dcmread(..., stop_before_pixels=True)``).
    pixel_data_tag : int or None
        Tag of the pixel data element that ended the header ((7FE0,0010), or float pixel
        data), None when the file has none.
    pixel_data_offset : int or None
        Byte offset of the pixel data *value* in the file.
    pixel_data_length : int or None
        Its length in bytes (0xFFFFFFFF for encapsulated pixel data).
    """

    dataset: FileDataset
    pixel_data_tag: int | None
    pixel_data_offset: int | None
    pixel_data_length: int | None


_NeedMore = NeedMoreBytes


class _Decline(Exception):
    """Not the plain case: let pydicom read the file."""


def _need(buf: bytes, end: int) -> None:
    if end > len(buf):
        raise _NeedMore


def _check_sequence(buf: bytes, pos: int, length: int, implicit: bool, complete: bool,
                    where: str) -> int:
    """Check the items of a sequence value at ``pos`` (iteratively, depth- and size-bounded).

    Returns the position after the sequence (after its delimiter for an undefined length).
    Raises `bonelesion.dicom.structure.HeaderStructureError` for a damaged or hostile
    structure (too deep, lengths beyond the bytes left, missing delimiters).
    """
    undefined = length == UNDEFINED_LENGTH
    end = len(buf) if undefined else pos + length
    if end > len(buf):
        raise _NeedMore
    stop, _ = check_elements(buf, pos, end, implicit=implicit, little=True, where=where,
                             top_level=False, complete=complete, sequence=True,
                             undefined=undefined)
    return stop


def _parse_meta(buf: bytes) -> tuple[dict[BaseTag, RawDataElement], int]:
    """Group 0002 (always Explicit VR Little Endian) from offset 132."""
    pos = 132
    n = len(buf)
    unpack_explicit = _EXPLICIT_SHORT.unpack_from
    elements: dict[BaseTag, RawDataElement] = {}
    while True:
        if pos + 8 > n:
            raise _NeedMore
        # tag, VR and 16-bit length in one unpack (the length is re-read for a long VR)
        group, element, vr_bytes, length = unpack_explicit(buf, pos)
        if group != 0x0002:
            return elements, pos
        vr = _VALID_VRS.get(vr_bytes)
        if vr is None:
            raise _Decline
        if vr_bytes in LONG_VR_BYTES:
            _need(buf, pos + 12)
            length = _L.unpack_from(buf, pos + 8)[0]
            pos += 12
        else:
            pos += 8
        if length == UNDEFINED_LENGTH:
            raise _Decline
        _need(buf, pos + length)
        value = buf[pos:pos + length] if length else empty_raw(vr)
        tag = canonical_tag(group << 16 | element)
        elements[tag] = _new_raw(RawDataElement, (tag, vr, length, value, pos, False, True,
                                                    True, False))
        pos += length


def _parse_dataset(buf: bytes, pos: int, implicit: bool, complete: bool, where: str,
                   elements: dict[BaseTag, RawDataElement | DataElement]
                   ) -> tuple[dict[BaseTag, RawDataElement | DataElement], str | list[str],
                              tuple[int, int, int] | None, dict[BaseTag, RawDataElement]]:
    """Top-level elements up to the pixel data, added to ``elements`` (empty).

    Returns (elements, encoding, pixel info, the sequences whose items were checked).
    When the buffer ends first (`NeedMoreBytes`), ``elements`` holds those before.
    """
    checked: dict[BaseTag, RawDataElement] = {}
    encoding: str | list[str] = default_encoding
    n = len(buf)
    unpack_hh = _HH.unpack_from
    unpack_l = _L.unpack_from
    unpack_explicit = _EXPLICIT_SHORT.unpack_from
    valid = _VALID_VRS
    long_vrs = LONG_VR_BYTES
    tags = _TAGS
    first = True
    while True:
        if pos + 8 > n:
            if pos == n and complete:
                return elements, encoding, None, checked  # no pixel data
            raise _NeedMore
        if implicit:
            group, element = unpack_hh(buf, pos)
            tag_int = group << 16 | element
            if first and buf[pos + 4:pos + 6] in valid:
                raise _Decline  # explicit VR data set in an implicit VR file
            vr: str | None = None
            length = unpack_l(buf, pos + 4)[0]
            header = 8
        else:
            group, element, vr_bytes, length = unpack_explicit(buf, pos)
            tag_int = group << 16 | element
            vr = valid.get(vr_bytes)
            if vr is None:
                raise _Decline  # implicit VR switch or unknown VR
            if vr_bytes in long_vrs:
                if pos + 12 > n:
                    raise _NeedMore
                length = unpack_l(buf, pos + 8)[0]
                header = 12
            else:
                header = 8
        first = False
        if tag_int == ITEM_DELIMITER_TAG:
            raise _Decline
        value_tell = pos + header
        if tag_int in PIXEL_TAGS:
            return elements, encoding, (tag_int, value_tell, length), checked
        tag = tags.get(tag_int) or canonical_tag(tag_int)
        if length == UNDEFINED_LENGTH:
            if vr is None:
                try:
                    vr = dictionary_VR(tag)
                except KeyError:
                    _need(buf, value_tell + 4)
                    group2, element2 = unpack_hh(buf, value_tell)
                    if group2 << 16 | element2 not in (ITEM_TAG, SEQUENCE_DELIMITER_TAG):
                        raise _Decline from None
                    vr = VR.SQ
            if vr != VR.SQ:
                raise _Decline
            end = _check_sequence(buf, value_tell, UNDEFINED_LENGTH, implicit, complete, where)
            if end - 8 < value_tell or \
                    unpack_hh(buf, end - 8) != (0xFFFE, 0xE0DD) or unpack_l(buf, end - 4)[0]:
                raise _Decline  # the check ended it otherwise: let pydicom read the file
            # kept raw, like a defined-length sequence: its items (without the delimiter)
            # are parsed only when read (the check above bounds that parse)
            item_bytes = buf[value_tell:end - 8]
            raw = _new_raw(RawDataElement, (tag, VR.SQ, len(item_bytes), item_bytes,
                                             value_tell, implicit, True, True, False))
            elements[tag] = raw
            checked[tag] = raw
            pos = end
            continue
        end = value_tell + length
        if end > n:
            raise _NeedMore
        sequence = bool(length) and (
            vr == "SQ" or (vr in (None, "UN") and _dictionary_sq(tag))
            or (vr is None and group & 1 and length >= 8
                and unpack_hh(buf, value_tell) == (0xFFFE, 0xE000)))
        if sequence:
            _check_sequence(buf, value_tell, length, implicit or vr == "UN", True, where)
        value = buf[value_tell:end] if length else empty_raw(vr)
        if tag_int == _CHARSET:
            check_charset(value if isinstance(value, bytes) else b"", where, value_tell)
            encoding = convert_encodings(convert_string(value or b"", True))  # type: ignore[arg-type]
        raw = _new_raw(RawDataElement, (tag, vr, length, value, value_tell, implicit, True,
                                         True, False))
        elements[tag] = raw
        if sequence:
            checked[tag] = raw
        pos = end


def _dictionary_sq(tag: BaseTag) -> bool:
    try:
        return bool(dictionary_VR(tag) == VR.SQ)
    except KeyError:
        return False


#: Transfer Syntax UID value → implicit VR (True/False), or None: not the plain case.
_SYNTAXES: dict[bytes, bool | None] = {}


def _plain_syntax(value: bytes) -> bool | None:
    """Implicit VR for a plain (non-deflated little-endian) syntax; None to decline."""
    found = _SYNTAXES.get(value, _UNKNOWN)
    if found is not _UNKNOWN:
        return found  # type: ignore[return-value]
    ts = UID(value.rstrip(b"\x00 ").decode("ascii", "replace"))
    plain: bool | None = None
    if ts.is_transfer_syntax and not ts.is_deflated and ts.is_little_endian:
        plain = bool(ts.is_implicit_VR)
    if len(_SYNTAXES) < 1000:  # private syntaxes of hostile files must not grow it forever
        _SYNTAXES[value] = plain
    return plain


_UNKNOWN = object()

#: Instance attributes of a fresh `FileMetaDataset` and of a fresh `FileDataset` (implicit
#: VR False/True) as pydicom's constructors set them (`_prototypes`).
_PROTOTYPES: dict[object, dict[str, object]] = {}
#: Names of each prototype's attributes that hold a dict (copied per instance), by id.
_PROTOTYPE_DICTS: dict[int, tuple[str, ...]] = {}


def _prototypes() -> dict[object, dict[str, object]]:
    """Build (once) the attributes of pydicom's constructors, to copy instead of running them.

    ``FileDataset(path, elements, preamble, file_meta, implicit, True)`` and
    ``FileMetaDataset(elements)`` set about 45 attributes through ``Dataset.__setattr__``
    (a keyword look-up each) and check every meta tag; the fast reader copies the
    attributes of one instance built by those very constructors and sets the per-file ones
    (elements, file name, time stamp, preamble, meta, encoding) as they would.
    tests/dicom/test_fastheader_equivalence.py pins the result to the constructors'.
    """
    if not _PROTOTYPES:
        _PROTOTYPES[Dataset] = dict(vars(Dataset()))
        meta = FileMetaDataset()
        meta.set_original_encoding(False, True, default_encoding)
        _PROTOTYPES[FileMetaDataset] = dict(vars(meta))
        for implicit in (False, True):
            ds = FileDataset("", {}, b"", FileMetaDataset(), implicit, True)
            ds.set_original_encoding(implicit, True, default_encoding)
            attrs = dict(vars(ds))
            del attrs["file_meta"]
            _PROTOTYPES[implicit] = attrs
        for prototype in _PROTOTYPES.values():  # kept for the life of the process
            _PROTOTYPE_DICTS[id(prototype)] = tuple(
                k for k, v in prototype.items() if type(v) is dict)
    return _PROTOTYPES


def _instance(cls: type, prototype: dict[str, object], attrs: dict[str, object]) -> object:
    """Make a ``cls`` with ``prototype``'s attributes (fresh copies of its dicts) and ``attrs``."""
    state = prototype.copy()
    for key in _PROTOTYPE_DICTS[id(prototype)]:
        state[key] = dict(state[key])  # type: ignore[call-overload]
    state.update(attrs)
    obj: object = object.__new__(cls)
    object.__setattr__(obj, "__dict__", state)
    return obj


def _file_dataset(path: str, elements: dict[BaseTag, RawDataElement | DataElement],
                  preamble: bytes, meta_elements: dict[BaseTag, RawDataElement],
                  implicit: bool, encoding: str | list[str], mtime_s: float | None
                  ) -> FileDataset:
    """``FileDataset(path, elements, preamble, FileMetaDataset(meta), implicit, True)``.

    With ``set_original_encoding(implicit, True, encoding)``; ``mtime_s`` is the file's
    modification time (pydicom's ``timestamp``).
    """
    prototypes = _prototypes()
    file_meta = _instance(FileMetaDataset, prototypes[FileMetaDataset],
                          {"_dict": meta_elements})
    ds = _instance(FileDataset, prototypes[implicit], {
        "_dict": elements, "preamble": preamble, "file_meta": file_meta, "filename": path,
        "timestamp": mtime_s if path else None, "_read_charset": encoding})
    return ds  # type: ignore[return-value]


def new_dataset(elements: dict[BaseTag, RawDataElement | DataElement]) -> Dataset:
    """Return ``pydicom.Dataset(elements)``, its attributes copied from a prototype.

    For the thousands of flat frame headers of an enhanced object
    (`bonelesion.dicom.multiframe.flatten_frames`); the same instance attributes as the
    constructor sets (tests/dicom/test_framegroups.py).
    """
    ds: Dataset = _instance(Dataset, _prototypes()[Dataset], {"_dict": elements})  # type: ignore[assignment]
    return ds


def _parse(buf: bytes, path: str, complete: bool, mtime_s: float | None = None,
           elements: dict[BaseTag, RawDataElement | DataElement] | None = None) -> HeaderRead:
    if len(buf) < 132:
        raise _NeedMore
    if buf[128:132] != b"DICM":
        raise _Decline
    meta_elements, pos = _parse_meta(buf)
    ts_raw = meta_elements.get(BaseTag(0x00020010))
    if ts_raw is None or not ts_raw.value:
        raise _Decline
    implicit = _plain_syntax(ts_raw.value)  # type: ignore[arg-type]
    if implicit is None:
        raise _Decline
    _need(buf, pos + 2)
    if _H.unpack_from(buf, pos)[0] == 0x0000:
        raise _Decline  # a command set: pydicom reads it apart
    elements, encoding, pixel, checked = _parse_dataset(
        buf, pos, implicit, complete, printable(path), {} if elements is None else elements)
    ds = _file_dataset(path, elements, buf[:128], meta_elements, implicit, encoding, mtime_s)
    mark_checked(ds, checked)
    if pixel is None:
        return HeaderRead(ds, None, None, None)
    return HeaderRead(ds, pixel[0], pixel[1], pixel[2])


#: Bytes read beyond the estimated start of the pixel data (`_pixel_data_start`).
_HINT_MARGIN_BYTES = 4096
_ROWS, _COLUMNS, _FRAMES = BaseTag(0x00280010), BaseTag(0x00280011), BaseTag(0x00280008)
_SAMPLES, _BITS = BaseTag(0x00280002), BaseTag(0x00280100)


def _pixel_data_start(elements: dict[BaseTag, RawDataElement | DataElement], file_size: int
                      ) -> int | None:
    """Estimate where the Pixel Data element starts: file size − native pixel bytes − 12.

    From the image size read before the buffer ran out (Rows, Columns, BitsAllocated,
    SamplesPerPixel, NumberOfFrames, which come before the functional groups); None when
    they are not all there or give no plausible position (compressed pixel data: read ×4).
    Only the size of the next read: the header is parsed, and checked, as always.
    """
    try:
        rows, columns, bits = (_H.unpack(elements[t].value)[0]  # type: ignore[arg-type]
                               for t in (_ROWS, _COLUMNS, _BITS))
        samples = _H.unpack(elements[_SAMPLES].value)[0] if _SAMPLES in elements else 1  # type: ignore[arg-type]
        frames_raw = elements[_FRAMES].value if _FRAMES in elements else b"1"
        frames = int(bytes(frames_raw).strip(b"\x00 ") or b"1")  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, struct.error):
        return None
    end = file_size - rows * columns * samples * frames * bits // 8 - 12
    return end if 0 < end <= HEADER_MAX_BYTES else None


def read_header(path: str | os.PathLike[str], *, chunk_bytes: int = HEADER_CHUNK_BYTES
                ) -> HeaderRead | None:
    """Read the header of a plain Part 10 file, or decline.

    Parameters
    ----------
    path : path
        A DICOM Part 10 file.
    chunk_bytes : int
        Size of the first read; the buffer grows ×4 while the header is longer (to at least
        `HEADER_LONG_READ_BYTES` from the third read).

    Returns
    -------
    HeaderRead or None
        None when the file is not the plain case (see the module docstring): read it with
        ``pydicom.dcmread`` instead.

    Raises
    ------
    OSError
        If the file cannot be opened or read.

    Examples
    --------
    >>> read_header("/no/such/file")  # doctest: +SKIP
    """
    path = os.fspath(path)
    # os-level reads: a buffered file object costs more than the read of a small file
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        buf = _read_up_to(fd, chunk_bytes)
        complete = len(buf) < chunk_bytes
        st = os.fstat(fd)
        passes = 0
        while True:
            before: dict[BaseTag, RawDataElement | DataElement] = {}
            try:
                return _parse(buf, path, complete, st.st_mtime, before)
            except _Decline:
                return None
            except _NeedMore:
                if complete or len(buf) >= HEADER_MAX_BYTES:
                    return None  # file ends inside the header: pydicom reports it
                # A long header (an enhanced object's functional groups, often of undefined
                # length, which each pass walks again up to the end of the buffer) is read
                # again up to where its pixel data should start, from the image size read
                # so far; else ×4, and from the third pass at least `HEADER_LONG_READ_BYTES`.
                passes += 1
                end = _pixel_data_start(before, st.st_size)
                if end is not None and end > len(buf):
                    want = min(end - len(buf) + _HINT_MARGIN_BYTES, HEADER_MAX_BYTES)
                else:
                    want = len(buf) * 3 if passes < 2 else \
                        max(len(buf) * 3, HEADER_LONG_READ_BYTES - len(buf))
                more = _read_up_to(fd, want)
                complete = len(more) < want
                buf += more
    finally:
        os.close(fd)


def _read_up_to(fd: int, n_bytes: int) -> bytes:
    """Read ``n_bytes`` from ``fd``, fewer only at the end of the file.

    As ``read`` of a buffered file object does: one ``os.read`` may return less.
    """
    data = os.read(fd, n_bytes)
    if not data or len(data) == n_bytes:
        return data
    parts = [data]
    got = len(data)
    while got < n_bytes:
        more = os.read(fd, n_bytes - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)
