"""Header reading for the series reader: one file → its header and its frames."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.errors import InvalidDicomError

from bonelesion.dicom import vendors
from bonelesion.dicom.discovery import sniff_dicom
from bonelesion.dicom.fastheader import read_header
from bonelesion.dicom.multiframe import flatten_frames, frame_number
from bonelesion.errors import (
    NotDicomError,
    UnsupportedInputError,
)

__all__ = [
    "Frame",
    "read_file_header",
    "frames_of",
]


logger = logging.getLogger(__name__)


_DICOMDIR_SOP_CLASS = pydicom.uid.MediaStorageDirectoryStorage


#: Objects with Rows/Columns that are not images of the patient: read by other modules.
_NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation (read it as an ROI source)",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.11.1": "presentation state",
}


_PIXEL_DATA_TAG = 0x7FE00010


@dataclass
class Frame:
    """One frame of a file: its flat header and the geometry the planner needs."""

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


def read_file_header(path: Path, read_warnings: list[str], has_preamble: bool | None = None,
                 *, fast_path: bool = True) -> tuple[Dataset, tuple[int, int] | None]:
    """Read a header (no pixels); return it and the Pixel Data (offset, length) if known.

    The fast reader (`bonelesion.dicom.fastheader.read_header`) builds the same data set
    as ``dcmread(stop_before_pixels=True)`` for plain Part 10 files and declines the rest,
    which pydicom then reads. pydicom converts values lazily: callers touch elements
    under `warnings.catch_warnings` (see `load_series`).
    """
    if has_preamble is None:
        has_preamble = sniff_dicom(path)[1]
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


def frames_of(path: Path, ds: Dataset, max_bytes: int,
               pixel_location: tuple[int, int] | None = None) -> list[Frame]:
    """Frames of one header (one per frame of a multi-frame object).

    Raises
    ------
    UnsupportedInputError
        If Rows × Columns × frames as float32 would exceed ``max_bytes``.
    """
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
    # A UIH mosaic has no top-level position: its first tile's position stands for it.
    uih_mosaic = len(flats) == 1 and vendors.uih.is_uih_mosaic(flats[0])
    uih_first_tile = None
    if uih_mosaic:
        tiles = vendors.uih.uih_tile_positions(flats[0])
        uih_first_tile = tiles[0] if tiles is not None and len(tiles) else None
    for i, flat in enumerate(flats):
        ps = _float_array(flat.get("PixelSpacing", None), 2)
        out.append(
            Frame(
                path=path,
                flat=flat,
                index=i if multi else None,
                n_frames_in_file=len(flats) if multi else 1,
                sop_instance_uid=sop,
                ipp=_float_array(flat.get("ImagePositionPatient", None), 3)
                if not uih_mosaic else uih_first_tile,
                iop=_float_array(flat.get("ImageOrientationPatient", None), 6),
                pixel_spacing=ps,
                pixel_location=pixel_location,
            )
        )
    return out
