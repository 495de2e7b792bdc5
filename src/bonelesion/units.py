"""Unit vocabularies and physical constants (units in their names, STYLE.md §6)."""

from __future__ import annotations

from enum import Enum

__all__ = [
    "IntensityUnit",
    "GYROMAGNETIC_RATIO_MHZ_PER_T",
    "FAT_WATER_SHIFT_PPM",
    "ADC_UM2_PER_S_PER_MM2_PER_S",
]


class IntensityUnit(str, Enum):
    """What the numbers in a volume's array mean."""

    HU = "HU"
    """Hounsfield units (CT after the modality LUT)."""
    ARBITRARY = "ARBITRARY"
    """Scanner signal in arbitrary units (MR magnitude)."""
    MM2_PER_S = "MM2_PER_S"
    """Apparent diffusion coefficient in mm²/s."""
    FRACTION = "FRACTION"
    """A dimensionless 0–1 quantity (fat fraction)."""
    MASK = "MASK"
    """A binary or label mask."""


#: Proton gyromagnetic ratio γ/2π.
GYROMAGNETIC_RATIO_MHZ_PER_T = 42.577478
#: Main fat–water chemical shift (methylene peak), CLINICAL_REFERENCE.md §B1.
FAT_WATER_SHIFT_PPM = 3.4
#: 1 mm²/s = 1e6 µm²/s (display unit of ADC).
ADC_UM2_PER_S_PER_MM2_PER_S = 1.0e6
