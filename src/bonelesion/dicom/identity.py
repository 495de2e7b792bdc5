"""Identity of DICOM objects: substitutes for missing UIDs, and the patient of a file.

Anonymisers sometimes blank SeriesInstanceUID (0020,000E), and with it StudyInstanceUID and
SOPInstanceUID (the TotalSegmentator example CT). dcm2niix still converts such files,
grouping them by what is left; we do the same, deterministically, and say so:
`ensure_series_instance_uid` gives the header substitute UIDs under the UUID-derived root
``2.25`` (PS3.5 §B.2), the series one a hash of StudyInstanceUID, SeriesNumber,
FrameOfReferenceUID, Modality and the name of the file's folder, and returns the note that
every caller records as a warning (never silently).

The catalogue and the series reader call the same function, so both give the same stacks
the same substitute.

References
----------
DICOM PS3.5 §9 and §B.2 (UIDs derived from a UUID, root 2.25).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag

from bonelesion.dicom import values
from bonelesion.errors import InputError

__all__ = [
    "derived_series_instance_uid",
    "ensure_series_instance_uid",
    "SUBSTITUTE_UID_ROOT",
    "SERIES_UID_SUBSTITUTE_NOTE",
    "patient_identity", "study_context", "StudyContext",
]

#: Root of UIDs derived from a 128-bit number (PS3.5 §B.2).
SUBSTITUTE_UID_ROOT = "2.25."
#: Start of the warning recorded for every stack whose SeriesInstanceUID was substituted.
SERIES_UID_SUBSTITUTE_NOTE = "SeriesInstanceUID (0020,000E) is absent"

_HASHED_KEYWORDS = ("StudyInstanceUID", "SeriesNumber", "FrameOfReferenceUID", "Modality")
_STUDY_KEYWORDS = ("PatientID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                   "FrameOfReferenceUID")


def _value_text(ds: Dataset, keyword: str) -> str:
    """Text of a value for hashing (raw text when it is not valid: still deterministic)."""
    if not values.has(ds, keyword):
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an invalid value is recorded where it is used
        if keyword == "SeriesNumber":
            number = values.get_int(ds, keyword, strict=False)
            if number is not None:
                return str(number)
        text = values.get_text(ds, keyword, strict=False)
    if text is not None:
        return text
    try:
        raw = values.element_bytes(ds, keyword) or b""
    except InputError:  # a sequence where text belongs: nothing to hash
        return ""
    return raw.decode("latin-1").strip(" \x00")


def derived_series_instance_uid(ds: Dataset, path: str | os.PathLike[str]) -> str:
    """Deterministic substitute SeriesInstanceUID of a header that has none.

    Parameters
    ----------
    ds : Dataset
        The header (top level of the object).
    path : path
        The file the header was read from; only the name of its folder is used (after
        resolving links), so the substitute does not change when the export is moved.

    Returns
    -------
    str
        ``2.25.<decimal of the first 128 bits of SHA-256>`` over StudyInstanceUID,
        SeriesNumber, FrameOfReferenceUID, Modality and the folder name (at most 44
        characters, a valid UID).

    Examples
    --------
    >>> ds = Dataset(); ds.StudyInstanceUID = "1.2.3"; ds.SeriesNumber = 4
    >>> uid = derived_series_instance_uid(ds, "/export/ct/f1.dcm")
    >>> uid.startswith("2.25.") and uid == derived_series_instance_uid(ds, "/a/ct/f2")
    True
    """
    folder = os.fsencode(Path(path).resolve().parent.name)
    digest = hashlib.sha256()
    for keyword in _HASHED_KEYWORDS:
        digest.update(_value_text(ds, keyword).encode("utf-8", "surrogateescape"))
        digest.update(b"\x00")
    digest.update(folder)
    return SUBSTITUTE_UID_ROOT + str(int.from_bytes(digest.digest()[:16], "big"))


def _derived_study_instance_uid(ds: Dataset) -> str:
    digest = hashlib.sha256(b"study")
    for keyword in _STUDY_KEYWORDS:
        digest.update(b"\x00" + _value_text(ds, keyword).encode("utf-8", "surrogateescape"))
    return SUBSTITUTE_UID_ROOT + str(int.from_bytes(digest.digest()[:16], "big"))


def _derived_sop_instance_uid(ds: Dataset, path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256(b"instance")
    for keyword in ("SeriesInstanceUID", "InstanceNumber", "ImagePositionPatient"):
        digest.update(b"\x00" + _value_text(ds, keyword).encode("utf-8", "surrogateescape"))
    digest.update(b"\x00" + os.fsencode(Path(path).name))
    return SUBSTITUTE_UID_ROOT + str(int.from_bytes(digest.digest()[:16], "big"))


def _absent(ds: Dataset, keyword: str) -> bool:
    """Tell whether an attribute is absent or empty, without converting a raw element."""
    tag = tag_for_keyword(keyword)
    elem = ds._dict.get(BaseTag(tag)) if tag is not None else None  # raw: no pydicom conversion
    if elem is None:
        return True
    value = elem.value
    if isinstance(value, bytes):
        return not value.strip(b"\x00 ")
    return value is None or not str(value).strip()


def has_instance_uids(ds: Dataset) -> bool:
    """Tell whether SOPInstanceUID, StudyInstanceUID and SeriesInstanceUID are all present.

    When they are, `ensure_series_instance_uid` leaves ``ds`` as it is.
    """
    return not any(_absent(ds, k) for k in _INSTANCE_UID_KEYWORDS)


_INSTANCE_UID_KEYWORDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def ensure_series_instance_uid(ds: Dataset, path: str | os.PathLike[str]) -> str:
    """Give ``ds`` substitutes for absent instance, study and series UIDs; return the note.

    Parameters
    ----------
    ds : Dataset
        The header; modified in place only where SOPInstanceUID, StudyInstanceUID or
        SeriesInstanceUID is absent or empty.
    path : path
        The file the header was read from (see `derived_series_instance_uid`).

    Returns
    -------
    str
        "" when the header has all three UIDs; otherwise the warning to record with the
        stack (it names the substitutes, not the folder: folder names can hold patient
        names).

    Notes
    -----
    * SOPInstanceUID: the File Meta Information's MediaStorageSOPInstanceUID when present
      (the same value by PS3.10 §7.1), else a hash of the series UID, InstanceNumber,
      ImagePositionPatient and the file name.
    * StudyInstanceUID: a hash of PatientID, StudyDate, StudyTime, StudyID,
      AccessionNumber and FrameOfReferenceUID (a study may be split, never merged with
      another).
    * SeriesInstanceUID: `derived_series_instance_uid` (after the study substitute).
    """
    notes: list[str] = []
    if _absent(ds, "SOPInstanceUID"):
        meta = ds.__dict__.get("file_meta")
        media = values.get_uid(meta, "MediaStorageSOPInstanceUID", strict=False) \
            if meta is not None else None
        if media:
            ds.SOPInstanceUID = media
            notes.append("SOPInstanceUID (0008,0018) is absent; MediaStorageSOPInstanceUID "
                         "(0002,0003) of the file meta used")
        else:
            ds.SOPInstanceUID = _derived_sop_instance_uid(ds, path)
            notes.append("SOPInstanceUID (0008,0018) is absent; a substitute was derived")
    if _absent(ds, "StudyInstanceUID"):
        ds.StudyInstanceUID = _derived_study_instance_uid(ds)
        notes.append(f"StudyInstanceUID (0020,000D) is absent; substituted "
                     f"{ds.StudyInstanceUID}, derived from the study date, time, ID, "
                     "accession number and frame of reference")
    if _absent(ds, "SeriesInstanceUID"):
        uid = derived_series_instance_uid(ds, path)
        ds.SeriesInstanceUID = uid
        notes.insert(0, f"{SERIES_UID_SUBSTITUTE_NOTE} (removed by an anonymiser?); "
                        f"substituted {uid}, derived from StudyInstanceUID, SeriesNumber, "
                        "FrameOfReferenceUID, Modality and the file's folder name")
    if not notes:
        return ""
    return ("; ".join(notes) + ". Potential fix: export with the original UIDs to link "
            "results back to the archive.")


@dataclass(frozen=True)
class StudyContext:
    """Who and what a study is, for output naming and the report (never logged).

    ``patient_id`` and ``patient_name`` are kept for naming and pseudonymisation only;
    ``study_date`` (DA, ``YYYYMMDD``) and ``study_description`` give the report its context.
    "" for each that is absent or unreadable.
    """

    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""


_CONTEXT_KEYWORDS = ("PatientID", "PatientName", "StudyDate", "StudyDescription")


def study_context(path: str | os.PathLike[str]) -> StudyContext:
    """Read the `StudyContext` of one file (header only); never raises, never logs it.

    The header is read through the structure check and the value layer
    (`bonelesion.dicom.header.read_file_header`), so a damaged file gives "" values.

    Parameters
    ----------
    path : path
        A DICOM file (Part 10 or a raw data set).
    """
    from bonelesion.dicom.header import read_file_header

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, _ = read_file_header(Path(path), [], None)
            texts = [values.get_text(ds, k, strict=False) or "" for k in _CONTEXT_KEYWORDS]
    except InputError:
        return StudyContext()
    return StudyContext(*(t.strip() for t in texts))


def patient_identity(path: str | os.PathLike[str]) -> tuple[str, str]:
    """PatientID and PatientName of one file (header only); never raises, never logs them.

    Returns
    -------
    (patient_id, patient_name) : tuple of str
        "" for each that is absent or unreadable, and for both when the file cannot be
        read as DICOM.
    """
    context = study_context(path)
    return context.patient_id, context.patient_name
