"""Sclerotic-lesion candidates on CT: dense foci inside bone, standing out from the marrow.

Pure functions over the CT `Volume` and its bone analysis (`bonelesion.roi.bone`) and vertebra
labelling (`bonelesion.roi.vertebrae`); no file I/O. `detect_candidates` returns every focus
found, each with the reasons it was accepted or rejected; `Candidate.lesion()` makes an
accepted one a mask `Lesion` whose mask covers only the candidate's box on the CT grid.

Method
------
1. **Where**: the vertebral bodies (within ``column_radius_mm`` of the spinal axis and no
   further back than the body's half-depth plus ``body_posterior_margin_mm``: pedicle bases
   included, the neural arch not) and, below the sacral top, the pelvis (sacrum and ilia).
   Ribs, the neural arch and other bone are not searched.
2. **Background**: the local marrow attenuation, a normalized Gaussian average
   (``background_sigma_mm``) of the coarse grid over the bone interior, leaving out voxels above
   ``background_max_hu`` (cortex, lesions).
3. **Seeds** on the coarse grid's block maxima (a focus smaller than a block stays visible):
   at least ``seed_min_hu`` and ``seed_contrast_hu`` above the background, inside the bone
   (one block in from its surface). Seeds are grouped into boxes.
4. **Candidates** in each box, on the CT grid: voxels ``grow_contrast_hu`` above the
   background, inside the bone (``interior_margin_mm`` in from its hole-filled surface),
   connected to a seed voxel (hysteresis).
5. **Rules** against the known false positives, each a stated reason: smaller than
   ``min_volume_ml``; shallower than ``min_depth_mm`` (cortex, partial volume at the surface);
   an *endplate sclerosis band* (thin along the axis and wide, within ``endplate_distance_mm``
   of an endplate); an *osteophyte* (mostly outside the vertebral body, at its margin);
   *facet-joint sclerosis* (a plate in the posterior elements); any other *plate* (cortex,
   joint surface: thickness ratio below ``plate_max_thickness_ratio``).

The score (0–1) rises with the contrast over the marrow and with the volume:
``(1 − exp(−contrast / score_contrast_hu)) · (1 − exp(−volume / score_volume_ml))``.
Lytic candidates are not offered.

References
----------
Burns JE et al. Radiology 2013;268(1):69–78 (detection of sclerotic spine metastases on CT:
candidates inside the segmented column, then features and rules; 79 % sensitivity at 10.8 false
positives per patient). Ulano A et al. AJR 2016;207(2):362–368 (attenuation of sclerotic
metastases 654 ± 176 HU and enostoses 1190 ± 239 HU: both far above marrow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.roi.bone import BoneAnalysis, fill_holes_2d, label_2d
from bonelesion.roi.config import CandidateConfig, DetectionConfig
from bonelesion.roi.lesion import Lesion
from bonelesion.roi.vertebrae import SpineLabelling
from bonelesion.units import IntensityUnit

__all__ = ["Candidate", "CandidateSearch", "detect_candidates"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Candidate:
    """A dense focus found inside bone.

    Attributes
    ----------
    lesion_id : str
        ``det01`` …, in cranio-caudal order of the accepted candidates ("" when rejected).
    accepted : bool
    reasons : tuple of str
        Why it was accepted, or why rejected (first the rule that rejected it).
    kind : str
        ``sclerotic``.
    centre_lps_mm : (3,) tuple of float
        Centroid of the mask.
    volume_ml, radius_mm : float
        Volume, and the radius of the sphere of that volume.
    attenuation_mean_hu, attenuation_max_hu, background_hu, contrast_hu : float
    depth_mm : float
        Deepest voxel's distance to the bone surface.
    thickness_ratio : float
        Smallest over largest spread (principal axes) of the mask: 1 round, 0 flat.
    core_fraction : float
        Share of the mask left after a ``core_erosion_mm`` erosion (0 for a sheet).
    marrow_fraction : float
        Share of the bone within ``shell_mm`` around the focus that is marrow.
    vertebra : str
        Level (``L3``), ``S1``, ``sacrum``, ``ilium``, ``pelvis`` or "".
    vertebra_confidence : float
    part : str
        ``body``, ``posterior``, ``sacrum``, ``ilium``, ``pelvis`` or "".
    endplate_distance_mm : float or None
        Distance of the centroid to the nearest endplate (None away from the column).
    score : float
        0–1 (see the module docstring).
    mask : Volume
        Boolean mask on a box of the CT grid (1 voxel around the focus).
    """

    lesion_id: str
    accepted: bool
    reasons: tuple[str, ...]
    kind: str
    centre_lps_mm: tuple[float, float, float]
    volume_ml: float
    radius_mm: float
    attenuation_mean_hu: float
    attenuation_max_hu: float
    background_hu: float
    contrast_hu: float
    depth_mm: float
    thickness_ratio: float
    core_fraction: float
    marrow_fraction: float
    vertebra: str
    vertebra_confidence: float
    part: str
    endplate_distance_mm: float | None
    score: float
    mask: Volume = field(repr=False)

    def record(self) -> dict[str, Any]:
        """Plain values of the detection (for the study document's lesion entry)."""
        return {
            "kind": self.kind, "score": round(self.score, 4),
            "volume_ml": round(self.volume_ml, 4), "radius_mm": round(self.radius_mm, 2),
            "attenuation_mean_hu": round(self.attenuation_mean_hu, 1),
            "attenuation_max_hu": round(self.attenuation_max_hu, 1),
            "background_hu": round(self.background_hu, 1),
            "contrast_hu": round(self.contrast_hu, 1), "depth_mm": round(self.depth_mm, 2),
            "part": self.part, "experimental": False, "reasons": list(self.reasons),
        }

    def lesion(self, *, study_instance_uid: str = "") -> Lesion:
        """Return the candidate as a mask `Lesion` (its box mask, the CT frame of reference).

        Annotations: ``detected``, ``detection_score``, ``sclerotic`` (an image finding),
        ``medullary`` (inside the marrow, not at the cortex), ``endplate_adjacent``,
        ``vertebra``; ``treated`` stays unknown (detection cannot see treatment).
        """
        near_endplate = (self.endplate_distance_mm is not None
                         and self.endplate_distance_mm <= _ENDPLATE_ADJACENT_MM)
        return Lesion(
            lesion_id=self.lesion_id,
            source=f"CT detection: {self.kind} candidate, score {self.score:.2f}",
            frame_of_reference_uid=self.mask.series.frame_of_reference_uid,
            study_instance_uid=study_instance_uid,
            series_instance_uid=self.mask.series.series_instance_uid,
            treated=None,
            annotations={"detected": True, "detection_score": round(self.score, 4),
                         "sclerotic": True, "medullary": self.depth_mm >= _MEDULLARY_DEPTH_MM,
                         "endplate_adjacent": near_endplate, "vertebra": self.vertebra,
                         "detection_kind": self.kind},
            mask=self.mask,
        )


#: A candidate this close to an endplate is annotated ``endplate_adjacent`` (the CT rule's
#: scope: Ulano's population excludes endplate sclerosis). [design]
_ENDPLATE_ADJACENT_MM = 3.0
#: Discs are cut out of the bone mask within this radius of their centre (lumbar discs are
#: up to ~55 mm wide). [design]
_DISC_RADIUS_MM = 30.0
#: ... and beyond their half-height by this margin: endplates are concave (~2 mm) and the
#: disc plane's position is known to about a millimetre. [design]
_DISC_MARGIN_MM = 2.0
#: Seed boxes are padded by this for the depth map (deeper than any rule reads). [design]
_DEPTH_PAD_MM = 10.0
#: A focus grown clear of the cortex gets back this many voxels of rim. [design]
_RIM_VOXELS = 2
#: Foci below this volume are not split at attenuation peaks (a lesion merged with an
#: endplate band is larger). [design]
_SPLIT_MIN_ML = 0.5
#: A piece of a plate is flattish; a round piece (above this thickness ratio) is a focus.
_PLATE_PIECE_MAX_RATIO = 0.6
#: A core (before its rim) below this fraction of the reporting size is not analysed.
_CORE_FRACTION = 0.3
#: Deeper than this inside bone is medullary (not cortical). [design]
_MEDULLARY_DEPTH_MM = 2.0


@dataclass(frozen=True, kw_only=True, eq=False)
class CandidateSearch:
    """Every focus found on one CT (accepted and rejected) and the notes of the search."""

    candidates: tuple[Candidate, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[Candidate, ...]:
        """The accepted candidates, cranio-caudal."""
        return tuple(c for c in self.candidates if c.accepted)

    @property
    def rejected(self) -> tuple[Candidate, ...]:
        """The rejected foci, with their reasons."""
        return tuple(c for c in self.candidates if not c.accepted)


def _search_region(an: BoneAnalysis, lab: SpineLabelling, cfg: CandidateConfig,
                   coarse: bool = False) -> NDArray[np.bool_]:
    """Coarse bone to search: the vertebral bodies and, below the sacral top, the pelvis."""
    axis = an.axis
    assert axis is not None
    grid = an.grid
    sp = np.asarray(grid.spacing_mm)
    ks = np.clip(np.arange(grid.shape[0]) - axis.start, 0, len(axis.points_mm) - 1)
    ap = axis.points_mm[ks, 1][:, None, None]
    al = axis.points_mm[ks, 2][:, None, None]
    pp = (np.arange(grid.shape[1]) * sp[1])[None, :, None]
    ll = (np.arange(grid.shape[2]) * sp[2])[None, None, :]
    near = ((pp - ap) ** 2 + (ll - al) ** 2) <= cfg.column_radius_mm ** 2
    # the vertebral bodies (and pedicle bases), not the neural arch: laminae, articular and
    # spinous processes are thick folded cortex, the main source of false positives
    found = axis.found & (axis.depth_mm > 0)
    half_depth = float(np.median(axis.depth_mm[found])) if found.any() else 15.0
    # on a coarse CT a pedicle blurs into a dense blob: the bodies only
    margin = -cfg.body_posterior_margin_mm if coarse else cfg.body_posterior_margin_mm
    near &= (pp - ap) <= half_depth + margin
    region = an.masks.filled & near
    inside = np.zeros(grid.shape[0], dtype=bool)
    inside[axis.start:axis.stop] = True
    region &= inside[:, None, None]
    if lab.pelvis is not None:
        region |= lab.pelvis > 0
    return np.asarray(region)


def _background(an: BoneAnalysis, interior: NDArray[np.bool_], cfg: CandidateConfig
                ) -> NDArray[np.float32]:
    """Local marrow HU: normalized Gaussian average over non-dense interior voxels."""
    from scipy import ndimage

    hu = an.grid.hu
    weight = (interior & (hu < cfg.background_max_hu)).astype(np.float32)
    sigma = [cfg.background_sigma_mm / s for s in an.grid.spacing_mm]
    num = ndimage.gaussian_filter(hu * weight, sigma, mode="nearest")
    den = ndimage.gaussian_filter(weight, sigma, mode="nearest")
    fallback = float(np.median(hu[weight > 0])) if weight.any() else 150.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0.05, num / np.maximum(den, 1e-6), fallback)
    return np.asarray(out, dtype=np.float32)


def _bone_without_canal(hu: NDArray[np.float32], threshold_hu: float, hole_min_hu: float
                        ) -> NDArray[np.bool_]:
    """Bone with the holes of each slice filled, except dark ones (the spinal canal, foramina).

    A hole of the cortex holds marrow (60–250 HU, also osteoporotic) or, for the canal and the
    sacral foramina, CSF, cord and fat (below ``hole_min_hu``): only the former is bone.
    Every axial (axis-0) slice at once: a hole is a 4-connected component of its slice, and
    its mean HU is ``scipy.ndimage.mean`` over it.
    """
    dense = hu >= threshold_hu
    holes = fill_holes_2d(dense) & ~dense
    labels, n = label_2d(holes)
    if n == 0:
        return dense
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)
    sums = np.bincount(flat, weights=np.asarray(hu, dtype=np.float64).ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = sums[1:] / counts[1:].astype(np.float64) >= hole_min_hu
    return np.asarray(dense | keep[labels])


def _intersect(a: tuple[slice, slice, slice], b: tuple[slice, slice, slice]
               ) -> tuple[slice, slice, slice] | None:
    out = [slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True)]
    if any(s.stop <= s.start for s in out):
        return None
    return out[0], out[1], out[2]


def _fine_bone(ct: Volume, an: BoneAnalysis, region: NDArray[np.bool_], threshold_hu: float,
               hole_min_hu: float) -> tuple[tuple[slice, slice, slice], NDArray[np.bool_]]:
    """Bone on the CT grid over the search region's box: cortex with its marrow, no canal.

    Computed once per CT, over the region's whole box (the holes of each axial slice), so that
    every body's cortex ring is whole when its holes are filled (a box around a focus would
    cut it).
    """
    from scipy import ndimage

    grid = an.grid
    coords = np.argwhere(region)
    sp = np.asarray(grid.spacing_mm)
    box = grid.source_box(coords.min(axis=0) * sp - 2 * sp, coords.max(axis=0) * sp + 2 * sp)
    near = ndimage.binary_dilation(region, iterations=2)
    hu = np.asarray(ct.array[box], dtype=np.float32)
    return box, _bone_without_canal(hu, threshold_hu, hole_min_hu) & \
        grid.source_box_mask(near, box)


def _carve_discs(ct: Volume, lab: SpineLabelling, box: tuple[slice, slice, slice],
                 bone: NDArray[np.bool_]) -> None:
    """Remove the discs from the bone mask (in place).

    An axial section through a tilted endplate rings disc tissue with cortex, and hole filling
    would call it marrow (a disc, 70–120 HU, is as dense as osteoporotic marrow): the discs
    found by the labelling are cut out, so that endplates are bone surface, not bone interior.
    """
    planes = {}
    for v in lab.vertebrae:
        for d in (v.superior_disc, v.inferior_disc):
            if d is not None:
                planes[round(d.arc_mm, 3)] = d
    start = np.array([b.start for b in box])
    for d in planes.values():
        c, n = np.asarray(d.centre_lps_mm), np.asarray(d.normal_lps)
        half, reach = d.height_mm / 2.0 + _DISC_MARGIN_MM, _DISC_RADIUS_MM
        corners = np.array([c + sa * half * n + sb * reach * e1 + sc * reach * e2
                            for e1, e2 in [_perpendicular(n)]
                            for sa in (-1, 1) for sb in (-1, 1) for sc in (-1, 1)])
        idx = ct.lps_to_index(corners)
        lo = np.maximum(np.floor(idx.min(axis=0)).astype(int) - start, 0)
        hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1 - start, np.asarray(bone.shape))
        if np.any(hi <= lo):
            continue
        grids = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo + start, hi + start,
                                                             strict=True)), indexing="ij")
        pts = ct.index_to_lps(np.stack(grids, axis=-1).reshape(-1, 3)) - c
        along = pts @ n
        perp = np.linalg.norm(pts - along[:, None] * n, axis=1)
        inside = ((np.abs(along) <= half) & (perp <= reach)).reshape(grids[0].shape)
        sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        bone[sub] &= ~inside


def _perpendicular(n: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(n, e1)


def _boxes(seeds: NDArray[np.bool_], margin: int) -> list[tuple[slice, slice, slice]]:
    """Coarse boxes around groups of seeds (they may overlap: foci are counted once)."""
    from scipy import ndimage

    labels, n = ndimage.label(seeds, structure=np.ones((3, 3, 3), bool))
    boxes = []
    shape = seeds.shape
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        boxes.append([max(0, sl[0].start - margin), max(0, sl[1].start - margin),
                      max(0, sl[2].start - margin), min(shape[0], sl[0].stop + margin),
                      min(shape[1], sl[1].stop + margin), min(shape[2], sl[2].stop + margin)])

    def volume(b: list[int]) -> int:
        return (b[3] - b[0]) * (b[4] - b[1]) * (b[5] - b[2])

    # neighbouring groups share one box when that costs little more than two boxes (fewer
    # depth maps); never into a box much larger than its parts
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                u = [min(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]),
                     max(a[3], b[3]), max(a[4], b[4]), max(a[5], b[5])]
                if volume(u) <= 1.3 * (volume(a) + volume(b)):
                    boxes[i] = u
                    boxes.pop(j)
                    merged = True
                    break
            if merged:
                break
    return [(slice(b[0], b[3]), slice(b[1], b[4]), slice(b[2], b[5])) for b in boxes]


def _merge_similar(parts: list[NDArray[np.bool_]], hu: NDArray[np.float32],
                   similarity: float) -> list[NDArray[np.bool_]]:
    """Merge touching pieces of one focus whose mean attenuations agree within ``similarity``.

    The watershed splits at every attenuation peak; a spiculated lesion has several of the
    same density, while a lesion beside an endplate band differs from the band.
    """
    from scipy import ndimage

    parts = [p for p in parts if p.any()]
    merged = True
    while merged and len(parts) > 1:
        merged = False
        means = [float(hu[p].mean()) for p in parts]
        for i in range(len(parts)):
            grown = ndimage.binary_dilation(parts[i])
            for j in range(i + 1, len(parts)):
                if not (grown & parts[j]).any():
                    continue
                if abs(means[i] - means[j]) <= similarity * max(means[i], means[j]):
                    parts[i] = parts[i] | parts[j]
                    parts.pop(j)
                    merged = True
                    break
            if merged:
                break
    return parts


def _ball(radius_mm: float, spacing: tuple[float, float, float]) -> NDArray[np.bool_]:
    """Ellipsoidal structuring element of a physical radius on an anisotropic grid.

    At least one voxel along the finest axis (else a coarse grid would not erode at all).
    """
    half = [max(0, int(math.floor(radius_mm / s))) for s in spacing]
    finest = int(np.argmin(spacing))
    if half[finest] == 0:
        half[finest] = 1
        radius_mm = max(radius_mm, float(spacing[finest]))
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)]
    g = np.meshgrid(*axes, indexing="ij")
    return np.asarray(g[0] ** 2 + g[1] ** 2 + g[2] ** 2 <= radius_mm ** 2 + 1e-9)


def _plate(points_mm: NDArray[np.float64], cfg: CandidateConfig
           ) -> tuple[NDArray[np.float64], float] | None:
    """Return (normal, thickness mm) when a point cloud is a plate (flat, wide); else None."""
    if len(points_mm) < 8:
        return None
    centred = points_mm - points_mm.mean(axis=0)
    eig, vec = np.linalg.eigh(centred.T @ centred / len(points_mm))
    thickness, width = 4.0 * math.sqrt(max(eig[0], 0.0)), 4.0 * math.sqrt(max(eig[-1], 0.0))
    if width < cfg.endplate_band_min_width_mm or thickness > cfg.plate_max_thickness_ratio * width:
        return None
    return vec[:, 0], thickness


def _shell(mask: NDArray[np.bool_], width_mm: float, spacing: tuple[float, float, float]
           ) -> NDArray[np.bool_]:
    """Voxels within ``width_mm`` outside a mask (not the mask itself)."""
    from scipy import ndimage

    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    return np.asarray((outside > 0) & (outside <= width_mm))


def _thickness_ratio(points_mm: NDArray[np.float64]) -> tuple[float, float]:
    """(smallest / largest principal spread, largest extent in mm) of a point cloud."""
    if len(points_mm) < 4:
        return 1.0, 0.0
    centred = points_mm - points_mm.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(centred.T @ centred / len(points_mm)))
    ratio = math.sqrt(max(eig[0], 0.0) / eig[-1]) if eig[-1] > 0 else 1.0
    extent = 4.0 * math.sqrt(max(eig[-1], 0.0))  # ±2 SD
    return ratio, extent


def _band(lab: SpineLabelling, centre: NDArray[np.float64], points: NDArray[np.float64],
          cfg: CandidateConfig, slice_mm: float) -> str:
    """Why a focus is part of an endplate or fused-sacral-disc band ("" when it is not).

    A band focus lies within the band's zone (the disc and ``endplate_distance_mm`` of bone on
    each side; a fused sacral disc and 3 mm) and is at most ``band_max_thickness_mm`` thick
    along the band's normal, within 30 mm of the axis.
    """
    zones: list[tuple[Any, float, str]] = []
    for v in lab.vertebrae:
        if v.inferior_disc is not None:
            zones.append((v.inferior_disc, v.inferior_disc.height_mm / 2 + cfg.endplate_distance_mm,
                          f"endplate zone of the disc below {v.label or 'a vertebra'}"))
        if v.superior_disc is not None:
            zones.append((v.superior_disc, v.superior_disc.height_mm / 2 + cfg.endplate_distance_mm,
                          f"endplate zone of the disc above {v.label or 'a vertebra'}"))
    for plane in lab.sacral_bands:
        zones.append((plane, plane.height_mm / 2 + 3.0, "fused sacral disc band"))
    for plane in lab.sacral_bands:
        normal = np.asarray(plane.normal_lps)
        rel = points - np.asarray(plane.centre_lps_mm)
        along = rel @ normal
        perp = float(np.linalg.norm((centre - np.asarray(plane.centre_lps_mm))
                                    - float((centre - np.asarray(plane.centre_lps_mm)) @ normal)
                                    * normal))
        if perp <= 25.0 and along.min() < -plane.height_mm / 2 and \
                along.max() > plane.height_mm / 2:
            return ("crosses a fused sacral disc band: the bone of two sacral segments and "
                    "their fused disc, not a focal lesion")
    for plane, half, name in zones:
        # a band's mask is its dense bone blurred and given a rim: up to ~1.5 x + 2 mm thick
        limit = max(cfg.band_max_thickness_mm, 1.5 * plane.height_mm + 2.0) \
            if name.startswith("fused") else cfg.band_max_thickness_mm
        limit = max(limit, 2.0 * slice_mm + 1.0)  # a band blurred over two slices
        normal = np.asarray(plane.normal_lps)
        offset = centre - np.asarray(plane.centre_lps_mm)
        along = float(offset @ normal)
        if abs(along) > half or np.linalg.norm(offset - along * normal) > 30.0:
            continue
        thickness = 4.0 * float((points @ normal).std())
        if thickness <= limit:
            return (f"{name}: {thickness:.1f} mm thick along the spine "
                    f"(<= {limit:.1f} mm), {abs(along):.1f} mm from the disc "
                    "centre: endplate sclerosis or a fused sacral disc, not a focal lesion")
    return ""


def _endplate_distance(lab: SpineLabelling, centre_lps: NDArray[np.float64]) -> float | None:
    """Distance from a point to the nearest endplate of the labelled column (mm)."""
    best: float | None = None
    for v in lab.vertebrae:
        for disc in (v.superior_disc, v.inferior_disc):
            if disc is None:
                continue
            along = float(np.dot(centre_lps - np.asarray(disc.centre_lps_mm),
                                 np.asarray(disc.normal_lps)))
            lateral = np.linalg.norm((centre_lps - np.asarray(disc.centre_lps_mm))
                                     - along * np.asarray(disc.normal_lps))
            if lateral > 35.0:
                continue
            d = max(0.0, abs(along) - disc.height_mm / 2.0)
            best = d if best is None else min(best, d)
    return best


def _body_fraction_outside(lab: SpineLabelling, vertebra: str, ct: Volume,
                           component: NDArray[np.bool_], box: tuple[slice, slice, slice]
                           ) -> float | None:
    """Fraction of a candidate's voxels outside its vertebral body mask (None: no mask)."""
    v = lab.by_label(vertebra) if vertebra else None
    if v is None or v.body_mask is None or vertebra == "S1":
        return None
    body = v.body_mask
    offset = np.round(ct.lps_to_index([body.origin_lps_mm])[0]).astype(int)
    start = np.array([b.start for b in box])
    inside = np.zeros(component.shape, dtype=bool)
    barr = np.asarray(body.array)
    lo = np.maximum(offset, start)
    hi = np.minimum(offset + np.asarray(barr.shape), start + np.asarray(component.shape))
    if np.any(hi <= lo):
        return 1.0
    inside[tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True))] = \
        barr[tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(lo, hi, offset,
                                                                   strict=True))]
    n = int(component.sum())
    return float((component & ~inside).sum()) / n if n else None


def _box_mask_volume(ct: Volume, array: NDArray[np.bool_], start: NDArray[np.int_]) -> Volume:
    origin = ct.index_to_lps([start])[0]
    return Volume(array=array, spacing_mm=ct.spacing_mm,
                  origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
                  direction_lps=ct.direction_lps, intensity_unit=IntensityUnit.MASK,
                  series=SeriesInfo(series_instance_uid=ct.series.series_instance_uid,
                                    frame_of_reference_uid=ct.series.frame_of_reference_uid,
                                    study_instance_uid=ct.series.study_instance_uid,
                                    modality="SEG"))


def detect_candidates(lab: SpineLabelling, *, config: DetectionConfig | None = None
                      ) -> CandidateSearch:
    """Find sclerotic-lesion candidates in the vertebrae and pelvis of a labelled CT.

    Parameters
    ----------
    lab : SpineLabelling
        The vertebra labelling of the CT (its bone analysis holds the CT).
    config : DetectionConfig, optional

    Returns
    -------
    CandidateSearch
        Accepted and rejected foci with their reasons; no candidate, with a note, when no
        spinal column was found.
    """
    from scipy import ndimage

    cfg = (config or DetectionConfig()).candidates
    bone_cfg = (config or DetectionConfig()).bone
    an = lab.analysis
    if an is None or an.axis is None:
        return CandidateSearch(notes=("no spinal column in view: no lesion candidates "
                                      "searched",))
    grid, ct = an.grid, an.ct
    notes: list[str] = []
    coarse = (min(ct.spacing_mm) > cfg.max_pixel_mm or max(ct.spacing_mm) > cfg.max_slice_mm)
    if coarse:
        size = " x ".join(f"{s:.2g}" for s in sorted(ct.spacing_mm))
        if cfg.coarse_ct == "refuse":
            return CandidateSearch(notes=(
                f"lesion candidates not searched: the CT's {size} mm voxels are coarser than "
                f"the detector is validated for (pixels <= {cfg.max_pixel_mm:g} mm, slices <= "
                f"{cfg.max_slice_mm:g} mm; at this size a pedicle or an endplate band blurs into "
                "a lesion-like blob). Potential fix: give a thin-slice bone reconstruction, or "
                "an ROI file (--rois); candidates.coarse_ct = 'search' searches anyway",))
        notes.append(
            f"coarse CT ({size} mm voxels): candidate detection is validated for pixels <= "
            f"{cfg.max_pixel_mm:g} mm and slices <= {cfg.max_slice_mm:g} mm; only the vertebral "
            "bodies and the pelvis are searched: expect missed lesions and false positives")
    region = _search_region(an, lab, cfg, coarse)
    interior = ndimage.binary_erosion(region)
    background = _background(an, interior, cfg)
    seeds = interior & (grid.hu_max >= np.maximum(cfg.seed_min_hu,
                                                  background + cfg.seed_contrast_hu))
    # a focus of >= 0.2 ml spans >= 3 blocks in every direction: the blocks dense on average
    # keep a core when eroded by one block, a cortical sheet (1-2 blocks thick) does not
    seeds &= ndimage.binary_erosion(grid.hu >= background + cfg.seed_mean_contrast_hu)
    margin = max(1, int(math.ceil(cfg.box_margin_mm / min(grid.spacing_mm))))
    found: list[dict[str, Any]] = []
    small = 0
    sp_ct = ct.spacing_mm
    voxel_ml = ct.voxel_volume_mm3 / 1000.0
    boxes = _boxes(seeds, margin)
    fine_box, fine_bone = (_fine_bone(ct, an, region, bone_cfg.bone_threshold_hu,
                                      cfg.hole_min_hu) if boxes else (None, None))
    if fine_box is not None and fine_bone is not None:
        _carve_discs(ct, lab, fine_box, fine_bone)
    for cbox in boxes:
        assert fine_box is not None and fine_bone is not None
        lo_mm = np.array([s.start for s in cbox], float) * np.asarray(grid.spacing_mm)
        hi_mm = np.array([s.stop - 1 for s in cbox], float) * np.asarray(grid.spacing_mm)
        # the depth map needs the bone surface around the focus: pad the box so that no
        # depth is measured against the box's own edge
        pad_mm = np.full(3, _DEPTH_PAD_MM)
        box = _intersect(grid.source_box(lo_mm - pad_mm, hi_mm + pad_mm), fine_box)
        if box is None:
            continue
        start = np.array([b.start for b in box])
        hu = np.asarray(ct.array[box], dtype=np.float32)
        bone = fine_bone[tuple(slice(b.start - f.start, b.stop - f.start)
                               for b, f in zip(box, fine_box, strict=True))]
        depth = ndimage.distance_transform_edt(bone, sampling=sp_ct)
        bg = grid.source_box_mask(background, box).astype(np.float32)
        dense = hu >= bg + cfg.grow_contrast_hu
        # grow in the marrow, clear of the cortex (its blurred band reaches ~3 mm in), then
        # give each focus back its rim down to ``interior_margin_mm``
        low = dense & (depth >= cfg.cortex_margin_mm)
        high = low & (hu >= np.maximum(cfg.seed_min_hu, bg + cfg.seed_contrast_hu))
        labels, n = ndimage.label(low, structure=np.ones((3, 3, 3), bool))
        if n == 0:
            continue
        rim = dense & (depth >= cfg.interior_margin_mm)
        marrow = (depth >= cfg.interior_margin_mm) & ~dense
        # only foci seeded in this box's own seeds (not in its padding): a focus is analysed
        # whole, in the box of its seeds, never as a piece cut by a neighbour's edge
        own_seeds = np.zeros_like(high)
        core_box = _intersect(grid.source_box(lo_mm, hi_mm), box)
        if core_box is not None:
            rel = tuple(slice(c.start - b.start, c.stop - b.start)
                        for c, b in zip(core_box, box, strict=True))
            own_seeds[rel] = high[rel]
        keep = set(int(k) for k in np.unique(labels[own_seeds]) if k > 0)
        counts = np.bincount(labels.ravel())
        # a focus whose core is far below the reporting size cannot reach it with its rim
        # (a rim of 2 voxels at most doubles a small core): not analysed further
        floor = _CORE_FRACTION * cfg.min_volume_ml / voxel_ml
        small += sum(1 for k in keep if counts[k] < floor)
        keep = {k for k in keep if counts[k] >= floor}
        pad = np.array([int(math.ceil(cfg.shell_mm / s)) + _RIM_VOXELS + 1 for s in sp_ct])
        pieces: list[tuple[tuple[slice, slice, slice], NDArray[np.bool_], Any]] = []
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None or k not in keep:
                continue
            lo_l = np.maximum(np.array([x.start for x in sl]) - pad, 0)
            hi_l = np.minimum(np.array([x.stop for x in sl]) + pad, np.asarray(labels.shape))
            local = (slice(int(lo_l[0]), int(hi_l[0])), slice(int(lo_l[1]), int(hi_l[1])),
                     slice(int(lo_l[2]), int(hi_l[2])))
            own = labels[local] == k
            # one focus per attenuation peak: two foci touching at a low bridge (a lesion next
            # to an endplate band) are split along the valley between them (watershed from
            # the maxima at least ``split_contrast_hu`` above the valley)
            n_seeds = 0
            if counts[k] * voxel_ml >= _SPLIT_MIN_ML:  # only a large focus can hold two
                smooth = ndimage.gaussian_filter(np.where(own, hu[local], 0.0), 1.0)
                from skimage.morphology import h_maxima

                peaks = h_maxima(smooth, cfg.split_contrast_hu) & own
                seeds_local, n_seeds = ndimage.label(peaks, structure=np.ones((3, 3, 3), bool))
            if n_seeds > 1:
                from skimage.segmentation import watershed

                split = watershed(-smooth, seeds_local, mask=own)
                parts = _merge_similar([split == m for m in range(1, n_seeds + 1)],
                                       hu[local], cfg.split_similarity)
            else:
                parts = [own]
            plate = _plate(np.argwhere(own) * np.asarray(sp_ct), cfg)
            if plate is not None and len(parts) == 1:
                # a focus rising out of a plate (a lesion touching an endplate band) has no
                # valley between them: its dense core is above the plate's own attenuation
                values = hu[local][own]
                level = 0.5 * (float(np.median(values)) + float(values.max()))
                cores, n_cores = ndimage.label(own & (hu[local] >= level),
                                               structure=np.ones((3, 3, 3), bool))
                if n_cores:
                    parts = [cores == m for m in range(1, n_cores + 1)]
            for part in parts:
                pieces.append((local, part, plate))
        for local, part, plate in pieces:
            if part.sum() < floor:
                small += 1
                continue
            comp = ndimage.binary_dilation(part, iterations=_RIM_VOXELS, mask=rim[local])
            if comp.sum() * voxel_ml < cfg.min_volume_ml:
                small += 1
                continue
            idx = np.argwhere(comp)
            # the focus must sit in marrow: of the bone around it, most is marrow, not
            # cortex (a fragment of thick cortex has cortex around it); read only where the
            # rule can apply
            marrow_fraction = 1.0
            if (len(idx) * voxel_ml < cfg.fragment_max_volume_ml
                    or float(depth[local][comp].max()) < cfg.fragment_max_depth_mm):
                shell = _shell(comp, cfg.shell_mm, sp_ct) & (depth[local] > 0)
                marrow_fraction = float((shell & marrow[local]).sum()) / max(1, int(shell.sum()))
            lo_b = np.maximum(idx.min(axis=0) - 1, 0)
            hi_b = np.minimum(idx.max(axis=0) + 2, np.asarray(comp.shape))
            sub = comp[lo_b[0]:hi_b[0], lo_b[1]:hi_b[1], lo_b[2]:hi_b[2]]
            values = hu[local][comp]
            origin = start + np.array([x.start for x in local])
            centre = ct.index_to_lps((idx.mean(axis=0) + origin)[None])[0]
            ratio, extent = _thickness_ratio(ct.index_to_lps(idx + origin))
            # a solid focus keeps a core when eroded by ``core_erosion_mm``; a sheet or fold of
            # cortex does not
            core = ndimage.binary_erosion(comp, structure=_ball(cfg.core_erosion_mm, sp_ct))
            core_fraction = float(core.sum()) / max(1, len(idx))
            in_plate = False
            if plate is not None:
                normal, thickness = plate
                along = (np.argwhere(part) * np.asarray(sp_ct)) @ normal
                # as thin as the plate and not round (a lesion inflates the plate's own
                # thickness estimate when it sits in it)
                in_plate = (4.0 * float(along.std()) <= 1.5 * thickness
                            and ratio <= _PLATE_PIECE_MAX_RATIO)
            found.append({
                "comp": comp, "box": tuple(slice(int(a), int(b)) for a, b in
                                           zip(origin, origin + np.asarray(comp.shape),
                                               strict=True)),
                "sub": sub, "sub_start": origin + lo_b,
                "volume_ml": float(len(idx)) * voxel_ml, "centre": centre,
                "mean": float(values.mean()), "max": float(values.max()),
                "bg": float(np.median(bg[local][comp])),
                "depth": float(depth[local][comp].max()),
                "ratio": ratio, "extent": extent, "marrow": marrow_fraction,
                "in_plate": in_plate, "points": ct.index_to_lps(idx + origin),
                "core": core_fraction,
            })
    candidates: list[Candidate] = []
    claimed: set[int] = set()
    found.sort(key=lambda f: -f["volume_ml"])
    flat_shape = ct.shape
    for f in found:
        # boxes may overlap: a focus found twice (most of its voxels already claimed by an
        # earlier one) is counted once
        idx = np.argwhere(f["sub"]) + f["sub_start"]
        flat = set(np.ravel_multi_index(idx.T, flat_shape).tolist())
        if len(flat & claimed) > 0.5 * len(flat):
            continue
        claimed |= flat
        where = lab.locate(f["centre"])
        contrast = f["mean"] - f["bg"]
        endplate = _endplate_distance(lab, f["centre"]) if where.part in ("body",
                                                                          "posterior") else None
        outside = (_body_fraction_outside(lab, where.vertebra, ct, f["comp"], f["box"])
                   if where.part == "body" else None)
        volume = f["volume_ml"]
        reasons: list[str] = []
        rejected = ""
        if volume < cfg.min_volume_ml:
            rejected = f"smaller than {cfg.min_volume_ml:g} ml ({volume:.3f} ml)"
        elif f["depth"] < cfg.min_depth_mm:
            rejected = (f"at the bone surface ({f['depth']:.1f} mm deep < "
                        f"{cfg.min_depth_mm:g} mm): cortex or partial volume")
        elif f["marrow"] < cfg.min_marrow_fraction and (
                volume < cfg.fragment_max_volume_ml or f["depth"] < cfg.fragment_max_depth_mm):
            rejected = (f"not surrounded by marrow ({100 * f['marrow']:.0f} % of its "
                        f"{cfg.shell_mm:g} mm shell < {100 * cfg.min_marrow_fraction:.0f} %): "
                        "thick cortex, a joint surface or bone edge")
        elif f["core"] < cfg.min_core_fraction:
            rejected = (f"no solid core ({100 * f['core']:.0f} % of it left after a "
                        f"{cfg.core_erosion_mm:g} mm erosion < "
                        f"{100 * cfg.min_core_fraction:.0f} %): a sheet or fold of cortex")
        elif (band := _band(lab, f["centre"], f["points"], cfg, max(ct.spacing_mm))):
            rejected = band
        elif f["in_plate"]:
            rejected = ("part of a bony plate (an endplate sclerosis band, cortex or joint "
                        "surface): as thin as the plate it lies in")
        elif (endplate is not None and endplate <= cfg.endplate_distance_mm
              and f["ratio"] <= cfg.endplate_band_max_thickness_ratio
              and f["extent"] >= cfg.endplate_band_min_width_mm):
            rejected = (f"endplate sclerosis band: {endplate:.1f} mm from an endplate, flat "
                        f"(thickness ratio {f['ratio']:.2f}) and {f['extent']:.0f} mm wide")
        elif outside is not None and outside >= cfg.osteophyte_outside_fraction:
            rejected = (f"osteophyte: {100 * outside:.0f} % outside the vertebral body, at its "
                        "margin")
        elif where.part == "posterior" and f["ratio"] <= cfg.endplate_band_max_thickness_ratio:
            rejected = (f"facet-joint sclerosis: a plate (thickness ratio {f['ratio']:.2f}) in "
                        "the posterior elements")
        elif f["ratio"] <= cfg.plate_max_thickness_ratio and f["extent"] >= 10.0:
            rejected = (f"plate-like (thickness ratio {f['ratio']:.2f}, {f['extent']:.0f} mm): "
                        "cortex, endplate or joint surface")
        if rejected:
            reasons.append("rejected: " + rejected)
        else:
            reasons.append(f"focus {contrast:.0f} HU above the local marrow "
                           f"({f['bg']:.0f} HU), mean {f['mean']:.0f} HU, max {f['max']:.0f} HU")
            reasons.append(f"{volume:.2f} ml, {f['depth']:.1f} mm deep inside bone, "
                           f"{100 * f['marrow']:.0f} % marrow around it, thickness ratio "
                           f"{f['ratio']:.2f} (not a plate)")
            if endplate is not None:
                reasons.append(f"{endplate:.1f} mm from the nearest endplate")
            if outside is not None:
                reasons.append(f"{100 * (1 - outside):.0f} % inside the vertebral body")
        score = (1.0 - math.exp(-max(contrast, 0.0) / cfg.score_contrast_hu)) * (
            1.0 - math.exp(-volume / cfg.score_volume_ml))
        candidates.append(Candidate(
            lesion_id="", accepted=not rejected, reasons=tuple(reasons), kind="sclerotic",
            centre_lps_mm=(float(f["centre"][0]), float(f["centre"][1]), float(f["centre"][2])),
            volume_ml=volume, radius_mm=(3.0 * volume * 1000.0 / (4.0 * math.pi)) ** (1 / 3),
            attenuation_mean_hu=f["mean"], attenuation_max_hu=f["max"], background_hu=f["bg"],
            contrast_hu=contrast, depth_mm=f["depth"], thickness_ratio=f["ratio"],
            core_fraction=f["core"], marrow_fraction=f["marrow"],
            vertebra=where.vertebra, vertebra_confidence=where.confidence, part=where.part,
            endplate_distance_mm=endplate, score=score,
            mask=_box_mask_volume(ct, np.ascontiguousarray(f["sub"]), f["sub_start"])))
    accepted = sorted((c for c in candidates if c.accepted),
                      key=lambda c: (-c.centre_lps_mm[2], -c.score))
    if len(accepted) > cfg.max_candidates:
        notes.append(f"{len(accepted)} candidates: the {cfg.max_candidates} best scored kept "
                     "(candidates.max_candidates)")
        kept = set(id(c) for c in sorted(accepted, key=lambda c: -c.score)[:cfg.max_candidates])
        accepted = [c for c in accepted if id(c) in kept]
    import dataclasses

    named = [dataclasses.replace(c, lesion_id=f"det{n + 1:02d}") for n, c in enumerate(accepted)]
    rejected_all = tuple(c for c in candidates if not c.accepted)
    if small:
        notes.append(f"{small} dense foci smaller than {cfg.min_volume_ml:g} ml not reported "
                     "(candidates.min_volume_ml)")
    if rejected_all:
        by_rule: dict[str, int] = {}
        for c in rejected_all:
            key = c.reasons[0].removeprefix("rejected: ").split(" (")[0].split(":")[0]
            by_rule[key] = by_rule.get(key, 0) + 1
        notes.append("foci rejected: " + ", ".join(f"{v} {k}" for k, v in sorted(by_rule.items())))
    return CandidateSearch(candidates=(*named, *rejected_all), notes=tuple(notes))
