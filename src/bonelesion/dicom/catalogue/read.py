"""Catalogue record reading: one file → its `FileRecord` (status, reason, header facts).

A plain Part 10 header is read with `bonelesion.dicom.fastheader.read_header`; every other
file (no preamble, big endian, deflated, a header that ends early …) is parsed by pydicom's
``read_partial`` from its first 64 KiB, or from the file when the header is longer. The
stack keys are the reader's (`flatten_frames` + `stack_key`), the stack roles the reader's
(`bonelesion.dicom.vendors.stack_role`, per stack, so an enhanced object holding several
contrasts gives each stack its own role). Pixel-data presence and truncation are checked
cheaply: native syntaxes compare the element length with Rows × Columns × frames × samples
× BitsAllocated / 8 and with the file size; encapsulated syntaxes walk the item headers.
Every failure is a status with a reason, never an exception.

References
----------
DICOM PS3.10 §7 (File Meta Information), PS3.5 §7.1 and §A.4 (data elements, encapsulated
pixel data), PS3.3 §C.7.6.16 (multi-frame functional groups).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Literal

import pydicom
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.uid import UID

from bonelesion.dicom import kept_headers, values, vendors
from bonelesion.dicom.catalogue.records import (
    SUPPORTED_SOP_CLASSES,
    FileRecord,
    FileStatus,
    _new_record,
)
from bonelesion.dicom.catalogue.values import (
    _element_value,
    _first_item,
    _float,
    _floats,
    _int,
    _joined,
    _raw,
    _str,
    _tag_vr,
)
from bonelesion.dicom.fastheader import (
    ITEM_TAG,
    LONG_VR_BYTES,
    PIXEL_TAGS,
    SEQUENCE_DELIMITER_TAG,
    UNDEFINED_LENGTH,
    VR_BYTES,
    HeaderRead,
    new_dataset,
    read_header,
)
from bonelesion.dicom.framegroups import NotPlain, items_with_firsts, raw_sequence_bytes
from bonelesion.dicom.header import deflated_dataset
from bonelesion.dicom.identity import ensure_series_instance_uid, has_instance_uids
from bonelesion.dicom.multiframe import flatten_frames
from bonelesion.dicom.stack_key import StackKey, stack_key
from bonelesion.dicom.structure import HeaderScan, HeaderStructureError, scan_header
from bonelesion.dicom.values import printable
from bonelesion.errors import DataQualityWarning, InputError

__all__ = [
    "read_file_record",
    "READER_VERSION",
]

logger = logging.getLogger(__name__)


#: Version of what a worker extracts from a file; a change forces every file to be re-read.
READER_VERSION = 4


#: Bytes read up front; the header is parsed from memory when it fits (most single frames).
_HEAD_BYTES = 64 * 1024


#: Longest stored ``notes`` text (pydicom warnings about odd values).
_NOTES_MAX_CHARS = 500


#: Hex characters kept of the patient HMAC (128 bits: collision-free for any archive).
_PATIENT_KEY_HEX_CHARS = 32


_DICOMDIR_SOP_CLASS = pydicom.uid.MediaStorageDirectoryStorage


_RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


_SINGLE_FRAME_IMAGE_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"}
)


_NATIVE_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    }
)


_DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"


# Magic numbers of common non-DICOM files found in exports, for a helpful reason.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or Office document)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "an executable"),
    (b"BM", "a BMP image"),
)


def _frame_keys(ds: Dataset) -> tuple[list[Dataset], list[StackKey]]:
    """Flat headers and stack keys of a file's frames, in frame order."""
    flats = flatten_frames(ds)
    return flats, [stack_key(flat) for flat in flats]


def _key_values(keys: Sequence[StackKey], multiframe: bool,
                first_frames: list[int] | None = None) -> dict[str, Any]:
    """Record fields that follow from a file's frame keys (in frame order).

    ``stack_keys`` in first-frame order with ``stack_n_frames`` and
    ``stack_b_values_s_per_mm2``; ``frame_stack_indices`` for a multi-frame object; and the
    file's ``b_value_s_per_mm2`` (None when its frames differ). ``first_frames`` receives
    the index of the first frame of each stack.
    """
    counts: dict[str, int] = {}
    b_of_key: dict[str, float | None] = {}
    texts = []
    for i, key in enumerate(keys):
        text = str(key)
        texts.append(text)
        if text in counts:
            counts[text] += 1
        else:
            counts[text] = 1
            b_of_key[text] = key.b_value_s_per_mm2
            if first_frames is not None:
                first_frames.append(i)
    b_values = {key.b_value_s_per_mm2 for key in keys}
    b_value = b_values.pop() if len(b_values) == 1 else None  # None: frames differ
    frame_stacks = None
    if multiframe and keys:
        order = {text: i for i, text in enumerate(counts)}
        frame_stacks = tuple(order[text] for text in texts)
    return {
        "stack_keys": tuple(counts),
        "stack_n_frames": tuple(counts.values()),
        "stack_b_values_s_per_mm2": tuple(b_of_key.values()),
        "b_value_s_per_mm2": None if b_value is None else float(b_value),
        "frame_stack_indices": frame_stacks,
    }


def _frame_positions(flats: Sequence[Dataset]) -> tuple[tuple[float, ...], ...] | None:
    """ImagePositionPatient of every frame of a multi-frame object (None if one lacks it)."""
    out = []
    for flat in flats:
        ipp = _floats(flat, "ImagePositionPatient")
        if ipp is None or len(ipp) != 3:
            return None
        out.append(ipp)
    return tuple(out)


def _vendor_value(name: str, ds: Dataset) -> Any:
    """Call ``bonelesion.dicom.vendors.<name>(ds)``; None while it is not implemented.

    Vendor knowledge lives only in ``vendors``; a failure there must not fail the file.
    """
    try:
        return getattr(vendors, name)(ds)
    except NotImplementedError:
        return None
    except InputError as exc:  # an invalid value: recorded by the stack keys already
        logger.debug("vendors.%s: %s", name, exc)
        return None


def _patient_key(ds: Dataset, secret: bytes | None) -> str | None:
    if secret is None:
        return None
    patient_id = _str(ds, "PatientID")
    if patient_id is None:
        return None
    digest = hmac.new(secret, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:_PATIENT_KEY_HEX_CHARS]


def _describe_non_dicom(head: bytes) -> str:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "a NIfTI image"
    sample = head[:4096]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file"
    return "binary data of an unknown format"


def _plausible_raw_dataset(head: bytes, size_bytes: int) -> bool:
    """Tell whether ``head`` starts like a DICOM data set written without Part 10 header.

    The first element of a real data set is in group 0x0008 (or 0x0002 / 0x0000 command
    and meta groups) with a small element number; explicit VR files then hold two upper-case
    VR letters, implicit VR files a plausible 4-byte length.
    """
    if len(head) < 8:
        return False
    for order in ("little", "big"):
        group = int.from_bytes(head[0:2], order)
        element = int.from_bytes(head[2:4], order)
        if group not in (0x0000, 0x0002, 0x0008) or element > 0x00FF:
            continue
        if head[4:6] in VR_BYTES:
            return True
        if order == "little":
            length = int.from_bytes(head[4:8], "little")
            if length < min(size_bytes, 1 << 16) and (element == 0 or length <= 64):
                return True
    return False


class _StopAtPixels:
    """``stop_when`` callback of ``read_partial`` that remembers the pixel element."""

    __slots__ = ("tag", "vr", "length", "value_offset")

    def __init__(self) -> None:
        self.tag: int | None = None
        self.vr: str | None = None
        self.length: int = 0
        #: file offset of the value, when known (the fast header reader gives it)
        self.value_offset: int | None = None

    def __call__(self, tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag in PIXEL_TAGS:
            self.tag = int(tag)
            self.vr = vr
            self.length = length
            return True
        return False


def _pydicom_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """Warnings about the file: pydicom's, and the reader's data-quality warnings.

    Unrelated ones (e.g. from garbage collection) are left out.
    """
    marker = os.sep + "pydicom" + os.sep
    return [w for w in caught
            if marker in w.filename or issubclass(w.category, DataQualityWarning)]


def _parse(fp: BinaryIO, force: bool) -> tuple[Dataset, _StopAtPixels, list[str], int]:
    """Parse a header; returns dataset, pixel-element info, warning texts, stop position."""
    stop = _StopAtPixels()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_partial(fp, stop_when=stop, force=force)
    texts = []
    for w in _pydicom_warnings(caught):
        text = str(w.message)
        if text not in texts:
            texts.append(text)
    return ds, stop, texts, fp.tell()


def _max_defined_end(ds: Dataset) -> int:
    """End offset of the last top-level element value with a defined length."""
    end = 0
    for elem in ds._dict.values():  # raw elements: no value conversion
        tell = getattr(elem, "value_tell", None)
        length = getattr(elem, "length", None)
        if tell is None or length is None or length == UNDEFINED_LENGTH:
            continue
        end = max(end, tell + length)
    return end


def _walk_fragments(fp: BinaryIO, start: int, size_bytes: int, little: bool) -> str | None:
    """Walk encapsulated pixel-data items from ``start``; a reason when truncated."""
    order: Literal["little", "big"] = "little" if little else "big"
    pos = start
    n_items = 0
    while True:
        fp.seek(pos)
        header = fp.read(8)
        if len(header) < 8:
            return (f"encapsulated pixel data ends after {n_items} item(s) at byte {pos} "
                    f"without a sequence delimiter; file size is {size_bytes} bytes")
        tag = (int.from_bytes(header[0:2], order) << 16) | int.from_bytes(header[2:4], order)
        length = int.from_bytes(header[4:8], order)
        if tag == SEQUENCE_DELIMITER_TAG:
            return None
        if tag != ITEM_TAG:
            return (f"encapsulated pixel data item {n_items} at byte {pos} has tag "
                    f"({tag >> 16:04X},{tag & 0xFFFF:04X}); expected an item (FFFE,E000)")
        pos += 8 + length
        n_items += 1
        if pos > size_bytes:
            return (f"encapsulated pixel data item {n_items - 1} needs bytes up to {pos} "
                    f"but the file ends at {size_bytes} bytes")


def _expected_native_bytes(ds: Dataset) -> int | None:
    rows = _int(ds, "Rows")
    cols = _int(ds, "Columns")
    bits = _int(ds, "BitsAllocated")
    if rows is None or cols is None or bits is None:
        return None
    frames = _int(ds, "NumberOfFrames") or 1
    samples = _int(ds, "SamplesPerPixel") or 1
    n_bits = rows * cols * frames * samples * bits
    return (n_bits + 7) // 8


def _missing(ds: Dataset, sop_class: str, has_pixels: bool) -> list[str]:
    need = ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
    if sop_class == _RTSTRUCT_SOP_CLASS:
        need += ["StructureSetROISequence", "ROIContourSequence"]
    else:
        need += ["Rows", "Columns", "BitsAllocated"]
        if sop_class in _SINGLE_FRAME_IMAGE_CLASSES:
            need += ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"]
        else:
            need += ["NumberOfFrames", "SharedFunctionalGroupsSequence",
                     "PerFrameFunctionalGroupsSequence"]
    if "ImagePositionPatient" in need and _raw(ds, "ImagePositionPatient") is None \
            and vendors.uih.is_uih_mosaic(ds) and vendors.uih.uih_tile_positions(ds) is not None:
        need.remove("ImagePositionPatient")  # a UIH mosaic: per-tile positions (0065,1051)
    missing = [kw for kw in need if not _present(ds, kw)]
    if sop_class != _RTSTRUCT_SOP_CLASS and not has_pixels:
        missing.append("PixelData")
    return missing


def _present(ds: Dataset, keyword: str) -> bool:
    """Whether an attribute has a readable value (`_raw`), a raw sequence without parsing it.

    A raw sequence is present when its items pass the structure check
    (`bonelesion.dicom.values.raw_sequence`): pydicom parsing a functional-groups sequence
    only to see it exists cost 30 ms an enhanced file.
    """
    tag, vr = _tag_vr(keyword)
    elem = ds._dict.get(tag)
    if elem is None:
        return False
    if type(elem) is RawDataElement and elem.VR == "SQ":  # what `raw_sequence` takes
        try:
            return values.raw_sequence(ds, keyword) is not None
        except InputError:
            return False
    return _element_value(ds, tag, vr, elem) is not None


def read_file_record(
    root: str | os.PathLike[str],
    relpath: str,
    *,
    size_bytes: int | None = None,
    mtime_ns: int | None = None,
    patient_key_secret: bytes | None = None,
    keep_header: bool = False,
) -> FileRecord:
    """Read the header of one file and return its catalogue record; never raises.

    Parameters
    ----------
    root : path
        Export root.
    relpath : str
        Path of the file relative to ``root`` (``/`` separators).
    size_bytes, mtime_ns : int, optional
        File size and modification time from the walk (``os.stat`` when omitted).
    patient_key_secret : bytes, optional
        Secret of the HMAC stored as ``patient_key``; no patient key without it.
    keep_header : bool
        Keep the parsed header of a usable file (status ``ok``) for a load that follows in
        this process (`bonelesion.dicom.kept_headers`): the series reader then takes it
        instead of parsing the file again.

    Returns
    -------
    FileRecord
        Every failure is a status with a reason, never an exception. The stack keys are
        the file's own: keys that depend on the rest of the series (see
        `bonelesion.dicom.multiframe.series_stack_keys`) are applied by `index_export`.
    """
    return _read_file_record(root, relpath, size_bytes, mtime_ns, patient_key_secret, None,
                             keep_header=keep_header)


#: Receives (flat headers, stack keys) of a file's frames (see `_read_file_record`).
_FramesOut = list[tuple[list[Dataset], list[StackKey]]]


def _read_file_record(
    root: str | os.PathLike[str],
    relpath: str,
    size_bytes: int | None,
    mtime_ns: int | None,
    secret: bytes | None,
    frames_out: _FramesOut | None,
    *,
    keep_header: bool = False,
) -> FileRecord:
    """`read_file_record`; ``frames_out`` also receives the flat headers and frame keys."""
    path = os.path.join(os.fspath(root), relpath)
    try:
        if size_bytes is None or mtime_ns is None:
            st = os.stat(path)
            size_bytes, mtime_ns = st.st_size, st.st_mtime_ns
        # pydicom warns about odd values while converting them; keep those as notes.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fresh: list[HeaderRead] | None = [] if keep_header else None
            rec = _read_record(path, relpath, size_bytes, mtime_ns, secret, frames_out,
                               fresh=fresh)
        if fresh and not caught and rec.status == FileStatus.OK.value:
            # a usable file read without a warning: the load may take its header
            kept_headers.keep(path, os.stat(path), fresh[0])
        if caught and rec.status not in (FileStatus.NOT_DICOM.value,):
            extra = []
            for w in _pydicom_warnings(caught):
                text = str(w.message)
                if text not in extra and text not in rec.notes:
                    extra.append(text)
            if extra:
                notes = "; ".join(([rec.notes] if rec.notes else []) + extra)
                rec = dataclasses.replace(rec, notes=notes[:_NOTES_MAX_CHARS])
        return rec
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the index
        return FileRecord(
            path=relpath, size_bytes=size_bytes or 0, mtime_ns=mtime_ns or 0,
            status=FileStatus.ERROR.value,
            reason=f"Unexpected {type(exc).__name__} while reading the header: {exc}. "
                   "Potential fix: check that the file is readable; report it if it is valid "
                   "DICOM.",
        )


def _read_record(
    path: str, relpath: str, size_bytes: int, mtime_ns: int, secret: bytes | None,
    frames_out: _FramesOut | None = None,
    *,
    fresh: list[HeaderRead] | None = None,
) -> FileRecord:
    """Read the record of one file.

    ``fresh`` receives a fast-read header that the reading left as a fresh parse gives it
    (no UID substituted).
    """
    base: dict[str, Any] = {"path": relpath, "size_bytes": size_bytes, "mtime_ns": mtime_ns}

    def record(status: FileStatus, reason: str = "", **fields: Any) -> FileRecord:
        fields.update(base, status=status.value, reason=reason)
        return _new_record(fields)

    if size_bytes == 0:
        return record(FileStatus.NOT_DICOM,
                      "The file is empty (0 bytes); a DICOM file holds at least a header. "
                      "Potential fix: copy the file again from the source if the export "
                      "was interrupted.")
    fast = _fast_header(path)
    if isinstance(fast, HeaderStructureError):
        return record(FileStatus.TRUNCATED if fast.truncated else FileStatus.ERROR,
                      str(fast), has_file_meta=True)
    if fast is not None:
        stop = _StopAtPixels()
        if fast.pixel_data_tag is not None:
            stop.tag = fast.pixel_data_tag
            stop.length = fast.pixel_data_length or 0
            stop.value_offset = fast.pixel_data_offset
        if fresh is not None and has_instance_uids(fast.dataset):
            fresh.append(fast)
        return _classify(fast.dataset, stop, [], size_bytes, path, True, size_bytes, secret,
                         record, frames_out, header_complete=True)
    try:
        fp_file = open(path, "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        return record(FileStatus.ERROR, f"The file cannot be opened: {exc.strerror or exc}. "
                      "Potential fix: check file permissions.")
    part10 = False
    try:
        head = fp_file.read(_HEAD_BYTES)
        part10 = len(head) >= 132 and head[128:132] == b"DICM"
        if not part10:
            if not _plausible_raw_dataset(head, size_bytes):
                return record(FileStatus.NOT_DICOM,
                              f"Not a DICOM file: no 'DICM' prefix at byte 128 and the first "
                              f"bytes do not start a data set; the content looks like "
                              f"{_describe_non_dicom(head)}.")
        elif len(head) < 140 or int.from_bytes(head[132:134], "little") != 0x0002:
            found = head[132:136].hex(" ") if len(head) > 132 else "end of file"
            if len(head) < 140:
                return record(FileStatus.TRUNCATED,
                              f"The file ends after {size_bytes} bytes, right after the "
                              "'DICM' prefix; expected File Meta Information (group 0002). "
                              "Potential fix: copy the file again from the source.",
                              has_file_meta=True)
            return record(FileStatus.ERROR,
                          "Corrupt DICOM file: the 'DICM' prefix is present but the next "
                          f"bytes ({found}) are not a File Meta Information element "
                          "(group 0002). Potential fix: re-export the file.",
                          has_file_meta=True)
    finally:
        fp_file.close()
    # The structure is checked first (lengths against the bytes left, nesting depth,
    # delimiters, deflate with a bound): pydicom then parses validated bytes only.
    try:
        scan = scan_header(path, where=printable(relpath))
    except HeaderStructureError as exc:
        return record(FileStatus.TRUNCATED if exc.truncated else FileStatus.ERROR, str(exc),
                      has_file_meta=part10)
    ds, stop, texts, stop_pos = _parse_scanned(scan, path, force=not part10)
    return _classify(ds, stop, texts, stop_pos, path, part10, size_bytes, secret,
                     record, frames_out, header_complete=True)


def _parse_scanned(scan: HeaderScan, path: str, force: bool
                   ) -> tuple[Dataset, _StopAtPixels, list[str], int]:
    """Parse a header whose structure `scan_header` checked; the pixel element from the scan."""
    if scan.deflated:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds: Dataset = deflated_dataset(scan.header, scan.data_offset, path)
        texts = list(dict.fromkeys(str(w.message) for w in _pydicom_warnings(caught)))
        stop = _StopAtPixels()
    else:
        ds, stop, texts, _ = _parse(io.BytesIO(scan.header), force=force)
    if scan.pixel is not None:
        stop.tag = scan.pixel.tag
        stop.vr = scan.pixel.vr
        stop.length = scan.pixel.length
        stop.value_offset = scan.pixel.offset
    return ds, stop, texts, len(scan.header)


def _fast_header(path: str) -> HeaderRead | HeaderStructureError | None:
    """Read a plain Part 10 header with `bonelesion.dicom.fastheader.read_header`.

    None when the fast reader declines the file (not Part 10, big endian, deflated, a
    header that ends early …) or cannot open it: the checked pydicom path then reads it
    and reports the problem. A damaged structure comes back as its `HeaderStructureError`.
    """
    try:
        return read_header(path, chunk_bytes=_HEAD_BYTES)
    except HeaderStructureError as exc:
        return exc
    except OSError as exc:
        logger.debug("%s: fast header reader cannot read it (%s)", path, exc)
        return None


def _transfer_syntax(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    ts = _str(meta, "TransferSyntaxUID") if meta is not None else None
    if ts:
        return ts
    implicit, little = ds.original_encoding
    if implicit is None:
        return None
    if implicit:
        return "1.2.840.10008.1.2"
    return "1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2"


@functools.lru_cache(maxsize=1024)
def _uid_name(uid: str) -> str:
    """Pydicom's name of a UID (cached: a few SOP classes per export)."""
    return str(UID(uid).name)


def _classify(
    ds: Dataset,
    stop: _StopAtPixels,
    texts: list[str],
    stop_pos: int,
    path: str,
    part10: bool,
    size_bytes: int,
    secret: bytes | None,
    record: Callable[..., FileRecord],
    frames_out: _FramesOut | None = None,
    *,
    header_complete: bool = False,
) -> FileRecord:
    """Status, reason and values of a parsed header (``header_complete``: read in full)."""
    notes = "; ".join(texts)[:_NOTES_MAX_CHARS]
    meta = getattr(ds, "file_meta", None)
    ts = _transfer_syntax(ds)
    eof_warning = next((t for t in texts if "end of file" in t.lower() or "EOF" in t), None)
    if len(ds) == 0:
        if part10 and meta is not None and len(meta) > 0:
            if size_bytes <= stop_pos:
                return record(FileStatus.TRUNCATED,
                              f"The file ends after the File Meta Information ({size_bytes} "
                              "bytes): the data set is missing. Potential fix: copy the file "
                              "again from the source.", has_file_meta=True,
                              transfer_syntax_uid=ts, notes=notes)
        return record(FileStatus.ERROR if part10 else FileStatus.NOT_DICOM,
                      "No data element could be read after the "
                      f"{'File Meta Information' if part10 else 'first bytes'}"
                      f"{' (' + texts[0] + ')' if texts else ''}. "
                      "Potential fix: re-export the file.", has_file_meta=part10, notes=notes)

    sop_class = _str(ds, "SOPClassUID") or (_str(meta, "MediaStorageSOPClassUID")
                                            if meta is not None else None)
    common: dict[str, Any] = {
        "has_file_meta": part10,
        "transfer_syntax_uid": ts,
        "sop_class_uid": sop_class,
        "sop_class_name": _uid_name(sop_class) if sop_class else None,
        "notes": notes,
    }
    if sop_class == _DICOMDIR_SOP_CLASS or values.has(ds, "DirectoryRecordSequence"):
        records = values.items(ds, "DirectoryRecordSequence", strict=False)
        common["sop_class_name"] = common["sop_class_name"] or "Media Storage Directory Storage"
        return record(FileStatus.DICOMDIR,
                      f"DICOMDIR with {len(records)} directory records; recorded, not read "
                      "as an image: the index walks the folders itself.", **common)

    # Truncation of the header itself (a value that runs past the end of the file). A
    # deflated data set is parsed from its decompressed copy: offsets are not file offsets.
    deflated = ts == _DEFLATED_SYNTAX
    header_end = 0 if deflated or header_complete else _max_defined_end(ds)
    if eof_warning is not None or header_end > size_bytes:
        return record(FileStatus.TRUNCATED,
                      f"The header ends early: an element needs bytes up to {header_end} but "
                      f"the file has {size_bytes} bytes"
                      f"{' (' + eof_warning + ')' if eof_warning else ''}. "
                      "Potential fix: copy the file again from the source.", **common)

    try:
        if sop_class in SUPPORTED_SOP_CLASSES and sop_class != _RTSTRUCT_SOP_CLASS:
            uid_note = ensure_series_instance_uid(ds, path)
            if uid_note:
                notes = "; ".join(t for t in (uid_note, notes) if t)[:_NOTES_MAX_CHARS]
                common["notes"] = notes
        header_values = _header_values(ds, secret, frames_out)
    except InputError as exc:  # an invalid value the stack keys need: names file and value
        return record(FileStatus.ERROR, str(exc), **common)
    common.update(header_values)
    if sop_class is None:
        return record(FileStatus.MISSING_ATTRIBUTE,
                      "SOP Class UID (0008,0016) and Media Storage SOP Class UID (0002,0002) "
                      "are both absent: the kind of object is unknown. Potential fix: "
                      "re-export the file from the archive.", **common)
    if sop_class not in SUPPORTED_SOP_CLASSES:
        return record(FileStatus.UNSUPPORTED_SOP_CLASS,
                      f"SOP class {common['sop_class_name']} ({sop_class}) is not used by "
                      "bonelesion (supported: CT/MR images, enhanced CT/MR, parametric maps, "
                      "SEG, RTSTRUCT).", **common)

    # Pixel data: presence and cheap truncation check.
    has_pixels = stop.tag is not None
    pixel_offset: int | None = None
    pixel_bytes: int | None = None
    encapsulated: bool | None = None
    truncation: str | None = None
    if has_pixels and deflated:
        # Offsets refer to the inflated stream; a truncated deflate stream fails to inflate
        # (an error above), so only the length can be checked here.
        encapsulated = stop.length == UNDEFINED_LENGTH
        expected = _expected_native_bytes(ds)
        if not encapsulated:
            pixel_bytes = stop.length
            if expected is not None and stop.length < expected:
                truncation = (f"pixel data holds {stop.length} bytes; Rows × Columns × frames "
                              f"× samples × BitsAllocated/8 = {expected} bytes expected")
    elif has_pixels:
        implicit, little = ds.original_encoding
        vr32 = not implicit and stop.vr is not None and stop.vr.encode() in LONG_VR_BYTES
        header_len = 12 if vr32 else 8
        pixel_offset = stop.value_offset if stop.value_offset is not None else \
            stop_pos + header_len
        encapsulated = stop.length == UNDEFINED_LENGTH
        if encapsulated:
            with open(path, "rb") as fp_file:
                truncation = _walk_fragments(fp_file, pixel_offset, size_bytes, bool(little))
            if ts in _NATIVE_SYNTAXES:
                notes = (notes + "; " if notes else "") + (
                    "pixel data is encapsulated but the transfer syntax is native")
        else:
            pixel_bytes = stop.length
            expected = _expected_native_bytes(ds) if ts in _NATIVE_SYNTAXES else None
            if pixel_offset + stop.length > size_bytes:
                truncation = (f"pixel data needs {stop.length} bytes from byte {pixel_offset} "
                              f"but the file ends after {size_bytes} bytes "
                              f"({size_bytes - pixel_offset} bytes of pixel data present)")
            elif expected is not None and stop.length < expected:
                truncation = (f"pixel data holds {stop.length} bytes; Rows × Columns × frames "
                              f"× samples × BitsAllocated/8 = {expected} bytes expected")
    common.update(pixel_encapsulated=encapsulated, pixel_data_offset=pixel_offset,
                  pixel_data_bytes=pixel_bytes, notes=notes[:_NOTES_MAX_CHARS])
    if truncation is not None:
        return record(FileStatus.TRUNCATED,
                      f"Truncated file: {truncation}. Potential fix: copy the file again "
                      "from the source.", **common)

    missing = _missing(ds, sop_class, has_pixels)
    if missing:
        tags = ", ".join(f"{kw} {_tag_text(kw)}" for kw in missing)
        return record(FileStatus.MISSING_ATTRIBUTE,
                      f"{common['sop_class_name']} without {tags}: expected every one of them "
                      "to build a volume. Potential fix: re-export with full headers "
                      "(some anonymisers strip geometry).", **common)
    return record(FileStatus.OK, "", **common)


def _tag_text(keyword: str) -> str:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        return ""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _header_values(ds: Dataset, secret: bytes | None, frames_out: _FramesOut | None = None
                   ) -> dict[str, Any]:
    """Catalogue values of a parsed header (never patient identifiers in plain text).

    ``frames_out`` receives the flat headers and stack keys of the frames, when given.
    """
    n_frames = _int(ds, "NumberOfFrames")
    echo_time = _float(ds, "EchoTime")
    position = _floats(ds, "ImagePositionPatient")
    orientation = _floats(ds, "ImageOrientationPatient")
    spacing = _floats(ds, "PixelSpacing")
    thickness = _float(ds, "SliceThickness")
    image_type = _joined(ds, "ImageType")
    multiframe = values.has(ds, "PerFrameFunctionalGroupsSequence")
    if multiframe:
        fg = _first_frame_groups(ds) or _first_frame_groups_parsed(ds)

        position = position or _floats(fg("PlanePositionSequence"), "ImagePositionPatient")
        orientation = orientation or _floats(fg("PlaneOrientationSequence"),
                                             "ImageOrientationPatient")
        measures = fg("PixelMeasuresSequence")
        spacing = spacing or _floats(measures, "PixelSpacing")
        thickness = thickness if thickness is not None else _float(measures, "SliceThickness")
        echo = fg("MREchoSequence")
        echo_time = echo_time if echo_time is not None else _float(echo, "EffectiveEchoTime")

    modality = _str(ds, "Modality")
    flats, frame_keys = _frame_keys(ds) if _int(ds, "Rows") is not None else ([ds], [])
    if frames_out is not None and frame_keys:
        frames_out.append((flats, frame_keys))
    # b-value and direction come from the stack keys (vendor rules applied once per frame)
    first_frames: list[int] = []
    key_values = _key_values(frame_keys, multiframe, first_frames)
    field_t = _vendor_value("magnetic_field_strength_t", flats[0]) if modality == "MR" else None
    # each stack's own role, from its first frame (an enhanced object may hold several)
    calls = [_vendor_value("classify_stack", flats[i]) for i in first_frames]
    stack_roles = tuple(str(c.role.value) if c is not None else "other" for c in calls)
    stack_role_reasons = tuple(str(c.reason) if c is not None else "" for c in calls)
    role = stack_roles[0] if stack_roles else None
    kernel = _joined(ds, "ConvolutionKernel") or None
    frame_positions = _frame_positions(flats) if multiframe else None

    return {
        "sop_instance_uid": _str(ds, "SOPInstanceUID"),
        "study_instance_uid": _str(ds, "StudyInstanceUID"),
        "series_instance_uid": _str(ds, "SeriesInstanceUID"),
        "frame_of_reference_uid": _str(ds, "FrameOfReferenceUID"),
        "patient_key": _patient_key(ds, secret),
        "modality": modality,
        "manufacturer": _str(ds, "Manufacturer"),
        "manufacturer_model_name": _str(ds, "ManufacturerModelName"),
        "series_number": _int(ds, "SeriesNumber"),
        "series_description": _str(ds, "SeriesDescription"),
        "protocol_name": _str(ds, "ProtocolName"),
        "study_description": _str(ds, "StudyDescription"),
        "body_part_examined": _str(ds, "BodyPartExamined"),
        "instance_number": _int(ds, "InstanceNumber"),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "number_of_frames": n_frames,
        "samples_per_pixel": _int(ds, "SamplesPerPixel"),
        "bits_allocated": _int(ds, "BitsAllocated"),
        "photometric_interpretation": _str(ds, "PhotometricInterpretation"),
        "image_position_lps_mm": position if position is not None or not frame_keys
        else _uih_first_tile(flats[0]),
        "image_orientation_lps": orientation,
        "pixel_spacing_mm": spacing,
        "slice_thickness_mm": thickness,
        "echo_time_ms": echo_time,
        "echo_number": _int(ds, "EchoNumbers"),
        "repetition_time_ms": _float(ds, "RepetitionTime"),
        "magnetic_field_strength_t": None if field_t is None else float(field_t),
        "image_type": image_type or None,
        "convolution_kernel": kernel,
        "role": role,
        "stack_roles": stack_roles,
        "stack_role_reasons": stack_role_reasons,
        "frame_positions_lps_mm": frame_positions,
        **key_values,
    }


#: The functional groups the catalogue reads for the first frame.
_FIRST_FRAME_GROUPS = ("PlanePositionSequence", "PlaneOrientationSequence",
                       "PixelMeasuresSequence", "MREchoSequence")


def _first_frame_groups_parsed(ds: Dataset) -> Callable[[str], Dataset | None]:
    """Return ``fg(group)``, the first item of a functional group of the first frame.

    From the first per-frame item, else the shared item; the sequences parsed by pydicom.
    """
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    first = _first_item(ds, "PerFrameFunctionalGroupsSequence")

    def fg(group: str) -> Dataset | None:
        item = _first_item(first, group)
        return item if item is not None else _first_item(shared, group)
    return fg


def _first_frame_groups(ds: Dataset) -> Callable[[str], Dataset | None] | None:
    """`_first_frame_groups_parsed` read from the raw sequence bytes (`framegroups`).

    Only the first per-frame item is walked, and no sequence is parsed by pydicom (an
    819-frame enhanced object's per-frame sequence cost 30 ms a file). None when the
    sequences are not raw Explicit VR Little Endian ones: the caller parses them.
    """
    try:
        per_frame = values.raw_sequence(ds, "PerFrameFunctionalGroupsSequence")
        shared = values.raw_sequence(ds, "SharedFunctionalGroupsSequence") \
            if values.has(ds, "SharedFunctionalGroupsSequence") else None
        if per_frame is None or (shared is None
                                 and values.has(ds, "SharedFunctionalGroupsSequence")):
            return None
        firsts = [found[0][1] for found in (
            items_with_firsts(raw_sequence_bytes(elem), first_only=True)
            for elem in (per_frame, shared) if elem is not None) if found]
    except (NotPlain, InputError):
        return None
    items: dict[str, Dataset] = {}
    for group in _FIRST_FRAME_GROUPS:
        tag = values.canonical_tag(pydicom.datadict.tag_for_keyword(group) or 0)
        found = next((f[tag] for f in firsts if tag in f), None)
        if found is not None:
            item = new_dataset(dict(found))
            values.inherit_source(item, ds)
            items[group] = item

    def fg(group: str) -> Dataset | None:
        return items.get(group)
    return fg


def _uih_first_tile(flat: Dataset) -> tuple[float, ...] | None:
    """Position of the first tile of a UIH mosaic (no top-level ImagePositionPatient)."""
    if not vendors.uih.is_uih_mosaic(flat):
        return None
    tiles = vendors.uih.uih_tile_positions(flat)
    return None if tiles is None or not len(tiles) else tuple(float(v) for v in tiles[0])
