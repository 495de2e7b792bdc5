"""Catalogue records: what the catalogue stores per file, stack, series and study."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "FileStatus",
    "FileRecord",
    "StackRecord",
    "SeriesRecord",
    "StudyRecord",
    "IndexSummary",
    "SUPPORTED_SOP_CLASSES",
    "SCHEMA_VERSION",
    "stored_path",
    "loaded_path",
]

logger = logging.getLogger(__name__)


#: Version of the SQLite layout; a catalogue with another version is rebuilt.
SCHEMA_VERSION = 4


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
    stack_roles, stack_role_reasons : tuple of str
        Role (a `bonelesion.model.roles.SeriesRole` value) of each of ``stack_keys``, from
        its own first frame, and why it is not a volume to measure ("" for ordinary
        roles; e.g. a localizer, a Secondary Capture, a dose report).
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
    stack_roles: tuple[str, ...] = ()
    stack_role_reasons: tuple[str, ...] = ()
    series_b_value_s_per_mm2: float | None = None
    pixel_encapsulated: bool | None = None
    pixel_data_offset: int | None = None
    pixel_data_bytes: int | None = None


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(FileRecord))
_FIELD_SET = frozenset(_FIELD_NAMES)


#: Default of every `FileRecord` field that has one (all but path, sizes and status).
_FIELD_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(FileRecord)
                                   if f.default is not dataclasses.MISSING}


def _new_record(fields: dict[str, Any]) -> FileRecord:
    """Return ``FileRecord(**fields)``, its attributes set at once.

    The frozen dataclass's ``__init__`` sets its 55 fields one ``object.__setattr__`` at a
    time (9 µs, a few per cent of indexing a small file); this sets the same instance
    dictionary (pinned to the constructor's by tests/dicom/test_index.py).

    Raises
    ------
    TypeError
        If ``fields`` lacks a field without default or names one that does not exist.
    """
    state = _FIELD_DEFAULTS.copy()
    state.update(fields)
    if state.keys() != _FIELD_SET:
        return FileRecord(**fields)  # the constructor names what is missing or unknown
    rec: FileRecord = object.__new__(FileRecord)
    object.__setattr__(rec, "__dict__", state)
    return rec


_JSON_FIELDS = frozenset(
    {"image_position_lps_mm", "image_orientation_lps", "pixel_spacing_mm", "stack_keys",
     "stack_n_frames", "frame_positions_lps_mm", "frame_stack_indices",
     "stack_b_values_s_per_mm2", "stack_roles", "stack_role_reasons"}
)


_BOOL_FIELDS = frozenset({"has_file_meta", "pixel_encapsulated"})


#: Positions in a row of the fields `_to_row` writes as JSON arrays and as 0/1.
_JSON_POSITIONS = tuple(i for i, n in enumerate(_FIELD_NAMES) if n in _JSON_FIELDS)
_BOOL_POSITIONS = tuple(i for i, n in enumerate(_FIELD_NAMES) if n in _BOOL_FIELDS)
_PATH_POSITION = _FIELD_NAMES.index("path")


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
    role : str
        The stack's own role (`bonelesion.model.roles.SeriesRole` value), also for one of
        several stacks of an enhanced multi-frame object.
    role_reason : str
        Why the stack is not a volume to measure ("" for ordinary roles).
    """

    series_instance_uid: str
    stack_key: str
    n_files: int
    n_frames: int
    paths: tuple[str, ...]
    role: str = "other"
    role_reason: str = ""


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


def stored_path(rel: str) -> str:
    """Text stored for a relative path: itself, or an escaped form for odd names.

    A name that is not valid UTF-8 (a ``surrogateescape`` string) or holds a line break
    is stored as ``/`` + its percent-encoded bytes; a relative path never starts with
    ``/``, so the two forms cannot collide. `loaded_path` reverses it.

    Examples
    --------
    >>> stored_path("a/b.dcm"), loaded_path(stored_path("a/\udce9.dcm")) == "a/\udce9.dcm"
    ('a/b.dcm', True)
    """
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if "\n" not in rel and "\r" not in rel:
            return rel
    return "/" + urllib.parse.quote(os.fsencode(rel), safe="/")


def loaded_path(text: str) -> str:
    """Relative path of a stored path text (see `stored_path`)."""
    if text.startswith("/"):
        return os.fsdecode(urllib.parse.unquote_to_bytes(text[1:]))
    return text


_encode_text = json.encoder.encode_basestring_ascii  # what json.dumps uses by default


def _json_array(value: Sequence[Any]) -> str:
    """``json.dumps(list(value))``, faster for the flat tuples of a record.

    Strings, finite floats, integers, None and nested tuples are written here exactly as
    `json.dumps` writes them; anything else is left to `json.dumps`.

    Examples
    --------
    >>> _json_array(("a", 1.5, None, (1, 2)))
    '["a", 1.5, null, [1, 2]]'
    """
    parts: list[str] = []
    for v in value:
        kind = type(v)
        if kind is str:
            parts.append(_encode_text(v))
        elif kind is float and math.isfinite(v):
            parts.append(float.__repr__(v))
        elif kind is int:
            parts.append(int.__repr__(v))
        elif v is None:
            parts.append("null")
        elif kind is tuple or kind is list:
            parts.append(_json_array(v))
        else:
            return json.dumps(list(value))
    return "[" + ", ".join(parts) + "]"


def _to_row(rec: FileRecord) -> tuple[Any, ...]:
    """Database row of a record: the fields in order, tuples as JSON, booleans as 0/1."""
    state = rec.__dict__
    row: list[Any] = [state[name] for name in _FIELD_NAMES]
    row[_PATH_POSITION] = stored_path(row[_PATH_POSITION])
    for i in _JSON_POSITIONS:
        if row[i] is not None:
            row[i] = _json_array(row[i])
    for i in _BOOL_POSITIONS:
        if row[i] is not None:
            row[i] = int(row[i])
    return tuple(row)


#: A record's database rows: its `files` row (`_to_row`) and its `file_stacks` rows.
_Entry = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


def _to_entry(rec: FileRecord) -> _Entry:
    """Return the `files` row of a record and its `file_stacks` rows, one per stack key.

    A stack row is (path, stack key, series UID, frames, b-value, role, role reason). The
    stack rows are the values the row's JSON arrays hold, taken from the record itself
    instead of parsed back from the JSON.

    Raises
    ------
    ValueError
        If the per-stack tuples differ in length from ``stack_keys``.
    """
    row = _to_row(rec)
    path, series = row[_PATH_POSITION], rec.series_instance_uid
    return row, [(path, k, series, n, b, r, why) for k, n, b, r, why
                 in zip(rec.stack_keys, rec.stack_n_frames, rec.stack_b_values_s_per_mm2,
                        rec.stack_roles, rec.stack_role_reasons, strict=True)]


def _from_row(row: Sequence[Any]) -> FileRecord:
    values: dict[str, Any] = {}
    for name, value in zip(_FIELD_NAMES, row, strict=True):
        if value is not None and name in _JSON_FIELDS:
            value = tuple(tuple(v) if isinstance(v, list) else v for v in json.loads(value))
        elif value is not None and name in _BOOL_FIELDS:
            value = bool(value)
        if name == "path":
            value = loaded_path(value)
        values[name] = value
    return FileRecord(**values)
