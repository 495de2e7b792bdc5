"""GE: b-value (0043,xx39) with its 10⁹ offset, logical-frame gradients, map names."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import (
    _ZERO_GRADIENT_NORM,
    _finite_int,
    _private_numbers,
    _quality_warning,
    _series_uid,
    _text,
)
from bonelesion.dicom.vendors.identify import Vendor, vendor_of

__all__: list[str] = []

logger = logging.getLogger(__name__)


#: GE adds 10⁹ to the b-value in (0043,1039) on some software versions
#: (dcm2niix issues #149, #602); the true value is the remainder.
_GE_B_VALUE_OFFSET = 1_000_000_000


#: GE scales the gradient vector to encode a lower b-value on multi-b series: a length in
#: this open interval means b_eff = b · |g|² (dcm2niix issue #163, geCorrectBvecs).
_GE_SCALED_GRADIENT_NORM = (0.03, 0.97)


_GE_ACQU = ("GEMS_ACQU_01",)


_GE_PARM = ("GEMS_PARM_01",)


_GE_RELA = ("GEMS_RELA_01",)


_GE_MAP_ADC = re.compile(r"\s*ADC(?![A-Z0-9])")


_GE_MAP_OTHER_DERIVED = re.compile(r"\s*(EADC|EXP(ONENTIAL)?[ _-]?ADC|FA)(?![A-Z0-9])")


def _ge_raw_b_value(ds: Dataset) -> float | None:
    """GE (0043,xx39) first value, offset removed (no gradient-length scaling)."""
    values = _private_numbers(ds, 0x0043, _GE_PARM, 0x39, "IS")
    if not values:
        return None
    b_value = values[0]
    if math.isfinite(b_value) and b_value >= _GE_B_VALUE_OFFSET:
        b_value = math.fmod(b_value, _GE_B_VALUE_OFFSET)
    return b_value


def _ge_logical_gradient(ds: Dataset) -> NDArray[np.float64] | None:
    """GE (0019,xxBB/BC/BD): gradient in the logical (frequency, phase, slice) frame."""
    components = []
    for offset in (0xBB, 0xBC, 0xBD):
        values = _private_numbers(ds, 0x0019, _GE_ACQU, offset, "DS")
        if not values:
            return None
        components.append(values[0])
    return np.asarray(components, dtype=np.float64)


def _ge_strong_diffusion_tags(ds: Dataset) -> tuple[bool, bool]:
    """(present, says_diffusion) for GE's acquisition-level diffusion markers.

    (0043,xx30) "Vas collapse flag": 14 = T2/b0 of a DWI, 16 = diffusion weighted;
    (0021,xx5A) diffusion direction code (ALL 7, DTI 16, 3-in-1 64, tetra 128, none 0);
    (0019,xxE0) number of DTI directions (CLINICAL_REFERENCE.md §C4, GE).
    """
    vas = _private_numbers(ds, 0x0043, _GE_PARM, 0x30, "SS")
    code = _private_numbers(ds, 0x0021, _GE_RELA, 0x5A, "SL")
    n_dirs = _private_numbers(ds, 0x0019, _GE_ACQU, 0xE0, "DS")
    present = bool(vas or code or n_dirs)
    says = (bool(vas) and _finite_int(vas[0]) in (14, 16)) or (bool(code) and code[0] > 0)
    says = says or (bool(n_dirs) and n_dirs[0] > 0)
    return present, says


def _ge_gradient_lps(ds: Dataset) -> NDArray[np.float64] | None:
    """GE logical-frame gradient rotated into LPS.

    Notes
    -----
    GE reports the gradient in the "MR physics" logical frame: x = frequency, y = phase,
    z = slice (dcm2niix GE notes, after J. Shin, GE). With column phase encoding the
    frequency axis is the ImageOrientationPatient row vector r and phase its column vector
    c (swapped for ROW phase encoding); n = r × c. The signs follow dcm2niix's
    ``geCorrectBvecs`` (validated by dicm2nii on axial, coronal and sagittal data):

    * axial and sagittal: g = x·r + y·c − z·n
    * coronal: g = x·r − y·c − z·n

    The overall sign of a gradient direction is irrelevant to diffusion weighting.
    """
    logical = _ge_logical_gradient(ds)
    if logical is None or not np.all(np.isfinite(logical)) \
            or float(np.linalg.norm(logical)) < _ZERO_GRADIENT_NORM:
        return None
    orientation = values.get_floats(ds, "ImageOrientationPatient", count=6, strict=False)
    if orientation is None:
        _quality_warning(
            f"Series {_series_uid(ds)}: GE gradient (0019,10BB-BD) present but "
            "ImageOrientationPatient (0020,0037) is missing, so the gradient cannot be rotated "
            "into LPS; direction treated as unknown. Potential fix: re-export the series "
            "with its image plane attributes."
        )
        return None
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:])
    normal = np.cross(row, col)
    x, y, z = (float(v) for v in logical)
    phase_dir = _text(ds, "InPlanePhaseEncodingDirection")
    if phase_dir == "ROW":
        # dcm2niix: swap x and y, then negate the new y ("untested" there; rare for DWI).
        x, y = y, -x
    elif phase_dir != "COL":
        _quality_warning(
            f"Series {_series_uid(ds)}: InPlanePhaseEncodingDirection (0018,1312) is "
            f"{phase_dir or 'missing'}, expected ROW or COL; GE gradients are rotated "
            "assuming COL (the usual DWI choice). Potential fix: check the gradient table "
            "against a reference conversion (e.g. dcm2niix)."
        )
    slice_axis = int(np.argmax(np.abs(normal)))  # 0 sagittal, 1 coronal, 2 axial
    if slice_axis == 1:
        vector = x * row - y * col - z * normal
    else:
        vector = x * row + y * col - z * normal
    return vector


def ge_b_value(ds: Dataset) -> tuple[float | None, str]:
    """b-value of (0043,xx39), offset removed, scaled by a shortened gradient (multi-b).

    A GE gradient vector of length 0.03–0.97 encodes a reduced b, b_eff = b·|g|²
    (dcm2niix issue #163, ``geCorrectBvecs``).
    """
    value = _ge_raw_b_value(ds)
    if value is None:
        return None, ""
    gradient = _ge_logical_gradient(ds)
    if gradient is not None:
        norm = float(np.linalg.norm(gradient))
        low, high = _GE_SCALED_GRADIENT_NORM
        if low < norm < high:
            logger.debug("series %s: GE gradient length %.3f scales b %g → %g",
                         _series_uid(ds), norm, value, value * norm**2)
            value = value * norm**2
    return value, "GE (0043,1039)"


#: GE CT bone/sharp kernels, named by word: BONE, BONEPLUS, EDGE, LUNG (matched anywhere);
#: "sharp" also catches the descriptive kernel names of other scanners.
GE_BONE_KERNEL_PATTERN = r"bone|sharp|edge|lung"


def ge_volume_label(ds: Dataset) -> str:
    """Label that tells apart GE diffusion volumes whose gradient elements are constant.

    Some GE multi-b series write the same (0019,xxBB–BD) (0, 1, 0) into every volume, so
    b-value and direction cannot tell the directional volumes of one shell apart. GE does
    record the volume in (0043,xx30) ("vas collapse" flag: 14 b0, 15 the first volume of a
    shell, 43–46 directions 1–4 in the NIH MR750 set); its value separates the stacks.

    Parameters
    ----------
    ds : Dataset
        Flat header of a diffusion image.

    Returns
    -------
    str
        The (0043,xx30) value as text; "" for other vendors or when absent.
    """
    if vendor_of(ds) is not Vendor.GE:
        return ""
    vas = _private_numbers(ds, 0x0043, _GE_PARM, 0x30, "SS")
    label = _finite_int(vas[0]) if vas else None
    return "" if label is None else str(label)
