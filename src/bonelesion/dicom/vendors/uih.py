r"""United Imaging (UIH): mosaic DWI ("VFRAME") with per-slice positions in a private sequence.

UIH stores one diffusion volume per file as a mosaic (ImageType ``…\VFRAME``): tiles of the
acquisition matrix laid out row-major in Rows × Columns, with the number of slices in
(0065,xx50), no top-level ImagePositionPatient, and one item per tile, in spatial order,
in the private sequence (0065,xx51) holding the tile's ImagePositionPatient. The actual
b-value is (0065,xx09) (the nominal one (0065,xx0A)), the gradient direction (0065,xx37)
in the image frame; private creator ``Image Private Header`` (dcm2niix UIH notes; the
dcm_qa_uih DTI set).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import (
    _float_or_none,
    _image_type_tokens,
    _private_element,
    _private_numbers,
    _series_uid,
    _text,
)
from bonelesion.dicom.vendors.identify import Vendor, vendor_of
from bonelesion.errors import MissingAttributeError

__all__ = ["is_uih_mosaic", "uih_b_value", "uih_gradient", "uih_tile_positions",
           "uih_mosaic_tiles"]

logger = logging.getLogger(__name__)

_UIH_IMAGE = ("Image Private Header",)


#: Most slices a UIH mosaic may declare.
_MAX_UIH_SLICES = 4096


def _n_slices(ds: Dataset) -> int | None:
    found = _private_numbers(ds, 0x0065, _UIH_IMAGE, 0x50, "DS")
    if not found or not math.isfinite(found[0]) or not 1 <= found[0] <= _MAX_UIH_SLICES:
        return None
    return int(found[0])


def is_uih_mosaic(ds: Dataset) -> bool:
    """Return True for a UIH mosaic: ImageType VFRAME and more than one slice in (0065,xx50)."""
    if "VFRAME" not in _image_type_tokens(ds) or vendor_of(ds) is not Vendor.UIH:
        return False
    n = _n_slices(ds)
    return n is not None and n > 1


def uih_mosaic_tiles(ds: Dataset) -> tuple[int, int, int, int]:
    """Return (number of tiles, tile rows, tile columns, tiles per mosaic row).

    The tile size is (0065,xx04) ``"64*64"`` (rows*columns), else the AcquisitionMatrix.

    Raises
    ------
    MissingAttributeError
        When the slice count or the tile size cannot be found, or does not fit.
    """
    n = _n_slices(ds)
    rows = values.get_int(ds, "Rows", strict=False) or 0
    cols = values.get_int(ds, "Columns", strict=False) or 0
    tile_rows = tile_cols = 0
    elem = _private_element(ds, 0x0065, _UIH_IMAGE, 0x04)
    if elem is not None:
        raw = elem.value
        text = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else str(raw)
        parts = text.strip("\x00 ").split("*")
        if len(parts) == 2 and all(p.strip().isdigit() and len(p.strip()) <= 5 for p in parts):
            tile_rows, tile_cols = int(parts[0]), int(parts[1])
    if not tile_rows:
        matrix = [v for v in (values.get_ints(ds, "AcquisitionMatrix", strict=False) or ())
                  if v > 0]
        if len(matrix) == 2:
            tile_rows, tile_cols = (matrix[1], matrix[0]) \
                if _text(ds, "InPlanePhaseEncodingDirection") == "ROW" else matrix
    if n is None or not tile_rows or not tile_cols or rows % tile_rows or cols % tile_cols \
            or (rows // tile_rows) * (cols // tile_cols) < n:
        raise MissingAttributeError(
            f"File {values.source_of(ds)}: series {_series_uid(ds)}: UIH mosaic layout not "
            f"understood: {n} slices ((0065,1050)), tile {tile_rows}×{tile_cols} ((0065,1004) "
            f"or AcquisitionMatrix) in a {rows}×{cols} image; expected the tiles to fill the "
            "mosaic. Potential fix: export the series without removing UIH private tags, or "
            "as single slices."
        )
    return n, tile_rows, tile_cols, cols // tile_cols


def uih_tile_positions(ds: Dataset) -> NDArray[np.float64] | None:
    """ImagePositionPatient of every tile, from the private sequence (0065,xx51); (n, 3).

    Raises
    ------
    InputError
        When a tile position is not three finite numbers (names the file).
    """
    elem = _private_element(ds, 0x0065, _UIH_IMAGE, 0x51)
    if elem is None:
        return None
    tiles = values.items(ds, elem.tag, strict=False)
    if not tiles:
        return None
    out = []
    for item in tiles:
        ipp = values.get_floats(item, "ImagePositionPatient", count=3, strict=False)
        if ipp is None:
            return None
        out.append(list(ipp))
    return np.asarray(out, dtype=np.float64)


def uih_b_value(ds: Dataset) -> tuple[float | None, str]:
    """Actual b-value (0065,xx09), e.g. 929.75 for a nominal 1000 and 1.25 for a "b0"."""
    found = _private_numbers(ds, 0x0065, _UIH_IMAGE, 0x09, "FD")
    if found and _float_or_none(found[0]) is not None:
        return found[0], "UIH (0065,1009)"
    return None, ""


def uih_gradient(ds: Dataset) -> list[float] | None:
    """Gradient direction in LPS from (0065,xx37); None when absent or not rotatable.

    UIH writes the vector in the image frame: components along the ImageOrientationPatient
    row vector, its column vector, and their cross product (the slice normal); dcm2niix's
    image-space bvec of the dcm_qa_uih set is this vector with the row component negated,
    as its NIfTI rows run the other way. Rotated here into LPS.
    """
    found = _private_numbers(ds, 0x0065, _UIH_IMAGE, 0x37, "FD")
    orientation = values.get_floats(ds, "ImageOrientationPatient", count=6, strict=False)
    if len(found) != 3 or orientation is None or not all(math.isfinite(v) for v in found):
        return None
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:])
    normal = np.cross(row, col)
    vector = found[0] * row + found[1] * col + found[2] * normal
    return [float(v) for v in vector]
