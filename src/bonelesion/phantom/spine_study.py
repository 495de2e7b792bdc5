"""Write the thoracolumbar-pelvic spine phantom as a CT + MR study, with its truth.

Layout of ``out_dir`` (as `bonelesion.phantom.write_study`)::

    truth.json          StudyTruth, schema 2.0, with the `SpineTruth` block
    rois.csv            one sphere per lesion (centroid, equivalent radius)
    DICOM/<NNN>_<description>/IMxxxx.dcm

CT image formation (per output slice, in slabs; float32 throughout)
-------------------------------------------------------------------
1. Soft tissue is labelled once per output slice; bone, lesions and look-alikes on
   ``render_sub_slices`` sub-slices per slice spacing (only inside the in-plane box of the
   bone present in the slab).
2. Labels become CT numbers; the sub-slices are averaged with the slice sensitivity
   profile (a box of the slice thickness convolved with a Gaussian), so thin structures
   show partial volume along the slice axis and overlapping slices share signal.
3. White Gaussian noise is added and the slice is filtered in-plane by a Gaussian of
   variance ``σ_psf² + Δ²/12`` (point-spread function plus pixel integration): the image
   is blurred and the noise becomes correlated like CT noise, with the requested SD.
4. Rounded to integers and stored with RescaleIntercept −1024 (GE: signed pixels and
   PixelPaddingValue −2000 outside the reconstruction circle).

MR series (sagittal, same frame of reference): Dixon in/opposed phase, water and fat;
DWI b = 0/50/400/800 and a scanner-style ADC map, with the signal models of
`bonelesion.phantom.study` and per-tissue T1-weighted (Dixon) and T2-weighted (DWI b = 0)
proton scales. Sclerotic lesions and look-alikes are signal voids on all of them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from scipy import ndimage
from scipy.special import erf

from bonelesion.errors import InputError
from bonelesion.phantom.anatomy import Grid, centred_grid
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
from bonelesion.phantom.shapes import Raster, paint
from bonelesion.phantom.spine import (
    LesionKind,
    Material,
    SpineOptions,
    SpineScene,
    build_scene,
)
from bonelesion.phantom.study import (
    DIXON_FULL_SCALE,
    DWI_B_VALUES_S_PER_MM2,
    DWI_S0_FULL_SCALE,
    check_output_folder,
    echo_times_ms,
    fit_adc_map,
)
from bonelesion.phantom.truth import (
    ROIS_FILENAME,
    TRUTH_FILENAME,
    TRUTH_SCHEMA_VERSION,
    AcquisitionTruth,
    CtReconstructionTruth,
    DiscTruth,
    LesionTruth,
    LookAlikeTruth,
    NoiseTruth,
    RibTruth,
    SacroiliacJointTruth,
    SeriesTruth,
    SpineLesionTruth,
    SpineOptionsTruth,
    SpineTruth,
    StudyTruth,
    TissueTruth,
    VertebraTruth,
    write_rois_csv,
    write_truth,
)
from bonelesion.phantom.vendor_style import SUPPORTED_VENDORS, VENDOR_STYLES, VendorStyle

__all__ = [
    "write_spine_study",
    "write_spine_study_from_options",
    "CtProtocol",
    "MrProtocol",
    "PATIENT_POSITIONS",
    "SPINE_ANATOMY",
    "SAMPLE_CT",
    "SAMPLE_MR",
    "DEFAULT_CT_NOISE_SD_HU",
]

logger = logging.getLogger(__name__)

GENERATOR = "bonelesion.phantom.spine/1"
SPINE_ANATOMY = "thoracolumbar_pelvis"
DICOM_DIRNAME = "DICOM"
DEFAULT_CT_NOISE_SD_HU = 13.0
DIXON_NOISE_SD = 10.0
DWI_NOISE_SD = 8.0
CT_RESCALE_INTERCEPT_HU = -1024.0
#: Patient positions and the LPS directions of the image columns (+column) and rows (+row).
PATIENT_POSITIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "HFS": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "FFS": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "HFP": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "FFP": ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
}
_SLAB_SLICES = 12
_MAX_SUB_SLICE_MM = 0.6
_MAX_SUB_PIXEL_MM = 0.8
_SLICE_PROFILE_GAUSS_FWHM_MM = 0.6
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_TRABECULAR_EROSION_IN_PLANE_MM = 2.5
#: Sampling step of the analytic scene for vertebral-body truth (centroid, marrow core).
_BODY_STEP_MM = 0.6
_TRABECULAR_EROSION_SLICE_EXTRA_MM = 1.0
_DIXON_TR_MS, _DIXON_FLIP_DEG = 6.8, 10.0
_DWI_TE_MS, _DWI_TR_MS = 62.0, 5200.0
_MR_SUB_SLICES = 3
_MR_MIN_MATRIX = 64
#: Trabecular texture: a periodic block of 64³ cells of 0.8 mm (51 mm period), smoothed
#: with σ = 1 cell.
_TEXTURE_CELLS = 64
_TEXTURE_CELL_MM = 0.8
_TEXTURE_SIGMA_CELLS = 1.0
_MR_PSF_SIGMA_PX = 0.5


# ------------------------------------------------------------------------------ protocols
@dataclass(frozen=True, kw_only=True)
class CtProtocol:
    """CT reconstruction of the spine study.

    Parameters
    ----------
    matrix : int
        Rows = columns (e.g. 384 or 512).
    field_of_view_mm : float
        Reconstruction diameter.
    slice_thickness_mm, slice_spacing_mm : float or None
        None: the vendor's default (Siemens 1.5/1.5, GE 1.25/1.25, Philips 2.0/1.5).
    psf_fwhm_mm : float
        In-plane Gaussian PSF (0.6–1.0 mm for a bone kernel).
    noise_sd_hu : float
    patient_position : str
        HFS, FFS, HFP or FFP.
    trabecular_texture_sd_hu : float
        SD of the heterogeneity added to trabecular bone (smoothed noise with ~1 mm
        correlation, fixed in patient coordinates); 0 for homogeneous marrow.
    centre_lp_mm : (2,) tuple of float or None
        In-plane centre of the reconstruction (L, P); None: centre of the body.
    s_range_mm : (2,) tuple of float or None
        Inferior and superior limits (S) of the scan; None: from above T10 to S4.
    rows, columns : int or None
        A rectangular crop of the reconstruction (same pixel size); None: ``matrix``.
    """

    matrix: int = 512
    field_of_view_mm: float = 400.0
    slice_thickness_mm: float | None = None
    slice_spacing_mm: float | None = None
    psf_fwhm_mm: float = 0.8
    noise_sd_hu: float = DEFAULT_CT_NOISE_SD_HU
    trabecular_texture_sd_hu: float = 20.0
    patient_position: str = "HFS"
    centre_lp_mm: tuple[float, float] | None = None
    s_range_mm: tuple[float, float] | None = None
    rows: int | None = None
    columns: int | None = None


@dataclass(frozen=True, kw_only=True)
class MrProtocol:
    """Sagittal MR grids of the spine study (slices along −L, rows along −S, columns +P).

    Parameters
    ----------
    dixon_slices, dixon_slice_mm, dixon_pixel_mm : Dixon slab (count, thickness = spacing,
        in-plane pixel).
    dwi_slices, dwi_slice_mm, dwi_pixel_mm : DWI slab.
    ap_extent_mm : float
        In-plane extent along P (the S extent covers the CT scan range plus a margin).
    """

    dixon_slices: int = 30
    dixon_slice_mm: float = 4.0
    dixon_pixel_mm: float = 1.5
    dwi_slices: int = 24
    dwi_slice_mm: float = 5.0
    dwi_pixel_mm: float = 3.0
    ap_extent_mm: float = 240.0


#: The small study of sample_data: a cropped 2 mm CT and coarse MR (a few MB in total).
SAMPLE_CT = CtProtocol(matrix=256, field_of_view_mm=512.0, slice_thickness_mm=3.0,
                       slice_spacing_mm=3.0, psf_fwhm_mm=1.0, rows=80, columns=100,
                       centre_lp_mm=(0.0, 60.0))
SAMPLE_MR = MrProtocol(dixon_slices=20, dixon_slice_mm=6.0, dixon_pixel_mm=3.0, dwi_slices=12,
                       dwi_slice_mm=10.0, dwi_pixel_mm=4.0, ap_extent_mm=192.0)


# ------------------------------------------------------------------------------ grids
def _ct_grid(scene: SpineScene, proto: CtProtocol, spacing_mm: float) -> Grid:
    col, row = PATIENT_POSITIONS[proto.patient_position]
    slice_dir = np.cross(col, row)
    direction = np.stack([slice_dir, row, col], axis=1)
    lo, hi = proto.s_range_mm or (scene.scan_bottom_s_mm, scene.scan_top_s_mm)
    n_slices = int(math.floor((hi - lo) / spacing_mm)) + 1
    pixel = proto.field_of_view_mm / proto.matrix
    cl, cp = proto.centre_lp_mm or scene.body_centre_lp_mm
    rows = proto.rows or proto.matrix
    cols = proto.columns or proto.matrix
    return centred_grid(shape=(n_slices, rows, cols), spacing_mm=(spacing_mm, pixel, pixel),
                        center_lps_mm=(cl, cp, (lo + hi) / 2.0), direction=direction)


def _mr_grid(scene: SpineScene, *, n_slices: int, slice_mm: float, pixel_mm: float,
             ap_extent_mm: float, s_range: tuple[float, float]) -> Grid:
    direction = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]).T
    lo, hi = s_range
    # at least 64 × 64 (a real MR matrix; JPEG 2000 needs 2^5 pixels per resolution level)
    rows = max(_MR_MIN_MATRIX, int(math.ceil((hi - lo + 20.0) / pixel_mm)))
    cols = max(_MR_MIN_MATRIX, int(math.ceil(ap_extent_mm / pixel_mm)))
    spine_p = float(np.mean([v.frame.origin[1] for v in scene.vertebrae]))
    return centred_grid(shape=(n_slices, rows, cols), spacing_mm=(slice_mm, pixel_mm, pixel_mm),
                        center_lps_mm=(0.0, spine_p + 15.0, (lo + hi) / 2.0),
                        direction=direction)


def _axis_map(grid: Grid) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """LPS component and sign of each array axis of an axis-aligned grid."""
    d = np.asarray(grid.direction_lps)
    comp, sign = [], []
    for k in range(3):
        a = int(np.argmax(np.abs(d[:, k])))
        if abs(abs(d[a, k]) - 1.0) > 1e-9:
            raise InputError(
                f"Spine phantom: grid axis {k} is oblique ({d[:, k].tolist()}); expected an "
                "axis-aligned grid. Potential fix: use an axial, sagittal or coronal grid."
            )
        comp.append(a)
        sign.append(float(np.sign(d[a, k])))
    return (comp[0], comp[1], comp[2]), (sign[0], sign[1], sign[2])


def _raster(grid: Grid, index_ranges: tuple[slice, slice, slice], *,
            sub_offsets: NDArray[np.float64] | None = None, sub_pixels: int = 1) -> Raster:
    """Raster of a block of ``grid``; optionally at sub-slice and sub-pixel positions.

    With ``sub_offsets`` (in units of the slice spacing), axis 0 holds, for each slice of
    the block, the positions ``k + offset``, flattened in slice-major order; with
    ``sub_pixels`` = n, axes 1 and 2 hold n evenly spaced sub-pixel centres per pixel.
    """
    comp, sign = _axis_map(grid)
    origin = np.asarray(grid.origin_lps_mm, float)
    coords = []
    pix = (np.arange(sub_pixels) + 0.5) / sub_pixels - 0.5
    for k in range(3):
        sl = index_ranges[k]
        idx = np.arange(sl.start, sl.stop, dtype=np.float64)
        if k == 0 and sub_offsets is not None:
            idx = (idx[:, None] + sub_offsets[None, :]).ravel()
        elif k > 0 and sub_pixels > 1:
            idx = (idx[:, None] + pix[None, :]).ravel()
        coords.append((origin[comp[k]] + sign[k] * grid.spacing_mm[k] * idx).astype(np.float32))
    return Raster(coords=(coords[0], coords[1], coords[2]), lps_axis=comp)


# ------------------------------------------------------------------------------ CT
@dataclass(frozen=True)
class _Profile:
    sub: int  # sub-slices per spacing
    taps: NDArray[np.int64]  # sub-slice offsets j (fine index = k·sub + j)
    weights: NDArray[np.float32]
    fwhm_mm: float


def _slice_profile(spacing_mm: float, thickness_mm: float) -> _Profile:
    sub = max(1, int(math.ceil(spacing_mm / min(_MAX_SUB_SLICE_MM, thickness_mm / 2.5))))
    dz = spacing_mm / sub
    sigma = _SLICE_PROFILE_GAUSS_FWHM_MM / _FWHM_PER_SIGMA
    reach = thickness_mm / 2 + 2.5 * sigma
    j = np.arange(-int(math.ceil(reach / dz)), int(math.ceil(reach / dz)) + 1)
    d = j.astype(np.float64) * dz

    def cdf(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return 0.5 * (1.0 + erf(x / (sigma * math.sqrt(2.0))))  # type: ignore[no-any-return]

    w = cdf(d + thickness_mm / 2) - cdf(d - thickness_mm / 2)
    keep = w > 1e-4 * w.max()
    j, w = j[keep], w[keep] / w[keep].sum()
    # FWHM of the continuous profile (box ⊗ Gaussian), found numerically
    x = np.linspace(-reach * 2, reach * 2, 4001)
    prof = cdf(x + thickness_mm / 2) - cdf(x - thickness_mm / 2)
    above = x[prof >= prof.max() / 2]
    return _Profile(sub=sub, taps=j.astype(np.int64), weights=w.astype(np.float32),
                    fwhm_mm=float(above[-1] - above[0]))


def _sub_pixels(pixel_mm: float) -> int:
    """Sub-pixels per pixel edge for the bone region (pixel integration of thin cortex)."""
    return max(1, int(math.ceil(pixel_mm / _MAX_SUB_PIXEL_MM - 1e-9)))


def _in_plane_sigma_px(psf_fwhm_mm: float, pixel_mm: float, sub_pixels: int) -> float:
    """Gaussian σ in pixels: the PSF plus the residual point sampling of the sub-pixels."""
    sample_mm = pixel_mm / sub_pixels
    sigma_mm = math.sqrt((psf_fwhm_mm / _FWHM_PER_SIGMA) ** 2 + sample_mm**2 / 12.0)
    return sigma_mm / pixel_mm


def _noise_gain(sigma_px: float) -> float:
    """L2 norm of the 2-D Gaussian kernel scipy applies (white-noise SD gain)."""
    delta = np.zeros(129)
    delta[64] = 1.0
    k1 = ndimage.gaussian_filter1d(delta, sigma_px, mode="constant")
    return float(np.sum(k1**2))  # ‖k₂‖₂ = ‖k₁‖₂² for a separable kernel


def _fine_box(scene: SpineScene, raster: Raster) -> tuple[slice, slice] | None:
    """In-plane index box (rows, columns) of every fine paint that reaches the raster."""
    r0 = c0 = 1 << 30
    r1 = c1 = -1
    for step in scene.paints:
        if not step.fine:
            continue
        sl = raster.box(step.shape.lo, step.shape.hi)
        if sl is None:
            continue
        r0, r1 = min(r0, sl[1].start), max(r1, sl[1].stop)
        c0, c1 = min(c0, sl[2].start), max(c1, sl[2].stop)
    if r1 < 0:
        return None
    return slice(r0, r1), slice(c0, c1)


def _texture_block(rng: np.random.Generator, sd_hu: float) -> NDArray[np.float32]:
    """Make a periodic block of trabecular texture (HU): smoothed noise, mean 0, SD ``sd_hu``."""
    block = rng.standard_normal((_TEXTURE_CELLS,) * 3, dtype=np.float32)
    ndimage.gaussian_filter(block, _TEXTURE_SIGMA_CELLS, output=block, mode="wrap")
    block -= block.mean()
    block *= np.float32(sd_hu / float(block.std()))
    return block


def _texture_at(block: NDArray[np.float32], raster: Raster) -> NDArray[np.float32]:
    """Texture values at the points of a raster (periodic in patient coordinates)."""
    idx: list[NDArray[np.intp]] = [np.zeros(1, np.intp)] * 3
    for k in range(3):
        cells = np.floor(raster.coords[k] / np.float32(_TEXTURE_CELL_MM)).astype(np.intp)
        idx[raster.lps_axis[k]] = np.mod(cells, _TEXTURE_CELLS)
    # block axes are (L, P, S); gather in raster axis order
    gathered = block[np.ix_(idx[0], idx[1], idx[2])]  # (L, P, S) of the raster's points
    return np.ascontiguousarray(np.transpose(gathered, raster.lps_axis))


def _render_ct(scene: SpineScene, grid: Grid, *, thickness_mm: float, psf_fwhm_mm: float,
               noise_sd_hu: float, rng: np.random.Generator, signed: bool, bits_stored: int,
               padding_value: int | None, texture: NDArray[np.float32] | None
               ) -> tuple[NDArray[np.uint16] | NDArray[np.int16], _Profile, int]:
    """Render the stored CT pixels (S, R, C), slab by slab."""
    n_s, n_r, n_c = grid.shape
    prof = _slice_profile(grid.spacing_mm[0], thickness_mm)
    offsets = prof.taps / prof.sub
    lut_hu = scene.lut("attenuation_hu")
    lut_marrow = np.array([info.material.name.startswith("marrow") for info in scene.labels],
                          dtype=np.float32)
    n_labels = len(scene.labels)
    ss = _sub_pixels(grid.spacing_mm[1])
    sigma_px = _in_plane_sigma_px(psf_fwhm_mm, grid.spacing_mm[1], ss)
    slab = max(2, _SLAB_SLICES // (ss * ss))
    gain = _noise_gain(sigma_px)
    white_sd = noise_sd_hu / gain if noise_sd_hu > 0 else 0.0
    dtype: type[np.integer] = np.int16 if signed else np.uint16
    if signed:
        lo_stored, hi_stored = -(1 << 15), (1 << 15) - 1
    else:
        lo_stored, hi_stored = 0, (1 << bits_stored) - 1
    out: NDArray[np.uint16] | NDArray[np.int16] = np.empty(grid.shape, dtype=dtype)
    circle = None
    if padding_value is not None:
        rr = (np.arange(n_r) - (n_r - 1) / 2.0)[:, None]
        cc = (np.arange(n_c) - (n_c - 1) / 2.0)[None, :]
        radius_px = grid.shape[2] / 2.0
        circle = rr * rr + cc * cc > radius_px * radius_px
    all_rc = (slice(0, n_r), slice(0, n_c))
    for k0 in range(0, n_s, slab):
        k1 = min(n_s, k0 + slab)
        n = k1 - k0
        soft_raster = _raster(grid, (slice(k0, k1), *all_rc))
        soft_labels = _paint_block(scene, soft_raster, fine=False)
        hu = lut_hu[soft_labels]
        fine_raster_full = _raster(grid, (slice(k0, k1), *all_rc), sub_offsets=offsets)
        box = _fine_box(scene, fine_raster_full)
        if box is not None:
            rows, cols = box
            fr = _raster(grid, (slice(k0, k1), rows, cols), sub_offsets=offsets,
                         sub_pixels=ss)
            n_t = len(offsets)
            # each sub-slice starts from the soft labels of its own output slice
            labels = np.repeat(soft_labels[:, rows, cols], n_t, axis=0)
            if ss > 1:
                labels = np.repeat(np.repeat(labels, ss, axis=1), ss, axis=2)
            for step in scene.select(*_raster_box(fr), fine=True):
                paint(labels, fr, step, lut_size=n_labels)
            vals = lut_hu[labels]
            if texture is not None:  # heterogeneous trabecular bone
                vals += _texture_at(texture, fr) * lut_marrow[labels]
            vals = vals.reshape(n, n_t, labels.shape[1], labels.shape[2])
            prof_hu = np.tensordot(prof.weights, vals, axes=(0, 1))
            if ss > 1:  # pixel integration: mean over the sub-pixels
                r_n, c_n = prof_hu.shape[1] // ss, prof_hu.shape[2] // ss
                prof_hu = prof_hu.reshape(n, r_n, ss, c_n, ss).mean(axis=(2, 4))
            hu[:, rows, cols] = prof_hu
        if white_sd:
            hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(white_sd)
        ndimage.gaussian_filter(hu, sigma=(0.0, sigma_px, sigma_px), output=hu, mode="nearest",
                                truncate=4.0)
        stored = np.clip(np.rint(hu) - np.float32(CT_RESCALE_INTERCEPT_HU), lo_stored,
                         hi_stored).astype(dtype)
        if circle is not None and padding_value is not None:
            stored[:, circle] = padding_value
        out[k0:k1] = stored
    return out, prof, ss


# ------------------------------------------------------------------------------ truth
def _raster_box(raster: Raster) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lo, hi = np.zeros(3), np.zeros(3)
    for k in range(3):
        c = raster.coords[k]
        a = raster.lps_axis[k]
        lo[a], hi[a] = float(min(c[0], c[-1])), float(max(c[0], c[-1]))
    return lo, hi


def _paint_block(scene: SpineScene, raster: Raster, *, fine: bool | None = True,
                 upto: int | None = None) -> NDArray[np.uint16]:
    """Labels of a raster block: the scene's (fine, or all) steps that reach it, in order."""
    labels = np.zeros(raster.shape, np.uint16)
    n = len(scene.labels)
    for step in scene.select(*_raster_box(raster), fine=fine, upto=upto):
        paint(labels, raster, step, lut_size=n)
    return labels


def _fine_raster(lo: NDArray[np.float64], hi: NDArray[np.float64], step_mm: float) -> Raster:
    axes = [np.arange(lo[a], hi[a] + step_mm / 2, step_mm, dtype=np.float32) for a in (2, 1, 0)]
    return Raster(coords=(axes[0], axes[1], axes[2]), lps_axis=(2, 1, 0))


@dataclass(frozen=True)
class _Region:
    """One label sampled finely in its box: volume, centroid and depth inside it."""

    raster: Raster
    mask: NDArray[np.bool_]
    step_mm: float

    @property
    def volume_mm3(self) -> float:
        return float(np.count_nonzero(self.mask)) * self.step_mm**3

    def centroid(self) -> NDArray[np.float64]:
        idx = np.nonzero(self.mask)
        z = self.raster.coords[0][idx[0]].astype(np.float64)
        y = self.raster.coords[1][idx[1]].astype(np.float64)
        x = self.raster.coords[2][idx[2]].astype(np.float64)
        return np.array([x.mean(), y.mean(), z.mean()])

    def depth(self, erosion_in_plane_mm: float, erosion_slice_mm: float
              ) -> NDArray[np.float64]:
        """Distance to the outside, in units of the erosion (≥ 1: core), per fine voxel.

        Raster axis 0 runs along S (the slice axis of an axial CT).
        """
        s = self.step_mm
        return ndimage.distance_transform_edt(  # type: ignore[no-any-return]
            np.pad(self.mask, 1), sampling=(s / erosion_slice_mm, s / erosion_in_plane_mm,
                                            s / erosion_in_plane_mm))[1:-1, 1:-1, 1:-1]


def _sample_region(scene: SpineScene, labels_of_interest: set[int], lo: NDArray[np.float64],
                   hi: NDArray[np.float64], step_mm: float, *, upto: int | None = None
                   ) -> _Region:
    """Paint the fine steps (the first ``upto``) in a box grown by 1.5 mm; mask the labels."""
    r = _fine_raster(lo - 1.5, hi + 1.5, step_mm)
    labels = _paint_block(scene, r, upto=upto)
    return _Region(raster=r, mask=np.isin(labels, list(labels_of_interest)), step_mm=step_mm)


def _grid_block(grid: Grid, lo: NDArray[np.float64], hi: NDArray[np.float64],
                margin_mm: float) -> tuple[slice, slice, slice] | None:
    """Index ranges of the grid voxels inside an LPS box grown by a margin."""
    full = _raster(grid, (slice(0, grid.shape[0]), slice(0, grid.shape[1]),
                          slice(0, grid.shape[2])))
    return full.box(lo - margin_mm, hi + margin_mm)


def _core_values(grid: Grid, hu: NDArray[np.integer], region: _Region, *,
                 erosion_in_plane_mm: float, erosion_slice_mm: float
                 ) -> tuple[float, float, int]:
    """Mean, SD and count of written CT numbers over the voxels deep inside a region.

    A voxel belongs to the core when its centre lies at least ``erosion_in_plane_mm``
    in-plane and ``erosion_slice_mm`` along S inside the region (depth measured on the
    fine sampling); when none does, the deepest voxel(s) form the core.
    """
    if not region.mask.any():
        return float("nan"), float("nan"), 0
    r = region.raster
    lo = np.array([r.coords[2][0], r.coords[1][0], r.coords[0][0]], float)
    hi = np.array([r.coords[2][-1], r.coords[1][-1], r.coords[0][-1]], float)
    block = _grid_block(grid, lo, hi, margin_mm=0.0)
    if block is None:
        return float("nan"), float("nan"), 0
    depth = region.depth(erosion_in_plane_mm, erosion_slice_mm)
    g = _raster(grid, block)
    # nearest fine sample of every grid voxel centre (grid axes → LPS → fine axes)
    idx = []
    for k_fine, a in enumerate((2, 1, 0)):
        k_grid = g.lps_axis.index(a)
        pos = g.coords[k_grid]
        i = np.clip(np.rint((pos - r.coords[k_fine][0]) / region.step_mm), 0,
                    len(r.coords[k_fine]) - 1).astype(np.intp)
        shape = [1, 1, 1]
        shape[k_grid] = len(i)
        idx.append((k_grid, i.reshape(shape)))
    by_fine = [ix for _, ix in idx]
    d = depth[by_fine[0], by_fine[1], by_fine[2]]  # broadcast in grid order
    inside = region.mask[by_fine[0], by_fine[1], by_fine[2]]
    core = d >= 1.0
    if not core.any():
        if not inside.any():
            return float("nan"), float("nan"), 0
        core = inside & (d >= d[inside].max() - 1e-9)
    values = hu[block][core].astype(np.float64) + CT_RESCALE_INTERCEPT_HU
    return float(values.mean()), float(values.std()), int(values.size)


def _shape_step_mm(lo: NDArray[np.float64], hi: NDArray[np.float64]) -> float:
    """Return the sampling step of a shape's box: 0.1–0.4 mm, at most ~0.6 M samples."""
    box_mm3 = float(np.prod(hi - lo + 3.0))
    return float(np.clip((box_mm3 / 6e5) ** (1.0 / 3.0), 0.1, 0.4))


def _spine_truth(scene: SpineScene, grid: Grid, stored: NDArray[np.integer],
                 ct: CtReconstructionTruth, prof: _Profile) -> SpineTruth:
    n_anat = len(scene.paints) - len(scene.lesions) - len(scene.look_alikes)
    hu = stored
    # the core starts 3 σ of blur inside: in-plane the PSF and sub-pixel sampling, along the
    # slice half the thickness plus 3 σ of the profile's Gaussian
    sigma_xy_mm = _in_plane_sigma_px(ct.psf_fwhm_in_plane_mm, ct.pixel_spacing_mm,
                                     ct.render_sub_pixels) * ct.pixel_spacing_mm
    e_xy = round(3.0 * sigma_xy_mm, 4)
    e_z = round(ct.slice_thickness_mm / 2.0
                + 3.0 * _SLICE_PROFILE_GAUSS_FWHM_MM / _FWHM_PER_SIGMA, 4)
    in_scan = [v for v in scene.vertebrae if v.label[0] in "TL" or v.label == "S1"]
    vertebrae = []
    for v in in_scan:
        if v.label in ("T6", "T7", "T8", "T9"):
            continue
        half = np.abs(v.frame.axes.T) @ np.array([v.width_mm / 2 + 1.0, v.depth_mm / 2 + 1.0,
                                                  v.height_mm / 2 + 3.0])
        body_lo, body_hi = v.frame.origin - half, v.frame.origin + half
        body = _sample_region(scene, {v.body_cortex_label, v.body_marrow_label}, body_lo,
                              body_hi, _BODY_STEP_MM, upto=n_anat)
        centroid = body.centroid()
        mean, sd, count = float("nan"), float("nan"), 0
        if _grid_block(grid, body_lo, body_hi, margin_mm=0.0) is not None:
            marrow = _sample_region(scene, {v.body_marrow_label}, body_lo, body_hi,
                                    _BODY_STEP_MM)
            mean, sd, count = _core_values(
                grid, hu, marrow, erosion_in_plane_mm=_TRABECULAR_EROSION_IN_PLANE_MM,
                erosion_slice_mm=ct.slice_thickness_mm / 2 + _TRABECULAR_EROSION_SLICE_EXTRA_MM)
        vertebrae.append(VertebraTruth(
            label=v.label, region=v.region.value, body_centroid_lps_mm=_t3(centroid),
            superior_axis_lps=_t3(v.frame.axes[2]), body_width_mm=v.width_mm,
            body_depth_mm=v.depth_mm, body_height_mm=v.height_mm,
            trabecular_true_hu=v.trabecular_hu, trabecular_mean_hu=_r(mean),
            trabecular_sd_hu=_r(sd), trabecular_voxel_count=count, rib_sides=v.rib_sides,
            fused_to_ilium=v.fused_to_ilium, transitional=v.transitional))
    lesions = []
    for les in scene.lesions:
        region = _sample_region(scene, {les.label}, les.shape.lo, les.shape.hi,
                                _shape_step_mm(les.shape.lo, les.shape.hi))
        vol, centroid = region.volume_mm3, region.centroid()
        mean, sd, count = _core_values(grid, hu, region, erosion_in_plane_mm=e_xy,
                                       erosion_slice_mm=e_z)
        m = les.material
        lesions.append(SpineLesionTruth(
            lesion_id=les.lesion_id, kind=les.kind.value, bone=les.bone,
            expected_nature=les.expected_nature, centre_lps_mm=_t3(centroid),
            volume_ml=round(vol / 1000.0, 5), equivalent_radius_mm=round(_req(vol), 4),
            attenuation_true_hu=m.attenuation_hu, core_mean_hu=_r(mean), core_sd_hu=_r(sd),
            core_voxel_count=count, core_erosion_in_plane_mm=e_xy, core_erosion_slice_mm=e_z,
            mr_appearance="lytic" if les.kind is LesionKind.LYTIC_METASTASIS
            else "signal_void", fat_fraction=m.fat_fraction, t1w_signal_scale=m.t1w_scale,
            t2w_signal_scale=m.t2w_scale, adc_mm2_per_s=m.adc_mm2_per_s))
    looks = []
    for la in scene.look_alikes:
        region = _sample_region(scene, {la.label}, la.shape.lo, la.shape.hi,
                                _shape_step_mm(la.shape.lo, la.shape.hi))
        vol, centroid = region.volume_mm3, region.centroid()
        mean, sd, count = _core_values(grid, hu, region, erosion_in_plane_mm=e_xy,
                                       erosion_slice_mm=e_z)
        looks.append(LookAlikeTruth(
            look_alike_id=la.look_alike_id, kind=la.kind.value, bone=la.bone, detail=la.detail,
            centre_lps_mm=_t3(centroid), volume_ml=round(vol / 1000.0, 5),
            equivalent_radius_mm=round(_req(vol), 4),
            attenuation_true_hu=la.material.attenuation_hu, core_mean_hu=_r(mean),
            core_sd_hu=_r(sd), core_voxel_count=count, mr_appearance="signal_void"))
    opt = scene.options
    labels_in = {v.label for v in vertebrae}
    return SpineTruth(
        options=SpineOptionsTruth(lumbar_rib=opt.lumbar_rib, sacralised_l5=opt.sacralised_l5,
                                  osteoporotic=opt.osteoporotic, contrast=opt.contrast,
                                  lesions=opt.lesions, lytic_lesions=opt.lytic_lesions,
                                  look_alikes=opt.look_alikes),
        ct=ct,
        vertebrae=tuple(vertebrae),
        discs=tuple(DiscTruth(upper=d.upper, lower=d.lower, centre_lps_mm=d.centre_lps_mm,
                              height_mm=round(d.height_mm, 4), fused=d.fused)
                    for d in scene.discs if d.upper in labels_in or d.lower in labels_in),
        ribs=tuple(RibTruth(vertebra=r.vertebra, side=r.side, head_lps_mm=r.head_lps_mm,
                            length_mm=round(r.length_mm, 3), lumbar=r.lumbar)
                   for r in scene.ribs),
        sacroiliac_joints=tuple(SacroiliacJointTruth(side=s, centre_lps_mm=c)
                                for s, c in scene.sacroiliac_joints),
        lesions=tuple(lesions),
        look_alikes=tuple(looks),
    )


def _r(value: float) -> float | None:
    return float(round(value, 3)) if math.isfinite(value) else None


def _req(volume_mm3: float) -> float:
    return (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)


def _t3(p: NDArray[np.float64] | tuple[float, float, float]) -> tuple[float, float, float]:
    return round(float(p[0]), 4), round(float(p[1]), 4), round(float(p[2]), 4)


# ------------------------------------------------------------------------------ MR
def _render_mr_fractions(scene: SpineScene, grid: Grid, values: list[NDArray[np.float32]]
                         ) -> list[NDArray[np.float32]]:
    """Per-label values averaged over sub-slices of each MR slice (box slice profile)."""
    offsets = (np.arange(_MR_SUB_SLICES) + 0.5) / _MR_SUB_SLICES - 0.5
    n_s, n_r, n_c = grid.shape
    out = [np.empty(grid.shape, np.float32) for _ in values]
    for k0 in range(0, n_s, 8):
        k1 = min(n_s, k0 + 8)
        raster = _raster(grid, (slice(k0, k1), slice(0, n_r), slice(0, n_c)),
                         sub_offsets=offsets)
        labels = _paint_block(scene, raster, fine=None)
        for o, lut in zip(out, values, strict=True):
            o[k0:k1] = lut[labels].reshape(k1 - k0, _MR_SUB_SLICES, n_r, n_c).mean(axis=1)
    for o in out:
        ndimage.gaussian_filter(o, sigma=(0.0, _MR_PSF_SIGMA_PX, _MR_PSF_SIGMA_PX), output=o,
                                mode="nearest")
    return out


def _to_uint16(values: NDArray[np.floating]) -> NDArray[np.uint16]:
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


# ------------------------------------------------------------------------------ write
def _check(out: Path, vendor: str, seed: int, ct: CtProtocol) -> None:
    if vendor not in SUPPORTED_VENDORS:
        raise InputError(
            f"Spine phantom {out}: vendor {vendor!r} is not supported; expected one of "
            f"{list(SUPPORTED_VENDORS)}. Potential fix: pass --vendor siemens, ge or philips."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(
            f"Spine phantom {out}: seed must be a non-negative integer, found {seed!r}. "
            "Potential fix: pass --seed 0 (or any integer ≥ 0)."
        )
    if ct.patient_position not in PATIENT_POSITIONS:
        raise InputError(
            f"Spine phantom {out}: patient position {ct.patient_position!r} is not supported; "
            f"expected one of {list(PATIENT_POSITIONS)}. Potential fix: pass HFS."
        )
    checks = [
        (64 <= ct.matrix <= 1024, f"matrix {ct.matrix} outside 64–1024"),
        (100.0 <= ct.field_of_view_mm <= 700.0,
         f"field of view {ct.field_of_view_mm} mm outside 100–700 mm"),
        (ct.slice_thickness_mm is None or 0.5 <= ct.slice_thickness_mm <= 5.0,
         f"slice thickness {ct.slice_thickness_mm} mm outside 0.5–5 mm"),
        (ct.slice_spacing_mm is None or 0.3 <= ct.slice_spacing_mm <= 5.0,
         f"slice spacing {ct.slice_spacing_mm} mm outside 0.3–5 mm"),
        (0.0 <= ct.psf_fwhm_mm <= 3.0, f"PSF FWHM {ct.psf_fwhm_mm} mm outside 0–3 mm"),
        (0.0 <= ct.noise_sd_hu <= 100.0, f"noise SD {ct.noise_sd_hu} HU outside 0–100 HU"),
        ((ct.rows or ct.matrix) <= ct.matrix and (ct.columns or ct.matrix) <= ct.matrix,
         "rows/columns must not exceed the matrix"),
        (ct.s_range_mm is None or 10.0 <= ct.s_range_mm[1] - ct.s_range_mm[0] <= 1000.0,
         f"scan range {ct.s_range_mm} must run upwards over 10–1000 mm"),
    ]
    for ok, what in checks:
        if not ok:
            raise InputError(
                f"Spine phantom {out}: {what}. Potential fix: use the defaults "
                "(512 matrix, 400 mm, vendor slice thickness, 0.8 mm PSF, 13 HU)."
            )
    check_output_folder(out, "Spine phantom")


def write_spine_study(
    out_dir: str | Path,
    *,
    vendor: str = "siemens",
    seed: int = 0,
    options: SpineOptions | None = None,
    ct: CtProtocol | None = None,
    mr: MrProtocol | None = None,
    noise_free: bool = False,
    enhanced: bool = False,
    compressed: bool = False,
    field_strength_t: float | None = None,
) -> StudyTruth:
    """Write the thoracolumbar-pelvic spine phantom: CT and MR as DICOM, truth and ROIs.

    Parameters
    ----------
    out_dir : str or Path
        New or empty folder.
    vendor : {"siemens", "ge", "philips"}
        Header style; also the CT defaults (GE: 1.25 mm, signed pixels, PixelPaddingValue
        −2000 outside the reconstruction circle, Implicit VR Little Endian; Philips: 2 mm
        slices every 1.5 mm; Siemens: 1.5 mm).
    seed : int
        Seeds the noise, the lesion shapes, the small anatomical variation and every UID.
    options : SpineOptions, optional
        Anatomical variants and lesion sets.
    ct : CtProtocol, optional
        Matrix, field of view, slices, PSF, noise, patient position.
    mr : MrProtocol, optional
        Sagittal Dixon and DWI grids; pass ``MrProtocol(dixon_slices=0)`` for no MR.
    noise_free : bool
        No CT or MR noise (the blur stays).
    enhanced, compressed : bool
        As in `bonelesion.phantom.write_study`.
    field_strength_t : float, optional
        MR field strength (default: the vendor's).

    Returns
    -------
    StudyTruth
        With ``anatomy == "thoracolumbar_pelvis"`` and the `SpineTruth` block.

    Raises
    ------
    InputError
        Unknown vendor or patient position, bad seed, protocol values out of range, or a
        non-empty output folder.
    """
    out = Path(out_dir)
    opt = options or SpineOptions()
    proto = ct or CtProtocol()
    mr_proto = mr or MrProtocol()
    _check(out, vendor, seed, proto)
    style = VENDOR_STYLES[vendor]
    thickness = proto.slice_thickness_mm or style.ct_spine_slice_thickness_mm
    spacing = proto.slice_spacing_mm or (style.ct_spine_slice_spacing_mm
                                         if proto.slice_thickness_mm is None else thickness)
    field_t = float(style.field_strength_t if field_strength_t is None else field_strength_t)
    if not 0.2 <= field_t <= 11.7:
        raise InputError(
            f"Spine phantom {out}: field_strength_t must be in [0.2, 11.7] T, found {field_t}. "
            "Potential fix: pass 1.5 or 3.0."
        )
    prone = proto.patient_position.endswith("P")
    scene = build_scene(opt, seed=seed, prone=prone)
    grid = _ct_grid(scene, proto, spacing)
    key = "|".join(["bonelesion-phantom-spine", GENERATOR, vendor, str(seed), repr(opt),
                    repr(proto), repr(mr_proto), f"enh={enhanced}", f"cmp={compressed}",
                    f"nf={noise_free}", f"B0={field_t}"])
    study_uid = str(generate_uid(prefix=uid_prefix(seed), entropy_srcs=[key, "study"]))
    for_uid = str(generate_uid(prefix=uid_prefix(seed), entropy_srcs=[key, "frame-of-reference"]))
    ctx = WriteContext(key=key, seed=seed, style=style, enhanced=enhanced, compressed=compressed,
                       study_instance_uid=study_uid, frame_of_reference_uid=for_uid,
                       study_description="PHANTOM THORACOLUMBAR SPINE PELVIS",
                       body_part_examined="SPINE")
    streams = np.random.SeedSequence([seed, 0x5B1E]).spawn(4)
    rng_ct, rng_dixon, rng_dwi, rng_tex = (np.random.default_rng(s) for s in streams)
    texture = (_texture_block(rng_tex, proto.trabecular_texture_sd_hu)
               if proto.trabecular_texture_sd_hu > 0 else None)
    noise_sd = 0.0 if noise_free else proto.noise_sd_hu
    padding = style.ct_padding_value
    stored, prof, sub_pixels = _render_ct(
        scene, grid, thickness_mm=thickness, psf_fwhm_mm=proto.psf_fwhm_mm, noise_sd_hu=noise_sd,
        rng=rng_ct, signed=style.ct_signed_pixels, bits_stored=style.ct_bits_stored,
        padding_value=padding, texture=texture)
    centre = grid.index_to_lps((np.asarray(grid.shape, float) - 1.0) / 2.0)[0]
    ct_truth = CtReconstructionTruth(
        rows=grid.shape[1], columns=grid.shape[2], slices=grid.shape[0],
        pixel_spacing_mm=float(grid.spacing_mm[1]), slice_spacing_mm=float(spacing),
        slice_thickness_mm=float(thickness), field_of_view_mm=float(proto.field_of_view_mm),
        field_of_view_centre_lps_mm=_t3(centre), patient_position=proto.patient_position,
        psf_fwhm_in_plane_mm=float(proto.psf_fwhm_mm),
        slice_profile_fwhm_mm=round(prof.fwhm_mm, 4),
        slice_profile_gauss_fwhm_mm=_SLICE_PROFILE_GAUSS_FWHM_MM, noise_sd_hu=noise_sd,
        trabecular_texture_sd_hu=float(proto.trabecular_texture_sd_hu),
        render_sub_slices=prof.sub, render_sub_pixels=sub_pixels,
        pixel_padding_value=padding,
        rescale_intercept_hu=CT_RESCALE_INTERCEPT_HU, rescale_slope=1.0,
        bits_stored=style.ct_bits_stored, signed_pixels=style.ct_signed_pixels)

    ct_ts = JPEGLSLossless if compressed else (
        ImplicitVRLittleEndian if style.ct_implicit_vr else ExplicitVRLittleEndian)
    series: list[tuple[SeriesSpec, Grid, str]] = [(SeriesSpec(
        role="ct", modality="CT", series_number=2,
        series_description=style.ct_spine_description.format(thickness_mm=thickness,
                                                             spacing_mm=spacing),
        transfer_syntax_uid=JPEGLSLossless,
        uncompressed_transfer_syntax_uid=(ImplicitVRLittleEndian if style.ct_implicit_vr
                                          else ExplicitVRLittleEndian),
        patient_position=proto.patient_position, bits_stored=style.ct_bits_stored,
        pixel_padding_value=padding,
        spacing_between_slices_mm=spacing if abs(spacing - thickness) > 1e-6 else None,
        stacks=[StackSpec(pixels=stored, grid=grid, image_type=style.ct_image_type,
                          window_center=400.0, window_width=1800.0,
                          slice_thickness_mm=thickness if abs(spacing - thickness) > 1e-6
                          else None)],
    ), grid, str(ct_ts))]
    if mr_proto.dixon_slices > 0:
        series += _mr_series(scene, grid, mr_proto, style, field_t, noise_free, rng_dixon,
                             rng_dwi, compressed)

    out.mkdir(parents=True, exist_ok=True)
    dicom_dir = out / DICOM_DIRNAME
    series_truth = []
    try:
        for spec, g, ts in series:
            uid, folder, n_files = write_series(ctx, spec, dicom_dir)
            is_ct = spec.modality == "CT"
            sop_class = (ENHANCED_CT_IMAGE_STORAGE if enhanced else CT_IMAGE_STORAGE) if is_ct \
                else (ENHANCED_MR_IMAGE_STORAGE if enhanced else MR_IMAGE_STORAGE)
            series_truth.append(SeriesTruth(
                role=spec.role, series_instance_uid=uid, series_number=spec.series_number,
                series_description=spec.series_description, modality=spec.modality,
                sop_class_uid=str(sop_class), transfer_syntax_uid=ts,
                path=folder.relative_to(out).as_posix(), n_files=n_files,
                b_values_s_per_mm2=tuple(float(s.b_value_s_per_mm2) for s in spec.stacks
                                         if s.b_value_s_per_mm2 is not None)
                if spec.role == "dwi" else (),
                echo_time_ms=float(spec.stacks[0].echo_time_ms),
                image_type=enhanced_image_type(spec.stacks[0].image_type) if enhanced
                else tuple(spec.stacks[0].image_type),
                shape=(int(g.shape[0]), int(g.shape[1]), int(g.shape[2])),
                spacing_mm=_t3f(g.spacing_mm), origin_lps_mm=_t3f(g.origin_lps_mm),
                direction_lps=tuple(_t3f(row) for row in np.asarray(g.direction_lps)),
            ))
    except Exception:
        shutil.rmtree(dicom_dir, ignore_errors=True)
        raise

    spine = _spine_truth(scene, grid, stored, ct_truth, prof)
    te_op_ms, te_in_ms = echo_times_ms(field_t)
    materials: dict[str, Material] = {}
    for info in scene.labels:
        materials.setdefault(info.material.name, info.material)
    lesion_rows = []
    for les in spine.lesions:
        lesion_rows.append(LesionTruth(
            lesion_id=les.lesion_id, vertebra=les.bone, kind=les.kind,
            center_lps_mm=les.centre_lps_mm, radius_mm=les.equivalent_radius_mm,
            attenuation_mean_hu=les.attenuation_true_hu, fat_fraction=les.fat_fraction,
            chemical_shift_ratio=abs(1.0 - 2.0 * les.fat_fraction),
            adc_mm2_per_s=les.adc_mm2_per_s, mr_signal_scale=les.t1w_signal_scale,
            expected_nature=les.expected_nature, treated=False))
    truth = StudyTruth(
        schema_version=TRUTH_SCHEMA_VERSION, generator=GENERATOR, vendor=vendor, seed=seed,
        enhanced=enhanced, compressed=compressed, noise_free=noise_free,
        study_instance_uid=study_uid, frame_of_reference_uid=for_uid,
        acquisition=AcquisitionTruth(
            magnetic_field_strength_t=field_t, echo_time_opposed_phase_ms=te_op_ms,
            echo_time_in_phase_ms=te_in_ms, dixon_full_scale=DIXON_FULL_SCALE,
            dwi_b_values_s_per_mm2=DWI_B_VALUES_S_PER_MM2, dwi_s0_full_scale=DWI_S0_FULL_SCALE,
            adc_map_units_mm2_per_s=1.0e-6, ct_rescale_intercept_hu=CT_RESCALE_INTERCEPT_HU,
            ct_rescale_slope=1.0),
        noise=NoiseTruth(ct_sd_hu=noise_sd, dixon_sd=0.0 if noise_free else DIXON_NOISE_SD,
                         dwi_sd=0.0 if noise_free else DWI_NOISE_SD),
        tissues=tuple(TissueTruth(name=m.name, attenuation_hu=m.attenuation_hu,
                                  fat_fraction=m.fat_fraction,
                                  chemical_shift_ratio=abs(1.0 - 2.0 * m.fat_fraction),
                                  adc_mm2_per_s=m.adc_mm2_per_s, mr_signal_scale=m.t1w_scale)
                      for m in materials.values()),
        lesions=tuple(lesion_rows),
        series=tuple(series_truth),
        anatomy=SPINE_ANATOMY,
        spine=spine,
    )
    write_truth(truth, out / TRUTH_FILENAME)
    write_rois_csv(truth, out / ROIS_FILENAME)
    logger.info("Spine phantom study %s written to %s (%s, %d series)", study_uid, out, vendor,
                len(series_truth))
    return truth


def _t3f(v: object) -> tuple[float, float, float]:
    a = np.asarray(v, float)
    return float(a[0]), float(a[1]), float(a[2])


def _mr_series(scene: SpineScene, ct_grid: Grid, proto: MrProtocol, style: VendorStyle,
               field_t: float, noise_free: bool, rng_dixon: np.random.Generator,
               rng_dwi: np.random.Generator, compressed: bool
               ) -> list[tuple[SeriesSpec, Grid, str]]:
    corners = np.array([ct_grid.index_to_lps(np.array([[k, 0, 0]], float))[0][2]
                        for k in (0, ct_grid.shape[0] - 1)])
    s_range = (float(corners.min()), float(corners.max()))
    dixon_grid = _mr_grid(scene, n_slices=proto.dixon_slices, slice_mm=proto.dixon_slice_mm,
                          pixel_mm=proto.dixon_pixel_mm, ap_extent_mm=proto.ap_extent_mm,
                          s_range=s_range)
    dwi_grid = _mr_grid(scene, n_slices=proto.dwi_slices, slice_mm=proto.dwi_slice_mm,
                        pixel_mm=proto.dwi_pixel_mm, ap_extent_mm=proto.ap_extent_mm,
                        s_range=s_range)
    ff = scene.lut("fat_fraction")
    t1 = scene.lut("t1w_scale")
    t2 = scene.lut("t2w_scale")
    adc = scene.lut("adc_mm2_per_s")
    water, fat = _render_mr_fractions(scene, dixon_grid, [
        np.float32(DIXON_FULL_SCALE) * t1 * (1 - ff), np.float32(DIXON_FULL_SCALE) * t1 * ff])
    ip = water + fat
    op_signed = water - fat
    if not noise_free:
        ip = np.abs(ip + rng_dixon.standard_normal(ip.shape, dtype=np.float32)
                    * np.float32(DIXON_NOISE_SD))
        op_signed = op_signed + rng_dixon.standard_normal(ip.shape, dtype=np.float32) * \
            np.float32(DIXON_NOISE_SD)
    op = np.abs(op_signed)
    dominant = water >= fat
    water_rec = np.where(dominant, (ip + op) / 2, (ip - op) / 2)
    fat_rec = np.where(dominant, (ip - op) / 2, (ip + op) / 2)
    s0 = np.float32(DWI_S0_FULL_SCALE) * t2 * (1 - ff)
    dwi_luts = [s0 * np.exp(-np.float32(b) * adc).astype(np.float32)
                for b in DWI_B_VALUES_S_PER_MM2]
    dwi = np.stack(_render_mr_fractions(scene, dwi_grid, dwi_luts))
    if not noise_free:
        dwi = np.abs(dwi + rng_dwi.standard_normal(dwi.shape, dtype=np.float32)
                     * np.float32(DWI_NOISE_SD))
    dwi_stored = _to_uint16(dwi)
    adc_stored = fit_adc_map(dwi_stored)
    te_op_ms, te_in_ms = echo_times_ms(field_t)
    extra = {"field_strength_t": str(field_t)}
    out: list[tuple[SeriesSpec, Grid, str]] = []
    images = {"dixon_in_phase": (ip, te_in_ms, RLELossless),
              "dixon_opposed_phase": (op, te_op_ms, RLELossless),
              "dixon_water": (water_rec, te_in_ms, JPEG2000Lossless),
              "dixon_fat": (fat_rec, te_in_ms, JPEG2000Lossless)}
    for number, (role, (image, te, ts)) in enumerate(images.items(), start=10):
        out.append((SeriesSpec(
            role=role, modality="MR", series_number=number,
            series_description=style.dixon_description[role],
            transfer_syntax_uid=ts, repetition_time_ms=_DIXON_TR_MS,
            flip_angle_deg=_DIXON_FLIP_DEG, sequence="GRE", extra=extra,
            stacks=[StackSpec(pixels=_to_uint16(image), grid=dixon_grid,
                              image_type=style.dixon_image_type[role], echo_time_ms=te,
                              window_center=1200.0, window_width=2500.0)],
        ), dixon_grid, str(ts if compressed else ExplicitVRLittleEndian)))
    out.append((SeriesSpec(
        role="dwi", modality="MR", series_number=20, series_description=style.dwi_description,
        transfer_syntax_uid=JPEG2000Lossless, repetition_time_ms=_DWI_TR_MS,
        flip_angle_deg=90.0, sequence="EPI", extra=extra,
        stacks=[StackSpec(pixels=dwi_stored[i], grid=dwi_grid,
                          image_type=style.dwi_trace_image_type if b > 0
                          else style.dwi_b0_image_type,
                          echo_time_ms=_DWI_TE_MS, b_value_s_per_mm2=b,
                          window_center=800.0, window_width=1600.0)
                for i, b in enumerate(DWI_B_VALUES_S_PER_MM2)],
    ), dwi_grid, str(JPEG2000Lossless if compressed else ExplicitVRLittleEndian)))
    out.append((SeriesSpec(
        role="adc", modality="MR", series_number=21, series_description=style.adc_description,
        transfer_syntax_uid=JPEGLSLossless, repetition_time_ms=_DWI_TR_MS, flip_angle_deg=90.0,
        sequence="EPI", extra=extra,
        stacks=[StackSpec(pixels=adc_stored, grid=dwi_grid, image_type=style.adc_image_type,
                          echo_time_ms=_DWI_TE_MS, is_adc=True, window_center=1000.0,
                          window_width=2000.0)],
    ), dwi_grid, str(JPEGLSLossless if compressed else ExplicitVRLittleEndian)))
    return out


def write_spine_study_from_options(
    out_dir: str | Path,
    *,
    vendor: str = "siemens",
    seed: int = 0,
    enhanced: bool = False,
    compressed: bool = False,
    noise_free: bool = False,
    lumbar_rib: bool = False,
    sacralised_l5: bool = False,
    osteoporotic: bool = False,
    contrast: bool = False,
    lytic_lesions: bool = False,
    lesions: bool = True,
    look_alikes: bool = True,
    matrix: int | None = None,
    fov_mm: float | None = None,
    slice_thickness_mm: float | None = None,
    slice_spacing_mm: float | None = None,
    patient_position: str | None = None,
    psf_fwhm_mm: float | None = None,
    noise_sd_hu: float | None = None,
    mr: bool = True,
    small: bool = False,
    s_range_mm: tuple[float, float] | None = None,
    crop: tuple[int, int] | None = None,
) -> StudyTruth:
    """`write_spine_study` with flat options (what ``bonelesion phantom --anatomy spine`` takes).

    ``small`` starts from `SAMPLE_CT` / `SAMPLE_MR` (the sample_data study) instead of the
    defaults; every option given (not None) overrides the protocol value (``crop``: rows
    and columns of the CT, a rectangle of the reconstruction around the spine); ``mr=False``
    writes the CT only. See `write_spine_study` for the rest.
    """
    base_ct = SAMPLE_CT if small else CtProtocol()
    changes = {k: v for k, v in (("matrix", matrix), ("field_of_view_mm", fov_mm),
                                 ("slice_thickness_mm", slice_thickness_mm),
                                 ("slice_spacing_mm", slice_spacing_mm),
                                 ("patient_position", patient_position),
                                 ("psf_fwhm_mm", psf_fwhm_mm), ("noise_sd_hu", noise_sd_hu),
                                 ("s_range_mm", s_range_mm),
                                 ("rows", None if crop is None else int(crop[0])),
                                 ("columns", None if crop is None else int(crop[1])))
               if v is not None}
    ct = dataclasses.replace(base_ct, **changes)  # type: ignore[arg-type]
    mr_proto = (SAMPLE_MR if small else MrProtocol()) if mr else MrProtocol(dixon_slices=0)
    options = SpineOptions(lumbar_rib=lumbar_rib, sacralised_l5=sacralised_l5,
                           osteoporotic=osteoporotic, contrast=contrast, lesions=lesions,
                           lytic_lesions=lytic_lesions, look_alikes=look_alikes)
    return write_spine_study(out_dir, vendor=vendor, seed=seed, options=options, ct=ct,
                             mr=mr_proto, noise_free=noise_free, enhanced=enhanced,
                             compressed=compressed)
