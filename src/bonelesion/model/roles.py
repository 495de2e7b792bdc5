"""Series roles: the one closed vocabulary of what a stack is for in the pipeline.

The reader (`bonelesion.dicom`) gives every stack a `SeriesRole`; the series-selection
policy (`bonelesion.pipeline`) chooses stacks by it. ``SeriesInfo.role`` holds its value.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["SeriesRole"]


class SeriesRole(str, Enum):
    """Role of a stack (the ``role`` of `bonelesion series` and of the catalogue)."""

    CT = "ct"
    """A CT volume (HU)."""
    DWI = "dwi"
    """A diffusion-weighted stack: b0, trace or one gradient direction."""
    ADC = "adc"
    """A scanner-computed ADC map."""
    DIXON_IN_PHASE = "dixon_in_phase"
    DIXON_OPPOSED_PHASE = "dixon_opposed_phase"
    DIXON_WATER = "dixon_water"
    DIXON_FAT = "dixon_fat"
    LOCALIZER = "localizer"
    """A localizer / scout / topogram (ImageType LOCALIZER, or a one-image projection)."""
    OTHER = "other"
    """Anything else, including screen captures and dose reports (with a reason)."""

