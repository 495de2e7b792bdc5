"""Shared preconditions and warning plumbing of the measuring stages."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from bonelesion.config import check_non_negative
from bonelesion.errors import (
    DataQualityWarning,
    EmptyMaskError,
    GeometryMismatchError,
    InputError,
    PipelineError,
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
    "CoreRoi",
    "check_erosion_margin",
    "background_noise_sd",
    "reference_shell",
    "largest_cross_section",
    "signal_to_noise",
    "NoiseEstimate",
    "reference_median",
    "RAYLEIGH_MEDIAN_PER_SIGMA",
]

#: Median of a Rayleigh distribution in units of its σ: √(2 ln 2).
RAYLEIGH_MEDIAN_PER_SIGMA = math.sqrt(2.0 * math.log(2.0))

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
    """Emit a `DataQualityWarning`, log it (debug), and append it to a result's warning list.

    The warning itself reaches the caller (the pipeline counts them per study and stores
    each in the results); logging it at warning level too would print every one twice.
    """
    sink.append(message)
    logger.debug("%s", message)
    warnings.warn(message, DataQualityWarning, stacklevel=3)


# ---------------------------------------------------------------------------- core ROI
def check_erosion_margin(prefix: str, margin_voxels: int, margin_mm: float | None) -> None:
    """Range-check the erosion settings of a stage config (``ConfigError`` names the key)."""
    check_non_negative(prefix, erosion_margin_voxels=margin_voxels)
    if margin_mm is not None:
        check_non_negative(prefix, erosion_margin_mm=margin_mm)


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
    if margin_mm is not None:
        radii = tuple(float(margin_mm) / s for s in spacing_mm)
    else:
        radii = (float(margin_voxels),) * 3
    footprint = ellipsoid_footprint(radii)  # type: ignore[arg-type]
    if footprint.sum() <= 1:
        return mask.copy(), radii  # type: ignore[return-value]
    if footprint.sum() <= _SHIFTED_EROSION_MAX:
        return _eroded_by_shifts(np.asarray(mask, dtype=bool), footprint), radii  # type: ignore[return-value]
    from scipy import ndimage

    core = ndimage.binary_erosion(mask, structure=footprint, border_value=0)
    return np.asarray(core, dtype=bool), radii  # type: ignore[return-value]


#: Footprints of up to this many voxels are applied as shifted ANDs (`_eroded_by_shifts`):
#: the default one-voxel margin's seven, and the radius-2 ball's 33.
_SHIFTED_EROSION_MAX = 64


def _eroded_by_shifts(mask: NDArray[np.bool_], footprint: NDArray[np.bool_]
                      ) -> NDArray[np.bool_]:
    """Binary erosion as the AND of the mask shifted by each footprint offset.

    The definition ``scipy.ndimage.binary_erosion(mask, structure=footprint,
    border_value=0)`` computes, for an odd-sized footprint centred on its middle voxel
    (voxels outside the array are background); pinned equal to it in the tests. A lesion's
    core needs no scipy import this way (≈ 0.15 s per process).
    """
    half = [n // 2 for n in footprint.shape]
    padded = np.zeros([s + 2 * h for s, h in zip(mask.shape, half, strict=True)], dtype=bool)
    padded[tuple(slice(h, h + s) for h, s in zip(half, mask.shape, strict=True))] = mask
    out = np.ones(mask.shape, dtype=bool)
    for offset in np.argwhere(footprint):
        out &= padded[tuple(slice(int(o), int(o) + s)
                            for o, s in zip(offset, mask.shape, strict=True))]
    return out


class CoreRoi(NamedTuple):
    """A core ROI and how it was made (see `core_roi`)."""

    core: NDArray[np.bool_]
    radii_voxels: tuple[float, float, float]
    margin_mm: float
    fell_back: bool


def core_roi(
    lesion: NDArray[np.bool_],
    volume: Volume,
    *,
    margin_voxels: int,
    margin_mm: float | None,
    stage: str,
    lesion_id: str,
    warnings: list[str],
) -> CoreRoi:
    """Core ROI of a lesion mask: eroded by the margin, or the whole mask if that empties it.

    Returns (core, radii_voxels, applied_margin_mm, fell_back); after a fall-back the applied
    margin is 0, ``fell_back`` is True and a `DataQualityWarning` is appended to ``warnings``;
    otherwise the margin is ``margin_mm`` or ``margin_voxels`` × the smallest spacing.
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
        return CoreRoi(lesion, radii, 0.0, True)
    return CoreRoi(core, radii, applied, False)


# ---------------------------------------------------------------------------- reliability
def background_noise_sd(
    image: NDArray[np.floating] | NDArray[np.integer],
    *,
    background_fraction: float,
    min_voxels: int,
) -> float | None:
    """Noise SD of a magnitude image estimated from its background (air), or None.

    Parameters
    ----------
    image : ndarray
        Magnitude image (any shape).
    background_fraction : float
        Background = voxels at or below this fraction of the image's 99th percentile.
    min_voxels : int
        Fewer background voxels than this: not estimable.

    Returns
    -------
    float or None
        σ of the underlying Gaussian noise; None when the background is too small, or holds
        no noise (noise-free or zero-filled images: median 0).

    Notes
    -----
    Magnitude noise in air is Rayleigh distributed with median σ·√(2 ln 2); the median is
    robust to a minority of dark tissue voxels (cortex, a signal-void lesion) in the
    background set (NEMA MS 1 background-ROI method, with the Rayleigh correction).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> air = np.abs(rng.normal(0, 10, 20000) + 1j * rng.normal(0, 10, 20000))
    >>> round(background_noise_sd(np.concatenate([air, np.full(2000, 1000.0)]),
    ...                           background_fraction=0.05, min_voxels=100), 0)
    10.0
    """
    values = np.asarray(image, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    p99 = float(np.percentile(values, 99.0))
    if not p99 > 0:
        return None
    background = values[values <= background_fraction * p99]
    if background.size < min_voxels:
        return None
    median = float(np.median(background))
    if not median > 0:
        return None
    return median / RAYLEIGH_MEDIAN_PER_SIGMA


def reference_shell(
    lesion: NDArray[np.bool_],
    spacing_mm: tuple[float, float, float],
    *,
    gap_mm: float,
    width_mm: float,
    exclude: NDArray[np.bool_] | None = None,
) -> NDArray[np.bool_]:
    """Shell of tissue around a lesion: voxels ``gap_mm`` < d ≤ ``gap_mm + width_mm`` away.

    Parameters
    ----------
    lesion : (S, R, C) ndarray of bool
    spacing_mm : (3,) tuple of float
    gap_mm, width_mm : float
        The gap keeps the lesion edge (partial volume) out; the width sets the shell size.
    exclude : (S, R, C) ndarray of bool, optional
        Voxels never part of the shell (other lesions).

    Returns
    -------
    (S, R, C) ndarray of bool
        Empty when the lesion is empty or the shell lies outside the array.

    Notes
    -----
    d is the Euclidean distance in mm (spacing-aware) to the nearest lesion voxel, computed
    on the lesion's bounding box grown by the shell's reach, so the cost scales with the
    lesion, not the image.
    """
    from scipy import ndimage

    out = np.zeros(lesion.shape, dtype=bool)
    if not lesion.any():
        return out
    reach = gap_mm + width_mm
    pad = [int(math.ceil(reach / s)) + 1 for s in spacing_mm]
    idx = np.nonzero(lesion)
    lo = [max(0, int(i.min()) - p) for i, p in zip(idx, pad, strict=True)]
    hi = [min(n, int(i.max()) + p + 1) for i, p, n in zip(idx, pad, lesion.shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    distance = ndimage.distance_transform_edt(~lesion[box], sampling=spacing_mm)
    shell = (distance > gap_mm) & (distance <= reach)
    if exclude is not None:
        shell &= ~exclude[box]
    out[box] = shell
    return out


def largest_cross_section(core: NDArray[np.bool_]) -> int:
    """Index (axis 0) of the slice holding most core voxels; ties: nearest the centroid.

    Examples
    --------
    >>> m = np.zeros((5, 3, 3), bool); m[1, 1, 1] = m[2] = m[3] = True
    >>> largest_cross_section(m)
    2
    """
    counts = core.reshape(core.shape[0], -1).sum(axis=1)
    best = np.flatnonzero(counts == counts.max())
    centroid = float(np.average(np.arange(core.shape[0]), weights=counts))
    return int(best[np.argmin(np.abs(best - centroid))])


#: Noise SD of an image, or None when not estimable (see `signal_to_noise`).
NoiseEstimate = Callable[[Volume], float | None]


def signal_to_noise(image: Volume, signal: float, *, background_fraction: float,
                    min_voxels: int, noise_sd: NoiseEstimate | None = None) -> float | None:
    """``signal`` / background noise SD of ``image``; None when the noise is not estimable.

    ``noise_sd`` overrides the estimate from ``image``'s own background: a caller that
    measures on crops of a series passes the noise of the whole image (a crop holds little
    or no air), and may cache it across the lesions of a study.
    """
    if noise_sd is not None:
        sd = noise_sd(image)
    else:
        sd = background_noise_sd(np.asarray(image.array), background_fraction=background_fraction,
                                 min_voxels=min_voxels)
    return None if sd is None else signal / sd


def reference_median(image: Volume, reference: MaskSource, *, stage: str, lesion_id: str
                     ) -> tuple[float, int] | None:
    """Median signal of ``image`` in the reference ROI (no erosion) and its voxel count.

    None when the reference ROI holds no voxel on this grid (a `PipelineError` from the mask
    is returned as None as well: the reference is optional).
    """
    try:
        array = mask_array_on(image, reference, stage=stage, lesion_id=f"{lesion_id}:reference")
    except PipelineError:
        return None
    values = np.asarray(image.array, dtype=np.float64)[array]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    return float(np.median(values)), int(values.size)
