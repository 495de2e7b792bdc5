"""Bone and spinal-column analysis of a CT, shared by the vertebra labeller and the detector.

Everything here is a pure function over a `Volume` in HU (no file I/O). The CT is first put
on a coarse working grid (`WorkGrid`): block means of about 2 mm, axes reordered and flipped
to a canonical (superior, posterior, left) order, so that the rest of the code reasons in
patient directions whatever the slice order or patient position. Coarse masks are mapped
back onto boxes of the original grid (`WorkGrid.source_box_mask`) where detail matters.

Steps
-----
1. `work_grid`: block-mean HU on the canonical coarse grid (and the block maximum, which
   keeps a small dense focus visible for the lesion detector).
2. `bone_masks`: bone (HU ≥ ``bone_threshold_hu``: cortex, dense bone) and the bone with its
   in-plane (axial) holes filled: a vertebral body is a cortical ring around marrow, so the
   filled mask holds the body whatever the marrow density (osteoporotic marrow of 60–110 HU
   is not separable from soft tissue by a threshold; its cortex is).
3. `spine_axis`: per axial slice, the deepest point (distance transform) of the filled bone
   near the body's midline is a vertebral-body centre; outliers are dropped against a running
   median and the track is smoothed into a curved axis with tangents.
4. `lateral_ray_profile`: along that axis, in the plane normal to it, rays go left and right
   (and anterolaterally, away from the posterior elements and rib heads); the bright cortex of
   a body is met by nearly every ray, a disc by none. The profile's low runs are discs.

References
----------
Burns JE et al. Radiology 2013;268(1):69–78 (classical detection of sclerotic spine
metastases: spinal column segmentation, then candidates inside the bodies).
Glocker B et al. MICCAI 2012 (vertebra localisation along the spine curve; the anchors
below are the ones radiologists use: Carrino JA et al., Radiology 2011;259(1):196–202).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import InputError
from bonelesion.model.volume import Volume
from bonelesion.roi.config import BoneConfig
from bonelesion.units import IntensityUnit

__all__ = [
    "WorkGrid",
    "BoneMasks",
    "SpineAxis",
    "work_grid",
    "bone_masks",
    "spine_axis",
    "lateral_ray_profile",
    "normal_frames",
    "BoneAnalysis",
    "analyse_bone",
    "fill_holes_2d",
    "label_2d",
    "grown_box",
    "mask_depth",
    "disk",
]

#: LPS component of each canonical axis: superior (S, index 2), posterior (P, 1), left (L, 0).
_CANONICAL_LPS = (2, 1, 0)


@dataclass(frozen=True, kw_only=True, eq=False)
class WorkGrid:
    """A CT on a coarse, canonically oriented grid.

    Attributes
    ----------
    hu : (S, P, L) ndarray of float32, HU
        Block means; axis 0 runs inferior → superior, axis 1 anterior → posterior, axis 2
        right → left.
    hu_max : (S, P, L) ndarray of float32, HU
        Block maxima (a focus smaller than a block stays visible).
    spacing_mm : (3,) tuple of float
        Spacing along the canonical axes.
    factors : (3,) tuple of int
        Block size along each *source* array axis.
    order : (3,) tuple of int
        Source array axis of each canonical axis.
    flips : (3,) tuple of bool
        Whether a canonical axis runs against its source axis.
    source_shape : (3,) tuple of int
    obliquity_deg : float
        Largest angle between a source axis and the patient axis it was mapped to (0 for an
        axial, coronal or sagittal acquisition).
    """

    hu: NDArray[np.float32]
    hu_max: NDArray[np.float32]
    spacing_mm: tuple[float, float, float]
    factors: tuple[int, int, int]
    order: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    source_shape: tuple[int, int, int]
    obliquity_deg: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """Coarse canonical shape."""
        s = self.hu.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    def to_source_index(self, index: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map (N, 3) continuous canonical coarse indices to source continuous indices."""
        idx = np.atleast_2d(np.asarray(index, dtype=np.float64))
        out = np.empty_like(idx)
        for k in range(3):
            a = self.order[k]
            n_coarse = self.shape[k]
            j = (n_coarse - 1 - idx[:, k]) if self.flips[k] else idx[:, k]
            f = self.factors[a]
            out[:, a] = j * f + (f - 1) / 2.0
        return out

    def from_source_index(self, index: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map (N, 3) source continuous indices to canonical coarse continuous indices."""
        idx = np.atleast_2d(np.asarray(index, dtype=np.float64))
        out = np.empty_like(idx)
        for k in range(3):
            a = self.order[k]
            f = self.factors[a]
            j = (idx[:, a] - (f - 1) / 2.0) / f
            out[:, k] = (self.shape[k] - 1 - j) if self.flips[k] else j
        return out

    def mm_to_source_index(self, points_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map (N, 3) canonical mm positions (index × spacing) to source indices."""
        return self.to_source_index(np.atleast_2d(points_mm) / np.asarray(self.spacing_mm))

    def source_index_to_mm(self, index: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map (N, 3) source indices to canonical mm positions."""
        return self.from_source_index(index) * np.asarray(self.spacing_mm)

    def source_box(self, lo_mm: NDArray[np.float64], hi_mm: NDArray[np.float64]
                   ) -> tuple[slice, slice, slice]:
        """Source-array slices covering the canonical mm box [lo, hi] (clipped)."""
        corners = np.array([[a, b, c] for a in (lo_mm[0], hi_mm[0]) for b in (lo_mm[1], hi_mm[1])
                            for c in (lo_mm[2], hi_mm[2])])
        idx = self.mm_to_source_index(corners)
        out = []
        for a in range(3):
            f = self.factors[a]
            lo = int(math.floor(idx[:, a].min() - f))
            hi = int(math.ceil(idx[:, a].max() + f)) + 1
            out.append(slice(max(0, lo), min(self.source_shape[a], hi)))
        return out[0], out[1], out[2]

    def source_box_mask(self, mask: NDArray[Any], box: tuple[slice, slice, slice]
                        ) -> NDArray[Any]:
        """Map a coarse canonical array onto a box of the source grid (block → its voxels).

        Any dtype: a mask, or values such as a background map (nearest block).
        """
        # the canonical mask in source-axis order, then each source axis taken in turn
        out = np.transpose(mask, [self.order.index(a) for a in range(3)])
        for a in range(3):
            out = out.take(self._coarse_of(box[a], a), axis=a)
        return np.asarray(out)

    def source_box_counts(self, mask: NDArray[np.bool_], box: tuple[slice, slice, slice]
                          ) -> NDArray[np.int64]:
        """Count the voxels of a source-box mask in each coarse block (canonical shape).

        The inverse of `source_box_mask`: each source voxel counts in the block that
        method maps it from (the voxels past the last whole block in the last block).
        """
        shape = self.shape
        strides = (shape[1] * shape[2], shape[2], 1)
        # the canonical flat index of every voxel of the box, built from one axis at a time
        flat: NDArray[np.intp] = np.zeros((1, 1, 1), np.intp)
        for a in range(3):
            along = self._coarse_of(box[a], a) * strides[self.order.index(a)]
            flat = flat + along.reshape([-1 if k == a else 1 for k in range(3)])
        counts = np.bincount(flat[np.asarray(mask, dtype=bool)],
                             minlength=shape[0] * shape[1] * shape[2])
        return counts.reshape(shape)

    def _coarse_of(self, sl: slice, axis: int) -> NDArray[np.intp]:
        """Canonical coarse index of each source index of ``sl`` along source ``axis``."""
        k = self.order.index(axis)
        j = np.clip(np.arange(sl.start, sl.stop) // self.factors[axis], 0, self.shape[k] - 1)
        return (self.shape[k] - 1 - j) if self.flips[k] else j


def _canonical_order(direction_lps: NDArray[np.float64]
                     ) -> tuple[tuple[int, int, int], tuple[bool, bool, bool], float]:
    """Source axis and flip of each canonical axis, and the obliquity of the grid."""
    d = np.asarray(direction_lps, dtype=np.float64)
    component = [int(np.argmax(np.abs(d[:, k]))) for k in range(3)]
    if len(set(component)) != 3:
        # a strongly oblique grid: give each patient axis the source axis closest to it
        component = [-1, -1, -1]
        for k in np.argsort(-np.abs(d).max(axis=0)):
            free = [c for c in range(3) if c not in component]
            component[int(k)] = max(free, key=lambda c: abs(d[c, int(k)]))
    order = tuple(component.index(c) for c in _CANONICAL_LPS)
    flips = tuple(bool(d[c, order[k]] < 0) for k, c in enumerate(_CANONICAL_LPS))
    cosines = [abs(d[component[k], k]) for k in range(3)]
    obliquity = float(np.degrees(np.arccos(np.clip(min(cosines), -1.0, 1.0))))
    return (order[0], order[1], order[2]), (flips[0], flips[1], flips[2]), obliquity


def _reduce_axis(array: NDArray[Any], factor: int, axis: int, *, peak: bool) -> NDArray[Any]:
    """Sum (float32) or maximum of each run of ``factor`` elements along ``axis``."""
    n = array.shape[axis] // factor
    index: list[slice] = [slice(None)] * array.ndim
    out: NDArray[Any] | None = None
    for k in range(factor):
        index[axis] = slice(k, n * factor, factor)
        part = array[tuple(index)]
        if out is None:
            out = part.copy() if peak else part.astype(np.float32)
        elif peak:
            np.maximum(out, part, out=out)
        else:
            out += part
    assert out is not None
    return out


def _block_reduce(array: NDArray[np.generic], factors: tuple[int, int, int]
                  ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Block mean and block maximum (float32), computed a slab at a time.

    One axis at a time, the slowest first: each pass reads runs of contiguous rows, and
    the strided pass along the rows comes last, on data already reduced by the others.
    """
    shape = [n // f for n, f in zip(array.shape, factors, strict=True)]
    mean = np.empty(shape, np.float32)
    peak = np.empty(shape, np.float32)
    step = 8  # coarse slices per slab: a slab's passes stay in cache
    for i in range(0, shape[0], step):
        j = min(shape[0], i + step)
        slab = array[i * factors[0]:j * factors[0], :shape[1] * factors[1],
                     :shape[2] * factors[2]]
        total: NDArray[Any] = slab
        top: NDArray[Any] = slab
        for axis in range(3):
            total = _reduce_axis(total, factors[axis], axis, peak=False)
            top = _reduce_axis(top, factors[axis], axis, peak=True)
        mean[i:j] = total / float(factors[0] * factors[1] * factors[2])
        peak[i:j] = top
    return mean, peak


def work_grid(volume: Volume, *, config: BoneConfig) -> WorkGrid:
    """Put a CT on the coarse canonical working grid.

    Parameters
    ----------
    volume : Volume
        CT in HU (any slice order, patient position or in-plane orientation).
    config : BoneConfig
        ``work_spacing_mm``: target block size.

    Returns
    -------
    WorkGrid

    Raises
    ------
    InputError
        Not a CT in HU, or fewer than 2 blocks along an axis.
    """
    if volume.intensity_unit is not IntensityUnit.HU:
        raise InputError(
            f"Series {volume.series.series_instance_uid or '(no UID)'}: bone analysis needs a "
            f"CT in HU, found intensity unit {volume.intensity_unit.value}. Potential fix: "
            "give the study's CT series.")
    factors = tuple(max(1, int(round(config.work_spacing_mm / s))) for s in volume.spacing_mm)
    f3 = (factors[0], factors[1], factors[2])
    if any(n // f < 2 for n, f in zip(volume.shape, f3, strict=True)):
        raise InputError(
            f"Series {volume.series.series_instance_uid or '(no UID)'}: volume of shape "
            f"{volume.shape} is too small for bone analysis (fewer than 2 blocks of "
            f"{config.work_spacing_mm:g} mm along an axis). Potential fix: give a CT volume "
            "covering the spine.")
    mean, peak = _block_reduce(np.asarray(volume.array), f3)
    order, flips, obliquity = _canonical_order(volume.direction_lps)
    mean_c, peak_c = np.transpose(mean, order), np.transpose(peak, order)
    for k in range(3):
        if flips[k]:
            mean_c, peak_c = np.flip(mean_c, axis=k), np.flip(peak_c, axis=k)
    spacing = tuple(volume.spacing_mm[order[k]] * f3[order[k]] for k in range(3))
    return WorkGrid(hu=np.ascontiguousarray(mean_c), hu_max=np.ascontiguousarray(peak_c),
                    spacing_mm=(spacing[0], spacing[1], spacing[2]), factors=f3, order=order,
                    flips=flips, source_shape=volume.shape, obliquity_deg=obliquity)


def grown_box(mask: NDArray[np.bool_], pad: Any) -> tuple[slice, ...] | None:
    """Bounding box of a mask's voxels grown by ``pad`` voxels, clipped to the array.

    ``pad`` is one int or one per axis. None for an empty mask.
    """
    pads = np.broadcast_to(np.asarray(pad, dtype=int), (mask.ndim,))
    box = []
    for axis in range(mask.ndim):
        found = np.flatnonzero(np.any(mask, axis=tuple(k for k in range(mask.ndim) if k != axis)))
        if not len(found):
            return None
        box.append(slice(max(int(found[0]) - int(pads[axis]), 0),
                         min(int(found[-1]) + 1 + int(pads[axis]), mask.shape[axis])))
    return tuple(box)


def mask_depth(mask: NDArray[np.bool_], spacing_mm: Any) -> NDArray[np.float64]:
    """Distance of each voxel of a mask to the nearest voxel outside it (0 outside).

    ``scipy.ndimage.distance_transform_edt(mask, sampling=spacing_mm)``, computed over the
    mask's bounding box grown by one voxel: every voxel beyond lies outside the mask, and
    none of them is nearer to a voxel of the mask than that shell, so the values are the
    whole array's.
    """
    from scipy import ndimage

    out = np.zeros(mask.shape, np.float64)
    box = grown_box(mask, 1)
    if box is not None:
        out[box] = ndimage.distance_transform_edt(mask[box], sampling=spacing_mm)
    return out


def disk(radius_mm: float, spacing_mm: tuple[float, float]) -> NDArray[np.bool_]:
    """2-D elliptical structuring element of a physical radius on an anisotropic grid."""
    half = [max(0, int(math.floor(radius_mm / s))) for s in spacing_mm]
    r = np.arange(-half[0], half[0] + 1)[:, None] * spacing_mm[0]
    c = np.arange(-half[1], half[1] + 1)[None, :] * spacing_mm[1]
    return np.asarray((r * r + c * c) <= radius_mm * radius_mm + 1e-9)


#: 4-connectivity within an axial slice, none across slices.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = [[False, True, False], [True, True, True], [False, True, False]]


def label_2d(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """Label the 4-connected components of every axial (axis-0) slice of a 3-D mask.

    As `scipy.ndimage.label` on each slice, numbered across the volume: no component spans
    two slices.
    """
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=_IN_PLANE)
    return labels, int(n)


def fill_holes_2d(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Fill the holes of every axial (axis-0) slice of a 3-D mask.

    The same as `scipy.ndimage.binary_fill_holes` on each slice (a hole is a 4-connected
    background component that does not reach the slice's edge), in one labelling of the
    background over the whole volume.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return mask.copy()
    background, n = label_2d(~mask)
    open_ = np.zeros(n + 1, dtype=bool)
    open_[0] = True  # the mask itself
    for edge in (background[:, 0, :], background[:, -1, :], background[:, :, 0],
                 background[:, :, -1]):
        open_[edge.ravel()] = True
    return np.asarray(mask | ~open_[background])


@dataclass(frozen=True, kw_only=True, eq=False)
class BoneMasks:
    """Coarse masks of one CT (canonical grid).

    Attributes
    ----------
    bone : (S, P, L) ndarray of bool
        HU ≥ ``bone_threshold_hu`` (cortex and dense bone).
    filled : (S, P, L) ndarray of bool
        ``bone`` with every axial slice's holes filled (bodies with their marrow; also the
        spinal canal where the neural arch closes around it).
    patient : (S, P, L) ndarray of bool
        HU ≥ ``patient_threshold_hu`` (the body and the table).
    """

    bone: NDArray[np.bool_]
    filled: NDArray[np.bool_]
    patient: NDArray[np.bool_]


def bone_masks(grid: WorkGrid, *, config: BoneConfig, threshold_hu: float | None = None,
               closing_mm: float = 0.0) -> BoneMasks:
    """Threshold the coarse CT into bone, filled bone and patient masks.

    ``threshold_hu`` (default ``bone_threshold_hu``) and an in-plane closing of
    ``closing_mm`` before the holes are filled are the fallback of `analyse_bone` for noisy
    or low-contrast CTs, whose thin cortex breaks into dots at the default threshold.
    """
    from scipy import ndimage

    bone = grid.hu >= (config.bone_threshold_hu if threshold_hu is None else threshold_hu)
    closed = bone
    if closing_mm > 0:
        closed = ndimage.binary_closing(
            bone, structure=disk(closing_mm, (grid.spacing_mm[1], grid.spacing_mm[2]))[None])
    return BoneMasks(bone=bone, filled=fill_holes_2d(closed),
                     patient=grid.hu >= config.patient_threshold_hu)


@dataclass(frozen=True, kw_only=True, eq=False)
class SpineAxis:
    """The curved axis of the vertebral bodies, one point per coarse axial slice.

    Attributes
    ----------
    start, stop : int
        Coarse slices [start, stop) the axis covers.
    points_mm : (n, 3) ndarray
        Canonical mm positions (S, P, L) of the axis.
    tangents : (n, 3) ndarray
        Unit tangents, pointing superior.
    found : (n,) ndarray of bool
        Slices where a body centre was found directly (the others are interpolated).
    depth_mm : (n,) ndarray
        Depth (distance to the filled-bone surface) at the chosen centre: about the body's
        AP half-depth at mid-body.
    arc_mm : (n,) ndarray
        Arc length along the axis from its inferior end.
    """

    start: int
    stop: int
    points_mm: NDArray[np.float64]
    tangents: NDArray[np.float64]
    found: NDArray[np.bool_]
    depth_mm: NDArray[np.float64]
    arc_mm: NDArray[np.float64]

    def at_arc(self, arc_mm: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Axis point and unit tangent at an arc length (linear interpolation)."""
        p = np.array([np.interp(arc_mm, self.arc_mm, self.points_mm[:, k]) for k in range(3)])
        t = np.array([np.interp(arc_mm, self.arc_mm, self.tangents[:, k]) for k in range(3)])
        return p, t / np.linalg.norm(t)

    def arc_of(self, points_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Arc length of the axis point nearest (along S, then projected) to each point.

        A point's arc length is that of the axis point whose normal plane holds it: found by
        projecting onto the local tangent from the axis point at the same S.
        """
        pts = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        s_axis = self.points_mm[:, 0]
        out = np.empty(len(pts))
        for n, p in enumerate(pts):
            arc = float(np.interp(p[0], s_axis, self.arc_mm))
            for _ in range(3):  # refine: move along the tangent to the normal plane
                q, t = self.at_arc(arc)
                arc += float(np.dot(p - q, t))
            out[n] = arc
        return out


def _running_nanmedian(x: NDArray[np.float64], half: int) -> NDArray[np.float64]:
    out = np.full_like(x, np.nan)
    for i in range(len(x)):
        seg = x[max(0, i - half): i + half + 1]
        seg = seg[np.isfinite(seg)]
        if seg.size:
            out[i] = float(np.median(seg))
    return out


def spine_axis(grid: WorkGrid, masks: BoneMasks, *, config: BoneConfig) -> SpineAxis | None:
    """Track the vertebral bodies from slice to slice; None when no spinal column is seen.

    A slice's body centre is the deepest point of the filled bone (largest distance to its
    surface) within ``midline_window_mm`` of the patient's left–right centre, accepted when
    that depth lies in [``body_depth_min_mm``, ``body_depth_max_mm``] (a vertebral body's AP
    half-depth: neither a rib or lamina, nor a skull or a phantom block). Centres further than
    ``axis_outlier_mm`` from the running median of their neighbours are dropped; the others are
    interpolated over the discs and smoothed.
    """
    from scipy import ndimage

    sp = grid.spacing_mm
    n = grid.shape[0]
    centres = np.full((n, 2), np.nan)
    depth = np.zeros(n)
    half_w = int(round(config.midline_window_mm / sp[2]))
    for i in range(n):
        filled = masks.filled[i]
        if not filled.any():
            continue
        cols = np.flatnonzero(masks.patient[i].any(axis=0))
        if cols.size == 0:
            continue
        weights = masks.patient[i].sum(axis=0)
        mid = int(round(float(np.average(np.arange(len(weights)), weights=weights))))
        lo, hi = max(0, mid - half_w), min(filled.shape[1], mid + half_w + 1)
        window = filled[:, lo:hi]
        if not window.any():
            continue
        dt = mask_depth(filled, sp[1:])[:, lo:hi]
        d = float(dt.max())
        depth[i] = d
        if config.body_depth_min_mm <= d <= config.body_depth_max_mm:
            # the ridge of the distance map, not its arg-max: a body is wider than deep,
            # and the arg-max wanders along its lateral axis
            ridge = dt >= 0.85 * d
            lab, _ = ndimage.label(ridge)
            r0, c0 = np.unravel_index(int(np.argmax(dt)), dt.shape)
            rr, cc = np.nonzero(lab == lab[r0, c0])
            centres[i] = (float(rr.mean()) * sp[1], (float(cc.mean()) + lo) * sp[2])
    ok = np.isfinite(centres[:, 0])
    if ok.sum() * sp[0] < config.min_column_length_mm:
        return None
    half = max(1, int(round(config.axis_median_window_mm / 2 / sp[0])))
    med_p = _running_nanmedian(centres[:, 0], half)
    med_l = _running_nanmedian(centres[:, 1], half)
    ok &= (np.abs(centres[:, 0] - med_p) <= config.axis_outlier_mm) & (
        np.abs(centres[:, 1] - med_l) <= config.axis_outlier_mm)
    idx = np.flatnonzero(ok)
    if idx.size * sp[0] < config.min_column_length_mm:
        return None
    start, stop = int(idx[0]), int(idx[-1]) + 1
    rng = np.arange(start, stop)
    p = np.interp(rng, idx, centres[idx, 0])
    l_ = np.interp(rng, idx, centres[idx, 1])
    sigma = config.axis_smoothing_mm / sp[0]
    pts = np.stack([rng * sp[0], ndimage.gaussian_filter1d(p, sigma, mode="nearest"),
                    ndimage.gaussian_filter1d(l_, sigma, mode="nearest")], axis=1)
    # tangents from a smoother track: the normal planes follow the curve of the column, not
    # the slice-to-slice jitter of the centres
    sigma_t = config.tangent_smoothing_mm / sp[0]
    smooth = np.stack([rng * sp[0], ndimage.gaussian_filter1d(p, sigma_t, mode="nearest"),
                       ndimage.gaussian_filter1d(l_, sigma_t, mode="nearest")], axis=1)
    tangents = np.gradient(smooth, axis=0) if len(pts) > 1 else np.array([[1.0, 0.0, 0.0]])
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    steps = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    return SpineAxis(start=start, stop=stop, points_mm=pts, tangents=tangents,
                     found=ok[start:stop], depth_mm=depth[start:stop], arc_mm=arc)


def normal_frames(tangents: NDArray[np.float64]
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Left and anterior unit vectors in the plane normal to each tangent."""
    left = np.array([0.0, 0.0, 1.0]) - tangents[:, 2:3] * tangents
    left /= np.linalg.norm(left, axis=1, keepdims=True)
    anterior = np.cross(tangents, left)  # superior × left = anterior (canonical S, P, L)
    return left, anterior


def lateral_ray_profile(grid: WorkGrid, axis: SpineAxis, *, config: BoneConfig,
                        step_mm: float = 1.0
                        ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Cortex met by lateral rays along the axis: (arc lengths, ray profile, central profile).

    At each arc position, rays leave the axis in the plane normal to it, to the left and right
    and up to ``ray_anterior_deg`` anterolaterally (``ray_posterior_deg`` posterolaterally),
    from ``ray_start_mm`` to ``ray_length_mm``. Each ray's maximum HU is taken; the profile is
    their ``ray_percentile``-th percentile. At a body, the rays cross its cortex; at a disc, they
    cross annulus and psoas. Lateral rays are insensitive to the sagittal tilt of the discs
    (lordosis, kyphosis), and staying anterior of the pedicles keeps the posterior elements and
    rib heads out. The central profile is the mean HU of the disc of ``central_radius_mm``
    around the axis in the same plane: endplates are its peaks.
    """
    from scipy import ndimage

    arcs = np.arange(0.0, float(axis.arc_mm[-1]) + 1e-9, step_mm)
    pts = np.stack([np.interp(arcs, axis.arc_mm, axis.points_mm[:, k]) for k in range(3)], 1)
    tan = np.stack([np.interp(arcs, axis.arc_mm, axis.tangents[:, k]) for k in range(3)], 1)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True)
    left, anterior = normal_frames(tan)
    angles = np.deg2rad(np.linspace(-config.ray_posterior_deg, config.ray_anterior_deg,
                                    config.ray_count_per_side))
    dirs = np.array([(side * math.cos(a), math.sin(a)) for side in (1.0, -1.0) for a in angles])
    radii = np.arange(config.ray_start_mm, config.ray_length_mm + 1e-9, 1.0)
    vec = dirs[None, :, 0:1] * left[:, None, :] + dirs[None, :, 1:2] * anterior[:, None, :]
    samples = pts[:, None, None, :] + vec[:, :, None, :] * radii[None, None, :, None]
    idx = (samples / np.asarray(grid.spacing_mm)).reshape(-1, 3).T
    values = ndimage.map_coordinates(grid.hu, idx, order=1, mode="nearest")
    ray_max = values.reshape(samples.shape[:3]).max(axis=2)
    # the central disc of radius ``central_radius_mm`` around the axis: its mean HU
    r = config.central_radius_mm
    offsets = np.arange(-r, r + 1e-9, 1.5)
    gl, ga = np.meshgrid(offsets, offsets, indexing="ij")
    inside = gl * gl + ga * ga <= r * r
    gl, ga = gl[inside], ga[inside]
    centre = (pts[:, None, :] + gl[None, :, None] * left[:, None, :]
              + ga[None, :, None] * anterior[:, None, :])
    cidx = (centre / np.asarray(grid.spacing_mm)).reshape(-1, 3).T
    central = ndimage.map_coordinates(grid.hu, cidx, order=1, mode="nearest")
    central_mean = central.reshape(centre.shape[:2]).mean(axis=1)
    return arcs, np.percentile(ray_max, config.ray_percentile, axis=1), central_mean


@dataclass(frozen=True, kw_only=True, eq=False)
class BoneAnalysis:
    """The shared bone analysis of one CT: working grid, masks, spinal axis and disc profile.

    Attributes
    ----------
    ct : Volume
        The CT analysed.
    grid : WorkGrid
    masks : BoneMasks
    axis : SpineAxis or None
        None when no spinal column was found (``notes`` says why).
    profile_arc_mm, profile_hu, profile_centre_hu : ndarray
        `lateral_ray_profile` along the axis (empty without an axis).
    notes : tuple of str
        What the analysis could not do, for the outputs.
    """

    ct: Volume
    grid: WorkGrid
    masks: BoneMasks
    axis: SpineAxis | None
    profile_arc_mm: NDArray[np.float64]
    profile_hu: NDArray[np.float64]
    profile_centre_hu: NDArray[np.float64]
    notes: tuple[str, ...] = ()

    def mm_to_lps(self, points_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Canonical mm positions → LPS mm."""
        return self.ct.index_to_lps(self.grid.mm_to_source_index(points_mm))

    def lps_to_mm(self, points_lps_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """LPS mm → canonical mm positions."""
        return self.grid.source_index_to_mm(self.ct.lps_to_index(points_lps_mm))

    def source_index_to_mm(self, index: NDArray[np.float64]) -> NDArray[np.float64]:
        """Source-grid indices → canonical mm positions."""
        return self.grid.source_index_to_mm(index)


def analyse_bone(ct: Volume, *, config: BoneConfig) -> BoneAnalysis:
    """Work grid, bone masks, spinal axis and lateral-ray profile of a CT.

    Raises
    ------
    InputError
        Not a CT in HU, or a volume too small to analyse (see `work_grid`).
    """
    grid = work_grid(ct, config=config)
    masks = bone_masks(grid, config=config)
    notes: list[str] = []
    if grid.obliquity_deg > 1.0:
        notes.append(f"the CT grid is oblique by {grid.obliquity_deg:.1f}° to the patient axes; "
                     "its axes were taken as the nearest patient axes")
    axis = spine_axis(grid, masks, config=config)
    if axis is None or axis.found.mean() < config.min_found_fraction:
        # a noisy or low-contrast CT: its thin cortex does not close into rings at the
        # default threshold; lower thresholds and closings bridge the gaps (first that works)
        for threshold, closing in zip(config.fallback_thresholds_hu, config.fallback_closings_mm,
                                      strict=True):
            masks_fb = bone_masks(grid, config=config, threshold_hu=threshold,
                                  closing_mm=closing)
            axis_fb = spine_axis(grid, masks_fb, config=config)
            if axis_fb is None or (axis is not None
                                   and axis_fb.found.mean() <= axis.found.mean()):
                continue
            masks, axis = masks_fb, axis_fb
            notes.append(
                "the cortex did not close into rings at the default bone threshold (a noisy or "
                f"low-contrast CT): bone taken at {threshold:g} HU and closed by {closing:g} mm")
            if axis.found.mean() >= config.min_found_fraction:
                break
    if axis is None:
        notes.append(
            "no spinal column in view: no run of vertebral-body-like bone (depth "
            f"{config.body_depth_min_mm:g}–{config.body_depth_max_mm:g} mm near the midline) "
            f"over at least {config.min_column_length_mm:g} mm")
        empty = np.zeros(0)
        return BoneAnalysis(ct=ct, grid=grid, masks=masks, axis=None, profile_arc_mm=empty,
                            profile_hu=empty, profile_centre_hu=empty, notes=tuple(notes))
    arcs, profile, central = lateral_ray_profile(grid, axis, config=config)
    return BoneAnalysis(ct=ct, grid=grid, masks=masks, axis=axis, profile_arc_mm=arcs,
                        profile_hu=profile, profile_centre_hu=central, notes=tuple(notes))
