"""Shared preconditions and warning plumbing of the measuring stages."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import (
    ConfigError,
    DataQualityWarning,
    EmptyMaskError,
    GeometryMismatchError,
    InputError,
)
from bonelesion.model.volume import Volume
from bonelesion.units import IntensityUnit

__all__ = [
    "Stage",
    "MaskSource",
    "mask_array_on",
    "require_unit",
    "warn_data_quality",
    "series_label",
    "ellipsoid_footprint",
    "erode_mask",
    "core_roi",
    "check_erosion_margin",
]

logger = logging.getLogger(__name__)

#: A mask on one grid, or a function that puts the lesion on any grid (e.g. Lesion.mask_on).
MaskSource = Volume | Callable[[Volume], Volume]


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
    volume: Volume, mask: MaskSource, *, stage: str, lesion_id: str
) -> NDArray[np.bool_]:
    """Boolean mask array of ``mask``, checked to lie on ``volume``'s grid and to be non-empty.

    A callable ``mask`` is first called with ``volume`` to put the lesion on its grid.

    Raises
    ------
    GeometryMismatchError
        When the mask grid differs from the image grid.
    EmptyMaskError
        When the mask holds no voxel.
    """
    if callable(mask):
        mask = mask(volume)
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


# ---------------------------------------------------------------------------- core ROI
def check_erosion_margin(prefix: str, margin_voxels: int, margin_mm: float | None) -> None:
    """Range-check the erosion settings of a stage config (``ConfigError`` names the key)."""
    if margin_voxels < 0:
        raise ConfigError(f"{prefix}.erosion_margin_voxels: must be ≥ 0, found {margin_voxels}.")
    if margin_mm is not None and not margin_mm >= 0:
        raise ConfigError(f"{prefix}.erosion_margin_mm: must be ≥ 0, found {margin_mm}.")


def ellipsoid_footprint(radii_voxels: tuple[float, float, float]) -> NDArray[np.bool_]:
    """Ellipsoidal structuring element with the given semi-axes (voxels) along (s, r, c).

    A voxel offset ``d`` belongs to it when Σ (d_k / r_k)² ≤ 1; axes with a radius below one
    voxel get extent 0 (no erosion along them).

    Examples
    --------
    >>> int(ellipsoid_footprint((1.0, 1.0, 1.0)).sum())  # the 6-connected cross + centre
    7
    """
    half = [int(np.floor(r + 1e-9)) for r in radii_voxels]
    grids = np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij")
    total = np.zeros(grids[0].shape, dtype=np.float64)
    for g, r, h in zip(grids, radii_voxels, half, strict=True):
        if h > 0:
            total += (g / r) ** 2
    return total <= 1.0 + 1e-9


def erode_mask(
    mask: NDArray[np.bool_],
    spacing_mm: tuple[float, float, float],
    *,
    margin_voxels: int = 1,
    margin_mm: float | None = None,
) -> tuple[NDArray[np.bool_], tuple[float, float, float]]:
    """Erode a boolean (S, R, C) mask; return (core, radii in voxels per axis).

    ``margin_mm`` (converted per axis with the spacing) overrides ``margin_voxels``. Voxels
    outside the array count as background, so a mask touching the border is eroded there too.
    """
    from scipy import ndimage

    if margin_mm is not None:
        radii = tuple(float(margin_mm) / s for s in spacing_mm)
    else:
        radii = (float(margin_voxels),) * 3
    footprint = ellipsoid_footprint(radii)  # type: ignore[arg-type]
    if footprint.sum() <= 1:
        return mask.copy(), radii  # type: ignore[return-value]
    core = ndimage.binary_erosion(mask, structure=footprint, border_value=0)
    return np.asarray(core, dtype=bool), radii  # type: ignore[return-value]


def core_roi(
    lesion: NDArray[np.bool_],
    volume: Volume,
    *,
    margin_voxels: int,
    margin_mm: float | None,
    stage: str,
    lesion_id: str,
    warnings: list[str],
) -> tuple[NDArray[np.bool_], tuple[float, float, float], float]:
    """Core ROI of a lesion mask: eroded by the margin, or the whole mask if that empties it.

    Returns (core, radii_voxels, applied_margin_mm); the applied margin is 0 after a
    fall-back (with a `DataQualityWarning` appended to ``warnings``), else ``margin_mm`` or
    ``margin_voxels`` × the smallest spacing.
    """
    core, radii = erode_mask(lesion, volume.spacing_mm, margin_voxels=margin_voxels,
                             margin_mm=margin_mm)
    applied = float(margin_mm) if margin_mm is not None else float(
        margin_voxels * min(volume.spacing_mm))
    if not core.any():
        warn_data_quality(
            f"{stage}: eroding lesion {lesion_id!r} ({int(lesion.sum())} voxels) on series "
            f"{series_label(volume)} by {tuple(round(r, 2) for r in radii)} voxels left no "
            "voxel; the un-eroded mask was used, so edge voxels (partial volume) are included.",
            warnings,
        )
        return lesion, radii, 0.0
    return core, radii, applied
