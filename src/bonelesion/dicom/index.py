"""Catalogue of an export: every file under a folder, its DICOM header facts, in SQLite.

``index_export(root, db_path)`` walks any folder layout (nested folders, DICOMDIR or none,
files without extension, raw data sets without a Part 10 header, junk, zero-byte and
truncated files, symbolic-link loops), reads headers only, and records one row per file
with a status and a reason. It never stops because of one bad file. ``Catalogue(db_path)``
answers the questions the batch planner asks (studies, series, files, stacks, problems).

Design
------
* **Walk** (main process): ``os.scandir`` over real folders first, then folder links,
  remembering (device, inode) of every folder entered, so a file reachable both ways is
  catalogued under its real path and link loops are recorded, not followed. Broken links
  and unlistable folders are recorded as entries with status ``error``; entries under an
  unlistable folder are kept from earlier runs. The catalogue file itself is skipped.
* **Read** (worker processes): files are sent in chunks to a ``ProcessPoolExecutor``.
  A worker reads a plain Part 10 header with `bonelesion.dicom.fastheader.read_header`
  (one or two reads, elements walked in memory, values left raw); every other file (no
  preamble, big endian, deflated, a header that ends early …) is parsed by pydicom's
  ``read_partial`` from its first 64 KiB, or from the file when the header is longer. The
  catalogue's own values are decoded straight from the raw bytes for simple VRs (no
  pydicom value conversion); the stack keys are the reader's (`flatten_frames` +
  `stack_key`, the vendor rules once per frame). Pixel-data presence and truncation are
  checked cheaply:
  native syntaxes compare the element length with Rows × Columns × frames × samples ×
  BitsAllocated / 8 and with the file size; encapsulated syntaxes walk the item headers
  (one 8-byte read per fragment).
* **Series context** (main process, after the walk): a stack key can depend on the rest
  of its series (a b0 whose only clue is a vendor b-value element of 0, in a series with
  b > 0 images: `bonelesion.dicom.multiframe.series_stack_keys`, the reader's rule). Every
  series written in a run is marked pending; a pending series whose own keys mix frames
  with and without a b-value (or that an earlier pass changed) has its files re-read and
  re-keyed. Other series are not read again.
* **Write** (main process only): one SQLite connection in WAL mode, one transaction per
  chunk of results. An interrupt (``KeyboardInterrupt``) rolls back the open chunk, so the
  catalogue always holds complete rows; the next run resumes from there.
* **Re-index**: files whose size and modification time (ns) are unchanged are not read
  again; files no longer present are deleted from the catalogue; changed files are re-read.
  Each row is stamped with ``READER_VERSION`` and the patient-key id it was read with; a
  change of either re-reads the files (also after an interrupted run).

Patient identifiers are never stored in plain text. With a secret key (argument
``patient_key_secret`` or the CLI's ``BONELESION_PATIENT_KEY`` environment variable) the
catalogue stores an HMAC-SHA256 of PatientID (``patient_key``) so that studies can be
grouped by patient; without a key nothing about the patient is stored. File paths are
stored relative to the export root as they are: exports that name folders after patients
carry those names into the catalogue (and into its problem reasons).

References
----------
DICOM PS3.10 §7 (File Meta Information), PS3.5 §7.1 and §A.4 (data elements, encapsulated
pixel data), PS3.3 §C.7.6.16 (multi-frame functional groups).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import sqlite3
import stat
import struct
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag
from pydicom.uid import UID

from bonelesion.dicom.fastheader import (
    ITEM_TAG,
    LONG_VR_BYTES,
    NUMBER_STRUCT_FORMATS,
    PIXEL_TAGS,
    SEQUENCE_DELIMITER_TAG,
    UNDEFINED_LENGTH,
    VR_BYTES,
    HeaderRead,
    read_header,
)
from bonelesion.dicom.identity import ensure_series_instance_uid
from bonelesion.dicom.multiframe import (
    StackKey,
    flatten_frames,
    series_context_role,
    series_stack_keys,
    stack_key,
)
from bonelesion.errors import ConfigError, InputError

__all__ = [
    "FileStatus",
    "FileRecord",
    "StudyRecord",
    "SeriesRecord",
    "StackRecord",
    "IndexSummary",
    "Catalogue",
    "index_export",
    "read_file_record",
    "SCHEMA_VERSION",
    "READER_VERSION",
    "DEFAULT_DB_NAME",
    "SUPPORTED_SOP_CLASSES",
]

logger = logging.getLogger(__name__)

#: Version of the SQLite layout; a catalogue with another version is rebuilt.
SCHEMA_VERSION = 3
#: Version of what a worker extracts from a file; a change forces every file to be re-read.
READER_VERSION = 3
#: Default catalogue file name (created in the current folder by the CLI).
DEFAULT_DB_NAME = "bonelesion-index.sqlite"

#: Bytes read up front; the header is parsed from memory when it fits (most single frames).
_HEAD_BYTES = 64 * 1024
#: Files per work item sent to a worker process.
_CHUNK_FILES = 128
#: Longest stored ``notes`` text (pydicom warnings about odd values).
_NOTES_MAX_CHARS = 500
#: Hex characters kept of the patient HMAC (128 bits: collision-free for any archive).
_PATIENT_KEY_HEX_CHARS = 32


class FileStatus(str, Enum):
    """What the indexer concluded about one catalogue entry."""

    OK = "ok"
    """A supported DICOM object with the attributes and pixel data the pipeline needs."""
    DICOMDIR = "dicomdir"
    """A DICOMDIR (Media Storage Directory); recorded, not used: the walk finds the files."""
    NOT_DICOM = "not_dicom"
    """Not a DICOM data set (text, image, archive, empty file …)."""
    TRUNCATED = "truncated"
    """A DICOM file that ends before its header or pixel data does."""
    MISSING_ATTRIBUTE = "missing_attribute"
    """A supported object without an attribute the pipeline needs (UIDs, geometry, pixels)."""
    UNSUPPORTED_SOP_CLASS = "unsupported_sop_class"
    """A DICOM object of a kind bonelesion does not use (SR, presentation state, RT plan …)."""
    ERROR = "error"
    """Anything else: corrupt header, unreadable file, broken link, link loop."""


#: SOP classes the pipeline reads: images (CT, MR, parametric maps) and ROI sources.
SUPPORTED_SOP_CLASSES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map Storage (e.g. ADC maps)
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage (ROI source)
        "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set Storage (ROI source)
    }
)
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


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, kw_only=True)
class FileRecord:
    """One catalogue entry (a file, or a folder link that could not be followed).

    Positions and directions are DICOM LPS patient coordinates. ``None`` means "absent in
    the header" (or not applicable to the entry's status).

    Parameters
    ----------
    path : str
        Path relative to the export root, with ``/`` separators.
    size_bytes, mtime_ns : int
        File size and modification time (ns) when read; the re-index skip key.
    status : str
        A `FileStatus` value.
    reason : str
        Why the status is not ``ok`` (a sentence naming what was found and expected);
        empty for ``ok``.
    notes : str
        Data-quality remarks raised while reading an otherwise usable header.
    has_file_meta : bool or None
        True for a Part 10 file (preamble + File Meta Information); False for a raw data
        set (read it with ``force=True``).
    transfer_syntax_uid : str or None
        From the File Meta Information, or the encoding detected for raw data sets.
    image_position_lps_mm, image_orientation_lps : tuple of float or None
        ImagePositionPatient / ImageOrientationPatient (first frame of a multi-frame).
    pixel_spacing_mm : tuple of float or None
        PixelSpacing (row spacing, column spacing).
    stack_keys : tuple of str
        Keys of the stacks (3-D volumes) the file's frames belong to, in first-frame order.
    stack_n_frames : tuple of int
        Number of the file's frames in each of ``stack_keys``.
    frame_positions_lps_mm : tuple of (x, y, z) or None
        ImagePositionPatient of every frame of a multi-frame object, in frame order (None
        for single-frame files: see ``image_position_lps_mm``).
    frame_stack_indices : tuple of int or None
        Stack of every frame of a multi-frame object, in frame order: frame *i* belongs to
        ``stack_keys[frame_stack_indices[i]]`` (None for single-frame files).
    stack_b_values_s_per_mm2 : tuple of float or None
        b-value of each of ``stack_keys`` (None: not a diffusion-weighted stack).
    series_b_value_s_per_mm2 : float or None
        b-value that only the series context gives this file's (first) frames — a b0
        whose only clue is a vendor b-value element of 0, in a series with b > 0 images
        (`bonelesion.dicom.multiframe.series_stack_keys`); None when the file's own header
        decides its stack keys.
    pixel_data_offset, pixel_data_bytes : int or None
        File offset of the pixel data element's value and its length (None when
        encapsulated with undefined length, or absent).
    """

    path: str
    size_bytes: int
    mtime_ns: int
    status: str
    reason: str = ""
    notes: str = ""
    has_file_meta: bool | None = None
    transfer_syntax_uid: str | None = None
    sop_class_uid: str | None = None
    sop_class_name: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    patient_key: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    manufacturer_model_name: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    study_description: str | None = None
    body_part_examined: str | None = None
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    samples_per_pixel: int | None = None
    bits_allocated: int | None = None
    photometric_interpretation: str | None = None
    image_position_lps_mm: tuple[float, ...] | None = None
    image_orientation_lps: tuple[float, ...] | None = None
    pixel_spacing_mm: tuple[float, ...] | None = None
    slice_thickness_mm: float | None = None
    echo_time_ms: float | None = None
    echo_number: int | None = None
    repetition_time_ms: float | None = None
    b_value_s_per_mm2: float | None = None
    magnetic_field_strength_t: float | None = None
    image_type: str | None = None
    convolution_kernel: str | None = None
    role: str | None = None
    stack_keys: tuple[str, ...] = ()
    stack_n_frames: tuple[int, ...] = ()
    frame_positions_lps_mm: tuple[tuple[float, ...], ...] | None = None
    frame_stack_indices: tuple[int, ...] | None = None
    stack_b_values_s_per_mm2: tuple[float | None, ...] = ()
    series_b_value_s_per_mm2: float | None = None
    pixel_encapsulated: bool | None = None
    pixel_data_offset: int | None = None
    pixel_data_bytes: int | None = None


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FileRecord))
_JSON_FIELDS = frozenset(
    {"image_position_lps_mm", "image_orientation_lps", "pixel_spacing_mm", "stack_keys",
     "stack_n_frames", "frame_positions_lps_mm", "frame_stack_indices",
     "stack_b_values_s_per_mm2"}
)
_BOOL_FIELDS = frozenset({"has_file_meta", "pixel_encapsulated"})
_INT_FIELDS = frozenset(
    {"size_bytes", "mtime_ns", "series_number", "instance_number", "rows", "columns",
     "number_of_frames", "samples_per_pixel", "bits_allocated", "echo_number",
     "pixel_data_offset", "pixel_data_bytes"}
) | _BOOL_FIELDS
_REAL_FIELDS = frozenset(
    {"slice_thickness_mm", "echo_time_ms", "repetition_time_ms", "b_value_s_per_mm2",
     "magnetic_field_strength_t", "series_b_value_s_per_mm2"}
)


def _sql_type(name: str) -> str:
    if name in _INT_FIELDS:
        return "INTEGER"
    if name in _REAL_FIELDS:
        return "REAL"
    return "TEXT"


@dataclass(frozen=True, kw_only=True)
class StackRecord:
    """One stack (3-D volume) of a series: files and frames sharing a stack key.

    Parameters
    ----------
    series_instance_uid, stack_key : str
        The series and the key (``str`` of the reader's StackKey).
    n_files, n_frames : int
        Number of files and of frames that contribute to the stack.
    paths : tuple of str
        The contributing files, relative to the export root, sorted.
    """

    series_instance_uid: str
    stack_key: str
    n_files: int
    n_frames: int
    paths: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SeriesRecord:
    """One series with usable (``ok``) files.

    Parameters
    ----------
    series_instance_uid, study_instance_uid : str
        The UIDs.
    modality, manufacturer, series_description : str
        Values of the first file (empty when absent).
    series_number : int or None
        SeriesNumber.
    frame_of_reference_uids : tuple of str
        Distinct FrameOfReferenceUIDs in the series (more than one is a warning sign).
    sop_class_uids : tuple of str
        Distinct SOP classes in the series.
    n_files, n_frames, n_stacks : int
        Counts of ``ok`` files, their frames, and distinct stack keys.
    """

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    manufacturer: str
    series_description: str
    series_number: int | None
    frame_of_reference_uids: tuple[str, ...]
    sop_class_uids: tuple[str, ...]
    n_files: int
    n_frames: int
    n_stacks: int


@dataclass(frozen=True, kw_only=True)
class StudyRecord:
    """One study with usable (``ok``) files.

    Parameters
    ----------
    study_instance_uid : str
        StudyInstanceUID.
    patient_key : str or None
        Keyed hash of PatientID (None when indexed without a key).
    modalities : tuple of str
        Distinct modalities, sorted.
    n_series, n_files : int
        Counts of series and of ``ok`` files.
    """

    study_instance_uid: str
    patient_key: str | None
    modalities: tuple[str, ...]
    n_series: int
    n_files: int


@dataclass(frozen=True, kw_only=True)
class IndexSummary:
    """What one ``index_export`` run did.

    Parameters
    ----------
    root, db_path : Path
        Export root and catalogue file (absolute).
    workers : int
        Worker processes used (1 = in process).
    files_seen : int
        Entries found by the walk (files plus unreadable links/folders).
    files_read : int
        Files whose header was read in this run (new or changed).
    files_unchanged : int
        Files skipped because size and modification time were unchanged.
    files_removed : int
        Catalogue entries deleted because the file is gone.
    files_reread : int
        Files read a second time for stack keys that depend on their series (see
        `bonelesion.dicom.multiframe.series_stack_keys`).
    status_counts : dict of str to int
        Entries per status in the whole catalogue after the run.
    duration_s : float
        Wall time of the run.
    """

    root: Path
    db_path: Path
    workers: int
    files_seen: int
    files_read: int
    files_unchanged: int
    files_removed: int
    files_reread: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def files_read_per_s(self) -> float:
        """Read throughput of the run (files read per second of wall time)."""
        return self.files_read / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def n_problems(self) -> int:
        """Entries that are neither ``ok``, ``dicomdir`` nor an unsupported SOP class."""
        skip = {FileStatus.OK.value, FileStatus.DICOMDIR.value,
                FileStatus.UNSUPPORTED_SOP_CLASS.value}
        return sum(n for s, n in self.status_counts.items() if s not in skip)


# --------------------------------------------------------------------------- stack key
# The stack key is the reader's: `flatten_frames` turns a multi-frame object into one flat
# header per frame and `stack_key(flat)` (bonelesion.dicom.multiframe) applies the vendor
# rules (b-value, gradient direction, echo time, diffusion kind) to it. The index takes the
# b-value and direction of its records from those keys, so no vendor function runs twice
# on a header: per frame `stack_key`, per file `stack_role` (first frame) and
# `magnetic_field_strength_t`.


def _frame_keys(ds: Dataset) -> tuple[list[Dataset], list[StackKey]]:
    """Flat headers and stack keys of a file's frames, in frame order."""
    flats = flatten_frames(ds)
    return flats, [stack_key(flat) for flat in flats]


def _key_values(keys: Sequence[StackKey], multiframe: bool) -> dict[str, Any]:
    """Record fields that follow from a file's frame keys (in frame order).

    ``stack_keys`` in first-frame order with ``stack_n_frames`` and
    ``stack_b_values_s_per_mm2``; ``frame_stack_indices`` for a multi-frame object; and the
    file's ``b_value_s_per_mm2`` (None when its frames differ).
    """
    counts: dict[str, int] = {}
    b_of_key: dict[str, float | None] = {}
    texts = []
    for key in keys:
        text = str(key)
        texts.append(text)
        if text in counts:
            counts[text] += 1
        else:
            counts[text] = 1
            b_of_key[text] = key.b_value_s_per_mm2
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


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = _raw(ds, keyword)
    if seq is None or len(seq) == 0:
        return None
    item: Dataset = seq[0]
    return item


# ----------------------------------------------------------------------- value helpers


_ASCII_VRS = frozenset({"UI", "CS", "IS", "DS", "AS", "DA", "TM", "DT", "AE"})
_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC"})
_NUMBER_SIZES = {fmt: struct.calcsize(fmt) for fmt in NUMBER_STRUCT_FORMATS.values()}
_TAG_VR_CACHE: dict[str, tuple[BaseTag, str]] = {}


def _tag_vr(keyword: str) -> tuple[BaseTag, str]:
    found = _TAG_VR_CACHE.get(keyword)
    if found is None:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(keyword)
        found = (BaseTag(tag), pydicom.datadict.dictionary_VR(tag))
        _TAG_VR_CACHE[keyword] = found
    return found


def _fast_value(raw: RawDataElement, vr: str) -> tuple[bool, Any]:
    """Decode the value of a raw element of a simple VR; (False, None) when not simple.

    pydicom's generic conversion (charset handling, validation) costs most of the read
    time of a small file; ASCII-only strings and binary numbers need none of it.
    """
    data = raw.value
    if data is None:
        return False, None
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
        values = struct.unpack(("<" if raw.is_little_endian else ">") + fmt * count,
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
    if isinstance(elem, RawDataElement):
        simple, value = _fast_value(elem, elem.VR or vr)
        if simple:
            return None if value == "" else value
        try:
            value = ds[tag].value
        except Exception:  # noqa: BLE001 - a malformed value must not fail the file
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
    value = _raw(ds, keyword)
    if value is None:
        return None
    try:
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            value = value[0]
        try:
            return int(value)
        except ValueError:
            return int(float(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _float(ds: Dataset | None, keyword: str) -> float | None:
    value = _raw(ds, keyword)
    if value is None:
        return None
    try:
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _floats(ds: Dataset | None, keyword: str) -> tuple[float, ...] | None:
    value = _raw(ds, keyword)
    if value is None:
        return None
    try:
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            return tuple(float(v) for v in value)
        return (float(value),)
    except (TypeError, ValueError):
        return None


def _joined(ds: Dataset | None, keyword: str) -> str:
    value = _raw(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _vendor_value(name: str, ds: Dataset) -> Any:
    """Call ``bonelesion.dicom.vendors.<name>(ds)``; None while it is not implemented.

    Vendor knowledge lives only in ``vendors``; a failure there must not fail the file.
    """
    from bonelesion.dicom import vendors

    try:
        return getattr(vendors, name)(ds)
    except NotImplementedError:
        return None
    except Exception as exc:  # noqa: BLE001 - vendor parsing of odd headers is best effort
        logger.debug("vendors.%s failed: %s", name, exc)
        return None


def _patient_key(ds: Dataset, secret: bytes | None) -> str | None:
    if secret is None:
        return None
    patient_id = _str(ds, "PatientID")
    if patient_id is None:
        return None
    digest = hmac.new(secret, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:_PATIENT_KEY_HEX_CHARS]


# ------------------------------------------------------------------------- file reading


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
    """Warnings raised by pydicom about the file (not unrelated ones, e.g. from GC)."""
    marker = os.sep + "pydicom" + os.sep
    return [w for w in caught if marker in w.filename]


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
    missing = [kw for kw in need if _raw(ds, kw) is None]
    if sop_class != _RTSTRUCT_SOP_CLASS and not has_pixels:
        missing.append("PixelData")
    return missing


def read_file_record(
    root: str | os.PathLike[str],
    relpath: str,
    *,
    size_bytes: int | None = None,
    mtime_ns: int | None = None,
    patient_key_secret: bytes | None = None,
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

    Returns
    -------
    FileRecord
        Every failure is a status with a reason, never an exception. The stack keys are
        the file's own: keys that depend on the rest of the series (see
        `bonelesion.dicom.multiframe.series_stack_keys`) are applied by `index_export`.
    """
    return _read_file_record(root, relpath, size_bytes, mtime_ns, patient_key_secret, None)


#: Receives (flat headers, stack keys) of a file's frames (see `_read_file_record`).
_FramesOut = list[tuple[list[Dataset], list[StackKey]]]


def _read_file_record(
    root: str | os.PathLike[str],
    relpath: str,
    size_bytes: int | None,
    mtime_ns: int | None,
    secret: bytes | None,
    frames_out: _FramesOut | None,
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
            rec = _read_record(path, relpath, size_bytes, mtime_ns, secret, frames_out)
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
) -> FileRecord:
    base: dict[str, Any] = {"path": relpath, "size_bytes": size_bytes, "mtime_ns": mtime_ns}

    def record(status: FileStatus, reason: str = "", **values: Any) -> FileRecord:
        return FileRecord(**base, status=status.value, reason=reason, **values)

    if size_bytes == 0:
        return record(FileStatus.NOT_DICOM,
                      "The file is empty (0 bytes); a DICOM file holds at least a header. "
                      "Potential fix: copy the file again from the source if the export "
                      "was interrupted.")
    fast = _fast_header(path)
    if fast is not None:
        stop = _StopAtPixels()
        if fast.pixel_data_tag is not None:
            stop.tag = fast.pixel_data_tag
            stop.length = fast.pixel_data_length or 0
            stop.value_offset = fast.pixel_data_offset
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

        complete = len(head) >= size_bytes
        parsed: tuple[Dataset, _StopAtPixels, list[str], int] | None = None
        try:
            parsed = _parse(io.BytesIO(head), force=not part10)
        except Exception:  # noqa: BLE001 - a chunk cut inside the header; retried below
            if complete:
                raise
        if parsed is None or (not complete and parsed[1].tag is None):
            # The header is longer than the first chunk: parse from the file itself.
            fp_file.seek(0)
            parsed = _parse(fp_file, force=not part10)
        ds, stop, texts, stop_pos = parsed
        return _classify(ds, stop, texts, stop_pos, path, part10, size_bytes, secret,
                         record, frames_out)
    except zlib.error as exc:  # deflated transfer syntax
        status = FileStatus.TRUNCATED if "truncated" in str(exc) else FileStatus.ERROR
        return record(status,
                      f"The deflated data set cannot be inflated ({exc}); the file has "
                      f"{size_bytes} bytes. Potential fix: copy the file again from the source.",
                      has_file_meta=part10, transfer_syntax_uid=_DEFLATED_SYNTAX)
    except (EOFError, struct.error) as exc:
        return record(FileStatus.TRUNCATED,
                      f"The header ends early ({exc}); the file has {size_bytes} bytes. "
                      "Potential fix: copy the file again from the source.",
                      has_file_meta=part10)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on junk
        return record(FileStatus.ERROR,
                      f"The header cannot be parsed: {type(exc).__name__}: {exc}. "
                      "Potential fix: re-export the file; check it with dciodvfy.",
                      has_file_meta=part10)
    finally:
        fp_file.close()


def _fast_header(path: str) -> HeaderRead | None:
    """Read a plain Part 10 header with `bonelesion.dicom.fastheader.read_header`.

    None when the fast reader declines the file (not Part 10, big endian, deflated, a
    header that ends early …) or fails on it: pydicom then reads it and reports the problem.
    """
    try:
        return read_header(path, chunk_bytes=_HEAD_BYTES)
    except Exception as exc:  # noqa: BLE001 - the pydicom path reads and reports the file
        logger.debug("%s: fast header reader failed (%s); reading with pydicom", path, exc)
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
        "sop_class_name": UID(sop_class).name if sop_class else None,
        "notes": notes,
    }
    if sop_class == _DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        records = _raw(ds, "DirectoryRecordSequence") or []
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

    if sop_class in SUPPORTED_SOP_CLASSES and sop_class != _RTSTRUCT_SOP_CLASS:
        uid_note = ensure_series_instance_uid(ds, path)
        if uid_note:
            notes = "; ".join(t for t in (uid_note, notes) if t)[:_NOTES_MAX_CHARS]
            common["notes"] = notes
    values = _header_values(ds, secret, frames_out)
    common.update(values)
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
    multiframe = "PerFrameFunctionalGroupsSequence" in ds
    if multiframe:
        shared = _first_item(ds, "SharedFunctionalGroupsSequence")
        first = _first_item(ds, "PerFrameFunctionalGroupsSequence")

        def fg(group: str) -> Dataset | None:
            item = _first_item(first, group)
            return item if item is not None else _first_item(shared, group)

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
    key_values = _key_values(frame_keys, multiframe)
    field_t = _vendor_value("magnetic_field_strength_t", flats[0]) if modality == "MR" else None
    role = _vendor_value("stack_role", flats[0]) if frame_keys else None
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
        "image_position_lps_mm": position,
        "image_orientation_lps": orientation,
        "pixel_spacing_mm": spacing,
        "slice_thickness_mm": thickness,
        "echo_time_ms": echo_time,
        "echo_number": _int(ds, "EchoNumbers"),
        "repetition_time_ms": _float(ds, "RepetitionTime"),
        "magnetic_field_strength_t": None if field_t is None else float(field_t),
        "image_type": image_type or None,
        "convolution_kernel": kernel,
        "role": None if role is None else str(getattr(role, "value", role)),
        "frame_positions_lps_mm": frame_positions,
        **key_values,
    }


def _read_chunk(
    root: str, items: Sequence[tuple[str, int, int]], secret: bytes | None
) -> list[tuple[Any, ...]]:
    """Worker entry point: read a chunk of files, return database rows."""
    return [
        _to_row(read_file_record(root, rel, size_bytes=size, mtime_ns=mtime,
                                 patient_key_secret=secret))
        for rel, size, mtime in items
    ]


def _worker_init() -> None:
    """Ignore Ctrl-C in workers: the main process handles the interrupt and cleans up."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------- row <-> record


def _to_row(rec: FileRecord) -> tuple[Any, ...]:
    row: list[Any] = []
    for name in _FIELD_NAMES:
        value = getattr(rec, name)
        if value is not None and name in _JSON_FIELDS:
            value = json.dumps(list(value))
        elif value is not None and name in _BOOL_FIELDS:
            value = int(value)
        row.append(value)
    return tuple(row)


def _from_row(row: Sequence[Any]) -> FileRecord:
    values: dict[str, Any] = {}
    for name, value in zip(_FIELD_NAMES, row, strict=True):
        if value is not None and name in _JSON_FIELDS:
            value = tuple(tuple(v) if isinstance(v, list) else v for v in json.loads(value))
        elif value is not None and name in _BOOL_FIELDS:
            value = bool(value)
        values[name] = value
    return FileRecord(**values)


# --------------------------------------------------------------------------------- walk


@dataclass
class _WalkResult:
    files: list[tuple[str, int, int]] = field(default_factory=list)
    problems: list[FileRecord] = field(default_factory=list)
    unlisted_dirs: list[str] = field(default_factory=list)


def _walk(root: Path, skip: set[str]) -> _WalkResult:
    """List every file under ``root``, following folder links but never in a loop.

    Real folders are walked first and folder links afterwards, so that a file reachable
    both ways is catalogued under its real path; a link to a folder already walked (a
    loop, or a second path) is recorded as an ``error`` entry and not followed.
    """
    out = _WalkResult()
    visited: set[tuple[int, int]] = set()
    folders: list[tuple[str, str]] = [(os.fspath(root), "")]
    links: list[tuple[str, str, str]] = []  # (path, relative path, link target)
    while folders or links:
        if folders:
            folder, rel_folder = folders.pop()
        else:
            folder, rel_folder, target = links.pop(0)
            try:
                st = os.stat(folder)
            except OSError as exc:
                out.problems.append(_walk_problem(rel_folder, f"Folder link to {target} "
                                                  f"cannot be followed: {exc.strerror or exc}."))
                continue
            if (st.st_dev, st.st_ino) in visited:
                out.problems.append(_walk_problem(
                    rel_folder, f"Folder link to {target} leads to a folder already indexed "
                    "(a link loop or a second path to the same folder); not followed."))
                continue
        try:
            st = os.stat(folder)
            visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.unlisted_dirs.append(rel_folder)
            out.problems.append(_walk_problem(
                rel_folder or ".", f"Folder cannot be listed: {exc.strerror or exc}; its "
                "files are not indexed (entries from earlier runs are kept). Potential fix: "
                "check folder permissions."))
            continue
        for entry in reversed(entries):  # stack: pop in name order
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            if rel in skip:
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    if entry.is_symlink():
                        links.append((entry.path, rel, os.readlink(entry.path)))
                    else:
                        folders.append((entry.path, rel))
                    continue
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                target = os.readlink(entry.path) if entry.is_symlink() else "?"
                out.problems.append(_walk_problem(
                    rel, f"Broken symbolic link to {target}: the target does not exist. "
                    "Potential fix: restore the target or remove the link."))
                continue
            except OSError as exc:
                out.problems.append(_walk_problem(
                    rel, f"Entry cannot be examined: {exc.strerror or exc}. Potential fix: "
                    "check permissions (or a loop of file links)."))
                continue
            if stat.S_ISREG(st.st_mode):
                out.files.append((rel, st.st_size, st.st_mtime_ns))
            else:
                out.problems.append(FileRecord(
                    path=rel, size_bytes=0, mtime_ns=0, status=FileStatus.NOT_DICOM.value,
                    reason="Not a regular file (device, socket or pipe); not read."))
    out.files.sort()
    out.problems.sort(key=lambda r: r.path)
    return out


def _walk_problem(rel: str, reason: str) -> FileRecord:
    return FileRecord(path=rel, size_bytes=0, mtime_ns=0, status=FileStatus.ERROR.value,
                      reason=reason)


# ------------------------------------------------------------------------------ database

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    {', '.join(f'{n} {_sql_type(n)}' + (' PRIMARY KEY' if n == 'path' else '')
               for n in _FIELD_NAMES)},
    read_with TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS file_stacks (
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    stack_key TEXT NOT NULL,
    series_instance_uid TEXT,
    n_frames INTEGER NOT NULL,
    b_value_s_per_mm2 REAL,
    PRIMARY KEY (path, stack_key)
);
CREATE TABLE IF NOT EXISTS pending_series (series_instance_uid TEXT PRIMARY KEY);
CREATE INDEX IF NOT EXISTS files_series ON files(series_instance_uid);
CREATE INDEX IF NOT EXISTS files_study ON files(study_instance_uid);
CREATE INDEX IF NOT EXISTS files_status ON files(status);
CREATE INDEX IF NOT EXISTS stacks_series ON file_stacks(series_instance_uid);
"""

# `read_with` stamps each row with READER_VERSION and the patient-key id it was read with:
# a row is re-read when its size, mtime or stamp differ (so a stopped run resumes, and a
# stopped full re-read after a reader or key change is finished next time).
_INSERT_FILE = (f"INSERT OR REPLACE INTO files ({', '.join(_FIELD_NAMES)}, read_with) "
                f"VALUES ({', '.join('?' for _ in _FIELD_NAMES)}, ?)")
_POS = {name: i for i, name in enumerate(_FIELD_NAMES)}
# The series a path belonged to before it is rewritten: its stack keys may change too.
_MARK_OLD_SERIES = ("INSERT OR IGNORE INTO pending_series SELECT series_instance_uid FROM "
                    "files WHERE path = ? AND series_instance_uid IS NOT NULL")


def _connect(db_path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(os.fspath(db_path), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InputError(
            f"Catalogue {db_path}: cannot be opened as an SQLite database ({exc}); expected "
            "a writable catalogue file written by `bonelesion index` (or none yet). "
            "Potential fix: pass --db with a new file in a writable folder."
        ) from exc
    return con


def _prepare(con: sqlite3.Connection, db_path: Path, root: Path) -> None:
    """Create the schema, or check that the catalogue belongs to ``root`` (rebuild if old)."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    meta: dict[str, str] = {}
    if "meta" in tables:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    elif tables:
        raise InputError(
            f"Catalogue {db_path}: an SQLite database with tables {sorted(tables)} but no "
            "`meta` table; expected a bonelesion catalogue. Potential fix: pass another "
            "--db file."
        )
    if meta.get("root") not in (None, os.fspath(root)):
        raise InputError(
            f"Catalogue {db_path}: it catalogues the export {meta['root']}, not {root}. "
            "Potential fix: pass --db with a separate catalogue file for each export."
        )
    rebuild = meta.get("schema_version") not in (None, str(SCHEMA_VERSION))
    con.execute("BEGIN IMMEDIATE")
    try:
        if rebuild:
            logger.info("Catalogue %s has schema %s (now %d): rebuilding it", db_path,
                        meta.get("schema_version"), SCHEMA_VERSION)
            con.execute("DROP TABLE IF EXISTS file_stacks")
            con.execute("DROP TABLE IF EXISTS files")
            con.execute("DROP TABLE IF EXISTS pending_series")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
        con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
            ("schema_version", str(SCHEMA_VERSION)),
            ("root", os.fspath(root)),
        ])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _write_rows(con: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], stamp: str,
                *, series_done: str | None = None) -> None:
    """Insert rows (read with ``stamp``) and their stack memberships in one transaction.

    The series of the rows (and the series the same paths were in before) are marked for
    the series-context pass (`_apply_series_context`), unless ``series_done`` is given:
    the series-context pass of that series is writing, and it is marked done instead.
    """
    if not rows:
        return
    pi, si = _POS["path"], _POS["series_instance_uid"]
    ki, ni, bi = _POS["stack_keys"], _POS["stack_n_frames"], _POS["stack_b_values_s_per_mm2"]
    stack_rows: list[tuple[str, str, str | None, int, float | None]] = []
    for row in rows:
        if row[ki] is None:
            continue
        keys = json.loads(row[ki])
        counts = json.loads(row[ni]) if row[ni] is not None else [1] * len(keys)
        b_values = json.loads(row[bi]) if row[bi] is not None else [None] * len(keys)
        stack_rows.extend((row[pi], k, row[si], n, b)
                          for k, n, b in zip(keys, counts, b_values, strict=True))
    if logger.isEnabledFor(logging.DEBUG):
        reason_i, status_i = _POS["reason"], _POS["status"]
        for row in rows:
            logger.debug("%s: %s %s", row[pi], row[status_i], row[reason_i])
    con.execute("BEGIN IMMEDIATE")
    try:
        if series_done is None:
            con.executemany(_MARK_OLD_SERIES, [(r[pi],) for r in rows])
            con.executemany("INSERT OR IGNORE INTO pending_series VALUES (?)",
                            [(uid,) for uid in {r[si] for r in rows} if uid is not None])
        else:
            con.execute("DELETE FROM pending_series WHERE series_instance_uid = ?",
                        (series_done,))
        con.executemany("DELETE FROM file_stacks WHERE path = ?", [(r[pi],) for r in rows])
        con.executemany(_INSERT_FILE, [(*row, stamp) for row in rows])
        con.executemany("INSERT INTO file_stacks VALUES (?, ?, ?, ?, ?)", stack_rows)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


# ------------------------------------------------------------------------------ indexing


def _key_id(secret: bytes | None) -> str:
    if secret is None:
        return ""
    return hmac.new(secret, b"bonelesion-patient-key-id", hashlib.sha256).hexdigest()[:16]


def index_export(
    root: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    patient_key_secret: bytes | None = None,
) -> IndexSummary:
    """Catalogue every file under ``root`` into the SQLite file ``db_path``.

    Parameters
    ----------
    root : path
        Export folder (any layout); opened read-only.
    db_path : path
        Catalogue file; created when absent, updated incrementally when present.
    workers : int, optional
        Worker processes reading headers; 1 reads in this process. Default: CPU count.
    progress : callable, optional
        Called as ``progress(files_done, files_to_read)`` after each chunk.
    patient_key_secret : bytes, optional
        Secret for the keyed hash of PatientID stored as ``patient_key``. Without it no
        patient information is stored. Changing it re-reads every file.

    Returns
    -------
    IndexSummary
        Counts of what was read, skipped and removed, and per status.

    Raises
    ------
    InputError
        ``root`` is not a folder, or ``db_path`` is not a catalogue of this export.
    ConfigError
        ``workers`` is below 1.

    Notes
    -----
    Each chunk of results is written in one transaction, so an interrupt leaves complete
    rows only, and the next run resumes (files already written are unchanged, hence
    skipped). Removed files are deleted only after a complete walk.
    """
    t0 = time.perf_counter()
    root_path = Path(root).resolve()
    db = Path(db_path).resolve()
    if not root_path.is_dir():
        raise InputError(
            f"Export folder {root}: not found or not a folder; expected the folder that "
            "holds the DICOM files. Potential fix: check the path."
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"workers: must be ≥ 1, found {workers}. Potential fix: omit it "
                          "to use every CPU.")
    n_workers = workers or len(os.sched_getaffinity(0))
    con = _connect(db)
    try:
        stamp = f"reader {READER_VERSION}, patient key {_key_id(patient_key_secret) or '-'}"
        _prepare(con, db, root_path)
        skip = set()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                skip.add(Path(os.fspath(db) + suffix).relative_to(root_path).as_posix())
            except ValueError:
                pass
        walk = _walk(root_path, skip)
        known = {p: (s, m, r) for p, s, m, r in
                 con.execute("SELECT path, size_bytes, mtime_ns, read_with FROM files")}
        todo = [f for f in walk.files if known.get(f[0]) != (f[1], f[2], stamp)]
        unchanged = len(walk.files) - len(todo)
        logger.info("Index %s: %d files found, %d to read, %d unchanged", root_path,
                    len(walk.files), len(todo), unchanged)
        _write_rows(con, [_to_row(p) for p in walk.problems], stamp)
        _read_all(con, root_path, todo, n_workers, progress, patient_key_secret, stamp)
        removed = _remove_gone(con, walk)
        reread = _apply_series_context(con, root_path, patient_key_secret, stamp)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = dict(con.execute("SELECT status, count(*) FROM files GROUP BY status"))
    finally:
        con.close()
    summary = IndexSummary(
        root=root_path, db_path=db, workers=n_workers,
        files_seen=len(walk.files) + len(walk.problems), files_read=len(todo),
        files_unchanged=unchanged, files_removed=removed, files_reread=reread,
        status_counts=counts,
        duration_s=time.perf_counter() - t0,
    )
    logger.info("Indexed %s in %.2f s: %d read (%.0f files/s), %d unchanged, %d removed, "
                "%d re-read for series-level stack keys; %s", root_path, summary.duration_s,
                summary.files_read, summary.files_read_per_s, unchanged, removed, reread,
                counts)
    if summary.n_problems:
        logger.warning("%s: %d entries are truncated, corrupt, not DICOM or lack attributes; "
                       "list them with Catalogue(%r).problems()", root_path,
                       summary.n_problems, os.fspath(db))
    return summary


def _read_all(
    con: sqlite3.Connection,
    root: Path,
    todo: list[tuple[str, int, int]],
    n_workers: int,
    progress: Callable[[int, int], None] | None,
    secret: bytes | None,
    stamp: str,
) -> None:
    """Read every file of ``todo`` (in chunks, in workers) and write the rows chunk by chunk.

    A worker pool that breaks (a worker killed, e.g. out of memory) does not stop the run:
    the chunks not yet written are read in this process instead.
    """
    total = len(todo)
    if total == 0:
        if progress is not None:
            progress(0, 0)
        return
    chunks = [todo[i:i + _CHUNK_FILES] for i in range(0, total, _CHUNK_FILES)]
    done = 0

    def write(rows: list[tuple[Any, ...]]) -> None:
        nonlocal done
        _write_rows(con, rows, stamp)
        done += len(rows)
        if progress is not None:
            progress(done, total)

    left: list[list[tuple[str, int, int]]] = chunks
    if n_workers > 1 and len(chunks) > 1:
        left = _read_in_pool(root, chunks, n_workers, secret, write)
    for chunk in left:
        write(_read_chunk(os.fspath(root), chunk, secret))


def _read_in_pool(
    root: Path,
    chunks: list[list[tuple[str, int, int]]],
    n_workers: int,
    secret: bytes | None,
    write: Callable[[list[tuple[Any, ...]]], None],
) -> list[list[tuple[str, int, int]]]:
    """Read chunks in a process pool; return the chunks left unread if the pool broke."""
    executor = ProcessPoolExecutor(max_workers=min(n_workers, len(chunks)),
                                   initializer=_worker_init)
    pending: dict[Future[list[tuple[Any, ...]]], list[tuple[str, int, int]]] = {}
    n_sent = 0

    def send() -> None:
        nonlocal n_sent
        chunk = chunks[n_sent]
        pending[executor.submit(_read_chunk, os.fspath(root), chunk, secret)] = chunk
        n_sent += 1  # only once submitted: a chunk is either pending or still to send

    try:
        # Keep a bounded number of chunks in flight so results stream into the database.
        while n_sent < len(chunks) and len(pending) < 4 * n_workers:
            send()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                rows = fut.result()
                pending.pop(fut)
                write(rows)
                if n_sent < len(chunks):
                    send()
    except BrokenProcessPool as exc:
        left = list(pending.values()) + chunks[n_sent:]
        logger.warning("Worker pool broke (%s); reading the %d remaining chunk(s) in this "
                       "process", exc, len(left))
        executor.shutdown(wait=True, cancel_futures=True)
        return left
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return []


# A series needs the series-context pass when its own keys mix frames with and without a
# b-value, or when an earlier pass gave some of its files a b-value (it may no longer hold).
_NEEDS_SERIES_CONTEXT = """
SELECT EXISTS (SELECT 1 FROM files WHERE series_instance_uid = ?1
               AND series_b_value_s_per_mm2 IS NOT NULL)
    OR (EXISTS (SELECT 1 FROM file_stacks WHERE series_instance_uid = ?1
                AND b_value_s_per_mm2 IS NULL)
        AND EXISTS (SELECT 1 FROM file_stacks WHERE series_instance_uid = ?1
                    AND b_value_s_per_mm2 IS NOT NULL))
"""


def _apply_series_context(con: sqlite3.Connection, root: Path, secret: bytes | None,
                          stamp: str) -> int:
    """Series-context pass: stack keys that depend on the rest of the series.

    Workers key each file on its own. For every series written or changed in this run
    (the ``pending_series`` table), a series whose keys mix frames with and without a
    b-value has its files re-read here and keyed by
    `bonelesion.dicom.multiframe.series_stack_keys`, the reader's rule; every other series
    is left as it is. Each series is written in one transaction with its pending mark, so
    an interrupted pass resumes in the next run. Returns the number of files re-read.
    """
    pending = [r[0] for r in con.execute(
        "SELECT series_instance_uid FROM pending_series ORDER BY series_instance_uid")]
    n_reread = 0
    idle: list[str] = []
    for uid in pending:
        rows: list[tuple[Any, ...]] = []
        if con.execute(_NEEDS_SERIES_CONTEXT, (uid,)).fetchone()[0]:
            files = con.execute(
                "SELECT DISTINCT f.path, f.size_bytes, f.mtime_ns FROM files f JOIN "
                "file_stacks s ON s.path = f.path WHERE s.series_instance_uid = ? "
                "ORDER BY f.path", (uid,)).fetchall()
            rows = [_to_row(rec) for rec in _series_context_records(root, files, secret)]
        if not rows:
            idle.append(uid)
            continue
        logger.debug("Series %s: %d files re-read for their series-level stack keys", uid,
                     len(rows))
        _write_rows(con, rows, stamp, series_done=uid)
        n_reread += len(rows)
    if idle:
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany("DELETE FROM pending_series WHERE series_instance_uid = ?",
                            [(uid,) for uid in idle])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return n_reread


def _series_context_records(root: Path, files: Sequence[tuple[str, int, int]],
                            secret: bytes | None) -> list[FileRecord]:
    """Re-read the files of one series; their records with the series-level stack keys."""
    entries: list[tuple[FileRecord, list[Dataset], list[StackKey]]] = []
    for rel, size, mtime in files:
        frames: _FramesOut = []
        rec = _read_file_record(root, rel, size, mtime, secret, frames)
        flats, keys = frames[0] if frames else ([], [])
        entries.append((rec, flats, keys))
    keyed = series_stack_keys([f for _, flats, _ in entries for f in flats],
                              [k for _, _, keys in entries for k in keys])
    out: list[FileRecord] = []
    start = 0
    for rec, _, keys in entries:
        mine = keyed[start:start + len(keys)]
        start += len(keys)
        filled = [b for _, b in mine if b is not None]
        if filled:
            note = (f"stack key b = {filled[0]:g} s/mm² from the vendor b-value element, in "
                    "a series that also holds b > 0 images")
            rec = dataclasses.replace(
                rec, **_key_values([k for k, _ in mine], rec.frame_stack_indices is not None),
                series_b_value_s_per_mm2=filled[0],
                role=None if rec.role is None else series_context_role(rec.role, mine[0][1]),
                notes="; ".join(t for t in (rec.notes, note) if t)[:_NOTES_MAX_CHARS])
        out.append(rec)
    return out


def _remove_gone(con: sqlite3.Connection, walk: _WalkResult) -> int:
    """Delete entries not seen by this walk (except under folders that could not be listed)."""
    seen = [(f[0],) for f in walk.files] + [(p.path,) for p in walk.problems]
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("CREATE TEMP TABLE IF NOT EXISTS seen (path TEXT PRIMARY KEY)")
        con.execute("DELETE FROM seen")
        con.executemany("INSERT OR IGNORE INTO seen VALUES (?)", seen)
        gone = [r[0] for r in con.execute(
            "SELECT path FROM files WHERE path NOT IN (SELECT path FROM seen)")]
        keep = tuple(d + "/" for d in walk.unlisted_dirs if d)
        if "" in walk.unlisted_dirs:
            gone = []
        gone = [p for p in gone if not p.startswith(keep)] if keep else gone
        con.executemany(_MARK_OLD_SERIES, [(p,) for p in gone])
        con.executemany("DELETE FROM file_stacks WHERE path = ?", [(p,) for p in gone])
        con.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
        con.execute("DELETE FROM seen")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return len(gone)


# ----------------------------------------------------------------------------- querying


class Catalogue:
    """Read-only queries over a catalogue written by `index_export`.

    Parameters
    ----------
    db_path : path
        The catalogue file.

    Raises
    ------
    InputError
        When the file does not exist or is not a bonelesion catalogue.

    Examples
    --------
    >>> with Catalogue("bonelesion-index.sqlite") as cat:  # doctest: +SKIP
    ...     for study in cat.studies():
    ...         print(study.study_instance_uid, study.n_series)
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        if not self.db_path.is_file():
            raise InputError(
                f"Catalogue {db_path}: file not found; expected the output of "
                "`bonelesion index`. Potential fix: run `bonelesion index EXPORT --db "
                f"{db_path}` first."
            )
        try:
            self._con = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro",
                                        uri=True)
            meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"Catalogue {db_path}: not a bonelesion catalogue ({exc}); expected an "
                "SQLite file with `meta` and `files` tables. Potential fix: re-run "
                "`bonelesion index` with this --db."
            ) from exc
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            self._con.close()
            raise InputError(
                f"Catalogue {db_path}: schema version {meta.get('schema_version')}, expected "
                f"{SCHEMA_VERSION}. Potential fix: re-run `bonelesion index` to rebuild it."
            )
        self.root = Path(meta["root"])

    def close(self) -> None:
        """Close the database connection."""
        self._con.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def studies(self) -> list[StudyRecord]:
        """Studies with at least one ``ok`` file, sorted by StudyInstanceUID."""
        rows = self._con.execute(
            "SELECT study_instance_uid, min(patient_key), group_concat(DISTINCT modality), "
            "count(DISTINCT series_instance_uid), count(*) FROM files WHERE status = 'ok' "
            "GROUP BY study_instance_uid ORDER BY study_instance_uid").fetchall()
        return [StudyRecord(study_instance_uid=r[0], patient_key=r[1],
                            modalities=tuple(sorted((r[2] or "").split(",")) if r[2] else ()),
                            n_series=r[3], n_files=r[4]) for r in rows]

    def series(self, study_uid: str | None = None) -> list[SeriesRecord]:
        """Series with ``ok`` files (of one study, or all), sorted by series number."""
        where, params = ("AND f.study_instance_uid = ?", (study_uid,)) if study_uid else ("", ())
        rows = self._con.execute(
            "SELECT f.series_instance_uid, min(f.study_instance_uid), min(f.modality), "
            "min(f.manufacturer), min(f.series_description), min(f.series_number), "
            "group_concat(DISTINCT f.frame_of_reference_uid), "
            "group_concat(DISTINCT f.sop_class_uid), count(*), "
            "sum(coalesce(f.number_of_frames, 1)), "
            "(SELECT count(DISTINCT s.stack_key) FROM file_stacks s JOIN files g "
            " ON g.path = s.path WHERE s.series_instance_uid = f.series_instance_uid "
            " AND g.status = 'ok') "
            f"FROM files f WHERE f.status = 'ok' {where} GROUP BY f.series_instance_uid "
            "ORDER BY min(f.series_number), f.series_instance_uid", params).fetchall()
        return [SeriesRecord(
            series_instance_uid=r[0], study_instance_uid=r[1], modality=r[2] or "",
            manufacturer=r[3] or "", series_description=r[4] or "", series_number=r[5],
            frame_of_reference_uids=tuple(sorted(r[6].split(","))) if r[6] else (),
            sop_class_uids=tuple(sorted(r[7].split(","))) if r[7] else (),
            n_files=r[8], n_frames=r[9], n_stacks=r[10]) for r in rows]

    def files(self, series_uid: str | None = None, *, status: str | None = "ok"
              ) -> list[FileRecord]:
        """Return the records of one series (or all), ``ok`` only unless ``status`` says so.

        Parameters
        ----------
        series_uid : str, optional
            SeriesInstanceUID; every series when omitted.
        status : str or None
            Only entries with this `FileStatus` value; None for every status.
        """
        clauses, params = [], []
        if series_uid is not None:
            clauses.append("series_instance_uid = ?")
            params.append(series_uid)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._con.execute(
            f"SELECT {', '.join(_FIELD_NAMES)} FROM files {where} ORDER BY path", params)
        return [_from_row(r) for r in rows]

    def stacks(self, series_uid: str) -> list[StackRecord]:
        """Stacks of a series (``ok`` files only), sorted by stack key."""
        rows = self._con.execute(
            "SELECT s.stack_key, count(*), sum(s.n_frames), group_concat(s.path, char(10)) "
            "FROM file_stacks s JOIN files f ON f.path = s.path "
            "WHERE s.series_instance_uid = ? AND f.status = 'ok' "
            "GROUP BY s.stack_key ORDER BY s.stack_key", (series_uid,)).fetchall()
        return [StackRecord(series_instance_uid=series_uid, stack_key=r[0], n_files=r[1],
                            n_frames=r[2], paths=tuple(sorted(r[3].split("\n"))))
                for r in rows]

    def problems(self) -> list[FileRecord]:
        """Entries that are not usable and not merely of another kind.

        Everything except ``ok``, ``dicomdir`` and ``unsupported_sop_class``, sorted by path.
        """
        rows = self._con.execute(
            f"SELECT {', '.join(_FIELD_NAMES)} FROM files WHERE status NOT IN "
            "('ok', 'dicomdir', 'unsupported_sop_class') ORDER BY path")
        return [_from_row(r) for r in rows]

    def duplicates(self) -> dict[str, tuple[str, ...]]:
        """SOP Instance UIDs held by more than one ``ok`` file, with their paths."""
        rows = self._con.execute(
            "SELECT sop_instance_uid, group_concat(path, char(10)) FROM files "
            "WHERE status = 'ok' GROUP BY sop_instance_uid HAVING count(*) > 1 "
            "ORDER BY sop_instance_uid").fetchall()
        return {r[0]: tuple(sorted(r[1].split("\n"))) for r in rows}

    def status_counts(self) -> dict[str, int]:
        """Return the number of entries per status."""
        return dict(self._con.execute("SELECT status, count(*) FROM files GROUP BY status"))
