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
from typing import TYPE_CHECKING, Any

from bonelesion._version import __version__
from bonelesion.errors import DataQualityWarning, PipelineError
from bonelesion.units import IntensityUnit

if TYPE_CHECKING:
    from bonelesion.model.volume import SeriesInfo, Volume

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


def __getattr__(name: str) -> Any:
    """`Volume` and `SeriesInfo`, imported at first use.

    ``import bonelesion`` (and so every ``bonelesion.*`` import, the command line's too)
    does not import numpy: the ``bonelesion`` program sets numpy's start-up options first
    (`bonelesion.cli.main.run`).
    """
    if name in ("Volume", "SeriesInfo"):
        from bonelesion.model import volume

        return getattr(volume, name)
    raise AttributeError(f"module 'bonelesion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_volume(path: Any, **kwargs: Any) -> Volume:
    """Load the one stack in a folder or file list as a `Volume` (see `dicom.series`)."""
    from bonelesion.dicom.series import load_volume as _load_volume

    return _load_volume(path, **kwargs)


def load_series(path: Any, **kwargs: Any) -> list[Any]:
    """Load every stack in a folder or file list (see `dicom.series.load_series`)."""
    from bonelesion.dicom.series import load_series as _load_series

    return _load_series(path, **kwargs)
