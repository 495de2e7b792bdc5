"""Siemens: the CSA image header, diffusion elements and mosaic layout (CSA / ASCCONV)."""

from __future__ import annotations

import logging
import math
import re
import struct
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.tag import BaseTag

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import (
    _element_numbers,
    _finite_int,
    _float_or_none,
    _private_element,
    _private_numbers,
    _series_uid,
)
from bonelesion.errors import InputError, MissingAttributeError

__all__: list[str] = []

logger = logging.getLogger(__name__)


# Private creators of the elements read here.
_SIEMENS_MR_HEADER = ("SIEMENS MR HEADER",)


_SIEMENS_CSA_HEADER = ("SIEMENS CSA HEADER",)


#: Siemens SequenceName of diffusion scans: ``*ep_b1000#1``, ``ep_b0``, ``ep_b2500t``,
#: ``re_b800`` (RESOLVE), ``ez_b0`` (ZOOMit).
_SIEMENS_DIFFUSION_SEQUENCE = re.compile(r"(^|\*)[a-z0-9]{2}_b(\d+)", re.IGNORECASE)


_SIEMENS_TRACE_SEQUENCE = re.compile(r"_b\d+t\b", re.IGNORECASE)


def _siemens_csa_image_header(ds: Dataset) -> dict[str, Any] | None:
    """Parse the Siemens CSA image header (0029,xx10); None when absent / unreadable."""
    elem = _private_element(ds, 0x0029, _SIEMENS_CSA_HEADER, 0x10)
    if elem is None:
        return None
    raw = elem.value
    if not isinstance(raw, bytes | bytearray) or len(raw) < 16:
        return None
    with warnings.catch_warnings():
        # nibabel.nicom warns on import that its DICOM *readers* are experimental; the CSA
        # parser used here is not part of them.
        warnings.filterwarnings("ignore", message="The DICOM readers are highly experimental")
        from nibabel.nicom import csareader

    try:
        header: dict[str, Any] = csareader.read(bytes(raw))
    except (csareader.CSAReadError, struct.error, ValueError, IndexError,
            AssertionError) as exc:  # nibabel asserts on some malformed item lengths
        logger.debug("series %s: unreadable CSA image header: %s", _series_uid(ds), exc)
        return None
    return header


def _csa_items(header: dict[str, Any] | None, name: str) -> list[Any]:
    if header is None:
        return []
    tag = header.get("tags", {}).get(name)
    if not tag:
        return []
    return list(tag.get("items", []))


def siemens_b_value(ds: Dataset) -> tuple[float | None, str]:
    """b-value of the CSA image header ``B_value``, else (0019,xx0C); (None, "") if absent."""
    items = _csa_items(_siemens_csa_image_header(ds), "B_value")
    if items:
        value = _float_or_none(items[0])
        if value is not None:
            return value, "Siemens CSA B_value"
    values = _private_numbers(ds, 0x0019, _SIEMENS_MR_HEADER, 0x0C, "IS")
    if values:
        return values[0], "Siemens (0019,100C)"
    return None, ""


def siemens_gradient(ds: Dataset) -> list[float] | None:
    """Gradient (patient frame) of the CSA ``DiffusionGradientDirection`` or (0019,xx0E)."""
    items = _csa_items(_siemens_csa_image_header(ds), "DiffusionGradientDirection")
    if len(items) == 3:
        vector = [_float_or_none(v) for v in items]
        if all(v is not None for v in vector):
            return [float(v) for v in vector if v is not None]
    values = _private_numbers(ds, 0x0019, _SIEMENS_MR_HEADER, 0x0E, "FD")
    if len(values) == 3:
        return values
    return None


def is_mosaic(ds: Dataset) -> bool:
    """Return True for a Siemens mosaic (several slices tiled into one image)."""
    return "MOSAIC" in values.get_cs(ds, "ImageType", strict=False)


#: Elements that may hold the ASCCONV protocol text (MR protocol, CSA series header).
_ASCCONV_TAGS = (0x00291020, 0x00291120, 0x00211019)
#: Most tiles accepted in one mosaic (real ones: ≤ 128).
MAX_MOSAIC_TILES = 4096


def _ascconv(ds: Dataset) -> tuple[dict[str, str], str]:
    """Return the ASCCONV protocol (`bonelesion.dicom.values.parse_ascconv`), its element."""
    for tag in _ASCCONV_TAGS:
        raw = values.element_bytes(ds, tag)
        if not raw:
            continue
        where = f"File {values.source_of(ds)}, {values.element_label(tag)}"
        asc = values.parse_ascconv(raw, where=where)
        if asc:
            return asc, where
    return {}, ""


@dataclass(frozen=True)
class MosaicLayout:
    """Tiles of a mosaic image: count, grid, tile size, slice normal and spacing."""

    n_tiles: int
    grid: int
    tile_rows: int
    tile_cols: int
    normal: NDArray[np.float64]
    spacing_mm: float
    notes: tuple[str, ...]
    protocol_positions: NDArray[np.float64] | None = None
    #: Tiles per mosaic row (0: ``grid``, the square layout of Siemens mosaics).
    tiles_per_row: int = 0


def _csa_tile_count_and_normal(flat: Dataset) -> tuple[int | None, NDArray[np.float64] | None]:
    """NumberOfImagesInMosaic and SliceNormalVector of the CSA image header (None if absent)."""
    csa = _siemens_csa_image_header(flat)
    n_items = _csa_items(csa, "NumberOfImagesInMosaic")
    n = _float_or_none(n_items[0]) if n_items else None
    normal_items = _csa_items(csa, "SliceNormalVector")
    normal = None
    if len(normal_items) == 3:
        vector = [_float_or_none(v) for v in normal_items]
        if all(v is not None for v in vector):
            normal = np.array(vector, dtype=np.float64)
    n_tiles = _finite_int(n) if n is not None and n > 0 else None
    return n_tiles, normal


def mosaic_layout(flat: Dataset, row_dir: NDArray[np.float64], col_dir: NDArray[np.float64]
                   ) -> MosaicLayout:
    """Return tile count, slice normal and spacing of a Siemens mosaic (nibabel/dcm2niix).

    Raises
    ------
    MissingAttributeError
        When the tile count or the slice spacing cannot be found.
    InputError
        When a value is invalid (names the file, the element or ASCCONV key, the value).
    """
    notes: list[str] = []
    where = f"File {values.source_of(flat)}"
    n_tiles, normal = _csa_tile_count_and_normal(flat)
    if n_tiles is None:
        elem = flat._dict.get(BaseTag(0x0019100A))
        if elem is not None:
            found = _element_numbers(elem, "US")
            if found and _finite_int(found[0]):
                n_tiles = _finite_int(found[0])
    asc, asc_where = _ascconv(flat)
    if n_tiles is None and "sSliceArray.lSize" in asc:
        size = values.ascconv_number(asc, "sSliceArray.lSize", where=asc_where)
        n_tiles = _finite_int(size) if size is not None else None
        notes.append("mosaic tile count from the ASCCONV protocol (sSliceArray.lSize)")
    if normal is None and any(k.startswith("sSliceArray.asSlice[0].sNormal") for k in asc):
        normal = np.array(
            [values.ascconv_number(asc, f"sSliceArray.asSlice[0].sNormal.d{a}",
                                   where=asc_where) or 0.0 for a in ("Sag", "Cor", "Tra")]
        )
    if normal is None or not np.all(np.isfinite(normal)) or np.linalg.norm(normal) < 1e-6:
        normal = np.cross(row_dir, col_dir)
    normal = normal / np.linalg.norm(normal)
    if n_tiles is None:
        raise MissingAttributeError(
            f"{where}: Siemens mosaic: number of images in the mosaic not found (CSA "
            "NumberOfImagesInMosaic, (0019,100A) or ASCCONV sSliceArray.lSize). "
            "Potential fix: export the series without removing Siemens private tags."
        )
    rows = values.get_int(flat, "Rows") or 0
    cols = values.get_int(flat, "Columns") or 0
    grid = int(math.ceil(math.sqrt(n_tiles))) if n_tiles > 0 else 0
    if not 1 <= n_tiles <= MAX_MOSAIC_TILES or grid > min(rows, cols):
        raise InputError(
            f"{where}: Siemens mosaic of {n_tiles} tiles in a {rows}×{cols} image; expected "
            f"1–{MAX_MOSAIC_TILES} tiles of at least one pixel. Potential fix: the header is "
            "damaged; re-export the series.")
    spacing_mm = values.get_float(flat, "SpacingBetweenSlices")
    if spacing_mm is None and ("sSliceArray.asSlice[1].sPosition.dTra" in asc
                               or "sSliceArray.asSlice[1].sPosition.dCor" in asc):
        p = [np.array([values.ascconv_number(asc, f"sSliceArray.asSlice[{i}].sPosition.d{a}",
                                             where=asc_where) or 0.0
                       for a in ("Sag", "Cor", "Tra")]) for i in (0, 1)]
        spacing_mm = float(abs(np.dot(p[1] - p[0], normal)))
        notes.append("mosaic slice spacing from the ASCCONV slice positions")
    if spacing_mm is None:
        thickness = values.get_float(flat, "SliceThickness")
        if thickness is not None:
            spacing_mm = thickness
            notes.append("mosaic slice spacing from SliceThickness (no SpacingBetweenSlices)")
    if spacing_mm is None or spacing_mm <= 0:
        raise MissingAttributeError(
            f"{where}: Siemens mosaic: no slice spacing (SpacingBetweenSlices, ASCCONV "
            "positions or SliceThickness). Potential fix: export with the full header."
        )
    positions: NDArray[np.float64] | None = None
    keys = [f"sSliceArray.asSlice[{i}].sPosition" for i in range(n_tiles)]
    if n_tiles > 1 and all(any(k.startswith(p) for k in asc) for p in (keys[0], keys[-1])):
        positions = np.array([[values.ascconv_number(asc, f"{p}.d{a}", where=asc_where) or 0.0
                               for a in ("Sag", "Cor", "Tra")] for p in keys])
    return MosaicLayout(
        n_tiles=n_tiles,
        grid=grid,
        tile_rows=rows // grid,
        tile_cols=cols // grid,
        normal=normal,
        spacing_mm=spacing_mm,
        notes=tuple(notes),
        protocol_positions=positions,
    )


#: Siemens CT bone/sharp kernels: B/Br60 and above, H/Hr60 and above (Br64, B70f, Hr68 …).
SIEMENS_BONE_KERNEL_PATTERN = r"^b[r]?[6-9]\d|^h[r]?[6-9]\d"
