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
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.config import config_to_dict
from bonelesion.errors import GeometryMismatchError, InputError, MissingAttributeError
from bonelesion.model.results import AdcResult, Provenance
from bonelesion.model.volume import Volume
from bonelesion.stages.base import (
    MaskSource,
    NoiseEstimate,
    core_roi,
    mask_array_on,
    reference_median,
    require_unit,
    series_label,
    signal_to_noise,
    warn_data_quality,
)
from bonelesion.stages.config import DwiAdcConfig
from bonelesion.units import IntensityUnit

__all__ = [
    "AdcMap",
    "DwiAdcStage",
    "fit_adc",
    "measure_adc",
    "scanner_adc_map",
    "select_b_values",
    "adc_map_degenerate",
    "lowest_b_image",
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
    degenerate: bool | None = None
    """~0 everywhere or fitted from identical volumes; None = not yet checked."""
    source_images: tuple[Volume, ...] = ()
    """DWI images the map was made from (or that belong to a scanner map), for signal checks."""


def adc_map_degenerate(volume: Volume, *, tolerance_mm2_per_s: float) -> bool:
    """Tell whether an ADC map is ~0 everywhere (every finite value within tolerance of 0).

    Identical b-value source volumes give ADC 0 in every voxel, and so does a scanner map
    exported from them. A constant non-zero map cannot be told from a uniform phantom by its
    values; `fit_adc` flags identical source volumes directly.

    Examples
    --------
    >>> from bonelesion.model.volume import Volume
    >>> from bonelesion.units import IntensityUnit
    >>> flat = Volume(array=np.zeros((2, 3, 3)), spacing_mm=(1.0, 1.0, 1.0),
    ...               origin_lps_mm=(0.0, 0.0, 0.0), direction_lps=np.eye(3),
    ...               intensity_unit=IntensityUnit.MM2_PER_S)
    >>> adc_map_degenerate(flat, tolerance_mm2_per_s=1e-5)
    True
    """
    values = np.asarray(volume.array, dtype=np.float64)
    values = values[np.isfinite(values)]
    return values.size == 0 or float(np.abs(values).max()) <= tolerance_mm2_per_s


def lowest_b_image(dwi: Sequence[Volume]) -> Volume | None:
    """Return the DWI image at the lowest b-value (trace or b0 before directional images)."""
    with_b = [v for v in dwi if v.series.b_value_s_per_mm2 is not None]
    if not with_b:
        return None
    low = min(float(v.series.b_value_s_per_mm2) for v in with_b)  # type: ignore[arg-type]
    at_low = [v for v in with_b
              if abs(float(v.series.b_value_s_per_mm2) - low) <= B_VALUE_ATOL_S_PER_MM2]  # type: ignore[arg-type]
    trace = [v for v in at_low if v.series.diffusion_direction is None]
    return (trace or at_low)[0]


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
    identical = all(np.array_equal(logs[keys[0]], logs[k], equal_nan=True) for k in keys[1:])
    degenerate = identical or adc_map_degenerate(
        volume, tolerance_mm2_per_s=config.degenerate_max_abs_mm2_per_s)
    return AdcMap(volume=volume, source=ADC_SOURCE_FITTED, b_values_s_per_mm2=tuple(keys),
                  notes=(note, *notes), masked_voxel_count=masked, degenerate=degenerate,
                  source_images=tuple(dwi))


def scanner_adc_map(volume: Volume, dwi: Sequence[Volume] = ()) -> AdcMap:
    """Wrap a scanner ADC map with the DWI images of its acquisition (b-values, low-b signal).

    Only DWI images in the map's frame of reference are taken (a different frame cannot be
    the same acquisition).
    """
    same = tuple(v for v in dwi if v.series.frame_of_reference_uid
                 in ("", volume.series.frame_of_reference_uid))
    b_values = tuple(sorted({float(v.series.b_value_s_per_mm2) for v in same
                             if v.series.b_value_s_per_mm2 is not None}))
    notes = (f"b-values {list(b_values)} s/mm² from the DWI series of the study",) if same else ()
    return AdcMap(volume=volume, source=ADC_SOURCE_SCANNER, b_values_s_per_mm2=b_values,
                  notes=notes, source_images=same)


def measure_adc(
    adc_map: AdcMap | Volume,
    mask: MaskSource,
    *,
    config: DwiAdcConfig,
    lesion_id: str = "",
    reference_mask: MaskSource | None = None,
    noise_sd: NoiseEstimate | None = None,
) -> AdcResult:
    """ADC statistics of a lesion (mean, median, p10, p90, SD) in mm²/s, with reliability.

    Parameters
    ----------
    adc_map : AdcMap or Volume (MM2_PER_S)
        A fitted map, or a scanner ADC map volume (source "scanner").
    mask : Volume or callable
        The lesion on the map's grid, or a function putting it on any grid.
    config : DwiAdcConfig
    lesion_id : str
    reference_mask : Volume or callable, optional
        Reference marrow ROI (e.g. a shell around the lesion): with the map's source DWI
        images, the lesion's lowest-b signal is reported relative to its median there.
    noise_sd : callable, optional
        Noise SD of a source image (None: not estimable); default: from the image's own
        background. Pass it when the map and its source images are crops.

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
    A map that is ~0 or constant everywhere (`adc_map_degenerate`) is measured, flagged
    (``map_degenerate``) and warned about. The lowest-b image of ``adc_map.source_images``
    gives the lesion's low-b signal, its SNR against the background noise and its ratio to
    the reference marrow median (T2 black-out of sclerotic lesions; CLINICAL_REFERENCE §C2).
    """
    if isinstance(adc_map, Volume):
        adc_map = AdcMap(volume=adc_map, source=ADC_SOURCE_SCANNER)
    volume = adc_map.volume
    require_unit(volume, IntensityUnit.MM2_PER_S, stage=STAGE, what="ADC map")
    lesion = mask_array_on(volume, mask, stage=STAGE, lesion_id=lesion_id)
    warnings: list[str] = []
    core = core_roi(lesion, volume, margin_voxels=config.erosion_margin_voxels,
                    margin_mm=config.erosion_margin_mm, stage=STAGE,
                    lesion_id=lesion_id, warnings=warnings).core
    values = np.asarray(volume.array, dtype=np.float64)[core]
    degenerate = adc_map.degenerate
    if degenerate is None:
        degenerate = adc_map_degenerate(
            volume, tolerance_mm2_per_s=config.degenerate_max_abs_mm2_per_s)
    if degenerate:
        warn_data_quality(
            f"{STAGE}: lesion {lesion_id!r}: the {adc_map.source} ADC map of series "
            f"{series_label(volume)} is ~0 everywhere (all values within "
            f"{config.degenerate_max_abs_mm2_per_s:g} mm²/s of 0) or was fitted from identical "
            "source volumes; its ADC is not usable. Potential fix: check that the DWI series "
            "holds distinct b-value images.", warnings)
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
    low_b = _low_b_signal(adc_map, mask, reference_mask, config=config, lesion_id=lesion_id,
                          warnings=warnings, noise_sd=noise_sd)
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
        map_degenerate=bool(degenerate),
        **low_b,
        warnings=tuple(warnings),
        provenance=Provenance(
            stage=STAGE,
            series_instance_uids=(volume.series.series_instance_uid,),
            parameters={**config_to_dict(config), "notes": list(adc_map.notes)},
        ),
    )


def _low_b_signal(adc_map: AdcMap, mask: MaskSource, reference: MaskSource | None, *,
                  config: DwiAdcConfig, lesion_id: str, warnings: list[str],
                  noise_sd: NoiseEstimate | None) -> dict[str, Any]:
    """AdcResult fields of the lesion's signal on the lowest-b source image (empty if none)."""
    image = lowest_b_image(adc_map.source_images)
    if image is None:
        return {}
    lesion = mask_array_on(image, mask, stage=STAGE, lesion_id=lesion_id)
    core = core_roi(lesion, image, margin_voxels=config.erosion_margin_voxels,
                    margin_mm=config.erosion_margin_mm, stage=STAGE, lesion_id=lesion_id,
                    warnings=[]).core  # a fall-back is warned about on the map already
    signal = float(np.asarray(image.array, dtype=np.float64)[core].mean())
    out: dict[str, Any] = {
        "low_b_value_s_per_mm2": image.series.b_value_s_per_mm2,
        "signal_low_b_mean": signal,
        "snr_low_b": signal_to_noise(image, signal,
                                     background_fraction=config.noise_background_fraction,
                                     min_voxels=config.noise_min_background_voxels,
                                     noise_sd=noise_sd),
    }
    if reference is not None:
        ref = reference_median(image, reference, stage=STAGE, lesion_id=lesion_id)
        if ref is None:
            warn_data_quality(
                f"{STAGE}: lesion {lesion_id!r}: the reference marrow ROI holds no voxel on "
                f"DWI series {series_label(image)}; the low-b signal could not be judged "
                "against marrow.", warnings)
        else:
            out["reference_signal_low_b"], out["reference_voxel_count"] = ref
            if ref[0] > 0:
                out["low_b_relative_to_reference"] = signal / ref[0]
    return out


class DwiAdcStage:
    """Thin stage wrapper: scanner map when given (and preferred), else a fit of the DWI."""

    name = STAGE

    def __init__(self, config: DwiAdcConfig) -> None:
        self.config = config

    def adc_map(self, *, scanner_adc: Volume | None = None,
                dwi: Sequence[Volume] = ()) -> AdcMap:
        """Return the ADC map to measure on: the scanner's (if preferred and present) or a fit."""
        if scanner_adc is not None and (self.config.prefer_scanner_adc or not dwi):
            return scanner_adc_map(scanner_adc, dwi)
        return fit_adc(dwi, config=self.config)

    def run(
        self,
        mask: MaskSource,
        *,
        scanner_adc: Volume | None = None,
        dwi: Sequence[Volume] = (),
        lesion_id: str = "",
        reference_mask: MaskSource | None = None,
    ) -> AdcResult:
        """Measure one lesion; see `fit_adc` and `measure_adc`."""
        return measure_adc(self.adc_map(scanner_adc=scanner_adc, dwi=dwi), mask,
                           config=self.config, lesion_id=lesion_id,
                           reference_mask=reference_mask)
