"""ROI sources → `Lesion` objects: annotations CSV, NIfTI label map, DICOM SEG, DICOM RTSTRUCT.

`load_lesions(path)` picks the reader from the file: ``.csv`` → annotations, ``.nii`` /
``.nii.gz`` → label map, otherwise DICOM, by SOP Class (Segmentation or RT Structure Set).
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bonelesion.errors import InputError, NotDicomError, UnsupportedInputError
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.units import IntensityUnit

__all__ = [
    "load_lesions",
    "read_annotations_csv",
    "read_nifti_labels",
    "read_dicom_seg",
    "read_rtstruct",
    "REQUIRED_CSV_COLUMNS",
    "SINS_POINTS",
    "ESCC_GRADES",
]

logger = logging.getLogger(__name__)

REQUIRED_CSV_COLUMNS = ("lesion_id", "center_l_mm", "center_p_mm", "center_s_mm", "radius_mm")
_OPTIONAL_ID_COLUMNS = ("study_instance_uid", "series_instance_uid", "treated")
#: Allowed points of each SINS item (Fisher et al., Spine 2010; CLINICAL_REFERENCE.md §F1).
SINS_POINTS: dict[str, frozenset[int]] = {
    "sins_location": frozenset({0, 1, 2, 3}),
    "sins_pain": frozenset({0, 1, 3}),
    "sins_lesion": frozenset({0, 1, 2}),
    "sins_alignment": frozenset({0, 2, 4}),
    "sins_collapse": frozenset({0, 1, 2, 3}),
    "sins_posterolateral": frozenset({0, 1, 3}),
}
#: Bilsky ESCC grades (CLINICAL_REFERENCE.md §F2).
ESCC_GRADES = ("0", "1a", "1b", "1c", "2", "3")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
_MAX_LISTED_ERRORS = 10

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def load_lesions(path: str | Path) -> list[Lesion]:
    """Read the lesions of a ROI file (CSV, NIfTI label map, DICOM SEG or RTSTRUCT).

    Raises
    ------
    InputError
        Unreadable or invalid file; the message names the file (and line for CSV).
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise InputError(f"ROI file {path} does not exist or is not a file. Potential fix: check "
                         "the --rois path.")
    if name.endswith(".csv"):
        return read_annotations_csv(path)
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti_labels(path)
    ds = _read_dicom(path, stop_before_pixels=True)  # enough to dispatch, and all of an RTSTRUCT
    sop_class = str(getattr(ds, "SOPClassUID", ""))
    if sop_class == SEG_SOP_CLASS:
        return read_dicom_seg(path)
    if sop_class == RTSTRUCT_SOP_CLASS:
        return _rtstruct_lesions(path, ds)
    raise UnsupportedInputError(
        f"ROI file {path}: SOP Class {sop_class or '(none)'} is not a Segmentation "
        f"({SEG_SOP_CLASS}) or RT Structure Set ({RTSTRUCT_SOP_CLASS}). Potential fix: pass an "
        "annotations CSV, a NIfTI label map, a DICOM SEG or a DICOM RTSTRUCT."
    )


def _read_dicom(path: Path, *, stop_before_pixels: bool = False) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, OSError) as exc:
        raise NotDicomError(
            f"ROI file {path} is not CSV, NIfTI or a readable DICOM file ({exc}). Potential "
            "fix: pass a .csv, .nii(.gz), DICOM SEG or RTSTRUCT file."
        ) from exc
    for w in caught:
        logger.warning("ROI file %s: pydicom: %s", path, w.message)
    return ds


# ---------------------------------------------------------------------------- CSV
def _csv_error(path: Path, line: int, column: str, expected: str, found: str) -> str:
    return f"line {line}, column {column!r}: expected {expected}, found {found!r}"


def read_annotations_csv(path: str | Path) -> list[Lesion]:
    """Spherical lesions from an annotations CSV.

    Columns: ``lesion_id, center_l_mm, center_p_mm, center_s_mm, radius_mm`` (required; LPS
    mm); optional ``study_instance_uid``, ``series_instance_uid``, ``treated``
    (true/false/yes/no/1/0, empty = unknown); SINS items (``sins_location`` …: integer points
    of Fisher 2010, checked here, or category names such as ``junctional``, checked by the
    SINS scorer), ``escc_grade`` (0, 1a, 1b, 1c, 2, 3); any other column is kept as a
    string annotation.

    Raises
    ------
    InputError
        Missing columns, an empty file, or bad rows; the message lists each bad row with its
        line number (up to 10).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Annotations CSV {path}: cannot be read as UTF-8 text ({exc}). "
                         "Potential fix: save the file as UTF-8 CSV.") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"Annotations CSV {path}, line 1: missing column(s) {', '.join(missing)}; expected "
            f"the header to contain {', '.join(REQUIRED_CSV_COLUMNS)}, found "
            f"{', '.join(header) or '(empty)'}. Potential fix: rename the columns."
        )
    reader.fieldnames = header
    errors: list[str] = []
    lesions: list[Lesion] = []
    seen: dict[tuple[str, str], int] = {}
    for row in reader:
        line = reader.line_num
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if None in row:
            errors.append(f"line {line}: {len(row[None])} more value(s) than header columns")  # type: ignore[index]
            continue
        if not any(values.values()):
            continue  # blank line
        row_errors: list[str] = []
        lesion_id = values.get("lesion_id", "")
        if not lesion_id:
            row_errors.append(_csv_error(path, line, "lesion_id", "a non-empty identifier", ""))
        numbers: dict[str, float] = {}
        for col in REQUIRED_CSV_COLUMNS[1:]:
            raw = values.get(col, "")
            try:
                number = float(raw)
            except ValueError:
                number = math.nan
            ok = math.isfinite(number) and (col != "radius_mm" or number > 0)
            if not ok:
                expected = ("a positive number (mm)" if col == "radius_mm"
                            else "a finite number (LPS mm)")
                row_errors.append(_csv_error(path, line, col, expected, raw))
            numbers[col] = number
        treated: bool | None = None
        raw_treated = values.get("treated", "").lower()
        if raw_treated in _TRUE:
            treated = True
        elif raw_treated in _FALSE:
            treated = False
        elif raw_treated:
            row_errors.append(_csv_error(path, line, "treated", "true or false", values["treated"]))
        annotations: dict[str, Any] = {}
        for col, raw in values.items():
            if col in REQUIRED_CSV_COLUMNS or col in _OPTIONAL_ID_COLUMNS:
                continue
            if col in SINS_POINTS:
                if raw == "":
                    annotations[col] = None
                    continue
                allowed = SINS_POINTS[col]
                if not raw.lstrip("+-").isdigit():
                    annotations[col] = raw  # a category name: checked by the SINS scorer
                    continue
                if not (raw.isdigit() and int(raw) in allowed):
                    row_errors.append(_csv_error(
                        path, line, col, f"one of {sorted(allowed)} (SINS points), a category "
                        "name or empty", raw))
                    continue
                annotations[col] = int(raw)
            elif col == "escc_grade":
                if raw and raw.lower() not in ESCC_GRADES:
                    row_errors.append(_csv_error(
                        path, line, col, f"one of {', '.join(ESCC_GRADES)} or empty", raw))
                    continue
                annotations[col] = raw.lower() or None
            else:
                annotations[col] = raw
        study = values.get("study_instance_uid", "")
        if lesion_id and (study, lesion_id) in seen:
            row_errors.append(
                f"line {line}: lesion_id {lesion_id!r} repeats line {seen[(study, lesion_id)]}"
                + (f" for study {study}" if study else ""))
        if row_errors:
            errors.extend(row_errors)
            continue
        seen[(study, lesion_id)] = line
        lesions.append(Lesion(
            lesion_id=lesion_id,
            source=f"{path.name}:{line}",
            study_instance_uid=study,
            series_instance_uid=values.get("series_instance_uid", ""),
            treated=treated,
            annotations=annotations,
            sphere=Sphere(
                centre_lps_mm=(numbers["center_l_mm"], numbers["center_p_mm"],
                               numbers["center_s_mm"]),
                radius_mm=numbers["radius_mm"],
            ),
        ))
    if errors:
        listed = "; ".join(errors[:_MAX_LISTED_ERRORS])
        extra = len(errors) - _MAX_LISTED_ERRORS
        more = f" (and {extra} more)" if extra > 0 else ""
        raise InputError(
            f"Annotations CSV {path}: {len(errors)} invalid value(s): {listed}{more}. "
            "Potential fix: correct these rows (coordinates in LPS mm, radius > 0)."
        )
    if not lesions:
        raise InputError(f"Annotations CSV {path}: no lesion rows after the header. Potential "
                         "fix: add one row per lesion.")
    return lesions


# ---------------------------------------------------------------------------- NIfTI
def read_nifti_labels(path: str | Path, *, frame_of_reference_uid: str = "") -> list[Lesion]:
    """One lesion per non-zero label value of a NIfTI label map (id = the label value).

    The NIfTI affine (RAS) is converted to LPS on entry. A NIfTI file carries no frame of
    reference, so the lesions match any series unless ``frame_of_reference_uid`` is given.

    Raises
    ------
    InputError
        Unreadable file, non-3-D or non-integer labels, or no label at all.
    """
    import nibabel as nib

    path = Path(path)
    try:
        image: Any = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types (ImageFileError, OSError, EOFError)
        raise InputError(f"NIfTI label map {path} cannot be read ({exc}). Potential fix: check "
                         "the file is a valid .nii/.nii.gz.") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"NIfTI label map {path}: expected a 3-D label image, found shape "
                         f"{data.shape}. Potential fix: save one label volume.")
    if not np.all(np.equal(np.mod(data, 1), 0)):
        raise InputError(f"NIfTI label map {path}: label values must be integers, found "
                         f"non-integer values (dtype {data.dtype}). Potential fix: save the "
                         "labels with an integer data type.")
    labels = [int(v) for v in np.unique(data) if v != 0]
    if not labels:
        raise InputError(f"NIfTI label map {path}: every voxel is 0 (no lesion). Potential fix: "
                         "check the file.")
    affine = image.affine
    lesions = []
    for label in labels:
        mask = Volume.from_ras_affine(
            data == label, affine, intensity_unit=IntensityUnit.MASK,
            series=SeriesInfo(frame_of_reference_uid=frame_of_reference_uid),
        )
        lesions.append(Lesion(lesion_id=str(label), source=f"{path.name}:label {label}",
                              frame_of_reference_uid=frame_of_reference_uid, mask=mask))
    return lesions


# ---------------------------------------------------------------------------- DICOM SEG
def read_dicom_seg(path: str | Path) -> list[Lesion]:
    """One lesion per segment of a DICOM Segmentation (id = SegmentLabel, else the number).

    Geometry comes from the SEG's own plane positions and orientation (highdicom
    ``get_volume``); the frame of reference from the SEG.

    Raises
    ------
    InputError
        The SEG cannot be read or its frames do not form a regular volume.
    """
    import highdicom as hd

    path = Path(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seg = hd.seg.segread(path)
    except Exception as exc:  # highdicom/pydicom raise several types for bad files
        raise InputError(f"DICOM SEG {path} cannot be read ({exc}). Potential fix: check the "
                         "file is a valid Segmentation object.") from exc
    for w in caught:
        logger.warning("DICOM SEG %s: %s", path, w.message)
    frame_uid = str(getattr(seg, "FrameOfReferenceUID", ""))
    study_uid = str(getattr(seg, "StudyInstanceUID", ""))
    lesions = []
    for desc in seg.SegmentSequence:
        number = int(desc.SegmentNumber)
        try:
            hvol = seg.get_volume(segment_numbers=[number], combine_segments=False)
        except (ValueError, RuntimeError) as exc:
            raise InputError(
                f"DICOM SEG {path}, segment {number}: frames do not form a regular volume "
                f"({exc}). Potential fix: re-export the SEG with one frame per source slice."
            ) from exc
        array = np.asarray(hvol.array)
        if array.ndim == 4:
            array = array[..., 0]
        mask = Volume.from_affine(
            array > 0, hvol.affine, intensity_unit=IntensityUnit.MASK,
            series=SeriesInfo(series_instance_uid=str(seg.SeriesInstanceUID),
                              frame_of_reference_uid=frame_uid, study_instance_uid=study_uid,
                              modality="SEG"),
        )
        label = str(getattr(desc, "SegmentLabel", "") or number)
        lesions.append(Lesion(lesion_id=label, source=f"{path.name}:segment {number}",
                              frame_of_reference_uid=frame_uid, study_instance_uid=study_uid,
                              mask=mask))
    if not lesions:
        raise InputError(f"DICOM SEG {path}: no segment holds any frame. Potential fix: check "
                         "the segmentation is not empty.")
    return lesions


# ---------------------------------------------------------------------------- RTSTRUCT
def read_rtstruct(path: str | Path) -> list[Lesion]:
    """One lesion per ROI of an RT Structure Set with CLOSED_PLANAR contours (id = ROIName).

    Contour points are LPS mm (ContourData). ROIs with only POINT or OPEN contours are
    skipped with a log warning.

    Raises
    ------
    InputError
        No usable ROI, or a contour whose point list is not a multiple of three numbers.
    """
    path = Path(path)
    ds = _read_dicom(path)
    if str(getattr(ds, "SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise UnsupportedInputError(f"ROI file {path} is not an RT Structure Set (SOP Class "
                                    f"{getattr(ds, 'SOPClassUID', '(none)')}). Potential fix: "
                                    "pass an RTSTRUCT file.")
    return _rtstruct_lesions(path, ds)


def _rtstruct_lesions(path: Path, ds: Any) -> list[Lesion]:
    """Lesions of an RT Structure Set dataset already read from ``path``."""
    names: dict[int, tuple[str, str]] = {}
    for roi in getattr(ds, "StructureSetROISequence", []):
        names[int(roi.ROINumber)] = (str(getattr(roi, "ROIName", "") or roi.ROINumber),
                                     str(getattr(roi, "ReferencedFrameOfReferenceUID", "")))
    study_uid = str(getattr(ds, "StudyInstanceUID", ""))
    lesions = []
    for roi_contour in getattr(ds, "ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        name, frame_uid = names.get(number, (str(number), ""))
        contours = []
        for n, contour in enumerate(getattr(roi_contour, "ContourSequence", [])):
            if str(getattr(contour, "ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            data = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64)
            if data.size % 3 or data.size < 9:
                raise InputError(
                    f"RTSTRUCT {path}, ROI {number} ({name!r}), contour {n}: ContourData "
                    f"(3006,0050) holds {data.size} numbers, expected a multiple of 3 with at "
                    "least 3 points. Potential fix: re-export the structure set."
                )
            contours.append(data.reshape(-1, 3))
        if not contours:
            logger.warning("RTSTRUCT %s: ROI %d (%s) has no CLOSED_PLANAR contour; skipped",
                           path, number, name)
            continue
        lesions.append(Lesion(lesion_id=name, source=f"{path.name}:ROI {number}",
                              frame_of_reference_uid=frame_uid, study_instance_uid=study_uid,
                              contours=tuple(contours)))
    if not lesions:
        raise InputError(f"RTSTRUCT {path}: no ROI with CLOSED_PLANAR contours. Potential fix: "
                         "export the lesion contours as closed planar contours.")
    return lesions


def annotations_of(lesion: Lesion) -> Mapping[str, Any]:
    """All per-lesion annotations, including ``treated`` (for LesionMeasurements)."""
    return {"treated": lesion.treated, **dict(lesion.annotations)}
