"""DICOM files → stacks → `Volume`: discovery, grouping, validation, sorting, decoding.

The reader follows highdicom's ``get_volume_from_series`` and nibabel's ``series_signature``
(STYLE.md §2):

1. **Discover** files in a folder (nested, any layout, any or no extension, with or without
   the Part 10 preamble; DICOMDIR and non-DICOM files are skipped and reported).
2. **Flatten** enhanced multi-frame objects into one header per frame
   (`bonelesion.dicom.multiframe.flatten_frames`) and **group** frames into stacks by
   `bonelesion.dicom.multiframe.stack_key`.
3. **Validate** every stack: one frame of reference, one orientation, one pixel spacing,
   no duplicate positions, regular slice spacing (rtol 1e-2, like highdicom), no gantry
   tilt, and a pixel count below a limit. A stack that fails is *refused*: it is returned
   with its problems and no volume, never dropped silently.
4. **Sort** by ImagePositionPatient projected on the slice normal (never InstanceNumber or
   SliceLocation); slice spacing comes from the positions (never SliceThickness).
5. **Decode** each slice straight into one preallocated array (int16 for CT when exact,
   else float32), applying the modality LUT per frame: CT → HU, MR → arbitrary units,
   scanner ADC maps → mm²/s through `bonelesion.dicom.vendors.adc_scale_to_mm2_per_s`.

Siemens mosaics are split into slices with the origin fix of nibabel's ``MosaicWrapper``.

**Fast path** (``fast_path=True``, the default): plain Part 10 headers are read by
`bonelesion.dicom.fastheader.read_header` (the same data set as ``dcmread``, several times
faster), which also gives the Pixel Data offset; uncompressed little-endian pixel data are
then read straight from the file into the preallocated output (16-bit data directly into
the int16 CT array, the stored bits masked or sign-extended in place, the intercept added
in place), and the output's memory pages are mapped in one call (``MAP_POPULATE``).
Everything else — big endian, deflated, compressed, float pixel data, odd BitsAllocated,
multi-sample images, slope ≠ 1 or values beyond int16 — takes the generic pydicom path
(``pixel_array``); ``fast_path=False`` forces it everywhere. Both give the same volumes,
voxel for voxel (tests/dicom/test_series_fastpath.py). A series' b0 images whose only clue
is a vendor b = 0 get their b-value from the series context
(`bonelesion.dicom.vendors.b_values_of_series_s_per_mm2`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import mmap
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from bonelesion.dicom.fastheader import VR_BYTES, read_header
from bonelesion.dicom.identity import ensure_series_instance_uid
from bonelesion.dicom.multiframe import (
    StackKey,
    flatten_frames,
    frame_number,
    is_mosaic,
    series_context_role,
    series_stack_keys,
    stack_key,
)
from bonelesion.errors import (
    InputError,
    MissingAttributeError,
    NotDicomError,
    SeriesGeometryError,
    SeriesSelectionError,
    UnsupportedInputError,
)
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.units import IntensityUnit

__all__ = [
    "Stack",
    "SkippedFile",
    "Discovery",
    "discover_files",
    "load_series",
    "load_volume",
    "MAX_VOLUME_BYTES",
    "SPACING_RTOL",
    "ORIENTATION_ATOL",
    "DUPLICATE_POSITION_ATOL_MM",
]

logger = logging.getLogger(__name__)

#: Refuse a stack whose decoded float32 array would exceed this (checked before decoding).
MAX_VOLUME_BYTES = 4 * 1024**3
#: Relative tolerance of the slice-spacing regularity check (highdicom's default).
SPACING_RTOL = 1e-2
#: Largest difference of an ImageOrientationPatient cosine within one stack.
ORIENTATION_ATOL = 1e-3
#: Relative tolerance of PixelSpacing equality within one stack.
PIXEL_SPACING_RTOL = 1e-4
#: Two slices closer than this along the normal are at the same position.
DUPLICATE_POSITION_ATOL_MM = 1e-2
#: Largest in-plane offset of a slice from the stacking line, relative to the slice spacing
#: (a gantry tilt of 0.3° gives 0.5 % of the spacing per slice).
TILT_RTOL = 5e-3
#: ... and never below this absolute offset (DICOM DS rounding of positions).
TILT_ATOL_MM = 2e-2

_DICOMDIR_SOP_CLASS = pydicom.uid.MediaStorageDirectoryStorage
#: Objects with Rows/Columns that are not images of the patient: read by other modules.
_NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation (read it as an ROI source)",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.11.1": "presentation state",
}
_PIXEL_DATA_TAG = 0x7FE00010
_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SkippedFile:
    """A file that discovery did not use, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """Files found under the input path(s)."""

    files: tuple[Path, ...]
    skipped: tuple[SkippedFile, ...]
    has_preamble: tuple[bool, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Stack:
    """One stack of a series: frames that form (or should form) one 3-D volume.

    Parameters
    ----------
    key : StackKey
        The signature shared by all frames of the stack.
    info : SeriesInfo
        Identifiers, role and acquisition values (no patient identifiers).
    files : tuple of str
        Source files in slice order (a multi-frame file appears once).
    volume : Volume or None
        The decoded volume; None when refused or loaded with ``decode=False``.
    problems : tuple of str
        Why the stack was refused; empty when it is usable.
    warnings : tuple of str
        Data-quality caveats of a usable (or refused) stack.
    shape : (3,) tuple of int or None
        (slices, rows, columns) when the geometry is valid, else None.
    spacing_mm, origin_lps_mm : (3,) tuple of float or None
        Geometry in the Volume conventions (None when refused).
    direction_lps : (3, 3) tuple of tuples or None
        Column *k* is the LPS unit vector of axis *k* (None when refused).
    """

    key: StackKey
    info: SeriesInfo
    files: tuple[str, ...]
    volume: Volume | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    shape: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    origin_lps_mm: tuple[float, float, float] | None = None
    direction_lps: tuple[tuple[float, float, float], ...] | None = None
    error_class: type[InputError] = field(default=SeriesGeometryError, repr=False)

    @property
    def usable(self) -> bool:
        """True when the stack was not refused."""
        return not self.problems

    def error(self) -> InputError | None:
        """Return the exception that describes a refusal (None when usable)."""
        if not self.problems:
            return None
        return self.error_class(
            f"Series {self.info.series_instance_uid or '(no UID)'} stack [{self.key}] was "
            "refused: " + " ".join(self.problems)
        )

    def raise_if_refused(self) -> None:
        """Raise the refusal error of this stack, if any.

        Raises
        ------
        SeriesGeometryError, MissingAttributeError, UnsupportedInputError
        """
        err = self.error()
        if err is not None:
            raise err


# ---------------------------------------------------------------------------- discovery
def _plausibly_dicom(path: Path) -> tuple[bool, bool, str]:
    """Return (is_dicom, has_preamble, reason) from the first bytes of a file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(140)
    except OSError as exc:
        return False, False, f"cannot be read ({exc.strerror})"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True, True, ""
    if len(head) < 8:
        return False, False, "too short to be DICOM"
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group in (0x0002, 0x0008) and element < 0x0200:
        if head[4:6] in VR_BYTES:
            return True, False, ""
        length = int.from_bytes(head[4:8], "little")
        if length < 1024:  # implicit VR: a short first element (e.g. group length, UID)
            return True, False, ""
    return False, False, "not DICOM (no 'DICM' prefix and no plausible data set start)"


def discover_files(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Discovery:
    """Find the DICOM files under a folder (recursively), a file, or a list of both.

    Parameters
    ----------
    source : path or iterable of paths

    Returns
    -------
    Discovery
        DICOM-looking files (sorted) and the skipped ones with a reason.

    Raises
    ------
    InputError
        If a given path does not exist.
    """
    paths = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    candidates: list[Path] = []
    for p in paths:
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for name in sorted(names):
                    candidates.append(Path(root) / name)
        elif p.is_file():
            candidates.append(p)
        else:
            raise InputError(
                f"Input path {p} does not exist (expected a DICOM file or folder). "
                "Potential fix: check the path and the mount."
            )
    files: list[Path] = []
    preambles: list[bool] = []
    skipped: list[SkippedFile] = []
    for path in candidates:
        if path.name.upper() == "DICOMDIR":
            skipped.append(SkippedFile(str(path), "DICOMDIR media directory, not an image"))
            continue
        ok, preamble, reason = _plausibly_dicom(path)
        if ok:
            files.append(path)
            preambles.append(preamble)
        else:
            skipped.append(SkippedFile(str(path), reason))
    return Discovery(files=tuple(files), skipped=tuple(skipped), has_preamble=tuple(preambles))


# ---------------------------------------------------------------------------- frames
@dataclass
class _Frame:
    path: Path
    flat: Dataset
    index: int | None  # 0-based frame index in a multi-frame file, None for single-frame
    n_frames_in_file: int
    sop_instance_uid: str
    ipp: NDArray[np.float64] | None
    iop: NDArray[np.float64] | None
    pixel_spacing: NDArray[np.float64] | None
    #: (byte offset, length) of the Pixel Data value, when the fast header reader found it
    pixel_location: tuple[int, int] | None = None
    #: b-value known only from the series context (`_with_series_b_values`)
    series_b_value_s_per_mm2: float | None = None
    #: what was substituted for a missing identifier (`ensure_series_instance_uid`)
    identity_note: str = ""


def _float_array(value: Any, n: int) -> NDArray[np.float64] | None:
    if value is None:
        return None
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _read_header(path: Path, read_warnings: list[str], has_preamble: bool | None = None,
                 *, fast_path: bool = True) -> tuple[Dataset, tuple[int, int] | None]:
    """Read a header (no pixels); return it and the Pixel Data (offset, length) if known.

    The fast reader (`bonelesion.dicom.fastheader.read_header`) builds the same data set
    as ``dcmread(stop_before_pixels=True)`` for plain Part 10 files and declines the rest,
    which pydicom then reads. pydicom converts values lazily: callers touch elements
    under `warnings.catch_warnings` (see `load_series`).
    """
    if has_preamble is None:
        has_preamble = _plausibly_dicom(path)[1]
    if fast_path and has_preamble:
        try:
            fast = read_header(path)
        except OSError as exc:
            raise NotDicomError(
                f"File {path}: cannot be read as DICOM (OSError: {exc}). "
                "Expected a DICOM data set. Potential fix: remove or re-export the file."
            ) from exc
        if fast is not None:
            location = None
            if fast.pixel_data_tag == _PIXEL_DATA_TAG and fast.pixel_data_offset is not None \
                    and fast.pixel_data_length is not None:
                location = (fast.pixel_data_offset, fast.pixel_data_length)
            return fast.dataset, location
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=not has_preamble)
        except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError) as exc:
            raise NotDicomError(
                f"File {path}: cannot be read as DICOM ({type(exc).__name__}: {exc}). "
                "Expected a DICOM data set. Potential fix: remove or re-export the file."
            ) from exc
    for w in caught:
        read_warnings.append(f"{path.name}: {w.message}")
    return ds, None


def _frames_of(path: Path, ds: Dataset, max_bytes: int,
               pixel_location: tuple[int, int] | None = None) -> list[_Frame]:
    rows = int(ds.get("Rows", 0) or 0)
    cols = int(ds.get("Columns", 0) or 0)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows * cols * n_frames * 4 > max_bytes:
        raise UnsupportedInputError(
            f"File {path}: {rows}×{cols}×{n_frames} frames would need "
            f"{rows * cols * n_frames * 4 / 1024**3:.1f} GiB as float32 (limit "
            f"{max_bytes / 1024**3:.1f} GiB); refused before decoding. "
            "Potential fix: check the header (Rows, Columns, NumberOfFrames) or raise max_bytes."
        )
    flats = flatten_frames(ds)
    multi = len(flats) > 1 or frame_number(flats[0]) is not None
    out = []
    sop = str(ds.get("SOPInstanceUID", "") or "")
    for i, flat in enumerate(flats):
        ps = _float_array(flat.get("PixelSpacing", None), 2)
        out.append(
            _Frame(
                path=path,
                flat=flat,
                index=i if multi else None,
                n_frames_in_file=len(flats) if multi else 1,
                sop_instance_uid=sop,
                ipp=_float_array(flat.get("ImagePositionPatient", None), 3),
                iop=_float_array(flat.get("ImageOrientationPatient", None), 6),
                pixel_spacing=ps,
                pixel_location=pixel_location,
            )
        )
    return out


# ---------------------------------------------------------------------------- mosaic
_ASCCONV = re.compile(rb"### ASCCONV BEGIN.*?### ASCCONV END ###", re.S)


def _ascconv(ds: Dataset) -> dict[str, str]:
    for tag in ((0x0029, 0x1020), (0x0029, 0x1120), (0x0021, 0x1019)):
        elem = ds.get(tag)
        if elem is None or not isinstance(elem.value, bytes):
            continue
        match = _ASCCONV.search(elem.value)
        if match:
            out: dict[str, str] = {}
            for line in match.group(0).decode("latin-1").splitlines():
                if "=" in line:
                    k, v = line.split("=", 1)
                    out[k.strip()] = v.split("#", 1)[0].strip()
            return out
    return {}


@dataclass(frozen=True)
class _MosaicLayout:
    n_tiles: int
    grid: int
    tile_rows: int
    tile_cols: int
    normal: NDArray[np.float64]
    spacing_mm: float
    notes: tuple[str, ...]
    protocol_positions: NDArray[np.float64] | None = None


def _mosaic_layout(flat: Dataset, row_dir: NDArray[np.float64], col_dir: NDArray[np.float64]
                   ) -> _MosaicLayout:
    """Return tile count, slice normal and spacing of a Siemens mosaic (nibabel/dcm2niix)."""
    notes: list[str] = []
    n_tiles: int | None = None
    normal: NDArray[np.float64] | None = None
    csa: dict[str, Any] | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel.nicom warns "experimental" on import
            from nibabel.nicom import csareader

            csa = csareader.get_csa_header(flat, "image")
        if csa is not None:
            n = csareader.get_n_mosaic(csa)
            n_tiles = int(n) if n else None
            sn = csareader.get_slice_normal(csa)
            if sn is not None:
                normal = np.asarray(sn, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - a damaged CSA header falls back to other sources
        logger.debug("CSA image header unreadable: %s", exc)
    if n_tiles is None:
        elem = flat.get((0x0019, 0x100A))
        if elem is not None and elem.value not in (None, b"", ""):
            value = elem.value
            if isinstance(value, bytes):
                value = int.from_bytes(value[:2], "little")
            n_tiles = int(value)
    asc = _ascconv(flat)
    if n_tiles is None and "sSliceArray.lSize" in asc:
        n_tiles = int(asc["sSliceArray.lSize"])
        notes.append("mosaic tile count from the ASCCONV protocol (sSliceArray.lSize)")
    if normal is None and any(k.startswith("sSliceArray.asSlice[0].sNormal") for k in asc):
        normal = np.array(
            [float(asc.get(f"sSliceArray.asSlice[0].sNormal.d{a}", 0.0))
             for a in ("Sag", "Cor", "Tra")]
        )
    if normal is None:
        normal = np.cross(row_dir, col_dir)
    normal = normal / np.linalg.norm(normal)
    if n_tiles is None:
        raise MissingAttributeError(
            "Siemens mosaic: number of images in the mosaic not found (CSA "
            "NumberOfImagesInMosaic, (0019,100A) or ASCCONV sSliceArray.lSize). "
            "Potential fix: export the series without removing Siemens private tags."
        )
    spacing = flat.get("SpacingBetweenSlices", None)
    spacing_mm: float | None = float(spacing) if spacing not in (None, "") else None
    if spacing_mm is None and "sSliceArray.asSlice[1].sPosition.dTra" in asc or (
        spacing_mm is None and "sSliceArray.asSlice[1].sPosition.dCor" in asc
    ):
        p = [np.array([float(asc.get(f"sSliceArray.asSlice[{i}].sPosition.d{a}", 0.0))
                       for a in ("Sag", "Cor", "Tra")]) for i in (0, 1)]
        spacing_mm = float(abs(np.dot(p[1] - p[0], normal)))
        notes.append("mosaic slice spacing from the ASCCONV slice positions")
    if spacing_mm is None and flat.get("SliceThickness", None) not in (None, ""):
        spacing_mm = float(flat.SliceThickness)
        notes.append("mosaic slice spacing from SliceThickness (no SpacingBetweenSlices)")
    if spacing_mm is None or spacing_mm <= 0:
        raise MissingAttributeError(
            "Siemens mosaic: no slice spacing (SpacingBetweenSlices, ASCCONV positions or "
            "SliceThickness). Potential fix: export with the full header."
        )
    grid = int(math.ceil(math.sqrt(n_tiles)))
    positions: NDArray[np.float64] | None = None
    keys = [f"sSliceArray.asSlice[{i}].sPosition" for i in range(n_tiles)]
    if n_tiles > 1 and all(any(k.startswith(p) for k in asc) for p in (keys[0], keys[-1])):
        positions = np.array([[float(asc.get(f"{p}.d{a}", 0.0)) for a in ("Sag", "Cor", "Tra")]
                              for p in keys])
    rows = int(flat.Rows)
    cols = int(flat.Columns)
    return _MosaicLayout(
        n_tiles=n_tiles,
        grid=grid,
        tile_rows=rows // grid,
        tile_cols=cols // grid,
        normal=normal,
        spacing_mm=spacing_mm,
        notes=tuple(notes),
        protocol_positions=positions,
    )


# ---------------------------------------------------------------------------- geometry
@dataclass
class _Plan:
    """A validated stack, ready to decode."""

    frames: list[_Frame]  # in slice order (mosaic: the one frame)
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: NDArray[np.float64]
    direction_lps: NDArray[np.float64]
    mosaic: _MosaicLayout | None
    mosaic_reversed: bool
    notes: list[str]


def _uid(frames: Sequence[_Frame]) -> str:
    return str(frames[0].flat.get("SeriesInstanceUID", "") or "(no UID)")


def _orthonormal(iop: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    row_dir = iop[:3] / np.linalg.norm(iop[:3])
    col_dir = iop[3:] - np.dot(iop[3:], row_dir) * row_dir
    col_dir = col_dir / np.linalg.norm(col_dir)
    return row_dir, col_dir


def _plan_stack(frames: list[_Frame], max_bytes: int
                ) -> tuple[_Plan | None, list[str], list[str], type[InputError]]:
    """Validate and sort one stack; return (plan, problems, warnings, error class)."""
    problems: list[str] = []
    notes: list[str] = []
    uid = _uid(frames)
    fix_geom = "Potential fix: re-export the series from the scanner/PACS, or select the "
    missing = [k for k, attr in (("ImagePositionPatient (0020,0032)", "ipp"),
                                 ("ImageOrientationPatient (0020,0037)", "iop"),
                                 ("PixelSpacing (0028,0030)", "pixel_spacing"))
               if any(getattr(f, attr) is None for f in frames)]
    if missing:
        n_bad = sum(1 for f in frames if f.ipp is None or f.iop is None or f.pixel_spacing is None)
        problems.append(
            f"{n_bad} of {len(frames)} frames lack {', '.join(missing)} (file "
            f"{frames[0].path.name}); expected on every image of a volume. Potential fix: "
            "this is not a cross-sectional volume (e.g. a screenshot or report); select "
            "another series."
        )
        return None, problems, notes, MissingAttributeError
    # De-duplicate copies of the same SOP instance (same file exported twice).
    seen: dict[tuple[str, int | None], _Frame] = {}
    unique: list[_Frame] = []
    for f in frames:
        k = (f.sop_instance_uid, f.index)
        if f.sop_instance_uid and k in seen:
            notes.append(f"{f.path.name} repeats SOP instance of {seen[k].path.name}; ignored")
            continue
        seen[k] = f
        unique.append(f)
    frames = unique
    rows, cols = int(frames[0].flat.Rows), int(frames[0].flat.Columns)
    if rows < 1 or cols < 1:
        problems.append(f"Rows×Columns is {rows}×{cols}; expected ≥ 1. {fix_geom}images.")
        return None, problems, notes, UnsupportedInputError
    fors = sorted({str(f.flat.get("FrameOfReferenceUID", "") or "") for f in frames} - {""})
    if len(fors) > 1:
        problems.append(
            f"mixed frames of reference ({len(fors)} FrameOfReferenceUID values: "
            f"{', '.join(fors[:3])}); expected one. {fix_geom}images of one acquisition."
        )
    ps0 = frames[0].pixel_spacing
    assert ps0 is not None
    all_ps = np.array([f.pixel_spacing for f in frames])
    ps_ok = np.all(np.abs(all_ps - ps0) <= PIXEL_SPACING_RTOL * np.abs(ps0), axis=1)
    bad_ps = [frames[i] for i in np.flatnonzero(~ps_ok)]
    if bad_ps:
        problems.append(
            f"inconsistent PixelSpacing (0028,0030): {ps0.tolist()} mm vs "
            f"{bad_ps[0].pixel_spacing.tolist()} mm in {bad_ps[0].path.name}; expected one "  # type: ignore[union-attr]
            f"value per stack. {fix_geom}images of one reconstruction."
        )
    iop0 = frames[0].iop
    assert iop0 is not None
    norms = (float(np.linalg.norm(iop0[:3])), float(np.linalg.norm(iop0[3:])))
    if min(norms) < 0.5 or abs(float(np.dot(iop0[:3], iop0[3:]))) > 1e-2 * max(norms) ** 2:
        problems.append(
            f"invalid ImageOrientationPatient (0020,0037) {iop0.tolist()} in "
            f"{frames[0].path.name}; expected two orthogonal unit vectors. "
            f"{fix_geom}images with a valid header."
        )
        return None, problems, notes, SeriesGeometryError
    if not np.all(ps0 > 0):
        problems.append(
            f"PixelSpacing (0028,0030) {ps0.tolist()} in {frames[0].path.name}; expected "
            f"positive values. {fix_geom}images with a valid header."
        )
        return None, problems, notes, SeriesGeometryError
    dev = float(np.max(np.abs(np.array([f.iop for f in frames]) - iop0)))
    if dev > ORIENTATION_ATOL:
        problems.append(
            f"mixed orientation: ImageOrientationPatient (0020,0037) cosines differ by up to "
            f"{dev:.4f} (tolerance {ORIENTATION_ATOL}); expected one orientation per stack. "
            f"{fix_geom}slices of one orientation (e.g. drop localizers)."
        )
    if problems:
        return None, problems, notes, SeriesGeometryError
    row_dir, col_dir = _orthonormal(iop0)
    normal = np.cross(row_dir, col_dir)
    ps_row, ps_col = float(ps0[0]), float(ps0[1])

    if is_mosaic(frames[0].flat):
        if len(frames) != 1:
            problems.append(
                f"{len(frames)} mosaic images share one stack signature (same b-value, "
                "direction, echo and acquisition number); expected one mosaic per volume. "
                f"{fix_geom}one acquisition."
            )
            return None, problems, notes, SeriesGeometryError
        try:
            layout = _mosaic_layout(frames[0].flat, row_dir, col_dir)
        except MissingAttributeError as exc:
            return None, [str(exc)], notes, MissingAttributeError
        notes.extend(layout.notes)
        # nibabel MosaicWrapper.image_position: IPP is the corner of the whole mosaic; moved
        # to the corner of the tile it describes.
        rd = np.array([rows, cols], dtype=np.float64)
        tile = np.array([layout.tile_rows, layout.tile_cols], dtype=np.float64)
        fix = (rd - tile) / 2.0
        ipp_tile = frames[0].ipp + col_dir * ps_row * fix[0] + row_dir * ps_col * fix[1]  # type: ignore[operator]
        sn = layout.normal
        ipp_index = 0
        if layout.protocol_positions is not None:
            # Tiles follow the protocol slice array (ASCCONV sSliceArray.asSlice[k]); the IPP
            # describes the tile whose protocol position is nearest to it (the first tile for
            # ascending protocols, the last one for descending ones, as in dicom2nifti).
            centre = ipp_tile + col_dir * ps_row * (layout.tile_rows - 1) / 2.0 \
                + row_dir * ps_col * (layout.tile_cols - 1) / 2.0
            pos = layout.protocol_positions
            ipp_index = int(np.argmin(np.linalg.norm(pos - centre, axis=1)))
            step = pos[-1] - pos[0]
            if np.dot(step, sn) < 0:
                sn = -sn
            if ipp_index not in (0, layout.n_tiles - 1):
                notes.append(f"mosaic IPP matches protocol slice {ipp_index}, not an end slice")
        tile0 = ipp_tile - ipp_index * layout.spacing_mm * sn
        reverse = bool(np.dot(sn, normal) < 0)
        origin = tile0 + (layout.n_tiles - 1) * layout.spacing_mm * sn if reverse else tile0
        # Keep the in-plane axes exactly orthogonal to the slice axis.
        direction = np.column_stack([normal, col_dir, row_dir])
        shape = (layout.n_tiles, layout.tile_rows, layout.tile_cols)
        if not np.allclose(np.abs(np.dot(sn, normal)), 1.0, atol=1e-3):
            notes.append("mosaic slice normal differs from the in-plane cross product; "
                         "used the latter")
        err = _check_size(shape, max_bytes, uid)
        if err:
            return None, [err], notes, UnsupportedInputError
        return (_Plan(frames, shape, (layout.spacing_mm, ps_row, ps_col), origin, direction,
                      layout, reverse, notes), [], notes, SeriesGeometryError)

    positions = np.array([f.ipp for f in frames])
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    frames = [frames[i] for i in order]
    proj = proj[order]
    positions = positions[order]
    n = len(frames)
    if n > 1:
        diffs = np.diff(proj)
        dup = int(np.sum(diffs < DUPLICATE_POSITION_ATOL_MM))
        if dup:
            problems.append(
                f"duplicate positions: {dup + 1 if dup == n - 1 else dup} of {n} slices "
                f"share a position along the slice normal (tolerance "
                f"{DUPLICATE_POSITION_ATOL_MM} mm); expected one slice per position. This is "
                "not one volume (e.g. repeated acquisitions or several reconstructions). "
                f"{fix_geom}images of one acquisition."
            )
            return None, problems, notes, SeriesGeometryError
        spacing = float(np.median(diffs))
        rel = np.abs(diffs - spacing) / spacing
        if np.any(rel > SPACING_RTOL):
            gaps = diffs / spacing
            hint = ""
            if np.any(np.abs(gaps - np.round(gaps)) < SPACING_RTOL) and np.max(gaps) > 1.5:
                hint = f" ({int(np.sum(np.round(gaps) - 1))} missing slice(s)?)"
            problems.append(
                f"irregular slice spacing: {float(diffs.min()):.4g}–{float(diffs.max()):.4g} mm "
                f"between neighbouring slices (median {spacing:.4g} mm, rtol {SPACING_RTOL})"
                f"{hint}; expected regular spacing. {fix_geom}complete series."
            )
        # Gantry tilt: positions must lie on the line along the slice normal.
        rel_pos = positions - positions[0]
        along = rel_pos @ normal
        inplane = rel_pos - np.outer(along, normal)
        offset = float(np.max(np.linalg.norm(inplane, axis=1)))
        if offset > max(TILT_ATOL_MM, TILT_RTOL * spacing * (n - 1)):
            total_inplane = float(np.linalg.norm(inplane[-1]))
            tilt_deg = math.degrees(math.atan2(total_inplane, float(along[-1])))
            gantry = frames[0].flat.get("GantryDetectorTilt", None)
            gantry_txt = (f", GantryDetectorTilt (0018,1120) = {gantry}"
                          if gantry not in (None, "") else "")
            problems.append(
                f"gantry tilt: the stacking direction is {tilt_deg:.2f}° from the slice normal "
                f"(in-plane drift {offset:.3g} mm over {n} slices{gantry_txt}); expected slices "
                "stacked along their normal. Potential fix: reconstruct without tilt, or "
                "resample (e.g. dcm2niix's tilt correction) before loading."
            )
        if problems:
            return None, problems, notes, SeriesGeometryError
    else:
        sbs = frames[0].flat.get("SpacingBetweenSlices", None)
        st = frames[0].flat.get("SliceThickness", None)
        if sbs not in (None, "") and float(sbs) > 0:
            spacing = float(sbs)
            notes.append("single slice: slice spacing from SpacingBetweenSlices")
        elif st not in (None, "") and float(st) > 0:
            spacing = float(st)
            notes.append("single slice: slice spacing from SliceThickness")
        else:
            spacing = 1.0
            notes.append("single slice without thickness: slice spacing set to 1 mm")
    shape = (n, rows, cols)
    err = _check_size(shape, max_bytes, uid)
    if err:
        return None, [err], notes, UnsupportedInputError
    direction = np.column_stack([normal, col_dir, row_dir])
    origin = positions[0]
    return (_Plan(frames, shape, (spacing, ps_row, ps_col), origin, direction, None, False, notes),
            [], notes, SeriesGeometryError)


def _check_size(shape: tuple[int, int, int], max_bytes: int, uid: str) -> str:
    n_bytes = int(np.prod(shape, dtype=np.int64)) * 4
    if n_bytes > max_bytes or shape[1] > 65535 or shape[2] > 65535:
        return (
            f"absurd size: {shape[0]}×{shape[1]}×{shape[2]} voxels would need "
            f"{n_bytes / 1024**3:.2f} GiB as float32 (limit {max_bytes / 1024**3:.2f} GiB); "
            "refused before decoding. Potential fix: check Rows/Columns/NumberOfFrames, or "
            "raise max_bytes if the data are genuine."
        )
    return ""


# ---------------------------------------------------------------------------- decoding
def _native_offset(path: Path, flat: Dataset, n_frames: int,
                   location: tuple[int, int] | None = None
                   ) -> tuple[int, np.dtype[Any], int] | None:
    """Byte offset and dtype of uncompressed little-endian pixel data.

    With ``location`` (offset, length of the Pixel Data value, from the fast header
    reader) no file access is needed. Without it, the Pixel Data element must be the
    file's last element, with its header bytes where its length says. Returns None (use
    pydicom) otherwise.
    """
    meta = getattr(flat, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts and ts not in _NATIVE_LITTLE_ENDIAN:
        return None
    bits = int(flat.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32) or int(flat.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    signed = int(flat.get("PixelRepresentation", 0) or 0) == 1
    stored = int(flat.get("BitsStored", bits) or bits)
    if not 1 <= stored <= bits:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    length = int(flat.Rows) * int(flat.Columns) * n_frames * (bits // 8)
    if location is not None:
        offset, found = location
        if found in (length, length + 1):  # an odd length is padded to even
            return offset, dtype, stored
        return None
    size = path.stat().st_size
    for pad in (0, 1):
        offset = size - length - pad
        if offset < 12:
            continue
        with open(path, "rb") as fh:
            fh.seek(offset - 12)
            head = fh.read(12)
        tag_ok_explicit = head[0:4] == b"\xe0\x7f\x10\x00" and head[4:6] in (b"OW", b"OB") \
            and int.from_bytes(head[8:12], "little") == length + pad
        tag_ok_implicit = head[4:8] == b"\xe0\x7f\x10\x00" \
            and int.from_bytes(head[8:12], "little") == length + pad
        if tag_ok_explicit or tag_ok_implicit:
            return offset, dtype, stored
    return None


def _fix_stored_bits(arr: NDArray[Any], stored: int) -> None:
    """Mask (unsigned) or sign-extend (signed) values stored in fewer bits, in place.

    Same result as pydicom's pixel_array (bits above BitsStored are ignored: they may hold
    overlays or garbage).
    """
    bits = arr.dtype.itemsize * 8
    if stored >= bits:
        return
    if arr.dtype.kind == "u":
        np.bitwise_and(arr, np.array((1 << stored) - 1, dtype=arr.dtype), out=arr)
    else:
        shift = np.array(bits - stored, dtype=arr.dtype)
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)


def _transfer_syntax(flat: Dataset) -> str:
    meta = getattr(flat, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "?")) if meta is not None else "?"


def _decode_file(path: Path) -> NDArray[Any]:
    """All frames of one file as stored values, shape (frames, rows, cols) or (rows, cols)."""
    from pydicom.pixels import pixel_array

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arr = pixel_array(str(path))
        except Exception:  # noqa: BLE001 - retry through a forced full read (no preamble)
            ds = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian \
                    if not ds.original_encoding[0] else pydicom.uid.ImplicitVRLittleEndian
            arr = ds.pixel_array
    for w in caught:
        logger.info("%s: %s", path.name, w.message)
    return arr


def _rescale(flat: Dataset) -> tuple[float, float]:
    slope = flat.get("RescaleSlope", None)
    intercept = flat.get("RescaleIntercept", None)
    s = float(slope) if slope not in (None, "") else 1.0
    b = float(intercept) if intercept not in (None, "") else 0.0
    if s == 0:
        s = 1.0
    return s, b


def _stored_range(flat: Dataset) -> tuple[int, int]:
    bits = int(flat.get("BitsStored", 16) or 16)
    if int(flat.get("PixelRepresentation", 0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _can_use_int16(frames: Sequence[_Frame]) -> bool:
    for f in frames:
        s, b = _rescale(f.flat)
        if s != int(s) or b != int(b):
            return False
        if int(f.flat.get("BitsStored", 16) or 16) > 16:
            return False
    return True


class _FileCache:
    """Decoded pixel arrays of the most recent multi-frame file (one entry)."""

    def __init__(self, *, fast_path: bool = True) -> None:
        self.path: Path | None = None
        self.array: NDArray[Any] | None = None
        self.fast_path = fast_path

    def get(self, path: Path, flat: Dataset | None = None, n_frames: int = 1,
            location: tuple[int, int] | None = None) -> NDArray[Any]:
        if self.path != path:
            self.array = None
            native = _native_offset(path, flat, n_frames, location) \
                if flat is not None and self.fast_path else None
            if native is not None:
                offset, dtype, stored = native
                shape = (n_frames, int(flat.Rows), int(flat.Columns))  # type: ignore[union-attr]
                arr = np.fromfile(path, dtype=dtype, count=int(np.prod(shape)), offset=offset)
                if arr.size == int(np.prod(shape)):
                    _fix_stored_bits(arr, stored)
                    self.array = arr.reshape(shape)
            if self.array is None:
                self.array = _decode_file(path)
            self.path = path
        assert self.array is not None
        return self.array


#: Output arrays at least this large are allocated with their pages already mapped.
PREFAULT_MIN_BYTES = 4 * 1024**2


def _empty_prefaulted(shape: tuple[int, int, int], dtype: type[np.generic]) -> NDArray[Any]:
    """``np.empty`` whose memory pages are mapped up front (Linux ``MAP_POPULATE``).

    Filling a fresh 150 MiB array page by page costs one page fault per 4 KiB; on virtual
    machines that is several times the cost of reading the pixels. One ``mmap`` with
    ``MAP_POPULATE`` maps them in one system call. Elsewhere (no ``MAP_POPULATE``), or for
    small arrays, this is ``np.empty``.
    """
    n_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is None or n_bytes < PREFAULT_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    try:
        buffer = mmap.mmap(-1, n_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except (OSError, ValueError):  # e.g. an address-space limit: let numpy try
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def _decode_plan(plan: _Plan, ct: bool, *, fast_path: bool = True) -> NDArray[Any]:
    frames = plan.frames
    use_int16 = ct and _can_use_int16(frames)
    out = _empty_prefaulted(plan.shape, np.int16 if use_int16 else np.float32)
    cache = _FileCache(fast_path=fast_path)
    if plan.mosaic is not None:
        f = frames[0]
        mosaic_raw = cache.get(f.path)
        lay = plan.mosaic
        s, b = _rescale(f.flat)
        for k in range(lay.n_tiles):
            r0 = (k // lay.grid) * lay.tile_rows
            c0 = (k % lay.grid) * lay.tile_cols
            tile = mosaic_raw[r0:r0 + lay.tile_rows, c0:c0 + lay.tile_cols]
            dst = lay.n_tiles - 1 - k if plan.mosaic_reversed else k
            out = _store(out, dst, tile, s, b, f)
        return out
    direct: list[tuple[int, _Frame, tuple[int, np.dtype[Any], int], float]] = []
    rest: list[tuple[int, _Frame]] = []
    for s_idx, f in enumerate(frames):
        native = _native_offset(f.path, f.flat, 1, f.pixel_location) \
            if f.index is None and fast_path else None
        if native is not None and out.dtype == np.int16 and native[1].itemsize == 2:
            s, b = _rescale(f.flat)
            lo_s, hi_s = _stored_range(f.flat)
            if s == 1 and -32768 <= lo_s + b and hi_s + b <= 32767 \
                    and -32768 <= lo_s and hi_s <= 32767:
                direct.append((s_idx, f, native, b))
                continue
        rest.append((s_idx, f))
    if direct:
        failed = _read_direct(out, direct)
        rest = sorted(rest + [(s_idx, f) for s_idx, f in failed], key=lambda item: item[0])
    buffers: dict[tuple[int, str], NDArray[Any]] = {}
    for s_idx, f in rest:
        s, b = _rescale(f.flat)
        raw: NDArray[Any] | None = None
        if f.index is None and fast_path:
            native = _native_offset(f.path, f.flat, 1, f.pixel_location)
            if native is not None:
                offset, dtype, stored = native
                key = (plan.shape[1] * plan.shape[2], dtype.str)
                buf = buffers.get(key)
                if buf is None:
                    buf = np.empty(plan.shape[1:], dtype=dtype)
                    buffers[key] = buf
                with open(f.path, "rb", buffering=0) as fh:  # one read, no copy
                    fh.seek(offset)
                    n_read = fh.readinto(memoryview(buf).cast("B"))  # type: ignore[arg-type]
                if n_read == buf.nbytes:
                    _fix_stored_bits(buf, stored)
                    raw = buf
            if raw is None:
                raw = cache.get(f.path)
        else:
            all_frames = cache.get(f.path, f.flat, f.n_frames_in_file, f.pixel_location)
            raw = all_frames[f.index] if all_frames.ndim == 3 else all_frames
        if raw.shape != plan.shape[1:]:
            raise UnsupportedInputError(
                f"File {f.path}: decoded frame has shape {raw.shape}, expected "
                f"{plan.shape[1:]} (Rows, Columns). Potential fix: the pixel data is not a "
                "single-sample greyscale image (e.g. RGB); select another series."
            )
        out = _store(out, s_idx, raw, s, b, f)
    return out


def _read_direct(out: NDArray[Any], jobs: Sequence[tuple[int, _Frame, tuple[int, np.dtype[Any],
                                                                              int], float]]
                 ) -> list[tuple[int, _Frame]]:
    """Read 16-bit uncompressed slices straight into the int16 output; return the failures.

    Only called when every value BitsStored allows, plus the intercept, fits int16: the
    stored bits are masked / sign-extended in place in a view of the output slice, then the
    intercept is added. Same result as `_store` on pydicom's ``pixel_array``.
    """

    def _one(job: tuple[int, _Frame, tuple[int, np.dtype[Any], int], float]
             ) -> tuple[int, _Frame] | None:
        s_idx, f, (offset, dtype, stored), intercept = job
        dst = out[s_idx]
        view = dst.view(dtype)
        with open(f.path, "rb", buffering=0) as fh:  # one read, no copy
            fh.seek(offset)
            n_read = fh.readinto(memoryview(view).cast("B"))  # type: ignore[arg-type]
        if n_read != view.nbytes:
            return s_idx, f
        _fix_stored_bits(view, stored)
        if intercept:
            dst += np.int16(intercept)
        return None

    results = [_one(job) for job in jobs]
    return [r for r in results if r is not None]


def _store(out: NDArray[Any], index: int, raw: NDArray[Any], slope: float, intercept: float,
           frame: _Frame) -> NDArray[Any]:
    """Write one slice through the modality LUT; upgrade to float32 if int16 overflows."""
    if out.dtype == np.int16:
        lo_s, hi_s = _stored_range(frame.flat)
        if slope == 1 and raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2 \
                and -32768 <= lo_s + intercept and hi_s + intercept <= 32767 \
                and -32768 <= lo_s and hi_s <= 32767:
            # Every value BitsStored allows (decoders mask the bits above it) maps into
            # int16 exactly: no per-voxel range check needed.
            dst = out[index]
            np.copyto(dst, raw, casting="unsafe")
            if intercept:
                dst += np.int16(intercept)
            return out
        tmp = raw.astype(np.int32, copy=False)
        if slope != 1:
            tmp = tmp * int(slope)
        if intercept:
            tmp = tmp + int(intercept)
        lo, hi = int(tmp.min()), int(tmp.max())
        if lo >= -32768 and hi <= 32767:
            out[index] = tmp
            return out
        out = out.astype(np.float32)  # rare: values beyond int16 after rescale
    np.multiply(raw, slope, out=out[index], casting="unsafe")
    if intercept:
        out[index] += np.float32(intercept)
    return out


# ---------------------------------------------------------------------------- assembly
def _series_info(frames: Sequence[_Frame], files: tuple[str, ...], notes: Sequence[str]
                 ) -> SeriesInfo:
    from bonelesion.dicom import vendors

    rep = frames[0].flat

    def _float(keyword: str) -> float | None:
        value = rep.get(keyword, None)
        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    image_type = rep.get("ImageType", None) or ()
    if isinstance(image_type, str):
        image_type = [image_type]
    sops: list[str] = []
    for f in frames:
        if f.sop_instance_uid and f.sop_instance_uid not in sops:
            sops.append(f.sop_instance_uid)
    series_number = rep.get("SeriesNumber", None)
    role = getattr(vendors.stack_role(rep), "value", None)
    b_value = vendors.b_value_s_per_mm2(rep)
    series_b = frames[0].series_b_value_s_per_mm2
    if b_value is None and series_b is not None:
        # a b0 whose only clue is the vendor b-value element, in a series with b > 0 images
        b_value = series_b
        role = series_context_role(str(role), series_b)
        notes = [*notes, f"b = {series_b:g} s/mm² from the vendor b-value element, in a "
                 "series that also holds b > 0 images"]
    return SeriesInfo(
        series_instance_uid=str(rep.get("SeriesInstanceUID", "") or ""),
        frame_of_reference_uid=str(rep.get("FrameOfReferenceUID", "") or ""),
        study_instance_uid=str(rep.get("StudyInstanceUID", "") or ""),
        modality=str(rep.get("Modality", "") or ""),
        manufacturer=str(rep.get("Manufacturer", "") or ""),
        role=str(role),
        echo_time_ms=vendors.echo_time_ms(rep),
        repetition_time_ms=_float("RepetitionTime"),
        b_value_s_per_mm2=b_value,
        magnetic_field_strength_t=vendors.magnetic_field_strength_t(rep),
        diffusion_direction=vendors.diffusion_direction_lps(rep),
        image_type=tuple(str(t) for t in image_type),
        series_description=str(rep.get("SeriesDescription", "") or ""),
        series_number=int(series_number) if series_number not in (None, "") else None,
        sop_instance_uids=tuple(sops),
        source_files=files,
        notes=tuple(notes),
    )


def _ordered_files(frames: Sequence[_Frame]) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for f in frames:
        p = str(f.path)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return tuple(out)


def _acquisition_order(frames: Sequence[_Frame]) -> tuple[float, float, float]:
    inst = [int(f.flat.get("InstanceNumber", 0) or 0) for f in frames]
    acq = [int(f.flat.get("AcquisitionNumber", 0) or 0) for f in frames if
           str(f.flat.get("AcquisitionNumber", "") or "").strip().lstrip("-").isdigit()]
    idx = [f.index if f.index is not None else 0 for f in frames]
    return (min(acq) if acq else 0, min(inst) if inst else 0, min(idx))


def _build_stack(key: StackKey, frames: list[_Frame], *, decode: bool, max_bytes: int,
                 read_warnings: Sequence[str], fast_path: bool = True) -> Stack:
    from bonelesion.dicom import vendors

    plan, problems, notes, error_class = _plan_stack(frames, max_bytes)
    for identity_note in sorted({f.identity_note for f in frames} - {""}):
        logger.warning("Series %s: %s", key.series_instance_uid, identity_note)
        notes = [identity_note, *notes]
    ordered = plan.frames if plan is not None else frames
    files = _ordered_files(ordered)
    info = _series_info(ordered, files, notes)
    stack_warnings = list(read_warnings) + list(notes)
    if plan is None:
        for p in problems:
            logger.warning("Series %s stack [%s] refused: %s", info.series_instance_uid, key, p)
        return Stack(key=key, info=info, files=files, problems=tuple(problems),
                     warnings=tuple(stack_warnings), error_class=error_class)
    geometry: dict[str, Any] = dict(
        shape=plan.shape,
        spacing_mm=tuple(float(s) for s in plan.spacing_mm),
        origin_lps_mm=tuple(float(o) for o in plan.origin_lps_mm),
        direction_lps=tuple(tuple(float(v) for v in row) for row in plan.direction_lps),
    )
    volume: Volume | None = None
    if decode:
        ct = info.modality.upper() == "CT"
        try:
            array = _decode_plan(plan, ct, fast_path=fast_path)
        except InputError as exc:
            return Stack(key=key, info=info, files=files, problems=(str(exc),),
                         warnings=tuple(stack_warnings), error_class=type(exc))
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
            msg = (
                f"pixel data could not be decoded ({type(exc).__name__}: {exc}); transfer "
                f"syntax {_transfer_syntax(ordered[0].flat)}. "
                "Potential fix: install the pydicom decoder plugin for this syntax "
                "(pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls) or re-export uncompressed."
            )
            return Stack(key=key, info=info, files=files, problems=(msg,),
                         warnings=tuple(stack_warnings), error_class=UnsupportedInputError)
        unit = IntensityUnit.HU if ct else IntensityUnit.ARBITRARY
        if info.role == "adc":
            try:
                factor = vendors.adc_scale_to_mm2_per_s(ordered[0].flat, array)
            except InputError as exc:
                return Stack(key=key, info=info, files=files, problems=(str(exc),),
                             warnings=tuple(stack_warnings), error_class=type(exc))
            array = array.astype(np.float32, copy=False)
            array *= np.float32(factor)
            unit = IntensityUnit.MM2_PER_S
        try:
            volume = Volume(
                array=array,
                spacing_mm=plan.spacing_mm,
                origin_lps_mm=tuple(plan.origin_lps_mm),
                direction_lps=plan.direction_lps,
                intensity_unit=unit,
                series=info,
            )
        except InputError as exc:
            return Stack(key=key, info=info, files=files, problems=(str(exc),),
                         warnings=tuple(stack_warnings), error_class=SeriesGeometryError)
    return Stack(key=key, info=info, files=files, volume=volume,
                 warnings=tuple(stack_warnings), **geometry)


def load_series(
    path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    decode: bool = True,
    max_bytes: int = MAX_VOLUME_BYTES,
    fast_path: bool = True,
) -> list[Stack]:
    """Load every stack found under ``path``.

    Parameters
    ----------
    path : path or iterable of paths
        A folder (searched recursively), a file, or a list of files/folders.
    decode : bool
        Decode pixel data into volumes. With False only headers are read, but geometry is
        still validated (refusals are still reported).
    max_bytes : int
        Refuse stacks whose float32 array would be larger (checked before decoding).
    fast_path : bool
        Read plain Part 10 headers with `bonelesion.dicom.fastheader.read_header` and
        uncompressed little-endian pixel data straight from the file (the default). False
        reads everything through pydicom (``dcmread`` and ``pixel_array``); the results are
        the same, voxel for voxel, only slower.

    Returns
    -------
    list of Stack
        Sorted by series, then acquisition order. Refused stacks are included, with
        ``problems`` and no volume. Files that are not DICOM images are logged (WARNING)
        and skipped.

    Raises
    ------
    InputError
        If ``path`` does not exist.

    Examples
    --------
    >>> stacks = load_series("export/")  # doctest: +SKIP
    >>> [s.info.role for s in stacks if s.usable]  # doctest: +SKIP
    ['dwi', 'dwi', 'adc']
    """
    discovery = discover_files(path)
    for skipped in discovery.skipped:
        logger.warning("Skipped %s: %s", skipped.path, skipped.reason)
    entries: list[tuple[_Frame, StackKey, list[str]]] = []
    refused_files: list[Stack] = []
    for file, has_preamble in zip(discovery.files, discovery.has_preamble, strict=True):
        read_warnings: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _file_frames(file, has_preamble, max_bytes, read_warnings,
                                  fast_path=fast_path)
        read_warnings.extend(f"{file.name}: {w.message}" for w in caught)
        for w in read_warnings:
            logger.warning("%s", w)
        if isinstance(result, Stack):
            refused_files.append(result)
            continue
        entries.extend((fr, key, read_warnings) for fr, key in result)
    groups: dict[StackKey, list[_Frame]] = {}
    group_warnings: dict[StackKey, list[str]] = {}
    for fr, key, read_warnings in _with_series_b_values(entries):
        groups.setdefault(key, []).append(fr)
        if read_warnings:
            group_warnings.setdefault(key, []).extend(read_warnings)
    stacks: list[tuple[tuple[Any, ...], Stack]] = []
    per_series: dict[str, int] = {}
    for key in groups:
        per_series[key.series_instance_uid] = per_series.get(key.series_instance_uid, 0) + 1
    for key, frames in groups.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stack = _build_stack(key, frames, decode=decode, max_bytes=max_bytes,
                                 read_warnings=sorted(set(group_warnings.get(key, []))),
                                 fast_path=fast_path)
        if caught:
            extra = tuple(sorted({f"{key.series_instance_uid}: {w.message}" for w in caught}))
            for w in extra:
                logger.warning("%s", w)
            stack = dataclasses.replace(stack, warnings=stack.warnings + extra)
        order = (stack.info.series_number if stack.info.series_number is not None else 1 << 30,
                 key.series_instance_uid,
                 _acquisition_order(frames) if per_series[key.series_instance_uid] > 1
                 else (0, 0, 0), str(key))
        stacks.append((order, stack))
    stacks.sort(key=lambda item: item[0])
    return [s for _, s in stacks] + refused_files


def _with_series_b_values(entries: list[tuple[_Frame, StackKey, list[str]]]
                          ) -> list[tuple[_Frame, StackKey, list[str]]]:
    """Give b = 0 keys to the b0 images a series context reveals.

    The rule is `bonelesion.dicom.multiframe.series_stack_keys` (shared with the
    catalogue): images whose only diffusion clue is a vendor b-value element of 0, in a
    series that holds b > 0 images (e.g. a Philips classic b0), get b 0 and kind ``b0``.
    """
    keyed = series_stack_keys([fr.flat for fr, _, _ in entries], [key for _, key, _ in entries])
    out = list(entries)
    for i, (key, series_b) in enumerate(keyed):
        if series_b is not None:
            frame, _, read_warnings = entries[i]
            frame.series_b_value_s_per_mm2 = series_b
            out[i] = (frame, key, read_warnings)
    return out


def _file_frames(file: Path, has_preamble: bool, max_bytes: int, read_warnings: list[str],
                 *, fast_path: bool = True) -> list[tuple[_Frame, StackKey]] | Stack:
    """Header, frames and stack keys of one file ([] when it is skipped)."""
    try:
        ds, pixel_location = _read_header(file, read_warnings, has_preamble,
                                          fast_path=fast_path)
    except NotDicomError as exc:
        logger.warning("Skipped %s: %s", file, exc)
        return []
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_SOP_CLASS:
        logger.info("Skipped %s: DICOMDIR", file)
        return []
    if "Rows" not in ds or "Columns" not in ds:
        logger.warning("Skipped %s: no image (SOP class %s has no Rows/Columns)",
                       file, ds.get("SOPClassUID", "?"))
        return []
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class in _NON_IMAGE_SOP_CLASSES:
        logger.info("Skipped %s: %s, not an image series", file, _NON_IMAGE_SOP_CLASSES[sop_class])
        return []
    uid_note = ensure_series_instance_uid(ds, file)
    try:
        frames = _frames_of(file, ds, max_bytes, pixel_location)
    except UnsupportedInputError as exc:
        logger.warning("%s", exc)
        return _refused_file_stack(file, ds, exc)
    for fr in frames:
        fr.identity_note = uid_note
    return [(fr, stack_key(fr.flat)) for fr in frames]


def _refused_file_stack(file: Path, ds: Dataset, exc: InputError) -> Stack:
    flat = Dataset()
    for kw in ("SeriesInstanceUID", "Modality", "Manufacturer", "Rows", "Columns", "ImageType"):
        if kw in ds:
            setattr(flat, kw, ds.get(kw))
    key = StackKey(
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""), echo_number=None,
        echo_time_ms=None, b_value_s_per_mm2=None, diffusion_direction=None,
        image_type=tuple(str(t) for t in (ds.get("ImageType", None) or ())), orientation=None,
        rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
        acquisition_kind="", stack_id="", temporal_position=None, acquisition_number=None,
    )
    info = SeriesInfo(series_instance_uid=key.series_instance_uid,
                      modality=str(ds.get("Modality", "") or ""),
                      manufacturer=str(ds.get("Manufacturer", "") or ""),
                      source_files=(str(file),))
    return Stack(key=key, info=info, files=(str(file),), problems=(str(exc),),
                 error_class=type(exc))


_FILTERS = {
    "series_instance_uid", "role", "modality", "b_value_s_per_mm2", "echo_number",
    "echo_time_ms", "image_type", "series_number",
}
#: Echo-time filter tolerance (headers round TE differently).
_ECHO_TIME_FILTER_ATOL_MS = 0.05
#: b-value filter tolerance.
_B_VALUE_FILTER_ATOL = 1.0


def _matches(stack: Stack, filters: dict[str, Any]) -> bool:
    info = stack.info
    for name, wanted in filters.items():
        if name == "series_instance_uid" and info.series_instance_uid != wanted:
            return False
        if name == "role" and info.role != getattr(wanted, "value", wanted):
            return False
        if name == "modality" and info.modality.upper() != str(wanted).upper():
            return False
        if name == "series_number" and info.series_number != int(wanted):
            return False
        if name == "echo_number" and stack.key.echo_number != int(wanted):
            return False
        if name == "b_value_s_per_mm2":
            b = info.b_value_s_per_mm2
            if b is None or abs(b - float(wanted)) > _B_VALUE_FILTER_ATOL:
                return False
        if name == "echo_time_ms":
            te = info.echo_time_ms
            if te is None or abs(te - float(wanted)) > _ECHO_TIME_FILTER_ATOL_MS:
                return False
        if name == "image_type" and str(wanted).upper() not in {t.upper() for t in info.image_type}:
            return False
    return True


def load_volume(path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                max_bytes: int = MAX_VOLUME_BYTES, **filters: Any) -> Volume:
    """Load the one stack under ``path`` (after ``filters``) as a `Volume`.

    Parameters
    ----------
    path : path or iterable of paths
    max_bytes : int
        See `load_series`.
    **filters
        Any of ``series_instance_uid``, ``series_number``, ``role``, ``modality``,
        ``b_value_s_per_mm2`` (±1), ``echo_number``, ``echo_time_ms`` (±0.05 ms),
        ``image_type`` (a token the ImageType must contain).

    Returns
    -------
    Volume

    Raises
    ------
    SeriesSelectionError
        If no stack, or more than one, matches; the message lists what was found.
    SeriesGeometryError
        If the one matching stack was refused (its own error class for other refusals).
    InputError
        For an unknown filter name.
    """
    unknown = set(filters) - _FILTERS
    if unknown:
        raise InputError(
            f"load_volume: unknown filter(s) {sorted(unknown)}; expected some of "
            f"{sorted(_FILTERS)}. Potential fix: check the spelling."
        )
    stacks = load_series(path, max_bytes=max_bytes)
    matching = [s for s in stacks if _matches(s, filters)]
    if len(matching) == 1:
        matching[0].raise_if_refused()
        assert matching[0].volume is not None
        return matching[0].volume
    listing = "; ".join(
        f"[{s.key}] role={s.info.role}" + (" REFUSED" if s.problems else "") for s in stacks
    ) or "nothing"
    where = path if isinstance(path, (str, os.PathLike)) else "the given files"
    raise SeriesSelectionError(
        f"{where}: expected exactly one stack matching {filters or 'no filter'}, found "
        f"{len(matching)} (of {len(stacks)} stacks: {listing}). Potential fix: pass filters "
        "such as role=, b_value_s_per_mm2=, echo_number= or series_instance_uid=."
    )
