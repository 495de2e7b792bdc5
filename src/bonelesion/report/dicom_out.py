"""DICOM out via highdicom: a binary SEG of the lesion masks and a TID 1500 Comprehensive 3D SR.

The SEG has one segment per lesion on the source series (source images sorted by geometry,
i.e. matched to the Volume's slice order through ImagePositionPatient). An enhanced
(multi-frame) source is referenced frame by frame: frames follow the source's frame order;
Pixel Measures / Plane Orientation that the scanner repeats per frame (Siemens XA, Philips)
instead of sharing are accepted when all frames agree; one stack of an object holding
several (magnitude + field map, b-values of a DWI) references only that stack's frames.
A source highdicom cannot build on raises `UnsupportedInputError` naming the series, and
`write_study_dicom` then tries the study's next series. The SR holds one
volumetric measurement group per lesion: its measurements in UCUM units ([hnsf'U], um2/s,
%, 1), the call and spine scores as qualitative evaluations, referencing the SEG segment
(and through it the source images).

References
----------
DICOM PS3.3 A.51 (Segmentation IOD); PS3.16 TID 1500 (Measurement Report) and TID 1411
(Volumetric ROI Measurements and Qualitative Evaluations).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from bonelesion.classify.call import LesionCall
from bonelesion.errors import (
    GeometryMismatchError,
    InputError,
    MissingAttributeError,
    NotDicomError,
    UnsupportedInputError,
)
from bonelesion.model.results import LesionMeasurements
from bonelesion.model.volume import Volume
from bonelesion.report.result import StudyResult, mask_array_on, safe_name
from bonelesion.units import ADC_UM2_PER_S_PER_MM2_PER_S

__all__ = [
    "PRIVATE_SCHEME",
    "PRIVATE_CONCEPTS",
    "CODES",
    "read_source",
    "read_source_datasets",
    "write_segmentation",
    "write_measurement_report",
    "write_study_dicom",
    "StudyDicom",
    "OTHER_STACK",
]

logger = logging.getLogger(__name__)

#: Coding scheme of the concepts no public vocabulary holds (PS3.16 8.2: "99" prefix).
PRIVATE_SCHEME = "99BONELESION"
#: Tolerance for matching ImagePositionPatient to a slice index, in voxels.
_SLICE_MATCH_ATOL_VOXELS = 0.05


def _private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


#: Concept names and units used in the SR. Standard codes (DCM, SCT, UCUM; every one is in
#: the PS3.16 tables shipped with pydicom) wherever one exists; `PRIVATE_SCHEME` only for
#: the concepts in `PRIVATE_CONCEPTS`.
CODES = {
    "unit_hu": codes.UCUM.HounsfieldUnit,
    "unit_um2_per_s": hd.sr.CodedConcept("um2/s", "UCUM", "um2/s"),
    "unit_pct": codes.UCUM.Percent,
    "unit_one": hd.sr.CodedConcept("1", "UCUM", "no units"),
    "attenuation": codes.DCM.AttenuationCoefficient,  # DCM 112031
    "adc": codes.DCM.ApparentDiffusionCoefficient,  # DCM 113041 (CID 7180)
    "fat_fraction": codes.DCM.FatFraction,  # DCM 129100 (CID 7180 MR quantities)
    "probability": codes.DCM.ProbabilityOfCancer,  # DCM 111047
    "call": codes.SCT.Classification,  # SCT 278201002
    "malignant": codes.SCT.Malignant,  # SCT 21594007 (CID 6063)
    "benign": codes.SCT.Benign,  # SCT 30807003 (CID 6063)
    "indeterminate": codes.SCT.IndeterminateResult,  # SCT 280416009 (CID 6063)
    # no standard concept: the chemical-shift ratio and drop of opposed- vs in-phase signal
    # (DCM "Signal change" has no defined direction or reference image), SINS and ESCC
    "sir": _private("SIR", "Chemical shift signal intensity ratio"),
    "signal_drop": _private("SIGDROP", "Chemical shift signal drop"),
    "sins_total": _private("SINS", "Spinal Instability Neoplastic Score"),
    "sins_band": _private("SINSBAND", "SINS stability band"),
    "escc": _private("ESCC", "Epidural spinal cord compression grade"),
}

#: Keys of `CODES` that have no standard code (``99BONELESION``); the values of the SINS
#: band (``STABLE``, ``POTENTIALLY_UNSTABLE``, ``UNSTABLE``) and Bilsky ESCC grade (``ESCC0``,
#: ``ESCC1A`` … ``ESCC3``) evaluations are private too.
PRIVATE_CONCEPTS = ("sir", "signal_drop", "sins_total", "sins_band", "escc")


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
        ds = _read(files[0])
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
        ds = _read(path)
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


def _log_warnings(caught: Sequence[warnings.WarningMessage], what: str) -> None:
    """Turn highdicom/pydicom warnings into log records, without quoting patient data."""
    for w in caught:
        text = str(w.message)
        if "person name" in text.lower() or "patient" in text.lower():
            # such messages quote the value (a patient name): never log it
            text = "a patient-level attribute of the source does not follow its VR (value withheld)"
        logger.warning("%s: %s: %s", what, w.category.__name__, text)


def _copy_deidentification(source: Dataset, derived: Dataset) -> None:
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
_HIGHDICOM_FAILURES = (AttributeError, KeyError, IndexError, TypeError, ValueError)

_PIXEL_MEASURES = "PixelMeasuresSequence"
_PLANE_ORIENTATION = "PlaneOrientationSequence"
_SHARED_GROUPS_TAG = pydicom.tag.Tag(0x5200, 0x9229)  # SharedFunctionalGroupsSequence


def _safe_text(exc: BaseException) -> str:
    """``Type: message`` of a library exception, withheld if it may quote patient data."""
    if isinstance(exc, AttributeError) and exc.name:  # names an attribute, quotes no value
        return f"AttributeError: the source has no {exc.name}"
    text = str(exc)
    if "person name" in text.lower() or "patient" in text.lower():
        text = "(message withheld: it refers to a patient-level attribute)"
    return f"{type(exc).__name__}: {text}"


def _describe_source(datasets: Sequence[Dataset]) -> str:
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


def _with_type2_present(ds: Dataset, where: str) -> Dataset:
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


def _with_shared_geometry(ds: Dataset, where: str) -> Dataset:
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


def _mask_on(source: Volume, mask: Volume, lesion_id: str) -> np.ndarray:
    arr = mask_array_on(mask, source)
    if not arr.any():
        raise InputError(
            f"DICOM SEG: mask of lesion {lesion_id} holds no voxel on series "
            f"{source.series.series_instance_uid}. Potential fix: check that the mask and the "
            "series share a frame of reference and overlap.")
    return arr


def write_segmentation(
    source: Volume,
    masks: Mapping[str, Volume],
    path: str | Path,
    *,
    source_datasets: Sequence[Dataset] | None = None,
    frame_slices: Sequence[int] | None = None,
    series_number: int = 9901,
    algorithm_type: str = "MANUAL",
) -> tuple[Dataset, dict[str, int]]:
    """Write a binary DICOM SEG with one segment per lesion on ``source``.

    Parameters
    ----------
    source : Volume
        The series the masks are drawn on; its ``series.source_files`` are read.
    masks : mapping of lesion id to boolean Volume
        Resampled onto ``source`` (nearest neighbour) when on another grid.
    path : path
        Output file.
    algorithm_type : {"MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"}
        How the masks were made (``AUTOMATIC`` adds bonelesion's algorithm identification).

    Returns
    -------
    (Dataset, dict)
        The SEG dataset and lesion id → segment number.

    Raises
    ------
    InputError
        No masks, an empty mask, or source files that do not match the volume.
    MissingAttributeError
        A multi-frame source lacks Pixel Measures or Plane Orientation (shared and per frame).
    UnsupportedInputError
        The frames of a multi-frame source differ in pixel spacing or orientation, or
        highdicom cannot build a SEG on the source (its message is kept).

    Notes
    -----
    An enhanced (multi-frame) source is referenced as one object: the SEG's frames follow
    the source's frames (matched through each frame's PlanePositionSequence, see
    `read_source`) and reference them by frame number. Pixel Measures and Plane
    Orientation that the source repeats per frame instead of sharing are accepted when all
    frames agree (see `_with_shared_geometry`).
    """
    if not masks:
        raise InputError(
            f"DICOM SEG: no lesion masks for series {source.series.series_instance_uid}. "
            "Potential fix: pass the study's lesion masks.")
    from bonelesion import __version__

    if source_datasets is None:
        datasets, slices = read_source(source)
    else:
        datasets = list(source_datasets)
        slices = list(frame_slices) if frame_slices is not None else list(range(source.shape[0]))
    ids = list(masks)
    stacked = np.stack([_mask_on(source, masks[i], i) for i in ids], axis=-1)
    positions = None
    own_frames: set[int] | None = None
    if OTHER_STACK in slices:
        # one stack of a multi-frame object: SEG planes in slice order at the positions of
        # the stack's own frames (highdicom matches them to the source frames)
        frame_of = {sl: k for k, sl in enumerate(slices) if sl != OTHER_STACK}
        own_frames = {k + 1 for k in frame_of.values()}
        positions = [_plane_position(datasets[0], frame_of[sl]) for sl in range(source.shape[0])]
        pixels = stacked
    else:
        # frames in source-frame order (file order for classic series, frame order for
        # enhanced objects)
        pixels = stacked[slices]
    algo = hd.seg.SegmentAlgorithmTypeValues(algorithm_type)
    ident = None
    if algo is not hd.seg.SegmentAlgorithmTypeValues.MANUAL:
        ident = hd.AlgorithmIdentificationSequence(
            name="bonelesion", version=__version__, family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=f"lesion {lesion_id}"[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion, algorithm_type=algo,
            algorithm_identification=ident, tracking_uid=generate_uid(),
            tracking_id=f"lesion {lesion_id}"[:64],
            anatomic_regions=[codes.SCT.Bone],
        )
        for n, lesion_id in enumerate(ids)
    ]
    uid = source.series.series_instance_uid or "(no UID)"
    where = f"series {uid} ({_describe_source(datasets)})"
    # highdicom reads the geometry of a multi-frame source from its shared groups only
    spatial = [_with_type2_present(ds, where) for ds in datasets]
    if len(spatial) == 1:
        spatial = [_with_shared_geometry(spatial[0], where)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            seg = _segmentation(spatial, pixels, descriptions, series_number, positions)
        except _HIGHDICOM_FAILURES as exc:
            raise UnsupportedInputError(
                f"DICOM SEG on {where}: highdicom {hd.__version__} cannot build a "
                f"Segmentation on this source ({_safe_text(exc)}); expected source images "
                "complete for their IOD (identification; positions, orientation and pixel "
                "measures of every frame). Potential fix: write the SEG on another series of "
                "the study, or skip DICOM output (--no-dicom); the measurements are "
                "unaffected.") from exc
    _log_warnings(caught, "DICOM SEG")
    if own_frames is not None:
        _keep_source_frames(seg, own_frames, where)
    _copy_deidentification(datasets[0], seg)
    seg.save_as(Path(path))
    return seg, {lesion_id: n + 1 for n, lesion_id in enumerate(ids)}


def _plane_position(ds: Dataset, frame_index: int) -> hd.PlanePositionSequence:
    item = ds.PerFrameFunctionalGroupsSequence[frame_index].PlanePositionSequence[0]
    return hd.PlanePositionSequence(
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        image_position=[float(v) for v in item.ImagePositionPatient])


def _keep_source_frames(seg: Dataset, frames: set[int], where: str) -> None:
    """Drop the SEG's references to source frames of other stacks.

    highdicom refers to every frame of the object at a plane's position, and the frames of
    the other stacks share those positions.

    Raises
    ------
    GeometryMismatchError
        If a SEG frame keeps no source frame.
    """
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        for derivation in item.get("DerivationImageSequence", []):
            kept = [src for src in derivation.SourceImageSequence
                    if int(src.get("ReferencedFrameNumber", 0) or 0) in frames]
            if not kept:
                raise GeometryMismatchError(
                    f"DICOM SEG on {where}: SEG frame {k + 1} matches no source frame of the "
                    "volume's stack; expected one at its position. Potential fix: pass the "
                    "Volume loaded from exactly this file.")
            derivation.SourceImageSequence = DicomSequence(kept)


def _segmentation(datasets: Sequence[Dataset], pixels: np.ndarray,
                  descriptions: Sequence[hd.seg.SegmentDescription],
                  series_number: int,
                  plane_positions: Sequence[hd.PlanePositionSequence] | None = None,
                  ) -> hd.seg.Segmentation:
    from bonelesion import __version__

    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, plane_positions=plane_positions,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="bonelesion", manufacturer_model_name="bonelesion",
        software_versions=__version__, device_serial_number="0",
        series_description="bonelesion lesion masks", content_label="LESIONS",
    )


def _referenced_segment(seg: Dataset, segment_number: int) -> hd.sr.ReferencedSegment:
    """Build the reference to one segment and its source images (TID 1411 row 9).

    Like ``ReferencedSegment.from_segmentation``, but also for a SEG with a single segment,
    whose Segment Identification highdicom puts in the *shared* functional groups (where
    ``from_segmentation`` of highdicom 0.28 looks only per frame).
    """
    shared = seg.SharedFunctionalGroupsSequence[0]
    sources: dict[str, hd.sr.SourceImageForSegmentation] = {}
    for item in seg.PerFrameFunctionalGroupsSequence:
        ident = item.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence")
        if ident is None or int(ident[0].ReferencedSegmentNumber) != segment_number:
            continue
        for derivation in item.get("DerivationImageSequence", []):
            for src in derivation.get("SourceImageSequence", []):
                uid = str(src.ReferencedSOPInstanceUID)
                frames = src.get("ReferencedFrameNumber")
                frame_list = None if frames is None else [int(f) for f in (
                    frames if src["ReferencedFrameNumber"].VM > 1 else [frames])]
                if uid in sources and frame_list is not None:
                    old = sources[uid].ReferencedSOPSequence[0].get("ReferencedFrameNumber")
                    old_list = [] if old is None else [int(f) for f in (
                        old if isinstance(old, (list, pydicom.multival.MultiValue)) else [old])]
                    frame_list = sorted(set(old_list) | set(frame_list))
                if uid not in sources or frame_list is not None:
                    sources[uid] = hd.sr.SourceImageForSegmentation(
                        referenced_sop_class_uid=str(src.ReferencedSOPClassUID),
                        referenced_sop_instance_uid=uid, referenced_frame_numbers=frame_list)
    if not sources:
        raise InputError(
            f"DICOM SR: segment {segment_number} of SEG {seg.SOPInstanceUID} references no "
            "source image. Potential fix: write the SEG with write_segmentation.")
    return hd.sr.ReferencedSegment(
        sop_class_uid=str(seg.SOPClassUID), sop_instance_uid=str(seg.SOPInstanceUID),
        segment_number=segment_number, source_images=list(sources.values()))


def _measurements(m: LesionMeasurements, call: LesionCall) -> list[hd.sr.Measurement]:
    out: list[hd.sr.Measurement] = []

    def add(name: hd.sr.CodedConcept, value: float | None, unit: hd.sr.CodedConcept,
            derivation: hd.sr.CodedConcept | None = None) -> None:
        if value is None or not np.isfinite(value):
            return
        out.append(hd.sr.Measurement(name=name, value=float(np.round(value, 6)), unit=unit,
                                     derivation=derivation))

    if m.ct is not None:
        add(CODES["attenuation"], m.ct.attenuation_mean_hu, CODES["unit_hu"], codes.SCT.Mean)
        add(CODES["attenuation"], m.ct.attenuation_max_hu, CODES["unit_hu"], codes.SCT.Maximum)
    if m.chemical_shift is not None:
        add(CODES["sir"], m.chemical_shift.chemical_shift_ratio, CODES["unit_one"])
        add(CODES["signal_drop"], m.chemical_shift.signal_drop_pct, CODES["unit_pct"])
        add(CODES["fat_fraction"], m.chemical_shift.fat_fraction, CODES["unit_one"])
    if m.adc is not None:
        add(CODES["adc"], m.adc.adc_mean_mm2_per_s * ADC_UM2_PER_S_PER_MM2_PER_S,
            CODES["unit_um2_per_s"], codes.SCT.Mean)
    add(CODES["probability"], call.probability_malignant, CODES["unit_one"])
    if call.sins is not None and call.sins.complete:
        add(CODES["sins_total"], float(call.sins.total_min_points), CODES["unit_one"])
    return out


def _evaluations(call: LesionCall) -> list[hd.sr.QualitativeEvaluation]:
    out = [hd.sr.QualitativeEvaluation(name=CODES["call"], value=CODES[call.label.value])]
    if call.sins is not None:
        out.append(hd.sr.QualitativeEvaluation(
            name=CODES["sins_band"], value=_private(call.sins.band.value.upper(),
                                                    call.sins.band.value.replace("_", " "))))
    if call.escc is not None:
        meaning = f"Bilsky grade {call.escc.grade}" + (" (borderline)" if call.escc.borderline
                                                       else "")
        out.append(hd.sr.QualitativeEvaluation(
            name=CODES["escc"], value=_private(f"ESCC{call.escc.grade.upper()}", meaning)))
    return out


def write_measurement_report(
    study: StudyResult,
    seg: Dataset,
    segment_numbers: Mapping[str, int],
    source_datasets: Sequence[Dataset],
    path: str | Path,
    *,
    series_number: int = 9902,
) -> Dataset:
    """Write a Comprehensive 3D SR (TID 1500) with one measurement group per lesion.

    Lesions without a segment in ``seg`` are reported without a segment reference.

    Returns
    -------
    Dataset
        The SR dataset (also saved to ``path``).
    """
    from bonelesion import __version__

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="bonelesion", manufacturer_name="bonelesion",
            model_name=f"bonelesion {__version__}"),
    )
    context = hd.sr.ObservationContext(observer_device_context=observer)
    modalities = {v.series.modality for v in study.volumes.values()} | {
        str(source_datasets[0].Modality)}
    procedures = [c for mod, c in (("CT", codes.LN.CTUnspecifiedBodyRegion),
                                   ("MR", codes.LN.MRIUnspecifiedBodyRegion)) if mod in modalities]
    groups = []
    for m, call in zip(study.lesions, study.calls, strict=True):
        ref = None
        if m.lesion_id in segment_numbers:
            ref = _referenced_segment(seg, segment_numbers[m.lesion_id])
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                         identifier=f"lesion {m.lesion_id}"[:64]),
            referenced_segment=ref, finding_type=codes.SCT.Lesion,
            finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Bone)],
            measurements=_measurements(m, call), qualitative_evaluations=_evaluations(call),
        ) if ref is not None else hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                         identifier=f"lesion {m.lesion_id}"[:64]),
            finding_type=codes.SCT.Lesion,
            finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Bone)],
            measurements=_measurements(m, call), qualitative_evaluations=_evaluations(call),
        ))
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=procedures or [codes.LN.CTUnspecifiedBodyRegion],
        imaging_measurements=groups, title=codes.cid7021.ImagingMeasurementReport,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sr = hd.sr.Comprehensive3DSR(
                evidence=[*source_datasets, seg], content=report,
                series_instance_uid=generate_uid(), series_number=series_number,
                sop_instance_uid=generate_uid(), instance_number=1, manufacturer="bonelesion",
                is_complete=True, series_description="bonelesion report",
            )
        except _HIGHDICOM_FAILURES as exc:
            series = source_datasets[0].get("SeriesInstanceUID", "(no UID)")
            raise UnsupportedInputError(
                f"DICOM SR of study {study.study_instance_uid} on series {series} "
                f"({_describe_source(source_datasets)}): highdicom {hd.__version__} cannot "
                f"build the Comprehensive 3D SR ({_safe_text(exc)}); expected source images "
                "and a SEG with complete study/series identification. Potential fix: skip "
                "DICOM output (--no-dicom); the measurements are unaffected.") from exc
    _log_warnings(caught, "DICOM SR")
    _copy_deidentification(source_datasets[0], sr)
    sr.save_as(Path(path))
    return sr


@dataclass(frozen=True, kw_only=True)
class StudyDicom:
    """Paths of the DICOM objects written for one study.

    ``skipped`` holds, for every series tried before ``source_role`` and refused, the
    reason (its series UID included).
    """

    seg_path: Path
    sr_path: Path
    source_role: str
    segment_numbers: Mapping[str, int]
    skipped: tuple[str, ...] = ()


def _source_candidates(study: StudyResult) -> list[tuple[str, Volume]]:
    """Series that can carry the SEG, the grid the masks are drawn on first."""
    candidates = [(r, v) for r, v in study.ordered_volumes()
                  if len(v.series.source_files) in (1, v.shape[0])]
    if not candidates:
        raise UnsupportedInputError(
            f"DICOM out for study {study.study_instance_uid}: no series with its source files "
            "(one per slice, or one multi-frame object) to reference. Potential fix: keep "
            "SeriesInfo.source_files when loading, or skip DICOM output.")
    on_grid = [(r, v) for r, v in candidates
               if all(mask.geometry_equal(v) for mask in study.masks.values())]
    return on_grid + [c for c in candidates if c not in on_grid]


def _pick_source(study: StudyResult) -> tuple[str, Volume]:
    return _source_candidates(study)[0]


def write_study_dicom(study: StudyResult, out_dir: str | Path) -> StudyDicom:
    """Write ``seg_<study>.dcm`` and ``sr_<study>.dcm`` of one study into ``out_dir`` (created).

    The SEG goes on the series the masks are drawn on. If that series cannot carry it
    (source files missing or changed, a source highdicom cannot build on), the next series
    of the study is tried; each refusal is logged as a warning naming the series and kept
    in `StudyDicom.skipped`.

    Raises
    ------
    InputError
        No masks, or no series of the study can carry the SEG and SR; the message names
        every series tried and why it was refused.
    """
    out = Path(out_dir)
    masks = {m.lesion_id: study.masks[m.lesion_id] for m in study.lesions
             if m.lesion_id in study.masks}
    if not masks:
        raise InputError(
            f"DICOM out for study {study.study_instance_uid}: no lesion has a mask. "
            "Potential fix: pass the study's lesion masks.")
    candidates = _source_candidates(study)
    out.mkdir(parents=True, exist_ok=True)
    seg_path = out / f"seg_{safe_name(study.study_instance_uid)}.dcm"
    sr_path = out / f"sr_{safe_name(study.study_instance_uid)}.dcm"
    skipped: list[str] = []
    errors: list[InputError] = []
    for role, source in candidates:
        try:
            datasets, slices = read_source(source)
            seg, numbers = write_segmentation(source, masks, seg_path,
                                              source_datasets=datasets, frame_slices=slices)
            write_measurement_report(study, seg, numbers, datasets, sr_path)
        except InputError as exc:
            seg_path.unlink(missing_ok=True)
            sr_path.unlink(missing_ok=True)
            reason = (f"{role} series {source.series.series_instance_uid or '(no UID)'}: "
                      f"{exc}")
            logger.warning("study %s: DICOM SEG/SR not written on %s", study.study_instance_uid,
                           reason)
            skipped.append(reason)
            errors.append(exc)
            continue
        return StudyDicom(seg_path=seg_path, sr_path=sr_path, source_role=role,
                          segment_numbers=numbers, skipped=tuple(skipped))
    if len(errors) == 1:
        raise errors[0]  # the only series: its own error (type and message) says it all
    raise UnsupportedInputError(
        f"DICOM out for study {study.study_instance_uid}: no series can carry the SEG/SR; "
        f"tried {len(skipped)}: " + " | ".join(skipped) + " Potential fix: see each series' "
        "own fix, or skip DICOM output (--no-dicom).")
