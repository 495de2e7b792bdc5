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

from bonelesion.dicom.vendors._elements import (
    _float_or_none,
    _private_element,
    _private_numbers,
    _series_uid,
)
from bonelesion.errors import MissingAttributeError

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
    except (csareader.CSAReadError, struct.error, ValueError, IndexError) as exc:
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
        return [float(v) for v in items]
    values = _private_numbers(ds, 0x0019, _SIEMENS_MR_HEADER, 0x0E, "FD")
    if len(values) == 3:
        return values
    return None


def is_mosaic(ds: Dataset) -> bool:
    """Return True for a Siemens mosaic (several slices tiled into one image)."""
    image_type = ds.get("ImageType", None) or ()
    if isinstance(image_type, str):
        image_type = [image_type]
    return any(str(t).strip().upper() == "MOSAIC" for t in image_type)


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


def mosaic_layout(flat: Dataset, row_dir: NDArray[np.float64], col_dir: NDArray[np.float64]
                   ) -> MosaicLayout:
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
