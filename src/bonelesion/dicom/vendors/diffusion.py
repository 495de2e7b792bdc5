"""Diffusion: b-value, gradient direction (LPS) and kind of an image, across vendors."""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import (
    _SEP_L,
    _SEP_R,
    _ZERO_GRADIENT_NORM,
    _image_type_tokens,
    _private_numbers,
    _quality_warning,
    _series_uid,
    _text,
    _unit_or_none,
)
from bonelesion.dicom.vendors.canon import _canon_comment_gradient, _canon_gradient_lps
from bonelesion.dicom.vendors.ge import (
    _GE_ACQU,
    _GE_B_VALUE_OFFSET,
    _GE_MAP_ADC,
    _GE_MAP_OTHER_DERIVED,
    _ge_gradient_lps,
    _ge_logical_gradient,
    _ge_strong_diffusion_tags,
    ge_b_value,
)
from bonelesion.dicom.vendors.identify import Vendor, vendor_of
from bonelesion.dicom.vendors.philips import _philips_gradient, philips_b_value
from bonelesion.dicom.vendors.siemens import (
    _SIEMENS_DIFFUSION_SEQUENCE,
    _SIEMENS_TRACE_SEQUENCE,
    siemens_b_value,
    siemens_gradient,
)
from bonelesion.dicom.vendors.uih import uih_b_value, uih_gradient
from bonelesion.errors import DataQualityWarning

__all__ = [
    "DiffusionKind",
    "B_VALUE_MAX_S_PER_MM2",
    "is_diffusion_acquisition",
    "b_value_s_per_mm2",
    "b_values_of_series_s_per_mm2",
    "diffusion_direction_lps",
    "diffusion_kind",
    "diffusion_facts",
]

logger = logging.getLogger(__name__)


class DiffusionKind(str, Enum):  # noqa: UP042
    """What a diffusion image holds."""

    NONE = "none"  # not a diffusion image
    B0 = "b0"  # b = 0 (or unweighted) image of a diffusion acquisition
    DIRECTIONAL = "directional"  # one gradient direction, b > 0
    TRACE = "trace"  # isotropic / trace-weighted, b > 0
    ADC = "adc"  # a scanner-computed ADC map
    OTHER_DERIVED = "other_derived"  # FA, exponential ADC, eADC, computed-b …


#: Largest b-value taken at face value. Clinical DWI stays below ~3 000 s/mm², research
#: high-b / q-space protocols reach ~20 000–30 000; anything above this is a parse error
#: (an un-removed GE offset, a misread private element …).
B_VALUE_MAX_S_PER_MM2 = 50_000.0


# ImageType tokens (CLINICAL_REFERENCE.md §C4; dcm2niix issue #503).
_ADC_TOKENS = frozenset({"ADC", "ADC_UNSPECIFIED"})


_TRACE_TOKENS = frozenset({"TRACEW", "TRACE", "ISOTROPIC", "ISODWI"})


#: Derived diffusion maps named unambiguously.
_OTHER_DERIVED_TOKENS = frozenset({"COLFA", "EADC", "EXPADC", "EXP_ADC", "CALC_BVALUE"})


#: Short map names that only mean a diffusion map next to a DIFFUSION token (Siemens
#: ``DERIVED\PRIMARY\DIFFUSION\FA``, ``…\EXP``, ``…\TENSOR``).
_OTHER_DERIVED_WITH_DIFFUSION_TOKENS = frozenset({"FA", "EXP", "TENSOR", "RA", "MD"})


_B0_TOKENS = frozenset({"TENSOR_B0"})


_DIFFUSION_TOKENS = frozenset({"DIFFUSION", "DWI"}) | _TRACE_TOKENS | _B0_TOKENS


_KEYWORD_ADC = re.compile(rf"{_SEP_L}ADC{_SEP_R}")


_KEYWORD_OTHER_DERIVED = re.compile(
    rf"{_SEP_L}(EADC|EXP(ONENTIAL)?[ _-]?ADC|FA|COLFA|CALC(ULATED)?[ _-]?B\w*){_SEP_R}"
)


_KEYWORD_DIFFUSION = re.compile(
    rf"{_SEP_L}(DWI|DTI|DIFF\w*|TENSOR|TRACEW?|EP2D_DIFF|RESOLVE|B\d{{2,4}}){_SEP_R}"
)


#: Each vendor's own b-value element(s): (value, label of the source).
_VENDOR_B_VALUE: dict[Vendor, Callable[[Dataset], tuple[float | None, str]]] = {
    Vendor.SIEMENS: siemens_b_value,
    Vendor.GE: ge_b_value,
    Vendor.PHILIPS: philips_b_value,
    Vendor.UIH: uih_b_value,
}


def _standard_b_value(ds: Dataset) -> float | None:
    """(0018,9087) at top level, or inside an unflattened MRDiffusionSequence.

    A present but unreadable or non-finite value comes back as NaN, so the sanity check
    reports it instead of silently falling through to a private element.
    """
    for item in (ds, *values.items(ds, "MRDiffusionSequence", strict=False)[:1]):
        if not values.has(item, "DiffusionBValue"):
            continue
        value = values.get_float(item, "DiffusionBValue", strict=False, finite=False)
        if value is None and values.is_empty(item, "DiffusionBValue"):
            continue
        return math.nan if value is None else value
    return None


def _directionality(ds: Dataset) -> str:
    value = _text(ds, "DiffusionDirectionality")
    if not value:
        for item in values.items(ds, "MRDiffusionSequence", strict=False)[:1]:
            value = _text(item, "DiffusionDirectionality")
    return value


def _vendor_b_value(ds: Dataset, vendor: Vendor) -> tuple[float | None, str]:
    """b-value from the vendor's own elements, with a label of its source."""
    reader = _VENDOR_B_VALUE.get(vendor)
    return (None, "") if reader is None else reader(ds)


def _stored_b_value(ds: Dataset) -> tuple[float | None, str]:
    """Return the b-value as stored (standard first, then vendor elements), unvalidated."""
    standard = _standard_b_value(ds)
    if standard is not None:
        if math.isfinite(standard) and standard >= _GE_B_VALUE_OFFSET:
            standard = math.fmod(standard, _GE_B_VALUE_OFFSET)
        return standard, "(0018,9087)"
    return _vendor_b_value(ds, vendor_of(ds))


def _sane_b_value(value: float | None, source: str, ds: Dataset) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or value < 0.0 or value > B_VALUE_MAX_S_PER_MM2:
        _quality_warning(
            f"Series {_series_uid(ds)}: b-value {value!r} s/mm² read from {source} is outside "
            f"0–{B_VALUE_MAX_S_PER_MM2:g} s/mm²; treated as unknown. Potential fix: check the "
            "export (a vendor offset or a damaged private element) or supply the b-values "
            "in the pipeline configuration."
        )
        return None
    return value


def is_diffusion_acquisition(ds: Dataset) -> bool:
    """Whether the header shows positive evidence of a diffusion acquisition.

    An ordinary MR image must not be called "b = 0": a b-value of zero is only believed
    when something else says the image belongs to a diffusion scan.

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    bool

    Notes
    -----
    Evidence, any of: DiffusionDirectionality DIRECTIONAL / ISOTROPIC / BMATRIX;
    AcquisitionContrast DIFFUSION (enhanced frames); an ImageType token DIFFUSION, TRACEW,
    TENSOR_B0 …; (0018,9087) or (0018,9089) in a classic header without a directionality
    (only written to diffusion images); a stored b-value > 0; a Siemens SequenceName
    ``ep_b…``; a Siemens (0019,xx0C) or CSA ``B_value``; GE vas-collapse flag 14/16,
    direction code > 0 or direction count > 0 — or, when an anonymiser removed those, an
    echo-planar GE image carrying (0043,xx39) and the gradient elements (the dicom2nifti GE
    set); a Philips (2001,xx03) with the (2005,xxB0-B2) gradient elements and a diffusion
    word (DWI, DTI, DIFF…, TRACE, b800 …) in SeriesDescription / ProtocolName.
    """
    if _text(ds, "Modality") not in ("", "MR"):
        return False
    directionality = _directionality(ds)
    if directionality in ("DIRECTIONAL", "ISOTROPIC", "BMATRIX"):
        return True
    if _text(ds, "AcquisitionContrast") == "DIFFUSION":
        return True
    if set(_image_type_tokens(ds)) & (_DIFFUSION_TOKENS | _ADC_TOKENS):
        return True
    standard = _standard_b_value(ds)
    if standard is not None:
        if standard > 0.0 or not directionality:
            return True
    if not directionality and _standard_gradient(ds) is not None:
        return True  # (0018,9089) in a classic header: only written to diffusion images
    vendor = vendor_of(ds)
    value, _ = _vendor_b_value(ds, vendor)
    if vendor is Vendor.GE and value is not None:
        # (0043,xx39) exists on every GE MR image; its acquisition flags decide when present.
        present, says = _ge_strong_diffusion_tags(ds)
        if says:
            return True
        if present:
            return False
        if value > 0.0:
            return True
        # Flags removed by an anonymiser (the dicom2nifti GE set): an echo-planar image with
        # the gradient elements is taken as the b0 of a DWI.
        scanning = _text(ds, "ScanningSequence").split("\\")
        if "EP" in scanning and _ge_logical_gradient(ds) is not None:
            logger.debug(
                "series %s: GE EPI with (0043,1039) and no acquisition flags: taken as DWI",
                _series_uid(ds),
            )
            return True
        return False
    if value is not None and value > 0.0:
        return True
    if vendor is Vendor.SIEMENS:
        if _SIEMENS_DIFFUSION_SEQUENCE.search(_text(ds, "SequenceName")):
            return True
        if value is not None:  # (0019,100C) or CSA B_value present: only on DWI
            return True
    if vendor is Vendor.PHILIPS and value is not None:
        # Philips writes (2001,1003) on every MR image; b = 0 only counts with a gradient
        # element set or a diffusion word in the description.
        if _philips_gradient(ds) is not None and _description_says_diffusion(ds):
            return True
    return False


def b_values_of_series_s_per_mm2(headers: Sequence[Dataset]) -> list[float | None]:
    """b-values of the images of one series, using the series as context.

    `b_value_s_per_mm2` needs positive evidence before it calls an image "b = 0". Some
    exports strip that evidence from the b = 0 images (a Philips or GE b0 whose only
    diffusion clue is a private b-value of 0). Within a series that holds diffusion-weighted
    images (b > 0), an image whose own vendor element stores b = 0 is that series' b0 —
    the rule dicom2nifti applies to GE series.

    Parameters
    ----------
    headers : sequence of Dataset
        Flat headers of one series (or one acquisition).

    Returns
    -------
    list of float or None
        One entry per header, as `b_value_s_per_mm2`, with the b0 images filled in.
    """
    values = [b_value_s_per_mm2(ds) for ds in headers]
    if not any(b is not None and b > 0.0 for b in values):
        return values
    for index, ds in enumerate(headers):
        if values[index] is not None or _kind_from_tokens(ds) is not None:
            continue
        if _text(ds, "Modality") not in ("", "MR"):
            continue
        stored, _ = _vendor_b_value(ds, vendor_of(ds))
        if stored == 0.0:
            values[index] = 0.0
    return values


def _description_says_diffusion(ds: Dataset) -> bool:
    text = " ".join(_text(ds, k) for k in ("SeriesDescription", "ProtocolName"))
    return bool(_KEYWORD_DIFFUSION.search(text))


def b_value_s_per_mm2(ds: Dataset) -> float | None:
    """b-value of a diffusion image in s/mm², None when the image is not diffusion-weighted.

    Order: (0018,9087); Siemens CSA B_value / (0019,100C); GE (0043,1039) first value
    modulo 1e9; Philips (2001,1003); enhanced MR diffusion functional group (flattened).

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    float or None
        None for a non-diffusion image (no positive evidence of a diffusion acquisition,
        see `is_diffusion_acquisition`), for a derived map (ADC, FA, computed b …), and for
        a stored value that is negative, non-finite or above `B_VALUE_MAX_S_PER_MM2`
        (with a `DataQualityWarning`).

    Notes
    -----
    GE: values of 10⁹ and above carry GE's offset and are taken modulo 10⁹; a GE gradient
    vector of length 0.03–0.97 encodes a reduced b, b_eff = b·|g|² (as dcm2niix does).

    References
    ----------
    DICOM PS3.3 C.8.13.5.9 (MR Diffusion Macro); dcm2niix issues #149, #602, #690.
    """
    if _text(ds, "Modality") not in ("", "MR"):
        return None
    if not is_diffusion_acquisition(ds):
        return None
    if _kind_from_tokens(ds) in (DiffusionKind.ADC, DiffusionKind.OTHER_DERIVED):
        return None
    value, source = _stored_b_value(ds)
    return _sane_b_value(value, source, ds)


def _standard_gradient(ds: Dataset) -> list[float] | None:
    """Return (0018,9089) from the top level or a (flattened or not) diffusion sequence.

    None when absent.
    """
    candidates: list[Dataset] = [ds]
    candidates.extend(values.items(ds, "DiffusionGradientDirectionSequence", strict=False)[:1])
    for outer in values.items(ds, "MRDiffusionSequence", strict=False)[:1]:
        candidates.extend(
            values.items(outer, "DiffusionGradientDirectionSequence", strict=False)[:1])
    for item in candidates:
        if values.has(item, "DiffusionGradientOrientation"):
            found = values.get_floats(item, "DiffusionGradientOrientation", strict=False)
            if found is not None and len(found) == 3:
                return list(found)
    return None



#: Vendors whose private gradient is already in the patient (LPS) frame, and its reader.
_LPS_GRADIENTS: dict[Vendor, Callable[[Dataset], list[float] | None]] = {
    Vendor.SIEMENS: siemens_gradient,
    Vendor.PHILIPS: _philips_gradient,
    Vendor.UIH: uih_gradient,
}

def _raw_gradient_lps(
    ds: Dataset, *, rotate: bool = True
) -> NDArray[np.float64] | None | Literal[False]:
    """Gradient in LPS from any source; False when a source says "no gradient" (zeros).

    With ``rotate=False`` a GE gradient is returned in its logical frame: enough to tell
    zero from non-zero, without the warnings the rotation may raise.
    """
    standard = _standard_gradient(ds)
    if standard is not None:
        return _unit_or_false(standard)
    vendor = vendor_of(ds)
    if vendor is Vendor.GE:
        logical = _ge_logical_gradient(ds)
        if logical is not None:
            if float(np.linalg.norm(logical)) < _ZERO_GRADIENT_NORM:
                return False
            return _unit_or_none(_ge_gradient_lps(ds) if rotate else logical)
    elif vendor is Vendor.CANON:
        canon = _canon_comment_gradient(ds)
        if canon is not None:
            if _unit_or_none(canon) is None:
                return False
            if not rotate:
                return _unit_or_none(canon)
            return _canon_gradient_lps(ds, canon)
    elif vendor in _LPS_GRADIENTS:  # vendors that store the gradient in LPS already
        gradient = _LPS_GRADIENTS[vendor](ds)
        if gradient is not None:
            return _unit_or_false(gradient)
    return None


def _unit_or_false(vector: Sequence[float] | NDArray[np.float64]
                   ) -> NDArray[np.float64] | Literal[False]:
    """Return the unit vector, or False for a zero gradient (a source saying "no gradient")."""
    unit = _unit_or_none(vector)
    return False if unit is None else unit


def diffusion_direction_lps(ds: Dataset) -> tuple[float, float, float] | None:
    """Return the unit gradient direction (LPS) of a directional DWI image, else None.

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    tuple of 3 float or None
        Unit vector in LPS patient coordinates. None for b0, trace/isotropic and derived
        images, for non-diffusion images, and when the direction cannot be recovered
        (e.g. a Canon classic ImageComments vector with ROW phase encoding).

    Notes
    -----
    Sources: (0018,9089) (standard, patient frame); Siemens CSA
    ``DiffusionGradientDirection`` or (0019,xx0E) (patient frame); Philips (2005,xxB0-B2)
    (RL, AP, FH); GE (0019,xxBB-BD) (logical frame, rotated, see `_ge_gradient_lps`);
    Canon classic ImageComments ``b=…(a,b,c)`` (reordered, see `_canon_gradient_lps`).
    """
    if diffusion_kind(ds) is not DiffusionKind.DIRECTIONAL:
        return None
    return _direction_of_directional(ds)


def _direction_of_directional(ds: Dataset) -> tuple[float, float, float] | None:
    """`diffusion_direction_lps` of an image whose kind is DIRECTIONAL."""
    gradient = _raw_gradient_lps(ds)
    if gradient is None or gradient is False:
        return None
    return (float(gradient[0]), float(gradient[1]), float(gradient[2]))


def diffusion_facts(ds: Dataset
                    ) -> tuple[DiffusionKind, float | None, tuple[float, float, float] | None]:
    """Return `diffusion_kind`, `b_value_s_per_mm2` and `diffusion_direction_lps` of ``ds``.

    The same three values, and the same warnings, as the three calls in turn
    (tests/dicom/test_vendors.py pins it on every scanner file of the test data), with
    the evidence read once: each of those calls re-derives the kind (vendor, ImageType
    tokens, diffusion evidence, stored b-value), and the stack key of every frame needs all
    three.

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    (DiffusionKind, float or None, tuple of 3 float or None)
    """
    kind, stored = _kind_and_stored_b_value(ds)
    if kind is DiffusionKind.NONE:
        return kind, None, None
    if stored is None and kind in (DiffusionKind.ADC, DiffusionKind.OTHER_DERIVED):
        # a map by its ImageType tokens: no b-value; the evidence is still weighed, for the
        # warnings b_value_s_per_mm2 gives on the way
        is_diffusion_acquisition(ds)
        return kind, None, None
    value, source = stored if stored is not None else _stored_b_value(ds)
    b_value = _sane_b_value(value, source, ds)  # warns as b_value_s_per_mm2 does
    direction = _direction_of_directional(ds) if kind is DiffusionKind.DIRECTIONAL else None
    return kind, b_value, direction


def _kind_from_tokens(ds: Dataset) -> DiffusionKind | None:
    """Kind decided by ImageType tokens or, for derived maps, the description."""
    tokens = set(_image_type_tokens(ds))
    if tokens & _ADC_TOKENS:
        return DiffusionKind.ADC
    if tokens & _OTHER_DERIVED_TOKENS:
        return DiffusionKind.OTHER_DERIVED
    if "DIFFUSION" in tokens and tokens & _OTHER_DERIVED_WITH_DIFFUSION_TOKENS:
        return DiffusionKind.OTHER_DERIVED
    if tokens & _B0_TOKENS:
        return DiffusionKind.B0
    description = _text(ds, "SeriesDescription")
    if bool(tokens) and _image_type_tokens(ds)[0] == "DERIVED":
        # A derived image named after its map ("…_ADC", "eADC", "FA").
        if _KEYWORD_OTHER_DERIVED.search(description):
            return DiffusionKind.OTHER_DERIVED
        if _KEYWORD_ADC.search(description):
            return DiffusionKind.ADC
    elif vendor_of(ds) is Vendor.GE:
        # GE names its maps at the start of SeriesDescription, "ADC (10^-6 mm^2/s):Nov 21 …",
        # "eADC …", whatever their ImageType; a raw DWI series merely *mentioning* ADC
        # ("DWI b1000 + ADC") is not a map.
        if _GE_MAP_OTHER_DERIVED.match(description):
            return DiffusionKind.OTHER_DERIVED
        if _GE_MAP_ADC.match(description):
            return DiffusionKind.ADC
    return None


def diffusion_kind(ds: Dataset) -> DiffusionKind:
    """Classify a diffusion image: b0, directional, trace, ADC map, other derived, none.

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    DiffusionKind

    Notes
    -----
    1. ImageType tokens: ADC / ADC_UNSPECIFIED → ADC; FA, EADC, EXP, CALC_BVALUE, TENSOR …
       → OTHER_DERIVED; TENSOR_B0 (Siemens tensor-fit b0) → B0. A GE (or any DERIVED)
       image whose SeriesDescription names "ADC" → ADC.
    2. No diffusion evidence (`is_diffusion_acquisition`) → NONE.
    3. b = 0 → B0; b unknown but diffusion → OTHER_DERIVED.
    4. b > 0: trace when DiffusionDirectionality is ISOTROPIC, ImageType says TRACEW /
       TRACE / ISOTROPIC, the Siemens SequenceName ends in ``t`` (``ep_b1000t``), GE
       reports 0 directions (0019,xxE0), or the stored gradient is zero (Philips isotropic
       images); directional otherwise.
    """
    return _kind_and_stored_b_value(ds)[0]


def _kind_and_stored_b_value(ds: Dataset
                             ) -> tuple[DiffusionKind, tuple[float | None, str] | None]:
    """`diffusion_kind`, and the stored b-value (value, source) when it was read for it."""
    if _text(ds, "Modality") not in ("", "MR"):
        return DiffusionKind.NONE, None
    by_tokens = _kind_from_tokens(ds)
    if by_tokens is not None and by_tokens is not DiffusionKind.B0:
        return by_tokens, None
    if not is_diffusion_acquisition(ds):
        return DiffusionKind.NONE, None
    if by_tokens is DiffusionKind.B0:
        return DiffusionKind.B0, None
    stored = value, source = _stored_b_value(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # b_value_s_per_mm2 reports it
        b_value = _sane_b_value(value, source, ds)
    if b_value is None:
        # A diffusion-series image without a usable b-value: an unlabelled derived map
        # (e.g. an ISOTROPIC frame with no b) or a damaged header; not fit for fitting.
        return DiffusionKind.OTHER_DERIVED, stored
    if b_value <= 0.0:
        return DiffusionKind.B0, stored
    tokens = set(_image_type_tokens(ds))
    directionality = _directionality(ds)
    if directionality == "ISOTROPIC" or tokens & _TRACE_TOKENS:
        return DiffusionKind.TRACE, stored
    if directionality in ("DIRECTIONAL", "BMATRIX"):
        return DiffusionKind.DIRECTIONAL, stored
    vendor = vendor_of(ds)
    if vendor is Vendor.SIEMENS and _SIEMENS_TRACE_SEQUENCE.search(_text(ds, "SequenceName")):
        return DiffusionKind.TRACE, stored
    if vendor is Vendor.GE:
        n_dirs = _private_numbers(ds, 0x0019, _GE_ACQU, 0xE0, "DS")
        if n_dirs and n_dirs[0] == 0:
            return DiffusionKind.TRACE, stored
    gradient = _raw_gradient_lps(ds, rotate=False)
    if gradient is False:
        return DiffusionKind.TRACE, stored
    return DiffusionKind.DIRECTIONAL, stored
