"""bonelesion: quantitative bone-lesion imaging from CT and MR DICOM series.

Public API
----------
load_volume(path)
    The `Volume` of a folder or file list holding one stack.
load_series(path)
    Every stack found, each with its role and problems.
"""

from __future__ import annotations

import logging
from typing import Any

from bonelesion._version import __version__
from bonelesion.errors import DataQualityWarning, PipelineError
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.units import IntensityUnit

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "Volume",
    "SeriesInfo",
    "IntensityUnit",
    "PipelineError",
    "DataQualityWarning",
    "load_volume",
    "load_series",
]


def load_volume(path: Any, **kwargs: Any) -> Volume:
    """Load the one stack in a folder or file list as a `Volume` (see `dicom.series`)."""
    from bonelesion.dicom.series import load_volume as _load_volume

    return _load_volume(path, **kwargs)


def load_series(path: Any, **kwargs: Any) -> list[Any]:
    """Load every stack in a folder or file list (see `dicom.series.load_series`)."""
    from bonelesion.dicom.series import load_series as _load_series

    return _load_series(path, **kwargs)
