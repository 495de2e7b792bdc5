"""Scanner ADC maps: the stored unit, detected from the tissue value range."""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

from bonelesion.dicom.vendors._elements import _quality_warning, _series_uid
from bonelesion.dicom.vendors.identify import Vendor, vendor_of
from bonelesion.errors import UnsupportedInputError

__all__ = ["ADC_SCALE_RANGES", "adc_scale_to_mm2_per_s"]

logger = logging.getLogger(__name__)


#: Stored-unit → mm²/s factor, with the range of the median positive (tissue) value that
#: identifies it (CLINICAL_REFERENCE.md default 12).
ADC_SCALE_RANGES: tuple[tuple[float, float, float], ...] = (
    (1.0e-6, 100.0, 4000.0),  # µm²/s = 10⁻⁶ mm²/s integers (GE, Siemens)
    (1.0e-3, 0.1, 4.0),  # 10⁻³ mm²/s
    (1.0, 1.0e-4, 4.0e-3),  # already mm²/s
)


def adc_scale_to_mm2_per_s(ds: Dataset, values: NDArray[np.floating]) -> float:
    """Factor that converts a stored ADC map (after rescale) to mm²/s.

    Detected from the tissue value range (CLINICAL_REFERENCE.md default 12): a median of
    ~100–4000 means 1e-6 mm²/s units, ~0.1–4 means 1e-3, ~1e-4–4e-3 means mm²/s already.

    Parameters
    ----------
    ds : Dataset
        A header of the ADC series (for its vendor and its series UID in messages).
    values : ndarray of float
        ADC map values after the modality rescale, any shape. Zero, negative and
        non-finite values (background, masked voxels) are ignored.

    Returns
    -------
    float
        1e-6, 1e-3 or 1.0.

    Raises
    ------
    UnsupportedInputError
        When the scale is ambiguous; names the series and what was found.

    Notes
    -----
    The median of the positive values stands for tissue. Siemens and GE store integers in
    10⁻⁶ mm²/s; a Siemens map detected at another scale (a rescale slope was applied) is
    accepted with a `DataQualityWarning`.
    """
    array = np.asarray(values, dtype=np.float64)
    positive = array[np.isfinite(array) & (array > 0.0)]
    uid = _series_uid(ds)
    if positive.size == 0:
        raise UnsupportedInputError(
            f"Series {uid}: cannot determine the ADC unit: the map holds no positive finite "
            f"value (expected tissue ADC > 0, found {array.size} values, none positive). "
            "Potential fix: check that this is the ADC map and not an empty or derived series."
        )
    median = float(np.median(positive))
    matches = [factor for factor, low, high in ADC_SCALE_RANGES if low <= median <= high]
    if len(matches) != 1:
        ranges = "; ".join(
            f"×{factor:g}: {low:g}–{high:g}" for factor, low, high in ADC_SCALE_RANGES
        )
        raise UnsupportedInputError(
            f"Series {uid}: ADC map unit is ambiguous: median positive value {median:.4g} "
            f"(of {positive.size} voxels) fits {len(matches)} of the known scales "
            f"({ranges}). Potential fix: state the unit of this ADC series in the pipeline "
            "configuration, or check RescaleSlope (0028,1053) / RealWorldValueMapping."
        )
    factor = matches[0]
    if vendor_of(ds) is Vendor.SIEMENS and factor != 1.0e-6:
        _quality_warning(
            f"Series {uid}: Siemens ADC maps are stored in 10⁻⁶ mm²/s, but the values "
            f"(median {median:.4g}) indicate ×{factor:g}; using ×{factor:g}. Potential fix: "
            "check whether a rescale slope was applied to this export."
        )
    logger.debug("series %s: ADC median %.4g → ×%g mm²/s", uid, median, factor)
    return factor
