"""Write a complete phantom study (CT + Dixon + DWI/ADC) and its truth.

Layout of ``out_dir``::

    truth.json          StudyTruth (see `bonelesion.phantom.truth`)
    rois.csv            lesion_id, centre (LPS mm), radius, study UID, treated
    DICOM/<NNN>_<description>/IMxxxx.dcm   one folder per series

Signal models (exact; no T2* decay, no relaxation weighting beyond a per-tissue scale):

* CT: stored = round(HU + noise) + 1024, RescaleIntercept −1024, slope 1.
* Dixon (two-point): IP = S·(W + F), OP = S·|W − F|, water = S·W, fat = S·F with
  W = 1 − FF, F = FF, S = `DIXON_FULL_SCALE` · mr_signal_scale.
* DWI (fat-suppressed, trace-weighted): S(b) = `DWI_S0_FULL_SCALE` · scale · (1 − FF) ·
  exp(−b·ADC) for b in `DWI_B_VALUES_S_PER_MM2`; the scanner-style ADC map is the voxel-wise
  log-linear least-squares fit over all b-values of the *stored* DWI values, in 1e-6 mm²/s.

A voxel's value is the mixture of its tissues' values weighted by their volume fractions
(supersampled), so only boundary voxels show partial volume.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from bonelesion.errors import InputError
from bonelesion.phantom.anatomy import (
    DEFAULT_LESIONS,
    LESION_LABEL_0,
    TISSUES,
    Grid,
    LesionSpec,
    centred_grid,
    check_lesions,
    chemical_shift_ratio,
    tissue_fractions,
)
from bonelesion.phantom.dicom_writer import (
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    ENHANCED_MR_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SeriesSpec,
    StackSpec,
    WriteContext,
    enhanced_image_type,
    uid_prefix,
    write_series,
)
from bonelesion.phantom.truth import (
    LUMBAR_TRUTH_SCHEMA_VERSION,
    ROIS_FILENAME,
    TRUTH_FILENAME,
    AcquisitionTruth,
    LesionTruth,
    NoiseTruth,
    SeriesTruth,
    StudyTruth,
    TissueTruth,
    write_rois_csv,
    write_truth,
)
from bonelesion.phantom.vendor_style import SUPPORTED_VENDORS, VENDOR_STYLES
from bonelesion.units import FAT_WATER_SHIFT_PPM, GYROMAGNETIC_RATIO_MHZ_PER_T

__all__ = [
    "write_study",
    "write_ct_series",
    "echo_times_ms",
    "fit_adc_map",
    "ct_grid",
    "dixon_grid",
    "dwi_grid",
    "DIXON_FULL_SCALE",
    "DWI_S0_FULL_SCALE",
    "DWI_B_VALUES_S_PER_MM2",
    "CT_NOISE_SD_HU",
    "DIXON_NOISE_SD",
    "DWI_NOISE_SD",
    "DICOM_DIRNAME",
]

logger = logging.getLogger(__name__)

GENERATOR = "bonelesion.phantom/1"
DICOM_DIRNAME = "DICOM"
#: Stored in-phase value of a tissue with mr_signal_scale 1 (max ~2500: fine quantisation).
DIXON_FULL_SCALE = 2500.0
#: Stored b = 0 value of fat-free tissue with mr_signal_scale 1.
DWI_S0_FULL_SCALE = 3000.0
DWI_B_VALUES_S_PER_MM2: tuple[float, ...] = (0.0, 50.0, 400.0, 800.0)
#: Voxels whose stored b = 0 value is below this get ADC 0 (scanner background mask).
ADC_MASK_MIN_S0 = 100.0
ADC_MAP_UNITS_MM2_PER_S = 1.0e-6
CT_NOISE_SD_HU = 10.0
DIXON_NOISE_SD = 10.0
DWI_NOISE_SD = 8.0
CT_RESCALE_INTERCEPT_HU = -1024.0
_CT_MAX_STORED = 4095  # BitsStored 12
_SUPERSAMPLING = 2
_DIXON_TR_MS, _DIXON_FLIP_DEG = 6.8, 10.0
_DWI_TE_MS, _DWI_TR_MS = 62.0, 5200.0


def echo_times_ms(field_strength_t: float) -> tuple[float, float]:
    """Opposed- and in-phase echo times for a field strength.

    Notes
    -----
    Δf = 3.4 ppm · 42.577 MHz/T · B0; TE_op = 1 / (2·Δf), TE_in = 1 / Δf. At 1.5 T this gives
    2.30 / 4.61 ms, at 3 T 1.15 / 2.30 ms (CLINICAL_REFERENCE.md §B1).
    """
    shift_hz = FAT_WATER_SHIFT_PPM * GYROMAGNETIC_RATIO_MHZ_PER_T * field_strength_t
    in_phase_ms = 1000.0 / shift_hz
    return in_phase_ms / 2.0, in_phase_ms


def _direction(columns: Sequence[Sequence[float]]) -> NDArray[np.float64]:
    return np.asarray(columns, dtype=np.float64).T


#: Axial: slices along +S, rows along +P, columns along +L (IOP 1\\0\\0\\0\\1\\0).
_AXIAL = _direction([(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)])


def ct_grid() -> Grid:
    """Axial CT grid: 42 slices × 128 × 128, 2.5 × 1.5 × 1.5 mm, slices along +S."""
    return centred_grid(shape=(42, 128, 128), spacing_mm=(2.5, 1.5, 1.5),
                        center_lps_mm=(0.0, 5.0, 0.0), direction=_AXIAL)


_SAGITTAL = _direction([(-1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)])


def dixon_grid() -> Grid:
    """Sagittal Dixon grid: 22 slices (R→L reversed: normal −L) × 96 × 96, 2.5 × 1.25 mm."""
    return centred_grid(shape=(22, 96, 96), spacing_mm=(2.5, 1.25, 1.25),
                        center_lps_mm=(0.0, 12.0, 0.0), direction=_SAGITTAL)


#: Obliquity of the DWI slab: rotation about the S axis.
DWI_OBLIQUE_DEG = 10.0


def dwi_grid() -> Grid:
    """Oblique-sagittal DWI grid (10° about S): 22 × 80 × 80, 2.5 × 1.5 × 1.5 mm."""
    a = math.radians(DWI_OBLIQUE_DEG)
    rot = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0],
                    [0.0, 0.0, 1.0]])
    return centred_grid(shape=(22, 80, 80), spacing_mm=(2.5, 1.5, 1.5),
                        center_lps_mm=(0.0, 12.0, 0.0), direction=rot @ _SAGITTAL)


# ------------------------------------------------------------------------------ render
@dataclass(frozen=True)
class _Props:
    hu: NDArray[np.float64]
    ff: NDArray[np.float64]
    adc: NDArray[np.float64]
    scale: NDArray[np.float64]


def _props(lesions: Sequence[LesionSpec]) -> _Props:
    n = LESION_LABEL_0 + len(lesions)
    hu, ff, adc, scale = (np.zeros(n) for _ in range(4))
    for t in TISSUES:
        hu[t.label], ff[t.label], adc[t.label], scale[t.label] = (
            t.attenuation_hu, t.fat_fraction, t.adc_mm2_per_s, t.mr_signal_scale)
    for i, les in enumerate(lesions):
        j = LESION_LABEL_0 + i
        hu[j], ff[j], adc[j], scale[j] = (
            les.attenuation_hu, les.fat_fraction, les.adc_mm2_per_s, les.mr_signal_scale)
    return _Props(hu, ff, adc, scale)


def _mix(fractions: NDArray[np.float64], labels: NDArray[np.int64],
         values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Σ fraction · value over the labels present (exact where one fraction is 1)."""
    out = np.zeros(fractions.shape[1:])
    for frac, lab in zip(fractions, labels, strict=True):
        out += frac * values[lab]
    return out


def _render_ct(grid: Grid, lesions: Sequence[LesionSpec], props: _Props) -> NDArray[np.float64]:
    out = np.empty(grid.shape)
    for k in range(grid.shape[0]):
        fr, lab = tissue_fractions(grid, lesions, slice_index=k, supersampling=_SUPERSAMPLING)
        out[k] = _mix(fr, lab, props.hu)
    return out


def _render_dixon(grid: Grid, lesions: Sequence[LesionSpec], props: _Props
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    water = np.empty(grid.shape)
    fat = np.empty(grid.shape)
    w_values = DIXON_FULL_SCALE * props.scale * (1.0 - props.ff)
    f_values = DIXON_FULL_SCALE * props.scale * props.ff
    for k in range(grid.shape[0]):
        fr, lab = tissue_fractions(grid, lesions, slice_index=k, supersampling=_SUPERSAMPLING)
        water[k] = _mix(fr, lab, w_values)
        fat[k] = _mix(fr, lab, f_values)
    return water, fat


def _render_dwi(grid: Grid, lesions: Sequence[LesionSpec], props: _Props
                ) -> NDArray[np.float64]:
    out = np.empty((len(DWI_B_VALUES_S_PER_MM2), *grid.shape))
    s0 = DWI_S0_FULL_SCALE * props.scale * (1.0 - props.ff)
    for k in range(grid.shape[0]):
        fr, lab = tissue_fractions(grid, lesions, slice_index=k, supersampling=_SUPERSAMPLING)
        for i, b in enumerate(DWI_B_VALUES_S_PER_MM2):
            out[i, k] = _mix(fr, lab, s0 * np.exp(-b * props.adc))
    return out


def _to_uint16(values: NDArray[np.float64], *, max_value: int = 65535) -> NDArray[np.uint16]:
    return np.clip(np.rint(values), 0, max_value).astype(np.uint16)


def fit_adc_map(dwi_stored: NDArray[np.uint16]) -> NDArray[np.uint16]:
    """Scanner-style ADC map (1e-6 mm²/s) from stored DWI stacks, b along axis 0.

    Notes
    -----
    Log-linear least squares over all b-values: ADC = −Σ(b−b̄)(ln S − mean ln S) / Σ(b−b̄)²,
    with S clipped to ≥ 1; voxels with b = 0 signal < `ADC_MASK_MIN_S0` get 0; the map is
    clipped to [0, 65535] after rounding.
    """
    b = np.asarray(DWI_B_VALUES_S_PER_MM2)
    log_s = np.log(np.maximum(dwi_stored.astype(np.float64), 1.0))
    bc = b - b.mean()
    slope = np.tensordot(bc, log_s - log_s.mean(axis=0), axes=(0, 0)) / float(bc @ bc)
    adc = -slope / ADC_MAP_UNITS_MM2_PER_S
    adc[dwi_stored[0] < ADC_MASK_MIN_S0] = 0.0
    return _to_uint16(adc)


# ------------------------------------------------------------------------------- write
def _check_args(out_dir: Path, vendor: str, seed: int) -> None:
    if vendor not in SUPPORTED_VENDORS:
        raise InputError(
            f"Phantom {out_dir}: vendor {vendor!r} is not supported; expected one of "
            f"{list(SUPPORTED_VENDORS)}. Potential fix: pass --vendor siemens, ge or philips."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(
            f"Phantom {out_dir}: seed must be a non-negative integer, found {seed!r}. "
            "Potential fix: pass --seed 0 (or any integer ≥ 0)."
        )
    check_output_folder(out_dir, "Phantom")


def check_output_folder(out_dir: Path, what: str) -> None:
    """Refuse an output path that is a file, or a folder that is not empty.

    Raises
    ------
    InputError
        Naming ``what`` (the phantom kind) and the path.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(
            f"{what}: output path {out_dir} exists and is not a folder. Potential fix: "
            "choose a new folder name."
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise InputError(
            f"{what}: output folder {out_dir} is not empty; expected an empty or new folder "
            "(files of another study would mix with this one). Potential fix: choose a new "
            "folder or empty it."
        )


def _lesion_key(lesions: Sequence[LesionSpec]) -> str:
    text = repr([(les.lesion_id, les.center_lps_mm, les.radius_mm, les.attenuation_hu,
                  les.fat_fraction, les.adc_mm2_per_s, les.mr_signal_scale,
                  les.expected_nature.value, les.kind, les.treated) for les in lesions])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grid_truth(grid: Grid) -> dict[str, object]:
    return {
        "shape": tuple(int(n) for n in grid.shape),
        "spacing_mm": tuple(float(s) for s in grid.spacing_mm),
        "origin_lps_mm": tuple(float(o) for o in grid.origin_lps_mm),
        "direction_lps": tuple(tuple(float(v) for v in row) for row in grid.direction_lps),
    }


def write_study(
    out_dir: str | Path,
    *,
    vendor: str = "siemens",
    seed: int = 0,
    enhanced: bool = False,
    compressed: bool = False,
    noise_free: bool = False,
    lesions: Sequence[LesionSpec] | None = None,
    field_strength_t: float | None = None,
    min_lesion_radius_mm: float | None = None,
) -> StudyTruth:
    """Write one complete phantom study as DICOM, with ``truth.json`` and ``rois.csv``.

    Parameters
    ----------
    out_dir : str or Path
        New or empty folder.
    vendor : {"siemens", "ge", "philips"}
        Header style (manufacturer strings, ImageType tokens, private diffusion tags).
    seed : int
        Seeds the noise and every UID (same seed → same bytes; other seed → other UIDs).
    enhanced : bool
        Write Enhanced CT / Enhanced MR multi-frame objects (one per stack).
    compressed : bool
        Encode pixel data losslessly: CT JPEG-LS, in/opposed-phase RLE, water/fat and DWI
        JPEG 2000, ADC JPEG-LS.
    noise_free : bool
        Omit the Gaussian noise (then lesion cores hold their nominal values exactly).
    lesions : sequence of LesionSpec, optional
        Lesions to place; default `DEFAULT_LESIONS`.
    field_strength_t : float, optional
        MR field strength; default 1.5 T (Siemens, Philips) or 3 T (GE).
    min_lesion_radius_mm : float, optional
        Accept lesions down to this radius (default: those with an exact eroded core only;
        see `check_lesions`), e.g. a 3 mm bone island dominated by partial volume.

    Returns
    -------
    StudyTruth

    Raises
    ------
    InputError
        Unknown vendor, bad seed, non-empty output folder, or a lesion that cannot be
        rendered with an exact core (see `check_lesions`).
    """
    out = Path(out_dir)
    _check_args(out, vendor, seed)
    lesion_list = tuple(DEFAULT_LESIONS if lesions is None else lesions)
    grids = {"ct": ct_grid(), "dixon": dixon_grid(), "dwi": dwi_grid()}
    coarsest = max(max(g.spacing_mm) for g in grids.values())
    check_lesions(lesion_list, coarsest_spacing_mm=coarsest, min_radius_mm=min_lesion_radius_mm)
    style = VENDOR_STYLES[vendor]
    field_t = float(style.field_strength_t if field_strength_t is None else field_strength_t)
    if not 0.2 <= field_t <= 11.7:
        raise InputError(
            f"Phantom {out}: field_strength_t must be in [0.2, 11.7] T, found {field_t}. "
            "Potential fix: pass 1.5 or 3.0."
        )
    te_op_ms, te_in_ms = echo_times_ms(field_t)

    key = "|".join(["bonelesion-phantom", GENERATOR, vendor, str(seed), f"enh={enhanced}",
                    f"cmp={compressed}", f"nf={noise_free}", f"B0={field_t}",
                    _lesion_key(lesion_list)])
    study_uid = str(generate_uid(prefix=uid_prefix(seed), entropy_srcs=[key, "study"]))
    for_uid = str(generate_uid(prefix=uid_prefix(seed), entropy_srcs=[key, "frame-of-reference"]))
    ctx = WriteContext(key=key, seed=seed, style=style, enhanced=enhanced, compressed=compressed,
                       study_instance_uid=study_uid, frame_of_reference_uid=for_uid)
    streams = np.random.SeedSequence(seed).spawn(4)
    rng_ct, rng_dixon, rng_dwi = (np.random.default_rng(s) for s in streams[:3])
    ct_sd, dixon_sd, dwi_sd = (0.0, 0.0, 0.0) if noise_free else (
        CT_NOISE_SD_HU, DIXON_NOISE_SD, DWI_NOISE_SD)
    props = _props(lesion_list)

    # ---- CT
    hu = _render_ct(grids["ct"], lesion_list, props)
    if ct_sd:
        hu = hu + rng_ct.normal(0.0, ct_sd, hu.shape)
    ct_stored = _to_uint16(np.rint(hu) - CT_RESCALE_INTERCEPT_HU, max_value=_CT_MAX_STORED)

    # ---- Dixon: noisy IP/OP first, water/fat derived from them (two-point reconstruction)
    water, fat = _render_dixon(grids["dixon"], lesion_list, props)
    ip = water + fat
    op_signed = water - fat
    if dixon_sd:
        ip = np.abs(ip + rng_dixon.normal(0.0, dixon_sd, ip.shape))
        op_signed = op_signed + rng_dixon.normal(0.0, dixon_sd, ip.shape)
    op = np.abs(op_signed)
    water_dominant = water >= fat
    water_rec = np.where(water_dominant, (ip + op) / 2.0, (ip - op) / 2.0)
    fat_rec = np.where(water_dominant, (ip - op) / 2.0, (ip + op) / 2.0)

    # ---- DWI + ADC
    dwi = _render_dwi(grids["dwi"], lesion_list, props)
    if dwi_sd:
        dwi = np.abs(dwi + rng_dwi.normal(0.0, dwi_sd, dwi.shape))
    dwi_stored = _to_uint16(dwi)
    adc_stored = fit_adc_map(dwi_stored)

    c = compressed
    series: list[tuple[SeriesSpec, Grid]] = []
    series.append((SeriesSpec(
        role="ct", modality="CT", series_number=2, series_description="LSPINE BONE 2.5mm",
        transfer_syntax_uid=JPEGLSLossless if c else ExplicitVRLittleEndian,
        stacks=[StackSpec(pixels=ct_stored, grid=grids["ct"], image_type=style.ct_image_type,
                          window_center=400.0, window_width=1800.0)],
    ), grids["ct"]))
    dixon_images = {
        "dixon_in_phase": (ip, te_in_ms, RLELossless),
        "dixon_opposed_phase": (op, te_op_ms, RLELossless),
        "dixon_water": (water_rec, te_in_ms, JPEG2000Lossless),
        "dixon_fat": (fat_rec, te_in_ms, JPEG2000Lossless),
    }
    for number, (role, (image, te_ms, ts)) in enumerate(dixon_images.items(), start=10):
        series.append((SeriesSpec(
            role=role, modality="MR", series_number=number,
            series_description=style.dixon_description[role],
            transfer_syntax_uid=ts if c else ExplicitVRLittleEndian,
            repetition_time_ms=_DIXON_TR_MS, flip_angle_deg=_DIXON_FLIP_DEG, sequence="GRE",
            extra={"field_strength_t": str(field_t)},
            stacks=[StackSpec(pixels=_to_uint16(image), grid=grids["dixon"],
                              image_type=style.dixon_image_type[role], echo_time_ms=te_ms,
                              window_center=1200.0, window_width=2500.0)],
        ), grids["dixon"]))
    series.append((SeriesSpec(
        role="dwi", modality="MR", series_number=20, series_description=style.dwi_description,
        transfer_syntax_uid=JPEG2000Lossless if c else ExplicitVRLittleEndian,
        repetition_time_ms=_DWI_TR_MS, flip_angle_deg=90.0, sequence="EPI",
        extra={"field_strength_t": str(field_t)},
        stacks=[StackSpec(pixels=dwi_stored[i], grid=grids["dwi"],
                          image_type=style.dwi_trace_image_type if b > 0
                          else style.dwi_b0_image_type,
                          echo_time_ms=_DWI_TE_MS, b_value_s_per_mm2=b,
                          window_center=800.0, window_width=1600.0)
                for i, b in enumerate(DWI_B_VALUES_S_PER_MM2)],
    ), grids["dwi"]))
    series.append((SeriesSpec(
        role="adc", modality="MR", series_number=21, series_description=style.adc_description,
        transfer_syntax_uid=JPEGLSLossless if c else ExplicitVRLittleEndian,
        repetition_time_ms=_DWI_TR_MS, flip_angle_deg=90.0, sequence="EPI",
        extra={"field_strength_t": str(field_t)},
        stacks=[StackSpec(pixels=adc_stored, grid=grids["dwi"], image_type=style.adc_image_type,
                          echo_time_ms=_DWI_TE_MS, is_adc=True,
                          window_center=1000.0, window_width=2000.0)],
    ), grids["dwi"]))

    out.mkdir(parents=True, exist_ok=True)
    dicom_dir = out / DICOM_DIRNAME
    series_truth = []
    try:
        for spec, grid in series:
            uid, folder, n_files = write_series(ctx, spec, dicom_dir)
            ct = spec.modality == "CT"
            sop_class = (ENHANCED_CT_IMAGE_STORAGE if enhanced else CT_IMAGE_STORAGE) if ct else (
                ENHANCED_MR_IMAGE_STORAGE if enhanced else MR_IMAGE_STORAGE)
            series_truth.append(SeriesTruth(
                role=spec.role, series_instance_uid=uid, series_number=spec.series_number,
                series_description=spec.series_description, modality=spec.modality,
                sop_class_uid=str(sop_class),
                transfer_syntax_uid=str(spec.transfer_syntax_uid if compressed
                                        else ExplicitVRLittleEndian),
                path=folder.relative_to(out).as_posix(), n_files=n_files,
                b_values_s_per_mm2=tuple(float(s.b_value_s_per_mm2) for s in spec.stacks
                                         if s.b_value_s_per_mm2 is not None)
                if spec.role == "dwi" else (),
                echo_time_ms=float(spec.stacks[0].echo_time_ms),
                image_type=enhanced_image_type(spec.stacks[0].image_type) if enhanced
                else tuple(spec.stacks[0].image_type),
                **_grid_truth(grid),  # type: ignore[arg-type]
            ))
    except Exception:
        shutil.rmtree(dicom_dir, ignore_errors=True)
        raise

    truth = StudyTruth(
        schema_version=LUMBAR_TRUTH_SCHEMA_VERSION,
        generator=GENERATOR,
        vendor=vendor,
        seed=seed,
        enhanced=enhanced,
        compressed=compressed,
        noise_free=noise_free,
        study_instance_uid=study_uid,
        frame_of_reference_uid=for_uid,
        acquisition=AcquisitionTruth(
            magnetic_field_strength_t=field_t,
            echo_time_opposed_phase_ms=te_op_ms,
            echo_time_in_phase_ms=te_in_ms,
            dixon_full_scale=DIXON_FULL_SCALE,
            dwi_b_values_s_per_mm2=DWI_B_VALUES_S_PER_MM2,
            dwi_s0_full_scale=DWI_S0_FULL_SCALE,
            adc_map_units_mm2_per_s=ADC_MAP_UNITS_MM2_PER_S,
            ct_rescale_intercept_hu=CT_RESCALE_INTERCEPT_HU,
            ct_rescale_slope=1.0,
        ),
        noise=NoiseTruth(ct_sd_hu=ct_sd, dixon_sd=dixon_sd, dwi_sd=dwi_sd),
        tissues=tuple(
            TissueTruth(name=t.name, attenuation_hu=t.attenuation_hu,
                        fat_fraction=t.fat_fraction,
                        chemical_shift_ratio=chemical_shift_ratio(t.fat_fraction),
                        adc_mm2_per_s=t.adc_mm2_per_s, mr_signal_scale=t.mr_signal_scale)
            for t in TISSUES),
        lesions=tuple(
            LesionTruth(lesion_id=les.lesion_id, vertebra=les.vertebra, kind=les.kind,
                        center_lps_mm=tuple(float(v) for v in les.center_lps_mm),  # type: ignore[arg-type]
                        radius_mm=float(les.radius_mm),
                        attenuation_mean_hu=float(les.attenuation_hu),
                        fat_fraction=float(les.fat_fraction),
                        chemical_shift_ratio=chemical_shift_ratio(les.fat_fraction),
                        adc_mm2_per_s=float(les.adc_mm2_per_s),
                        mr_signal_scale=float(les.mr_signal_scale),
                        expected_nature=les.expected_nature.value, treated=les.treated)
            for les in lesion_list),
        series=tuple(series_truth),
    )
    write_truth(truth, out / TRUTH_FILENAME)
    write_rois_csv(truth, out / ROIS_FILENAME)
    logger.info("Phantom study %s written to %s (%s, %d series)", study_uid, out, vendor,
                len(series_truth))
    return truth


def write_ct_series(
    out_dir: str | Path,
    *,
    shape: tuple[int, int, int] = (300, 512, 512),
    vendor: str = "siemens",
    seed: int = 0,
    spacing_mm: tuple[float, float, float] = (1.0, 0.7, 0.7),
    compressed: bool = False,
    noise_free: bool = False,
) -> Path:
    """Write one plain, large axial CT series (for loader benchmarks).

    The header is built once and varied per slice; voxels are sampled at their centres
    (no supersampling), with the same anatomy and default lesions as `write_study`.

    Parameters
    ----------
    out_dir : str or Path
        New or empty folder; the files go straight into it.
    shape : (3,) tuple of int
        [slice, row, column].
    vendor, seed, compressed, noise_free
        As in `write_study` (compressed: JPEG-LS lossless).
    spacing_mm : (3,) tuple of float
        Slice, row and column spacing.

    Returns
    -------
    Path
        The folder holding the series.

    Raises
    ------
    InputError
        Unknown vendor, bad seed, non-empty folder, or a non-positive shape or spacing.
    """
    out = Path(out_dir)
    _check_args(out, vendor, seed)
    if len(shape) != 3 or min(shape) < 1 or len(spacing_mm) != 3 or min(spacing_mm) <= 0:
        raise InputError(
            f"Phantom CT series: shape must be three positive integers and spacing_mm three "
            f"positive numbers, found {shape} and {spacing_mm}. Potential fix: e.g. "
            "shape=(300, 512, 512), spacing_mm=(1.0, 0.7, 0.7)."
        )
    grid = centred_grid(shape=tuple(int(n) for n in shape),  # type: ignore[arg-type]
                        spacing_mm=tuple(float(s) for s in spacing_mm),  # type: ignore[arg-type]
                        center_lps_mm=(0.0, 5.0, 0.0), direction=_AXIAL)
    style = VENDOR_STYLES[vendor]
    key = "|".join(["bonelesion-phantom-ct", GENERATOR, vendor, str(seed), repr(shape),
                    repr(spacing_mm), f"cmp={compressed}", f"nf={noise_free}"])
    ctx = WriteContext(
        key=key, seed=seed, style=style, enhanced=False, compressed=compressed,
        study_instance_uid=str(generate_uid(prefix=uid_prefix(seed), entropy_srcs=[key, "st"])),
        frame_of_reference_uid=str(generate_uid(prefix=uid_prefix(seed),
                                                entropy_srcs=[key, "for"])))
    props = _props(DEFAULT_LESIONS)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[3])
    stored = np.empty(grid.shape, dtype=np.uint16)
    for k in range(grid.shape[0]):
        fr, lab = tissue_fractions(grid, DEFAULT_LESIONS, slice_index=k, supersampling=1)
        hu = _mix(fr, lab, props.hu)
        if not noise_free:
            hu += rng.normal(0.0, CT_NOISE_SD_HU, hu.shape)
        stored[k] = _to_uint16(np.rint(hu) - CT_RESCALE_INTERCEPT_HU, max_value=_CT_MAX_STORED)
    spec = SeriesSpec(
        role="ct", modality="CT", series_number=3, series_description="BODY 1.0mm",
        transfer_syntax_uid=JPEGLSLossless if compressed else ExplicitVRLittleEndian,
        stacks=[StackSpec(pixels=stored, grid=grid, image_type=style.ct_image_type,
                          window_center=40.0, window_width=400.0)],
    )
    out.mkdir(parents=True, exist_ok=True)
    _, folder, n = write_series(ctx, spec, out)
    # Files straight into out_dir: move them up from the series folder.
    for f in sorted(folder.iterdir()):
        f.rename(out / f.name)
    folder.rmdir()
    logger.info("Phantom CT series of %d slices written to %s", n, out)
    return out
