"""Gantry tilt: resample a tilted CT stack onto an orthogonal grid (``tilt="resample"``).

A CT acquired with a tilted gantry has slices whose positions drift in-plane along the
stack: the stacking direction is not the slice normal, so no orthogonal voxel grid holds
the slices as they are. By default the reader refuses such a stack (DESIGN.md). With
``tilt="resample"`` it does what dcm2niix's tilt correction does (its ``_Tilt`` output):

* the grid keeps the image plane (row and column directions and pixel spacing) and stacks
  the slices along the plane normal, at their distance along the normal;
* each slice is shifted in-plane by its drift (linear interpolation for the fractional
  part), so every pixel keeps its position in the patient;
* the in-plane size grows by the total drift, so no pixel is cut; pixels outside every
  slice are filled with the stack's lowest value (air for CT).

The reader records the correction in the volume's ``SeriesInfo.notes`` and the stack's
warnings, and ``convert`` names the output ``…_Tilt`` (as dcm2niix) and writes it into the
JSON sidecar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["TILT_NOTE_PREFIX", "TiltPolicy", "TiltCorrection", "plan_tilt_correction",
           "apply_tilt_correction"]


#: Start of the provenance note of a resampled (tilt-corrected) stack.
TILT_NOTE_PREFIX = "gantry tilt "


class TiltPolicy(str, Enum):
    """What the reader does with a gantry-tilted stack."""

    REFUSE = "refuse"
    """Refuse it, with the angle and a fix (the default)."""
    RESAMPLE = "resample"
    """Resample it onto an orthogonal grid and say so (dcm2niix's ``_Tilt``)."""


@dataclass(frozen=True)
class TiltCorrection:
    """How to shift each slice of a tilted stack onto the orthogonal output grid.

    Parameters
    ----------
    offsets_px : (S, 2) ndarray
        Where (row, column) 0 of source slice *k* lands in the output slice, in pixels
        (all ≥ 0).
    shape : (3,) tuple of int
        Output (slices, rows, columns).
    origin_lps_mm : (3,) ndarray
        LPS centre of output voxel [0, 0, 0].
    tilt_deg : float
        Angle between the stacking direction and the slice normal.
    """

    offsets_px: NDArray[np.float64]
    shape: tuple[int, int, int]
    origin_lps_mm: NDArray[np.float64]
    tilt_deg: float

    def note(self, source_shape: tuple[int, int, int]) -> str:
        """Provenance line recorded with the volume."""
        return (f"{TILT_NOTE_PREFIX}{self.tilt_deg:.2f}°: resampled onto an orthogonal grid "
                "(slices stacked along their normal, each shifted in-plane by its drift with "
                f"linear interpolation, as dcm2niix's _Tilt output); in-plane size "
                f"{source_shape[1]}×{source_shape[2]} → {self.shape[1]}×{self.shape[2]}")


def plan_tilt_correction(inplane_lps_mm: NDArray[np.float64], along_mm: NDArray[np.float64],
                         first_position_lps_mm: NDArray[np.float64],
                         row_direction_lps: NDArray[np.float64],
                         column_direction_lps: NDArray[np.float64],
                         pixel_spacing_mm: tuple[float, float],
                         source_shape: tuple[int, int, int]) -> TiltCorrection:
    """Output grid and per-slice shifts of a tilted stack sorted along its normal.

    Parameters
    ----------
    inplane_lps_mm : (S, 3) ndarray
        In-plane drift of each slice's position from the first slice's, LPS mm.
    along_mm : (S,) ndarray
        Distance of each slice from the first along the slice normal.
    first_position_lps_mm : (3,) ndarray
        ImagePositionPatient of the first slice.
    row_direction_lps, column_direction_lps : (3,) ndarray
        Unit vectors along which the column index and the row index grow (IOP first and
        second vector).
    pixel_spacing_mm : (2,) tuple of float
        PixelSpacing (between rows, between columns).
    source_shape : (3,) tuple of int
        (slices, rows, columns) of the source stack.

    Returns
    -------
    TiltCorrection
    """
    ps_row, ps_col = pixel_spacing_mm
    shifts = np.column_stack([inplane_lps_mm @ column_direction_lps / ps_row,
                              inplane_lps_mm @ row_direction_lps / ps_col])
    start = np.floor(shifts.min(axis=0) + 1e-6)
    stop = np.ceil(shifts.max(axis=0) - 1e-6)
    extra = np.maximum(stop - start, 0).astype(int)
    shape = (source_shape[0], source_shape[1] + int(extra[0]), source_shape[2] + int(extra[1]))
    origin = (first_position_lps_mm + start[0] * ps_row * column_direction_lps
              + start[1] * ps_col * row_direction_lps)
    total = float(np.linalg.norm(inplane_lps_mm[-1]))
    tilt_deg = math.degrees(math.atan2(total, float(along_mm[-1]))) if len(along_mm) > 1 else 0.0
    return TiltCorrection(offsets_px=shifts - start, shape=shape, origin_lps_mm=origin,
                          tilt_deg=tilt_deg)


def apply_tilt_correction(array: NDArray[Any], correction: TiltCorrection) -> NDArray[np.float32]:
    """Shift every slice of ``array`` onto the output grid of ``correction``.

    Parameters
    ----------
    array : (S, R, C) ndarray
        The decoded source stack (after the modality LUT), slices sorted along the normal.
    correction : TiltCorrection

    Returns
    -------
    (S, R', C') ndarray of float32
        Linear interpolation in-plane; pixels outside every source slice hold the lowest
        value of ``array``.
    """
    from scipy import ndimage

    fill = float(np.min(array)) if array.size else 0.0
    out = np.full(correction.shape, fill, dtype=np.float32)
    rows, cols = array.shape[1:]
    for k in range(array.shape[0]):
        whole = np.floor(correction.offsets_px[k]).astype(int)
        frac = correction.offsets_px[k] - whole
        canvas = out[k]
        canvas[whole[0]:whole[0] + rows, whole[1]:whole[1] + cols] = array[k]
        if np.any(frac > 1e-6):
            out[k] = ndimage.shift(canvas, frac, order=1, mode="constant", cval=fill,
                                   prefilter=False)
    return out
