"""CT attenuation of a lesion: HU statistics in the eroded core of its mask.

CLINICAL_REFERENCE.md defaults 1–5: the mean (885 HU) and maximum (1060 HU) rules of Ulano
et al. (AJR 2016) are applied by the classifier; this stage measures the numbers the same way
every time, on the lesion mask eroded by about one voxel (partial-volume edge excluded).
"""

from __future__ import annotations

import logging
import time

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from bonelesion.config import config_to_dict
from bonelesion.model.results import CtAttenuationResult, Provenance
from bonelesion.model.volume import Volume
from bonelesion.stages.base import mask_array_on, require_unit, series_label, warn_data_quality
from bonelesion.stages.config import CtAttenuationConfig
from bonelesion.units import IntensityUnit

__all__ = ["CtAttenuationStage", "measure_attenuation", "erode_mask", "ellipsoid_footprint"]

logger = logging.getLogger(__name__)

STAGE = "ct_attenuation"
_MM3_PER_ML = 1000.0


def ellipsoid_footprint(radii_voxels: tuple[float, float, float]) -> NDArray[np.bool_]:
    """Ellipsoidal structuring element with the given semi-axes (voxels) along (s, r, c).

    A voxel offset ``d`` belongs to it when Σ (d_k / r_k)² ≤ 1; axes with a radius below one
    voxel get extent 0 (no erosion along them).

    Examples
    --------
    >>> ellipsoid_footprint((1.0, 1.0, 1.0)).sum()  # the 6-connected cross + centre
    np.int64(7)
    """
    half = [int(np.floor(r + 1e-9)) for r in radii_voxels]
    grids = np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij")
    total = np.zeros(grids[0].shape, dtype=np.float64)
    for g, r, h in zip(grids, radii_voxels, half, strict=True):
        if h > 0:
            total += (g / r) ** 2
    return total <= 1.0 + 1e-9


def _radii_voxels(
    spacing_mm: tuple[float, float, float], config: CtAttenuationConfig
) -> tuple[float, float, float]:
    if config.erosion_margin_mm is not None:
        return tuple(config.erosion_margin_mm / s for s in spacing_mm)  # type: ignore[return-value]
    n = float(config.erosion_margin_voxels)
    return (n, n, n)


def erode_mask(
    mask: NDArray[np.bool_], spacing_mm: tuple[float, float, float], config: CtAttenuationConfig
) -> tuple[NDArray[np.bool_], tuple[float, float, float]]:
    """Erode a boolean (S, R, C) mask by the configured margin; return (core, radii_voxels).

    Voxels outside the array count as background, so a mask touching the border is eroded
    there too.
    """
    radii = _radii_voxels(spacing_mm, config)
    footprint = ellipsoid_footprint(radii)
    if footprint.sum() <= 1:
        return mask.copy(), radii
    core = ndimage.binary_erosion(mask, structure=footprint, border_value=0)
    return np.asarray(core, dtype=bool), radii


def measure_attenuation(
    volume: Volume, mask: Volume, *, config: CtAttenuationConfig, lesion_id: str = ""
) -> CtAttenuationResult:
    """HU statistics of a lesion in its eroded core ROI.

    Parameters
    ----------
    volume : Volume, (S, R, C), HU
        CT volume after the modality LUT.
    mask : Volume of bool, (S, R, C)
        Lesion mask on the same grid.
    config : CtAttenuationConfig
        Erosion margin.
    lesion_id : str
        For messages and the result.

    Returns
    -------
    CtAttenuationResult
        mean, median, max, min, SD (ddof = 1), 5th and 95th percentiles of the core ROI; voxel
        counts of the lesion and core; lesion volume in ml.

    Raises
    ------
    InputError
        When ``volume`` is not in HU.
    GeometryMismatchError
        When the mask is not on the volume's grid.
    EmptyMaskError
        When the mask is empty.

    Notes
    -----
    If erosion empties the ROI (a lesion thinner than twice the margin), the un-eroded mask
    is used and a `DataQualityWarning` says so. Percentiles use linear interpolation
    (numpy's default); SD of a single-voxel ROI is NaN.
    """
    require_unit(volume, IntensityUnit.HU, stage=STAGE, what="CT volume")
    lesion = mask_array_on(volume, mask, stage=STAGE, lesion_id=lesion_id)
    start = time.perf_counter()
    warnings: list[str] = []
    core, radii = erode_mask(lesion, volume.spacing_mm, config)
    margin_mm = (
        float(config.erosion_margin_mm) if config.erosion_margin_mm is not None
        else float(config.erosion_margin_voxels * min(volume.spacing_mm))
    )
    if not core.any():
        warn_data_quality(
            f"{STAGE}: eroding lesion {lesion_id!r} ({int(lesion.sum())} voxels) on series "
            f"{series_label(volume)} by {radii} voxels left no voxel; the un-eroded mask was "
            "used, so edge voxels (partial volume) are included.",
            warnings,
        )
        core = lesion
        margin_mm = 0.0
    values = np.asarray(volume.array, dtype=np.float64)[core]
    p05, median, p95 = np.percentile(values, [5.0, 50.0, 95.0])
    sd = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    lesion_voxels = int(lesion.sum())
    result = CtAttenuationResult(
        lesion_id=lesion_id,
        series_instance_uid=volume.series.series_instance_uid,
        lesion_voxel_count=lesion_voxels,
        lesion_volume_ml=lesion_voxels * volume.voxel_volume_mm3 / _MM3_PER_ML,
        core_voxel_count=int(values.size),
        attenuation_mean_hu=float(values.mean()),
        attenuation_median_hu=float(median),
        attenuation_max_hu=float(values.max()),
        attenuation_min_hu=float(values.min()),
        attenuation_sd_hu=sd,
        attenuation_p05_hu=float(p05),
        attenuation_p95_hu=float(p95),
        erosion_margin_mm=margin_mm,
        warnings=tuple(warnings),
        provenance=Provenance(
            stage=STAGE,
            series_instance_uids=(volume.series.series_instance_uid,),
            parameters={**config_to_dict(config), "erosion_radii_voxels": list(radii)},
        ),
    )
    logger.debug("%s: lesion %s measured in %.3f s", STAGE, lesion_id, time.perf_counter() - start)
    return result


class CtAttenuationStage:
    """Thin stage wrapper around `measure_attenuation` (configuration at construction)."""

    name = STAGE

    def __init__(self, config: CtAttenuationConfig) -> None:
        self.config = config

    def run(self, volume: Volume, mask: Volume, *, lesion_id: str = "") -> CtAttenuationResult:
        """Measure one lesion; see `measure_attenuation`."""
        return measure_attenuation(volume, mask, config=self.config, lesion_id=lesion_id)
