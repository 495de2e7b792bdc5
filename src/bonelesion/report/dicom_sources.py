"""The source images of DICOM out: reading them and matching their frames to a Volume's slices.

Frames are matched to slices by projecting ImagePositionPatient into the volume's index space,
never by InstanceNumber, frame number or file order. Enhanced (multi-frame) sources that
repeat Pixel Measures / Plane Orientation per frame (Siemens XA, Philips) instead of sharing
them are presented to highdicom with the agreed value in the shared groups (`with_shared_geometry`),
without changing the source.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence

from bonelesion.errors import (
    GeometryMismatchError,
    MissingAttributeError,
    NotDicomError,
    UnsupportedInputError,
)
from bonelesion.model.volume import SeriesInfo, Volume

__all__ = [
    "OTHER_STACK", "HIGHDICOM_FAILURES", "read_source", "read_source_datasets",
    "describe_source", "safe_text", "log_warnings", "copy_deidentification",
    "with_shared_geometry", "with_type2_present",
]

logger = logging.getLogger(__name__)



#: Tolerance for matching ImagePositionPatient to a slice index, in voxels.
_SLICE_MATCH_ATOL_VOXELS = 0.05


#: Source headers only: values larger than this (the pixel data) stay on disk, unread
#: (pydicom ``defer_size``); the loader has decoded the pixels already.
_DEFER_BYTES = 4096


def _read(path: str) -> Dataset:
    """Read a source file's header (pixel data deferred: not read unless accessed).

    A raw data set without Part 10 header is read as the loader did.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
        except InvalidDicomError:
            # headerless files (no preamble / file meta) that the series loader accepted
            logger.warning("reading %s: no DICOM Part 10 header; read as a raw data set", path)
            try:
                ds = pydicom.dcmread(path, force=True, defer_size=_DEFER_BYTES)
            except (InvalidDicomError, OSError, ValueError) as exc:
                raise NotDicomError(
                    f"DICOM out: source file {path} cannot be read as DICOM ({exc}); expected a "
                    "file of the loaded series. Potential fix: keep the export unchanged "
                    "between loading and reporting.") from exc
        except OSError as exc:
            raise NotDicomError(
                f"DICOM out: source file {path} cannot be read ({exc}); expected a file of the "
                "loaded series. Potential fix: keep the export unchanged between loading and "
                "reporting.") from exc
    for w in caught:
        logger.warning("reading %s: %s", path, w.message)
    if "SOPInstanceUID" not in ds or "PixelData" not in ds:
        raise NotDicomError(
            f"DICOM out: source file {path} has no SOPInstanceUID or PixelData; expected an "
            "image of the loaded series. Potential fix: keep the export unchanged between "
            "loading and reporting.")
    return ds


def _slice_of(volume: Volume, ipp: Any, where: str) -> int:
    """Slice index of a frame at ImagePositionPatient ``ipp`` (must hit a slice centre)."""
    info = volume.series
    if ipp is None:
        raise MissingAttributeError(
            f"DICOM out: {where} (series {info.series_instance_uid}) has no "
            "ImagePositionPatient (0020,0032); expected a positioned slice. Potential fix: "
            "use the original scanner export.")
    idx = volume.lps_to_index([[float(v) for v in ipp]])[0]
    s = int(round(idx[0]))
    off = np.abs(idx - np.array([s, 0.0, 0.0]))
    if not (0 <= s < volume.shape[0]) or np.any(off > _SLICE_MATCH_ATOL_VOXELS):
        raise GeometryMismatchError(
            f"DICOM out: {where} (series {info.series_instance_uid}) at "
            f"ImagePositionPatient {list(ipp)} matches no slice of the volume "
            f"(index {idx.round(3).tolist()}, tolerance {_SLICE_MATCH_ATOL_VOXELS} voxel). "
            "Potential fix: pass the Volume loaded from exactly these files.")
    return s


#: A stack signature (`bonelesion.dicom.multiframe.stack_key`) rounds b-values to 1 s/mm²,
#: echo times to 0.01 ms and gradient directions to 0.01; a volume's own values match it
#: within half a rounding step (plus float slack).
_B_VALUE_ATOL_S_PER_MM2 = 0.5 + 1e-6
_ECHO_TIME_ATOL_MS = 0.005 + 1e-9
_DIRECTION_ATOL = 0.005 + 1e-9
#: Slice index of a source frame that belongs to another stack of the same object.
OTHER_STACK = -1


def _same(a: Any, b: Any, atol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=atol,
                            rtol=0.0))


def _stack_frames(volume: Volume, ds: Dataset, path: str) -> list[int]:
    """Slice of every frame of a multi-frame object that holds several stacks.

    The frames are grouped by the reader's own stack signature
    (`bonelesion.dicom.multiframe.stack_key`); the group whose image type, echo time,
    b-value and gradient direction are the volume's, and whose positions cover every slice
    once, is the volume's. Frames of the other stacks get `OTHER_STACK`.

    Raises
    ------
    UnsupportedInputError
        If no group, or more than one, matches the volume.
    """
    from bonelesion.dicom.multiframe import flatten_frames, stack_key

    info = volume.series
    n = volume.shape[0]
    flats = flatten_frames(ds)
    groups: dict[Any, list[int]] = {}
    for k, flat in enumerate(flats):
        groups.setdefault(stack_key(flat), []).append(k)
    matches: list[list[int]] = []
    for key, members in groups.items():
        if not (tuple(key.image_type) == tuple(info.image_type)
                and _same(key.echo_time_ms, info.echo_time_ms, _ECHO_TIME_ATOL_MS)
                and _same(key.b_value_s_per_mm2, info.b_value_s_per_mm2,
                          _B_VALUE_ATOL_S_PER_MM2)
                and _same(key.diffusion_direction, info.diffusion_direction, _DIRECTION_ATOL)
                and len(members) == n):
            continue
        slices = [OTHER_STACK] * len(flats)
        for k in members:
            slices[k] = _slice_of(volume, flats[k].get("ImagePositionPatient"),
                                  f"file {path} frame {k + 1}")
        if sorted(s for s in slices if s != OTHER_STACK) == list(range(n)):
            matches.append(slices)
    if len(matches) != 1:
        raise UnsupportedInputError(
            f"DICOM out for series {info.series_instance_uid}: {path} holds {len(flats)} "
            f"frames in {len(groups)} stacks; expected exactly one stack of {n} frames with "
            f"the volume's image type, echo time, b-value and direction, found "
            f"{len(matches)}. Potential fix: write the SEG on another series of the study, "
            "or skip DICOM output (--no-dicom).")
    return matches[0]


#: Identifying attributes an anonymiser may blank, and the file meta element to take instead.
_IDENTITY_FROM_META = {"SOPClassUID": "MediaStorageSOPClassUID",
                       "SOPInstanceUID": "MediaStorageSOPInstanceUID"}


def _with_identity(ds: Dataset, info: SeriesInfo, path: str) -> Dataset:
    """Return ``ds``, or a view of it with blank identifying UIDs filled as the reader did.

    Some anonymisers blank SOPClassUID, SOPInstanceUID, SeriesInstanceUID and
    StudyInstanceUID (e.g. the Siemens Biograph PET/CT CT of TotalSegmentator's tests): the
    SOP UIDs are taken from the file meta (MediaStorageSOP…), the series and study UIDs from
    the loaded series, which holds the reader's substitutes (logged as a warning at load).
    highdicom cannot reference a source without them. ``ds`` itself is not modified.
    """
    meta = getattr(ds, "file_meta", None)
    fill: dict[str, str] = {}
    for keyword, meta_keyword in _IDENTITY_FROM_META.items():
        value = str(meta.get(meta_keyword, "") or "") if meta is not None else ""
        if not ds.get(keyword) and value:
            fill[keyword] = value
    for keyword, value in (("SeriesInstanceUID", info.series_instance_uid),
                           ("StudyInstanceUID", info.study_instance_uid)):
        if not ds.get(keyword) and value:
            fill[keyword] = value
    if not fill:
        return ds
    view = _view(ds)
    for keyword, value in fill.items():
        setattr(view, keyword, value)
    logger.info("DICOM out: %s has blank %s; taken from the file meta and the reader's "
                "substitutes", path, ", ".join(fill))
    return view


def read_source(volume: Volume) -> tuple[list[Dataset], list[int]]:
    """Read the source DICOM of ``volume``: datasets and the slice index of each source frame.

    Classic series (one single-frame file per slice) come back sorted into the volume's slice
    order; a single multi-frame object (enhanced CT/MR) comes back as one dataset, with its
    frames mapped to slices through the per-frame PlanePositionSequence. Matching is always
    by projecting ImagePositionPatient into the volume's index space, never by
    InstanceNumber, frame number or file order. An object holding several stacks (e.g. a
    Philips field map with magnitude and phase frames, or all b-values of a DWI) is split
    by the reader's stack signature (see `_stack_frames`). pydicom warnings are logged.

    Returns
    -------
    datasets : list of Dataset
    frame_slices : list of int
        For every source frame (files in the returned order, frames in file order), the
        volume slice it shows; `OTHER_STACK` (-1) for a frame of another stack of the
        same multi-frame object.

    Blank identifying UIDs (an anonymiser's) are filled as the reader filled them
    (`_with_identity`).

    Raises
    ------
    UnsupportedInputError
        If the files are neither one single-frame file per slice nor one multi-frame object
        holding the volume's frames (one stack of it matching the volume).
    MissingAttributeError
        If a frame has no position.
    GeometryMismatchError
        If a frame's position matches no slice, or two frames match one slice.
    """
    info = volume.series
    files = list(info.source_files)
    n = volume.shape[0]
    if len(files) == 1 and n > 1:
        ds = _with_identity(_read(files[0]), info, files[0])
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames == n and "PerFrameFunctionalGroupsSequence" in ds:
            slices = []
            for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
                plane = item.get("PlanePositionSequence")
                ipp = plane[0].get("ImagePositionPatient") if plane else None
                slices.append(_slice_of(volume, ipp, f"file {files[0]} frame {k + 1}"))
            if sorted(slices) != list(range(n)):
                raise GeometryMismatchError(
                    f"DICOM out: frames of {files[0]} (series {info.series_instance_uid}) map "
                    f"onto slices {slices}, expected each of 0–{n - 1} once. Potential fix: "
                    "pass the Volume loaded from exactly this file.")
            return [ds], slices
        if frames > n and "PerFrameFunctionalGroupsSequence" in ds:
            return [ds], _stack_frames(volume, ds, files[0])
    if len(files) != n:
        raise UnsupportedInputError(
            f"DICOM out for series {info.series_instance_uid or '(no UID)'}: need one "
            f"single-frame source file per slice or one multi-frame object with {n} frames, "
            f"found {len(files)} files for {n} slices. Potential fix: keep the source files "
            "of the loaded series, or skip DICOM output (--no-dicom)."
        )
    out: list[Dataset | None] = [None] * n
    for path in files:
        ds = _with_identity(_read(path), info, path)
        s = _slice_of(volume, ds.get("ImagePositionPatient"), f"file {path}")
        if out[s] is not None:
            raise GeometryMismatchError(
                f"DICOM out: file {path} (series {info.series_instance_uid}) lies on slice "
                f"{s}, which another file already holds. Potential fix: pass the Volume loaded "
                "from exactly these files.")
        out[s] = ds
    return [ds for ds in out if ds is not None], list(range(n))


def read_source_datasets(volume: Volume) -> list[Dataset]:
    """Source datasets of ``volume`` in slice order (see `read_source`)."""
    return read_source(volume)[0]


def log_warnings(caught: Sequence[warnings.WarningMessage], what: str) -> None:
    """Turn highdicom/pydicom warnings into log records, without quoting patient data."""
    for w in caught:
        text = str(w.message)
        if "person name" in text.lower() or "patient" in text.lower():
            # such messages quote the value (a patient name): never log it
            text = "a patient-level attribute of the source does not follow its VR (value withheld)"
        logger.warning("%s: %s: %s", what, w.category.__name__, text)


def copy_deidentification(source: Dataset, derived: Dataset) -> None:
    """Carry the source's de-identification method over (highdicom copies only the flag)."""
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod",
                    "DeidentificationMethodCodeSequence"):
        if keyword in source and keyword not in derived:
            derived[keyword] = source[keyword]


#: Per-frame PixelSpacing values that differ by less than this (relative) count as one
#: (highdicom's own check of preserved pixel measures uses rtol 1e-4).
_PIXEL_SPACING_RTOL = 1e-4
#: Per-frame ImageOrientationPatient direction cosines that differ by less than this count
#: as one orientation (highdicom ``_DEFAULT_EQUALITY_TOLERANCE``).
_ORIENTATION_ATOL = 1e-5
#: Exceptions highdicom raises when a source header does not carry what it expects
#: (e.g. ``AttributeError: PixelMeasuresSequence``); turned into `UnsupportedInputError`.
HIGHDICOM_FAILURES = (AttributeError, KeyError, IndexError, TypeError, ValueError)

_PIXEL_MEASURES = "PixelMeasuresSequence"
_PLANE_ORIENTATION = "PlaneOrientationSequence"
_SHARED_GROUPS_TAG = pydicom.tag.Tag(0x5200, 0x9229)  # SharedFunctionalGroupsSequence


def safe_text(exc: BaseException) -> str:
    """``Type: message`` of a library exception, withheld if it may quote patient data."""
    if isinstance(exc, AttributeError) and exc.name:  # names an attribute, quotes no value
        return f"AttributeError: the source has no {exc.name}"
    text = str(exc)
    if "person name" in text.lower() or "patient" in text.lower():
        text = "(message withheld: it refers to a patient-level attribute)"
    return f"{type(exc).__name__}: {text}"


def describe_source(datasets: Sequence[Dataset]) -> str:
    """Name the source of an error message: its file (or SOP instance) and count."""
    first = datasets[0]
    name = getattr(first, "filename", None)
    where = f"file {name}" if isinstance(name, str) else f"SOP instance {first.SOPInstanceUID}"
    return where if len(datasets) == 1 else f"{len(datasets)} files, first {where}"


def _agreed_frame_item(ds: Dataset, keyword: str, where: str) -> Dataset:
    """Return the one value of a functional group that ``ds`` repeats in every frame.

    Raises
    ------
    MissingAttributeError
        If a frame lacks the group.
    UnsupportedInputError
        If frames differ (pixel spacing or orientation varies within the object).
    """
    items: list[Dataset] = []
    for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        seq = frame.get(keyword)
        if not seq:
            raise MissingAttributeError(
                f"DICOM SEG: {where}, frame {k + 1}, has no {keyword} in the shared or the "
                "per-frame functional groups; expected it in one of them (PS3.3 C.7.6.16). "
                "Potential fix: use the original scanner export.")
        items.append(seq[0])
    first = items[0]
    if keyword == _PIXEL_MEASURES:
        key, rtol, atol = "PixelSpacing", _PIXEL_SPACING_RTOL, 0.0
    else:
        key, rtol, atol = "ImageOrientationPatient", 0.0, _ORIENTATION_ATOL
    if key not in first:
        raise MissingAttributeError(
            f"DICOM SEG: {where}, frame 1, {keyword} has no {key}; expected it (Type 1). "
            "Potential fix: use the original scanner export.")
    ref = np.asarray([float(v) for v in first[key].value], dtype=float)
    for k, item in enumerate(items[1:], start=2):
        got = item.get(key)
        vals = None if got is None else np.asarray([float(v) for v in got], dtype=float)
        if vals is None or vals.shape != ref.shape or not np.allclose(vals, ref, rtol=rtol,
                                                                     atol=atol):
            raise UnsupportedInputError(
                f"DICOM SEG: {where}: {key} of frame {k} is "
                f"{None if vals is None else vals.tolist()}, expected the value of frame 1 "
                f"{ref.tolist()} (one SEG needs one {key} for all frames). Potential fix: "
                "write the SEG on a series with uniform geometry, or skip DICOM output.")
    return first


#: Type 2 attributes of the Patient and General Study modules that highdicom copies from the
#: source into the SEG; some de-identified exports drop them instead of leaving them empty.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _view(ds: Dataset) -> Dataset:
    """Return a dataset sharing ``ds``'s elements and file attributes, with its own dict."""
    view = copy.copy(ds)  # same class and file attributes (deferred reads keep working) …
    view._dict = dict(ds._dict)  # … but its own element dict: ``ds`` stays unchanged
    return view


def with_type2_present(ds: Dataset, where: str) -> Dataset:
    """Return ``ds``, or a view of it in which absent `_TYPE2_COPIED` attributes are empty.

    An absent Type 2 attribute and an empty one both mean "unknown" (PS3.5 7.4.2); highdicom
    0.28 needs them present. The source ``ds`` is not modified.
    """
    absent = [kw for kw in _TYPE2_COPIED if kw not in ds]
    if not absent:
        return ds
    view = _view(ds)
    for keyword in absent:
        setattr(view, keyword, None)  # a new, empty element: nothing shared is changed
    logger.info("DICOM SEG: %s has no %s; written empty (Type 2)", where, ", ".join(absent))
    return view


def with_shared_geometry(ds: Dataset, where: str) -> Dataset:
    """Return ``ds``, or a view of it with PixelMeasures/PlaneOrientation in the shared groups.

    highdicom 0.28 builds a SEG on a multi-frame source only when the source holds the
    Pixel Measures and Plane Orientation functional groups in its *shared* functional groups
    (it reads ``SharedFunctionalGroupsSequence[0].PixelMeasuresSequence`` unconditionally).
    Several scanners (e.g. Siemens syngo MR XA, Philips) repeat them in every frame instead.
    When every frame carries the same value, the returned dataset has that value in its
    shared groups; the source ``ds`` itself is not modified (the view shares its elements,
    pixel data stay unread on disk) and the SEG still references the source's own SOP
    instance and frames.

    Raises
    ------
    MissingAttributeError, UnsupportedInputError
        See `_agreed_frame_item`.
    """
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return ds
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else Dataset()
    missing = [kw for kw in (_PIXEL_MEASURES, _PLANE_ORIENTATION) if not shared.get(kw)]
    if not missing:
        return ds
    new_shared = copy.deepcopy(shared)
    for keyword in missing:
        setattr(new_shared, keyword,
                DicomSequence([copy.deepcopy(_agreed_frame_item(ds, keyword, where))]))
    view = _view(ds)
    # a new element (attribute assignment would change the value of the shared one)
    view[_SHARED_GROUPS_TAG] = DataElement(_SHARED_GROUPS_TAG, "SQ",
                                           DicomSequence([new_shared]))
    logger.info("DICOM SEG: %s repeats %s in every frame; used as shared for highdicom",
                where, " and ".join(missing))
    return view


