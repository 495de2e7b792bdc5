"""Shared preconditions and warning plumbing of the measuring stages."""

from __future__ import annotations

import logging
import warnings
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import DataQualityWarning, EmptyMaskError, GeometryMismatchError, InputError
from bonelesion.model.volume import Volume
from bonelesion.units import IntensityUnit

__all__ = ["Stage", "mask_array_on", "require_unit", "warn_data_quality", "series_label"]

logger = logging.getLogger(__name__)


class Stage(Protocol):
    """A measuring stage: configuration at construction, data at call time."""

    name: str

    def __init__(self, config: object) -> None: ...


def series_label(volume: Volume) -> str:
    """Series UID of a volume for messages ("(no UID)" when unknown)."""
    return volume.series.series_instance_uid or "(no UID)"


def require_unit(volume: Volume, unit: IntensityUnit, *, stage: str, what: str) -> None:
    """Raise `InputError` unless ``volume`` is in ``unit``."""
    if volume.intensity_unit != unit:
        raise InputError(
            f"{stage}: the {what} of series {series_label(volume)} has intensity unit "
            f"{volume.intensity_unit.value}, expected {unit.value}. Potential fix: pass the "
            f"{what} volume (e.g. CT after the modality LUT for HU)."
        )


def mask_array_on(
    volume: Volume, mask: Volume, *, stage: str, lesion_id: str
) -> NDArray[np.bool_]:
    """Boolean mask array of ``mask``, checked to lie on ``volume``'s grid and to be non-empty.

    Raises
    ------
    GeometryMismatchError
        When the mask grid differs from the image grid.
    EmptyMaskError
        When the mask holds no voxel.
    """
    if not mask.geometry_equal(volume):
        raise GeometryMismatchError(
            f"{stage}: mask of lesion {lesion_id!r} (shape {mask.shape}) is not on the grid of "
            f"series {series_label(volume)} (shape {volume.shape}). Potential fix: put the "
            "lesion on the series grid first (Lesion.mask_on)."
        )
    array = np.asarray(mask.array) != 0
    if not array.any():
        raise EmptyMaskError(
            f"{stage}: mask of lesion {lesion_id!r} on series {series_label(volume)} is empty "
            "(0 voxels). Potential fix: check that the ROI lies inside this series' field of "
            "view and frame of reference."
        )
    return array


def warn_data_quality(message: str, sink: list[str]) -> None:
    """Emit a `DataQualityWarning`, log it, and append it to a result's warning list."""
    sink.append(message)
    logger.warning("%s", message)
    warnings.warn(message, DataQualityWarning, stacklevel=3)
