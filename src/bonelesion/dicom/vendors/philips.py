"""Philips: private per-frame items, (2001,xx03) b-values, gradients, float scaling."""

from __future__ import annotations

import logging
import math

from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import _private_numbers
from bonelesion.dicom.vendors.identify import Vendor, vendor_of
from bonelesion.model.roles import SeriesRole as Role

__all__ = ["philips_private_frame_items", "philips_float_rescale", "PHILIPS_PRIVATE_FRAME_TAG"]

logger = logging.getLogger(__name__)


_PHILIPS_IMAGING = ("Philips Imaging DD 001",)


_PHILIPS_MR_IMAGING = ("Philips MR Imaging DD 001",)


#: Philips per-frame private item (2005,140F): a sequence in the Philips block at 0x14.
_PHILIPS_PRIVATE_PER_FRAME = 0x140F


#: Tag of the Philips per-frame private sequence, for readers that walk per-frame items
#: themselves (`bonelesion.dicom.multiframe`); `philips_private_frame_items` reads it.
PHILIPS_PRIVATE_FRAME_TAG = 0x2005 << 16 | _PHILIPS_PRIVATE_PER_FRAME


#: Philips mDIXON short forms, matched as ``_W_`` etc. in the joined ImageType (dcm2niix).
_PHILIPS_SHORT_ROLES: dict[str, Role] = {
    "W": Role.DIXON_WATER,
    "F": Role.DIXON_FAT,
    "IP": Role.DIXON_IN_PHASE,
    "OP": Role.DIXON_OPPOSED_PHASE,
}


def philips_private_frame_items(frame_item: Dataset) -> list[Dataset]:
    """Items of the Philips private per-frame sequence (2005,140F) of one per-frame item.

    They repeat standard attributes of the frame with vendor-specific values;
    `bonelesion.dicom.multiframe.flatten_frames` copies them below the standard groups.

    Parameters
    ----------
    frame_item : Dataset
        One item of PerFrameFunctionalGroupsSequence.

    Returns
    -------
    list of Dataset
        The first item of each such sequence (empty for other vendors).

    Examples
    --------
    >>> philips_private_frame_items(Dataset())
    []
    """
    out: list[Dataset] = []
    for key in list(frame_item._dict):
        if key == 0x2005 << 16 | _PHILIPS_PRIVATE_PER_FRAME:
            out.extend(values.items(frame_item, key, strict=False)[:1])
    return out


def _philips_gradient(ds: Dataset) -> list[float] | None:
    """Philips (2005,xxB0/B1/B2) gradient components (RL, AP, FH = LPS x, y, z)."""
    components = []
    for offset in (0xB0, 0xB1, 0xB2):
        values = _private_numbers(ds, 0x2005, _PHILIPS_MR_IMAGING, offset, "FL")
        if not values:
            return None
        components.append(values[0])
    return components


def philips_float_rescale(ds: Dataset) -> tuple[float, float] | None:
    """Slope and intercept from stored Philips pixel values to "floating point" values.

    Philips stores a private scale slope SS (2005,xx0E) besides the DICOM rescale
    (RS, RI). The displayed value is DV = PV·RS + RI; the value proportional to the MR
    signal, comparable between images with different RS, is FP = DV / (RS·SS)
    (dcm2niix Philips notes, "UsePhilipsFloatNotDisplayScaling").

    Parameters
    ----------
    ds : Dataset
        Flat header (the RescaleSlope/Intercept of a flattened enhanced frame come from its
        Pixel Value Transformation item, SS from the Philips private per-frame item).

    Returns
    -------
    (slope, intercept) or None
        FP = PV · slope + intercept, i.e. slope = 1 / SS and intercept = RI / (RS · SS).
        None for non-Philips headers and when SS or RS is absent or not positive (e.g. the
        CHAOS export, whose private elements were removed): use the DICOM rescale then.

    Notes
    -----
    Signal ratios taken within one image stack (SIR = OP / IP) are only valid on DV when
    both images share RS and SS; otherwise they need FP.
    """
    if vendor_of(ds) is not Vendor.PHILIPS:
        return None
    scale_slope = _private_numbers(ds, 0x2005, _PHILIPS_MR_IMAGING, 0x0E, "FL")
    rescale_slope = values.get_float(ds, "RescaleSlope", strict=False)
    rescale_intercept = values.get_float(ds, "RescaleIntercept", strict=False) or 0.0
    if not scale_slope or rescale_slope is None:
        return None
    ss = scale_slope[0]
    if not (math.isfinite(ss) and ss > 0.0 and rescale_slope > 0.0):
        return None
    return 1.0 / ss, rescale_intercept / (rescale_slope * ss)


def philips_b_value(ds: Dataset) -> tuple[float | None, str]:
    """b-value of the Philips private element (2001,xx03); (None, "") when absent."""
    values = _private_numbers(ds, 0x2001, _PHILIPS_IMAGING, 0x03, "FL")
    if values:
        return values[0], "Philips (2001,1003)"
    return None, ""


#: Philips CT bone/sharp kernels: D, E, L and YC, YD.
PHILIPS_BONE_KERNEL_PATTERN = r"^[DEL]$|^Y[CD]$"
