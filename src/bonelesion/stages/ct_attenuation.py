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

from bonelesion.config import config_to_dict
from bonelesion.model.results import CtAttenuationResult, Provenance
from bonelesion.model.volume import Volume
from bonelesion.stages.base import (
    core_roi,
    ellipsoid_footprint,
    largest_cross_section,
    mask_array_on,
    require_unit,
)
from bonelesion.stages.base import erode_mask as _erode
from bonelesion.stages.config import CtAttenuationConfig
from bonelesion.units import IntensityUnit

__all__ = ["CtAttenuationStage", "measure_attenuation", "erode_mask", "ellipsoid_footprint"]

logger = logging.getLogger(__name__)

STAGE = "ct_attenuation"
_MM3_PER_ML = 1000.0


def erode_mask(
    mask: NDArray[np.bool_], spacing_mm: tuple[float, float, float], config: CtAttenuationConfig
) -> tuple[NDArray[np.bool_], tuple[float, float, float]]:
    """Erode a boolean (S, R, C) mask by the configured margin; return (core, radii_voxels)."""
    return _erode(mask, spacing_mm, margin_voxels=config.erosion_margin_voxels,
                  margin_mm=config.erosion_margin_mm)


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
        counts of the lesion and core; lesion volume in ml; whether the erosion fell back to
        the whole mask; the maximum of the core ROI on its largest cross-section (slice).

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
    is used, ``erosion_fell_back`` is set and a `DataQualityWarning` says so. The central-slice
    maximum is taken on the slice (array axis 0, the acquisition plane) holding most core
    voxels: a 2-D ROI maximum as a reader measures it; the 3-D maximum is an extreme value
    of more voxels and grows with lesion size. Percentiles use linear interpolation
    (numpy's default); SD of a single-voxel ROI is NaN.
    """
    require_unit(volume, IntensityUnit.HU, stage=STAGE, what="CT volume")
    lesion = mask_array_on(volume, mask, stage=STAGE, lesion_id=lesion_id)
    start = time.perf_counter()
    warnings: list[str] = []
    core, radii, margin_mm, fell_back = core_roi(
        lesion, volume, margin_voxels=config.erosion_margin_voxels,
        margin_mm=config.erosion_margin_mm, stage=STAGE, lesion_id=lesion_id, warnings=warnings)
    array = np.asarray(volume.array, dtype=np.float64)
    values = array[core]
    k = largest_cross_section(core)
    central = array[k][core[k]]
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
        erosion_fell_back=fell_back,
        attenuation_central_slice_max_hu=float(central.max()),
        central_slice_voxel_count=int(central.size),
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
