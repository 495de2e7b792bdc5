"""Canon (Toshiba): the classic DWI gradient in ImageComments ``b=1500(a,b,c)``."""

from __future__ import annotations

import logging
import re

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import _quality_warning, _series_uid, _text, _unit_or_none

__all__: list[str] = []

logger = logging.getLogger(__name__)


_CANON_COMMENT = re.compile(
    r"b\s*=\s*[\d.]+\s*\(\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*\)"
)


def _canon_comment_gradient(ds: Dataset) -> list[float] | None:
    """Canon classic DWI: the vector of ImageComments ``b=1500(0.445,0.000,0.895)``."""
    match = _CANON_COMMENT.search(values.get_text(ds, "ImageComments", strict=False) or "")
    if match is None:
        return None
    try:
        return [float(g) for g in match.groups()]
    except ValueError:
        return None


def _canon_gradient_lps(ds: Dataset, comment: list[float]) -> NDArray[np.float64] | None:
    """Canon ImageComments vector (a, b, c) → LPS (b, a, −c).

    dcm2niix issue #422: the components are stored in the order [Y, X, −Z]; validated on the
    dcm_qa_canon Galan 3T set (axial, COL phase encoding), which the tests reproduce. The
    phase-encoding polarity is not recorded (dcm2niix Canon notes) and ROW phase encoding
    was never validated, so a ROW image gets no direction.
    """
    if _text(ds, "InPlanePhaseEncodingDirection") == "ROW":
        _quality_warning(
            f"Series {_series_uid(ds)}: Canon ImageComments gradient with ROW phase encoding "
            "(0018,1312): the component order is only known for COL; direction treated as "
            "unknown. Potential fix: export as enhanced DICOM, which carries (0018,9089)."
        )
        return None
    a, b, c = comment
    return _unit_or_none([b, a, -c])


#: Canon (Toshiba) CT bone kernels: FC30–FC39 and FC80–FC89.
CANON_BONE_KERNEL_PATTERN = r"^FC(3\d|8\d)"
