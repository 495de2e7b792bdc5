"""MR chemical shift of a lesion: in/opposed-phase signal ratio and Dixon fat fraction.

CLINICAL_REFERENCE.md defaults 6–11: SIR = SI_OP / SI_IP, drop % = (1 − SIR) × 100,
fat fraction FF = F / (W + F); echo times are checked against the field strength.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bonelesion.config import config_to_dict
from bonelesion.errors import InputError
from bonelesion.model.results import ChemicalShiftResult, Provenance
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
from bonelesion.stages.config import ChemicalShiftConfig
from bonelesion.units import IntensityUnit

__all__ = [
    "DixonImages",
    "ChemicalShiftStage",
    "measure_chemical_shift",
    "check_echo_times",
    "MaskSource",
]

logger = logging.getLogger(__name__)

STAGE = "mr_chemical_shift"


@dataclass(frozen=True, kw_only=True)
class DixonImages:
    """The chemical-shift images of one acquisition (any may be on its own grid).

    ``in_phase`` and ``opposed_phase`` are required by the stage; ``water`` and ``fat``
    together give the fat fraction.
    """

    in_phase: Volume | None
    opposed_phase: Volume | None
    water: Volume | None = None
    fat: Volume | None = None


def _mean_in(
    image: Volume,
    mask: MaskSource,
    *,
    lesion_id: str,
    what: str,
    config: ChemicalShiftConfig,
    warnings: list[str],
) -> tuple[float, int]:
    """Mean signal of ``image`` in the core ROI of the lesion on its grid, and voxel count."""
    require_unit(image, IntensityUnit.ARBITRARY, stage=STAGE, what=what)
    array = mask_array_on(image, mask, stage=STAGE, lesion_id=lesion_id)
    core = core_roi(array, image, margin_voxels=config.erosion_margin_voxels,
                    margin_mm=config.erosion_margin_mm, stage=STAGE,
                    lesion_id=lesion_id, warnings=warnings).core
    values = np.asarray(image.array, dtype=np.float64)[core]
    return float(values.mean()), int(values.size)


def check_echo_times(images: DixonImages, config: ChemicalShiftConfig) -> list[str]:
    """Messages for echo times that are not in/opposed phase at the series' field strength.

    Uses the configured windows (CLINICAL_REFERENCE.md default 10). Returns an empty list
    when both echoes are where physics puts them.
    """
    problems: list[str] = []
    pairs = (("in-phase", images.in_phase, "in_phase_te_ms"),
             ("opposed-phase", images.opposed_phase, "opposed_phase_te_ms"))
    for label, image, attr in pairs:
        if image is None:
            continue
        te = image.series.echo_time_ms
        b0 = image.series.magnetic_field_strength_t
        if te is None or b0 is None:
            problems.append(
                f"{STAGE}: {label} series {series_label(image)} lacks "
                f"{'EchoTime' if te is None else 'MagneticFieldStrength'}; the echo could not "
                "be checked to be " + label + "."
            )
            continue
        windows = [w for w in config.echo_time_windows
                   if abs(w.field_strength_t - b0) <= config.field_strength_tolerance_t]
        if not windows:
            problems.append(
                f"{STAGE}: no echo-time window is configured for {b0:g} T (series "
                f"{series_label(image)}); the {label} echo (TE {te:g} ms) was not checked."
            )
            continue
        low, high = getattr(windows[0], attr)
        if not low <= te <= high:
            problems.append(
                f"{STAGE}: {label} series {series_label(image)} has TE {te:g} ms, outside the "
                f"{label} window {low:g}–{high:g} ms at {b0:g} T; the echoes may be swapped or "
                "not in/opposed phase, which biases the signal ratio."
            )
    return problems


def measure_chemical_shift(
    images: DixonImages,
    mask: MaskSource,
    *,
    config: ChemicalShiftConfig,
    reference_mask: MaskSource | None = None,
    lesion_id: str = "",
    noise_sd: NoiseEstimate | None = None,
) -> ChemicalShiftResult:
    """Signal-intensity ratio, signal drop and (with water/fat) fat fraction of a lesion.

    Parameters
    ----------
    images : DixonImages
        In-phase and opposed-phase magnitude images (ARBITRARY unit), optional water and fat.
    mask : Volume or callable
        The lesion on the images' grid, or a function putting it on any grid (the same
        lesion rasterised on each image's grid).
    config : ChemicalShiftConfig
    reference_mask : Volume or callable, optional
        Reference (normal) marrow ROI, e.g. a shell around the lesion
        (`bonelesion.stages.base.reference_shell`): its median in-phase and opposed-phase
        signal, the lesion's in-phase signal relative to it, and the normalised ratio
        SIR_lesion / SIR_reference (Disler et al., AJR 1997) are reported.
    lesion_id : str
    noise_sd : callable, optional
        Noise SD of an image (None: not estimable); default: from the image's own
        background. Pass it when ``images`` are crops of larger images.

    Returns
    -------
    ChemicalShiftResult

    Raises
    ------
    InputError
        A missing in-phase or opposed-phase echo, a wrong intensity unit, or a zero in-phase
        mean signal.
    GeometryMismatchError, EmptyMaskError
        From the mask checks.

    Notes
    -----
    SIR = mean(OP) / mean(IP) over the lesion, drop % = (1 − SIR) × 100. The SNR of each image
    is the lesion mean over the background noise SD of that image (`background_noise_sd`,
    None when not estimable); the reference signal is a median (robust to the cortex or
    disc voxels a shell may catch).
    The fat fraction is the ratio of means, mean(F) / (mean(W) + mean(F)), not the mean of
    voxel-wise ratios: voxel ratios are unstable where W + F is near the noise floor, and the
    ratio of means is what a radiologist's ROI on the W and F images gives. An echo time not
    in/opposed phase for the field strength gives a `DataQualityWarning`.
    """
    if images.in_phase is None or images.opposed_phase is None:
        present = images.in_phase or images.opposed_phase
        missing = "in-phase" if images.in_phase is None else "opposed-phase"
        raise InputError(
            f"{STAGE}: lesion {lesion_id!r}: the {missing} echo is missing (other echo: series "
            f"{series_label(present) if present is not None else '(none)'}); expected both an "
            "in-phase and an opposed-phase image. Potential fix: export both echoes of the "
            "dual-echo series, or check the echo roles assigned by the reader."
        )
    warnings: list[str] = []
    for message in check_echo_times(images, config):
        warn_data_quality(message, warnings)
    ip_mean, voxels = _mean_in(images.in_phase, mask, lesion_id=lesion_id, what="in-phase image",
                          config=config, warnings=warnings)
    op_mean, _ = _mean_in(images.opposed_phase, mask, lesion_id=lesion_id,
                          what="opposed-phase image",
                          config=config, warnings=warnings)
    if not ip_mean > 0:
        raise InputError(
            f"{STAGE}: lesion {lesion_id!r}: mean in-phase signal on series "
            f"{series_label(images.in_phase)} is {ip_mean:g}, expected > 0. Potential fix: "
            "check that the ROI lies in tissue, not background."
        )
    sir = op_mean / ip_mean
    fat_fraction = None
    uids = [images.in_phase.series.series_instance_uid,
            images.opposed_phase.series.series_instance_uid]
    w_mean = f_mean = None
    if images.water is not None and images.fat is not None:
        w_mean, _ = _mean_in(images.water, mask, lesion_id=lesion_id, what="water image",
                             config=config, warnings=warnings)
        f_mean, _ = _mean_in(images.fat, mask, lesion_id=lesion_id, what="fat image",
                             config=config, warnings=warnings)
        if w_mean + f_mean > 0:
            fat_fraction = f_mean / (w_mean + f_mean)
        else:
            warn_data_quality(
                f"{STAGE}: lesion {lesion_id!r}: water + fat mean signal is "
                f"{w_mean + f_mean:g}; fat fraction not computed.", warnings)
        uids += [images.water.series.series_instance_uid, images.fat.series.series_instance_uid]
    elif (images.water is None) != (images.fat is None):
        warn_data_quality(
            f"{STAGE}: lesion {lesion_id!r}: only the "
            f"{'water' if images.water is not None else 'fat'} image is present; the fat "
            "fraction needs both.", warnings)

    def snr(image: Volume | None, signal: float | None) -> float | None:
        if image is None or signal is None:
            return None
        return signal_to_noise(image, signal, background_fraction=config.noise_background_fraction,
                               min_voxels=config.noise_min_background_voxels,
                               noise_sd=noise_sd)

    normalised = ref_ip = ref_op = ref_w = relative = w_relative = None
    ref_voxels = None
    if reference_mask is not None:
        ref_ip_m = reference_median(images.in_phase, reference_mask, stage=STAGE,
                                    lesion_id=lesion_id)
        ref_op_m = reference_median(images.opposed_phase, reference_mask, stage=STAGE,
                                    lesion_id=lesion_id)
        if ref_ip_m is None or ref_op_m is None:
            warn_data_quality(
                f"{STAGE}: lesion {lesion_id!r}: the reference marrow ROI holds no voxel on the "
                f"in-phase / opposed-phase grid (series {series_label(images.in_phase)}); the "
                "lesion signal could not be judged against marrow.", warnings)
        else:
            (ref_ip, ref_voxels), (ref_op, _) = ref_ip_m, ref_op_m
            if ref_ip > 0:
                relative = ip_mean / ref_ip
            ref_w_m = (reference_median(images.water, reference_mask, stage=STAGE,
                                        lesion_id=lesion_id)
                       if images.water is not None and w_mean is not None else None)
            if ref_w_m is not None and w_mean is not None:
                ref_w = ref_w_m[0]
                if ref_w > 0:
                    w_relative = w_mean / ref_w
            if ref_ip > 0 and ref_op > 0:
                normalised = sir / (ref_op / ref_ip)
            else:
                warn_data_quality(
                    f"{STAGE}: lesion {lesion_id!r}: reference ROI signal is not positive "
                    f"(IP {ref_ip:g}, OP {ref_op:g}); normalised ratio not computed.", warnings)
    return ChemicalShiftResult(
        lesion_id=lesion_id,
        in_phase_series_uid=images.in_phase.series.series_instance_uid,
        opposed_phase_series_uid=images.opposed_phase.series.series_instance_uid,
        voxel_count=voxels,
        signal_in_phase_mean=ip_mean,
        signal_opposed_phase_mean=op_mean,
        chemical_shift_ratio=sir,
        signal_drop_pct=(1.0 - sir) * 100.0,
        fat_fraction=fat_fraction,
        normalised_chemical_shift_ratio=normalised,
        echo_time_in_phase_ms=images.in_phase.series.echo_time_ms,
        echo_time_opposed_phase_ms=images.opposed_phase.series.echo_time_ms,
        magnetic_field_strength_t=images.in_phase.series.magnetic_field_strength_t,
        signal_water_mean=w_mean,
        signal_fat_mean=f_mean,
        snr_in_phase=snr(images.in_phase, ip_mean),
        snr_opposed_phase=snr(images.opposed_phase, op_mean),
        snr_water=snr(images.water, w_mean),
        snr_fat=snr(images.fat, f_mean),
        reference_voxel_count=ref_voxels,
        reference_signal_in_phase=ref_ip,
        reference_signal_opposed_phase=ref_op,
        reference_signal_water=ref_w,
        in_phase_relative_to_reference=relative,
        water_relative_to_reference=w_relative,
        warnings=tuple(warnings),
        provenance=Provenance(stage=STAGE, series_instance_uids=tuple(uids),
                              parameters=config_to_dict(config)),
    )


class ChemicalShiftStage:
    """Thin stage wrapper around `measure_chemical_shift`."""

    name = STAGE

    def __init__(self, config: ChemicalShiftConfig) -> None:
        self.config = config

    def run(
        self,
        images: DixonImages,
        mask: MaskSource,
        *,
        reference_mask: MaskSource | None = None,
        lesion_id: str = "",
    ) -> ChemicalShiftResult:
        """Measure one lesion; see `measure_chemical_shift`."""
        return measure_chemical_shift(images, mask, config=self.config,
                                      reference_mask=reference_mask, lesion_id=lesion_id)
