"""Apparent diffusion coefficient: a voxel-wise mono-exponential fit and per-lesion statistics.

CLINICAL_REFERENCE.md defaults 12–16: ADC in mm²/s; log-linear least squares over b ≥ 50 s/mm²,
the closed two-point formula when only two b-values remain; the scanner's ADC map is used when
present (the reader has already converted it to mm²/s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bonelesion.config import config_to_dict
from bonelesion.errors import GeometryMismatchError, InputError, MissingAttributeError
from bonelesion.model.results import AdcResult, Provenance
from bonelesion.model.volume import Volume
from bonelesion.stages.base import (
    MaskSource,
    core_roi,
    mask_array_on,
    require_unit,
    series_label,
    warn_data_quality,
)
from bonelesion.stages.config import DwiAdcConfig
from bonelesion.units import IntensityUnit

__all__ = [
    "AdcMap",
    "DwiAdcStage",
    "fit_adc",
    "measure_adc",
    "select_b_values",
    "ADC_SOURCE_SCANNER",
    "ADC_SOURCE_FITTED",
]

logger = logging.getLogger(__name__)

STAGE = "dwi_adc"
ADC_SOURCE_SCANNER = "scanner"
ADC_SOURCE_FITTED = "fitted"
#: b-values closer than this are the same b-value (headers store e.g. 999.99 and 1000).
B_VALUE_ATOL_S_PER_MM2 = 1.0


@dataclass(frozen=True, kw_only=True)
class AdcMap:
    """An ADC map (mm²/s, NaN where not fitted) and how it was made."""

    volume: Volume
    source: str
    b_values_s_per_mm2: tuple[float, ...] = ()
    notes: tuple[str, ...] = ()
    masked_voxel_count: int = 0


def select_b_values(
    b_values_s_per_mm2: Sequence[float], config: DwiAdcConfig
) -> tuple[list[float], str]:
    """Choose the b-values to fit; return them with a note on the choice.

    All b ≥ ``config.b_min_s_per_mm2`` when at least two exist; otherwise the lowest and the
    highest b-value (the usual clinical b 0 / b 800–1000 pair).

    Raises
    ------
    InputError
        Fewer than two distinct b-values.
    """
    distinct = sorted(set(float(b) for b in b_values_s_per_mm2))
    if len(distinct) < 2:
        raise InputError(
            f"{STAGE}: ADC needs at least two distinct b-values, found "
            f"{distinct or 'none'} s/mm². Potential fix: export the b = 0 (or low-b) images "
            "together with the diffusion-weighted ones, or use the scanner's ADC map."
        )
    high = [b for b in distinct if b >= config.b_min_s_per_mm2]
    if len(high) >= 2:
        return high, f"log-linear fit over b ≥ {config.b_min_s_per_mm2:g} s/mm²: {high}"
    pair = [distinct[0], distinct[-1]]
    return pair, (
        f"fewer than two b-values ≥ {config.b_min_s_per_mm2:g} s/mm²; two-point formula with "
        f"b = {pair[0]:g} and {pair[1]:g} s/mm² (perfusion may raise the ADC slightly)"
    )


def _b_value(volume: Volume) -> float:
    """Return the b-value of a DWI volume (s/mm²); raise `MissingAttributeError` if none."""
    b = volume.series.b_value_s_per_mm2
    if b is None:
        raise MissingAttributeError(
            f"{STAGE}: DWI series {series_label(volume)} has no b-value (0018,9087 or the "
            "vendor tag). Potential fix: check the vendor b-value parsing for this series."
        )
    return b


def _log_signal_per_b(
    dwi: Sequence[Volume],
) -> tuple[dict[float, NDArray[np.float32]], list[str]]:
    """Mean log-signal per b-value (trace = geometric mean of directional images)."""
    groups: dict[float, list[Volume]] = {}
    for volume in dwi:
        b = _b_value(volume)
        key = next((k for k in groups if abs(k - b) <= B_VALUE_ATOL_S_PER_MM2), float(b))
        groups.setdefault(key, []).append(volume)
    notes = []
    logs: dict[float, NDArray[np.float32]] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for b, volumes in sorted(groups.items()):
            trace = [v for v in volumes if v.series.diffusion_direction is None]
            use = trace or volumes
            if not trace and len(volumes) > 1:
                notes.append(f"b = {b:g}: trace = geometric mean of {len(volumes)} directions")
            elif len(use) > 1:
                notes.append(f"b = {b:g}: geometric mean of {len(use)} trace/b0 images")
            acc = np.log(np.asarray(use[0].array, dtype=np.float32))
            for v in use[1:]:
                acc += np.log(np.asarray(v.array, dtype=np.float32))
            if len(use) > 1:
                acc /= np.float32(len(use))
            logs[b] = acc
    return logs, notes


def fit_adc(dwi: Sequence[Volume], *, config: DwiAdcConfig) -> AdcMap:
    """Voxel-wise ADC map from DWI volumes of several b-values (vectorised, no voxel loop).

    Parameters
    ----------
    dwi : sequence of Volume, (S, R, C), ARBITRARY
        One volume per b-value (trace or b0), or per direction (combined as the geometric mean,
        i.e. the trace); all on one grid, each with ``series.b_value_s_per_mm2``.
    config : DwiAdcConfig

    Returns
    -------
    AdcMap
        float32 map in mm²/s on the DWI grid; NaN at the noise floor or where a signal ≤ 0.

    Raises
    ------
    InputError
        No volume, a single b-value, a wrong intensity unit.
    MissingAttributeError
        A volume without b-value.
    GeometryMismatchError, FrameOfReferenceError
        Volumes on different grids.

    Notes
    -----
    With ln S_b = ln S0 − b·ADC, the least-squares slope over the fitted b-values is
    ADC = −Σ_b w_b ln S_b with w_b = (b − b̄) / Σ (b − b̄)²; for two b-values this is the
    closed formula ADC = ln(S_lo / S_hi) / (b_hi − b_lo). A voxel is masked when its signal
    at the lowest fitted b is below ``noise_floor_fraction`` × the 99th percentile of that
    image.
    """
    if not dwi:
        raise InputError(f"{STAGE}: no DWI volume given. Potential fix: select the DWI stacks.")
    start = time.perf_counter()
    reference = dwi[0]
    for volume in dwi:
        require_unit(volume, IntensityUnit.ARBITRARY, stage=STAGE, what="DWI image")
        reference.check_same_frame_of_reference(volume, what="DWI volume")
        if not volume.geometry_equal(reference):
            raise GeometryMismatchError(
                f"{STAGE}: DWI series {series_label(volume)} (b = "
                f"{volume.series.b_value_s_per_mm2}) is not on the grid of series "
                f"{series_label(reference)}: shapes {volume.shape} vs {reference.shape}. "
                "Potential fix: fit each acquisition separately."
            )
    b_fit, note = select_b_values([_b_value(v) for v in dwi], config)
    logs, notes = _log_signal_per_b(dwi)
    keys = [next(k for k in logs if abs(k - b) <= B_VALUE_ATOL_S_PER_MM2) for b in b_fit]
    b_arr = np.asarray(keys, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if len(keys) == 2:
            adc = (logs[keys[0]] - logs[keys[1]]) / np.float32(keys[1] - keys[0])
        else:
            weights = (b_arr - b_arr.mean()) / np.sum((b_arr - b_arr.mean()) ** 2)
            adc = np.zeros(reference.shape, dtype=np.float32)
            for w, k in zip(weights, keys, strict=True):
                adc -= np.float32(w) * logs[k]
        lowest = np.exp(logs[keys[0]])
        finite = np.isfinite(lowest)
        floor = (
            config.noise_floor_fraction * float(np.percentile(lowest[finite], 99.0))
            if finite.any() else np.inf
        )
        invalid = ~np.isfinite(adc) | ~(lowest >= floor)
    adc[invalid] = np.nan
    masked = int(invalid.sum())
    series = reference.series.replace(
        role="adc", b_value_s_per_mm2=None, diffusion_direction=None,
        image_type=("DERIVED", "SECONDARY", "ADC"), notes=reference.series.notes + (note,),
    )
    volume = reference.with_array(adc, intensity_unit=IntensityUnit.MM2_PER_S, series=series)
    logger.info("%s: fitted ADC on series %s (b %s) in %.3f s; %d voxels masked",
                STAGE, series_label(reference), b_fit, time.perf_counter() - start, masked)
    return AdcMap(volume=volume, source=ADC_SOURCE_FITTED, b_values_s_per_mm2=tuple(keys),
                  notes=(note, *notes), masked_voxel_count=masked)


def measure_adc(
    adc_map: AdcMap | Volume,
    mask: MaskSource,
    *,
    config: DwiAdcConfig,
    lesion_id: str = "",
) -> AdcResult:
    """ADC statistics of a lesion (mean, median, p10, p90, SD) in mm²/s.

    Parameters
    ----------
    adc_map : AdcMap or Volume (MM2_PER_S)
        A fitted map, or a scanner ADC map volume (source "scanner").
    mask : Volume or callable
        The lesion on the map's grid, or a function putting it on any grid.
    config : DwiAdcConfig

    Raises
    ------
    InputError
        Map not in mm²/s; every lesion voxel masked (NaN).
    GeometryMismatchError, EmptyMaskError
        From the mask checks.

    Notes
    -----
    Statistics are taken in the core ROI (mask eroded by the configured margin, as for CT);
    NaN voxels (noise floor) are excluded and counted in a warning; SD uses ddof = 1.
    """
    if isinstance(adc_map, Volume):
        adc_map = AdcMap(volume=adc_map, source=ADC_SOURCE_SCANNER)
    volume = adc_map.volume
    require_unit(volume, IntensityUnit.MM2_PER_S, stage=STAGE, what="ADC map")
    lesion = mask_array_on(volume, mask, stage=STAGE, lesion_id=lesion_id)
    warnings: list[str] = []
    core, _, _ = core_roi(lesion, volume, margin_voxels=config.erosion_margin_voxels,
                          margin_mm=config.erosion_margin_mm, stage=STAGE,
                          lesion_id=lesion_id, warnings=warnings)
    values = np.asarray(volume.array, dtype=np.float64)[core]
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError(
            f"{STAGE}: lesion {lesion_id!r}: all {values.size} ADC voxels on series "
            f"{series_label(volume)} are masked (noise floor or non-positive signal). "
            "Potential fix: check the DWI signal in the lesion or lower "
            "stages.dwi_adc.noise_floor_fraction."
        )
    if not finite.all():
        warn_data_quality(
            f"{STAGE}: lesion {lesion_id!r}: {int((~finite).sum())} of {values.size} ADC "
            f"voxels on series {series_label(volume)} are masked (noise floor) and excluded.",
            warnings,
        )
    values = values[finite]
    p10, median, p90 = np.percentile(values, [10.0, 50.0, 90.0])
    return AdcResult(
        lesion_id=lesion_id,
        series_instance_uid=volume.series.series_instance_uid,
        adc_source=adc_map.source,
        voxel_count=int(values.size),
        adc_mean_mm2_per_s=float(values.mean()),
        adc_median_mm2_per_s=float(median),
        adc_p10_mm2_per_s=float(p10),
        adc_p90_mm2_per_s=float(p90),
        adc_sd_mm2_per_s=float(np.std(values, ddof=1)) if values.size > 1 else float("nan"),
        b_values_s_per_mm2=adc_map.b_values_s_per_mm2,
        warnings=tuple(warnings),
        provenance=Provenance(
            stage=STAGE,
            series_instance_uids=(volume.series.series_instance_uid,),
            parameters={**config_to_dict(config), "notes": list(adc_map.notes)},
        ),
    )


class DwiAdcStage:
    """Thin stage wrapper: scanner map when given (and preferred), else a fit of the DWI."""

    name = STAGE

    def __init__(self, config: DwiAdcConfig) -> None:
        self.config = config

    def adc_map(self, *, scanner_adc: Volume | None = None,
                dwi: Sequence[Volume] = ()) -> AdcMap:
        """Return the ADC map to measure on: the scanner's (if preferred and present) or a fit."""
        if scanner_adc is not None and (self.config.prefer_scanner_adc or not dwi):
            return AdcMap(volume=scanner_adc, source=ADC_SOURCE_SCANNER)
        return fit_adc(dwi, config=self.config)

    def run(
        self,
        mask: MaskSource,
        *,
        scanner_adc: Volume | None = None,
        dwi: Sequence[Volume] = (),
        lesion_id: str = "",
    ) -> AdcResult:
        """Measure one lesion; see `fit_adc` and `measure_adc`."""
        return measure_adc(self.adc_map(scanner_adc=scanner_adc, dwi=dwi), mask,
                           config=self.config, lesion_id=lesion_id)
