"""Vendor knowledge: the one module that knows how each manufacturer labels things.

INTERFACE STUB — being implemented. Every function takes a *flat* header: a classic
single-frame data set, or one frame of an enhanced multi-frame object flattened by
`bonelesion.dicom.multiframe.flatten_frames` (shared + per-frame functional group contents
copied to the top level; FrameType copied to ImageType; EffectiveEchoTime to EchoTime).
"""

from __future__ import annotations

from enum import Enum

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

__all__ = [
    "Vendor",
    "DiffusionKind",
    "Role",
    "vendor_of",
    "b_value_s_per_mm2",
    "diffusion_direction_lps",
    "diffusion_kind",
    "echo_time_ms",
    "magnetic_field_strength_t",
    "stack_role",
    "adc_scale_to_mm2_per_s",
]


class Vendor(str, Enum):
    """Manufacturer family."""

    SIEMENS = "siemens"
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"
    HITACHI = "hitachi"
    OTHER = "other"


class DiffusionKind(str, Enum):
    """What a diffusion image holds."""

    NONE = "none"  # not a diffusion image
    B0 = "b0"  # b = 0 (or unweighted) image of a diffusion acquisition
    DIRECTIONAL = "directional"  # one gradient direction, b > 0
    TRACE = "trace"  # isotropic / trace-weighted, b > 0
    ADC = "adc"  # a scanner-computed ADC map
    OTHER_DERIVED = "other_derived"  # FA, exponential ADC, eADC, computed-b …


class Role(str, Enum):
    """Role of a stack in the pipeline (the `role` field of `bonelesion series`)."""

    CT = "ct"
    DWI = "dwi"
    ADC = "adc"
    DIXON_IN_PHASE = "dixon_in_phase"
    DIXON_OPPOSED_PHASE = "dixon_opposed_phase"
    DIXON_WATER = "dixon_water"
    DIXON_FAT = "dixon_fat"
    OTHER = "other"


def vendor_of(ds: Dataset) -> Vendor:
    """Manufacturer family from Manufacturer (and, when blanked, private creators)."""
    raise NotImplementedError


def b_value_s_per_mm2(ds: Dataset) -> float | None:
    """b-value of a diffusion image in s/mm², None when the image is not diffusion-weighted.

    Order: (0018,9087); Siemens CSA B_value / (0019,100C); GE (0043,1039) first value
    modulo 1e9; Philips (2001,1003); enhanced MR diffusion functional group (flattened).
    """
    raise NotImplementedError


def diffusion_direction_lps(ds: Dataset) -> tuple[float, float, float] | None:
    """Unit gradient direction (LPS) of a directional DWI image, None otherwise."""
    raise NotImplementedError


def diffusion_kind(ds: Dataset) -> DiffusionKind:
    """Classify a diffusion image: b0, directional, trace, ADC map, other derived, none."""
    raise NotImplementedError


def echo_time_ms(ds: Dataset) -> float | None:
    """Echo time in ms (EchoTime, or EffectiveEchoTime of a flattened enhanced frame)."""
    raise NotImplementedError


def magnetic_field_strength_t(ds: Dataset) -> float | None:
    """Field strength in tesla (normalises headers that store it in gauss)."""
    raise NotImplementedError


def stack_role(ds: Dataset) -> Role:
    """Role of the stack this (representative) header belongs to.

    CT → ``ct``; scanner ADC map → ``adc``; b0/trace/directional DWI → ``dwi``; Dixon
    in/opposed-phase/water/fat from ImageType tokens, SeriesDescription/ProtocolName
    keywords, and echo time against field strength (one series may hold both echoes);
    anything else → ``other``.
    """
    raise NotImplementedError


def adc_scale_to_mm2_per_s(ds: Dataset, values: NDArray[np.floating]) -> float:
    """Factor that converts a stored ADC map (after rescale) to mm²/s.

    Detected from the tissue value range (CLINICAL_REFERENCE.md default 12): a median of
    ~100–4000 means 1e-6 mm²/s units, ~0.1–4 means 1e-3, ~1e-4–4e-3 means mm²/s already.

    Raises
    ------
    UnsupportedInputError
        When the scale is ambiguous; names the series and what was found.
    """
    raise NotImplementedError
