"""Acquisition values: echo time, field strength, fat–water in/opposed-phase echo times."""

from __future__ import annotations

import logging
import math

from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import _quality_warning, _series_uid, _text
from bonelesion.units import FAT_WATER_SHIFT_PPM, GYROMAGNETIC_RATIO_MHZ_PER_T

__all__ = [
    "echo_time_ms",
    "magnetic_field_strength_t",
    "echo_phase_ms",
    "echo_time_phase",
    "ECHO_PHASE_TOLERANCE_CYCLES",
]

logger = logging.getLogger(__name__)


#: How far (in fat–water phase cycles) an echo time may sit from an exact in-phase or
#: opposed-phase time and still count as one: 0.1 cycle ≈ ±0.46 ms at 1.5 T and ±0.23 ms
#: at 3 T, which contains the ranges of CLINICAL_REFERENCE.md default 10
#: (1.5 T: OP 2.0–2.5, IP 4.2–4.9 ms; 3 T: OP 1.0–1.3, IP 2.1–2.5 ms).
ECHO_PHASE_TOLERANCE_CYCLES = 0.1


#: Echoes later than this many fat–water cycles are not classed as in/opposed phase.
_ECHO_PHASE_MAX_CYCLES = 3.6


#: Headers storing MagneticFieldStrength above this are in gauss (e.g. 15000 = 1.5 T).
_FIELD_STRENGTH_GAUSS_THRESHOLD = 100.0


_GAUSS_PER_TESLA = 10_000.0


#: Field strengths above this (but not gauss) are not plausible for a clinical header.
_FIELD_STRENGTH_MAX_T = 25.0


def echo_time_ms(ds: Dataset) -> float | None:
    """Echo time in ms (EchoTime, or EffectiveEchoTime of a flattened enhanced frame).

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    float or None
        None when absent or not positive (derived frames such as field maps store 0).
    """
    for keyword in ("EchoTime", "EffectiveEchoTime"):
        value = values.get_float(ds, keyword, strict=False)
        if value is not None:
            return value if value > 0.0 else None
    for item in values.items(ds, "MREchoSequence", strict=False)[:1]:
        value = values.get_float(item, "EffectiveEchoTime", strict=False)
        if value is not None and value > 0.0:
            return value
    return None


def magnetic_field_strength_t(ds: Dataset) -> float | None:
    """Field strength in tesla (normalises headers that store it in gauss).

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    float or None
        MagneticFieldStrength (0018,0087); values above 100 are gauss and divided by 10⁴.
        When absent (anonymised exports), the proton ImagingFrequency (0018,0084) divided
        by the gyromagnetic ratio, rounded to 0.01 T. None when neither is usable.
    """
    value = values.get_float(ds, "MagneticFieldStrength", strict=False)
    if value is not None and value > 0.0:
        if value > _FIELD_STRENGTH_GAUSS_THRESHOLD:
            return value / _GAUSS_PER_TESLA
        if value <= _FIELD_STRENGTH_MAX_T:
            return value
        _quality_warning(
            f"Series {_series_uid(ds)}: MagneticFieldStrength (0018,0087) = {value:g} is "
            f"neither tesla (≤ {_FIELD_STRENGTH_MAX_T:g}) nor gauss (> "
            f"{_FIELD_STRENGTH_GAUSS_THRESHOLD:g}); treated as unknown. Potential fix: set "
            "the field strength in the protocol configuration."
        )
        return None
    nucleus = _text(ds, "ImagedNucleus")
    frequency_mhz = values.get_float(ds, "ImagingFrequency", strict=False)
    if frequency_mhz is not None and frequency_mhz > 0.0 and nucleus in ("", "1H", "H1"):
        return round(frequency_mhz / GYROMAGNETIC_RATIO_MHZ_PER_T, 2)
    return None


def echo_phase_ms(field_strength_t: float) -> tuple[float, float]:
    """First opposed-phase and in-phase echo times of fat and water.

    Parameters
    ----------
    field_strength_t : float
        Main field in tesla (> 0).

    Returns
    -------
    (opposed_ms, in_phase_ms) : tuple of float

    Raises
    ------
    ValueError
        For a non-positive or non-finite field strength.

    Notes
    -----
    Δf = δ · γ̄ · B0 with δ = `FAT_WATER_SHIFT_PPM` (3.4 ppm) and γ̄ =
    `GYROMAGNETIC_RATIO_MHZ_PER_T`; fat and water are opposed after half a cycle,
    TE_OP = 1 / (2 Δf), and back in phase after a full cycle, TE_IP = 1 / Δf
    (CLINICAL_REFERENCE.md §B1). 1.5 T: 2.30 / 4.61 ms; 3 T: 1.15 / 2.30 ms.

    Examples
    --------
    >>> [round(t, 2) for t in echo_phase_ms(1.5)]
    [2.3, 4.61]
    """
    if not math.isfinite(field_strength_t) or field_strength_t <= 0.0:
        raise ValueError(
            f"field strength {field_strength_t!r} T: expected a positive number of tesla. "
            "Potential fix: pass magnetic_field_strength_t(header) and handle None first."
        )
    shift_hz = FAT_WATER_SHIFT_PPM * GYROMAGNETIC_RATIO_MHZ_PER_T * field_strength_t
    cycle_ms = 1000.0 / shift_hz
    return 0.5 * cycle_ms, cycle_ms


def echo_time_phase(te_ms: float, field_strength_t: float) -> str | None:
    """Whether an echo time puts fat and water in phase or opposed phase.

    Parameters
    ----------
    te_ms : float
        Echo time in ms.
    field_strength_t : float
        Main field in tesla.

    Returns
    -------
    {"in", "opposed"} or None
        None when TE is not within `ECHO_PHASE_TOLERANCE_CYCLES` of an in- or
        opposed-phase time, or is later than 3.6 fat–water cycles (long-TE images are not
        chemical-shift images), or an input is not positive.

    Examples
    --------
    >>> echo_time_phase(2.302, 1.5), echo_time_phase(4.635, 1.5), echo_time_phase(3.4, 1.5)
    ('opposed', 'in', None)
    """
    if not (math.isfinite(te_ms) and te_ms > 0.0):
        return None
    if not (math.isfinite(field_strength_t) and field_strength_t > 0.0):
        return None
    _, cycle_ms = echo_phase_ms(field_strength_t)
    cycles = te_ms / cycle_ms
    if cycles > _ECHO_PHASE_MAX_CYCLES:
        return None
    nearest_half = round(cycles * 2.0) / 2.0
    if nearest_half <= 0.0 or abs(cycles - nearest_half) > ECHO_PHASE_TOLERANCE_CYCLES:
        return None
    return "in" if float(nearest_half).is_integer() else "opposed"
