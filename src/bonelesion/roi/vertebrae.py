"""Vertebra levels on CT: split the column at the discs, find the anchors, count between them.

The labeller sits behind a small interface (`VertebraLabeller`: ``label(ct) ->
SpineLabelling``) so another method could be plugged in; this module builds one,
`AnchorCountingLabeller`, offline and deterministic (numpy, scipy; no model weights).

Method
------
1. The shared bone analysis (`bonelesion.roi.bone.analyse_bone`) gives the curved axis of the
   vertebral bodies and the lateral-ray profile along it; runs of the profile below
   ``disc_threshold_hu`` that are ``disc_min_height_mm``–``disc_max_height_mm`` long are
   discs, and the column between two discs is one vertebra.
2. **Sacrum** (anchor S1): a segment whose axial sections join the body to bone more than
   ``ilium_min_lateral_mm`` to the side (the alae fused with the iliac bones at the
   sacroiliac joints) in most of its height is sacral; the first disc above the sacral run is
   L5–S1.
3. **Ribs** (anchor T12): bone components outside a ``rib_core_radius_mm`` core around the
   axis that start at the core (a rib head or neck) and reach ``rib_min_lateral_mm`` to the side
   are ribs; the vertebra they start at bears them. The last rib-bearing vertebra is T12.
4. **Counting** between the anchors. Both anchors agree (five lumbar-type vertebrae between
   them): high confidence. They disagree: a short last rib (``short_rib_max_lateral_mm``) is
   read as a lumbar rib on L1 and the sacral count kept; a sacral-like L5 (fused laterally or
   a thin L5–S1 disc) keeps the rib count; otherwise the sacral count is kept with low
   confidence. One anchor only, or none (a partial field of view): low confidence, and the
   reason is said. A C2 (dens) anchor is not implemented: cervical levels are labelled only
   by counting from the thoracic anchors.
5. Per vertebra, the body mask (canal and posterior elements cut off, refined on the CT
   grid), its centroid, and the trabecular attenuation in the body eroded by
   ``trabecular_erosion_mm`` (away from cortex and endplates), dense foci (lesions, endplate
   sclerosis) and their margin left out.

Confidence is an ordinal score (``configs/detection.toml``), not a calibrated probability.

References
----------
Carrino JA et al. Radiology 2011;259(1):196–202 (numbering of lumbosacral transitional
vertebrae; why an anchor may mislead). Hughes RJ, Saifuddin A. AJR 2006;187(1):59–65
(numbering anomalies: lumbar ribs, 4 or 6 lumbar-type vertebrae). Pickhardt PJ et al. Ann
Intern Med 2013;158(8):588–595 (trabecular ROI of the body, avoiding cortex and endplates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.roi.bone import (
    BoneAnalysis,
    analyse_bone,
    disk,
    fill_holes_2d,
    grown_box,
    mask_depth,
    normal_frames,
)
from bonelesion.roi.config import DetectionConfig, VertebraConfig
from bonelesion.units import IntensityUnit

__all__ = [
    "LEVELS",
    "DiscPlane",
    "Vertebra",
    "Location",
    "SpineLabelling",
    "VertebraLabeller",
    "AnchorCountingLabeller",
    "level_offset",
    "region_of",
]

#: Half-width of a sacral body (S1 ~50 mm wide): beyond it lie the alae. [design]
_SACRAL_BODY_HALF_WIDTH_MM = 25.0
#: A point further behind the axis than this lies in the posterior elements. [design]
_BODY_HALF_DEPTH_MM = 15.0

#: Vertebral levels from C1 to S1, in cranio-caudal order.
LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 6)), "S1",
)


def level_offset(anchor: str, offset: int) -> str:
    """Return the level ``offset`` below ``anchor`` (negative: above); "" outside C1–S1.

    Examples
    --------
    >>> level_offset("T12", 1), level_offset("S1", -6), level_offset("C1", -1)
    ('L1', 'T12', '')
    """
    i = LEVELS.index(anchor) + offset
    return LEVELS[i] if 0 <= i < len(LEVELS) else ""


def region_of(level: str) -> str:
    """``cervical``, ``thoracic``, ``lumbar``, ``sacral`` or "" for a level name."""
    return {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}.get(level[:1], "")


@dataclass(frozen=True, kw_only=True)
class DiscPlane:
    """A disc found along the axis: its centre, the axis direction there, its height."""

    centre_lps_mm: tuple[float, float, float]
    normal_lps: tuple[float, float, float]
    height_mm: float
    arc_mm: float


@dataclass(frozen=True, kw_only=True, eq=False)
class Vertebra:
    """One vertebra (or S1) found on the CT.

    Attributes
    ----------
    label : str
        ``T12``, ``L1`` … ``S1``; "" when counting falls outside C1–S1.
    index : int
        Position among the vertebrae found, 0 = most cranial.
    region : str
        ``thoracic``, ``lumbar``, ``sacral`` … from the label.
    confidence : float
        0–1, ordinal (see the module docstring).
    reasons : tuple of str
        Why this label, and what lowers its confidence.
    centroid_lps_mm : (3,) tuple of float
        Centroid of the vertebral body mask.
    height_mm : float
        Distance between the centres of the discs above and below (along the axis).
    body_volume_ml : float
    trabecular_mean_hu, trabecular_sd_hu : float or None
        Over the eroded body (None when fewer than ``trabecular_min_voxels`` remain).
    trabecular_voxel_count : int
    rib_sides : tuple of str
        Sides (``left``, ``right``) with a rib starting at this vertebra.
    rib_reach_mm : float or None
        Lateral reach of its longest rib from the axis.
    fused_to_ilium : bool
    partial : bool
        Cut by the edge of the field of view (no disc found on one side).
    superior_disc, inferior_disc : DiscPlane or None
    body_mask : Volume or None
        Boolean mask of the body on a box of the CT grid.
    arc_top_mm, arc_bottom_mm : float
        Extent along the axis (internal: for locating lesions).
    """

    label: str
    index: int
    region: str
    confidence: float
    reasons: tuple[str, ...]
    centroid_lps_mm: tuple[float, float, float]
    height_mm: float
    body_volume_ml: float
    trabecular_mean_hu: float | None
    trabecular_sd_hu: float | None
    trabecular_voxel_count: int
    rib_sides: tuple[str, ...] = ()
    rib_reach_mm: float | None = None
    fused_to_ilium: bool = False
    partial: bool = False
    superior_disc: DiscPlane | None = None
    inferior_disc: DiscPlane | None = None
    body_mask: Volume | None = field(default=None, repr=False)
    arc_top_mm: float = 0.0
    arc_bottom_mm: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Location:
    """Where a point lies: a vertebra label (or ``sacrum``, ``ilium``, "") and its confidence."""

    vertebra: str
    confidence: float
    part: str = ""


@dataclass(frozen=True, kw_only=True, eq=False)
class SpineLabelling:
    """What a labeller found on one CT.

    Attributes
    ----------
    labeller : str
        Name of the method.
    vertebrae : tuple of Vertebra
        Cranial to caudal.
    anchors : tuple of str
        The anchors found, in words.
    notes : tuple of str
        What could not be done, and why (no spine in view, partial field of view …).
    analysis : BoneAnalysis or None
        The bone analysis it was made from (shared with the lesion detector).
    sacrum_arc_mm : float or None
        Arc length of the L5–S1 disc (None without a sacrum).
    pelvis : (S, P, L) ndarray of uint8 or None
        Coarse canonical map of the pelvic bone: 1 sacrum, 2 ilium.
    sacral_bands : tuple of DiscPlane
        Dense transverse bands inside the sacrum: the fused discs between sacral segments
        with their endplates (a look-alike of sclerotic lesions).
    """

    labeller: str
    vertebrae: tuple[Vertebra, ...] = ()
    anchors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    analysis: BoneAnalysis | None = field(default=None, repr=False)
    sacrum_arc_mm: float | None = None
    pelvis: NDArray[np.uint8] | None = field(default=None, repr=False)
    sacral_bands: tuple[DiscPlane, ...] = ()

    def by_label(self, label: str) -> Vertebra | None:
        """Return the vertebra with this label, or None."""
        return next((v for v in self.vertebrae if v.label == label), None)

    def locate(self, point_lps_mm: Sequence[float]) -> Location:
        """Name the bone a point lies in: a level, ``sacrum``, ``ilium``, ``pelvis`` or "".

        ``pelvis`` is a point beside the sacral body on a CT whose sacroiliac joints are not
        resolved (sacral ala or ilium cannot be told apart).
        """
        an = self.analysis
        if an is None or an.axis is None or not self.vertebrae:
            return Location(vertebra="", confidence=0.0)
        mm = an.lps_to_mm(np.asarray([point_lps_mm], dtype=np.float64))[0]
        arc = float(an.axis.arc_of(mm[None])[0])
        q, _ = an.axis.at_arc(arc)
        lateral = float(np.hypot(mm[1] - q[1], mm[2] - q[2]))
        if self.sacrum_arc_mm is not None and arc < self.sacrum_arc_mm:
            part = self._pelvic_part(mm)
            if part == "ilium":
                return Location(vertebra="ilium", confidence=1.0, part="ilium")
            resolved = self.pelvis is not None and bool((self.pelvis == 2).any())
            if not resolved and lateral > _SACRAL_BODY_HALF_WIDTH_MM:
                # the sacroiliac joints are not resolved on this CT: sacral ala or ilium
                return Location(vertebra="pelvis", confidence=0.5, part="pelvis")
            s1 = self.by_label("S1")
            if s1 is not None and arc >= s1.arc_bottom_mm:
                return Location(vertebra="S1", confidence=s1.confidence, part="sacrum")
            return Location(vertebra="sacrum", confidence=1.0, part="sacrum")
        for v in self.vertebrae:
            if v.arc_bottom_mm <= arc <= v.arc_top_mm and v.label != "S1":
                _, anterior = normal_frames(an.axis.at_arc(arc)[1][None])
                behind = float(np.dot(q - mm, anterior[0]))  # > 0: posterior of the axis
                part = "posterior" if behind > _BODY_HALF_DEPTH_MM else "body"
                return Location(vertebra=v.label, confidence=v.confidence, part=part)
        return Location(vertebra="", confidence=0.0)

    def _pelvic_part(self, mm: NDArray[np.float64]) -> str:
        if self.pelvis is None or self.analysis is None:
            return ""
        idx = np.round(mm / np.asarray(self.analysis.grid.spacing_mm)).astype(int)
        lo = np.maximum(idx - 2, 0)
        hi = np.minimum(idx + 3, np.asarray(self.pelvis.shape))
        if np.any(hi <= lo):
            return ""
        block = self.pelvis[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        values, counts = np.unique(block[block > 0], return_counts=True)
        if values.size == 0:
            return ""
        return "ilium" if int(values[np.argmax(counts)]) == 2 else "sacrum"


@runtime_checkable
class VertebraLabeller(Protocol):
    """Anything that labels the vertebrae of a CT."""

    name: str

    def label(self, ct: Volume, *, analysis: BoneAnalysis | None = None) -> SpineLabelling:
        """Find and label the vertebrae of ``ct`` (a bone analysis may be given to reuse)."""
        ...


# ------------------------------------------------------------------------------ internals
@dataclass(kw_only=True)
class _Segment:
    arc_bottom: float
    arc_top: float
    disc_below: tuple[float, float] | None  # (centre arc, height)
    disc_above: tuple[float, float] | None
    fused_fraction: float = 0.0
    ribs: list[tuple[str, float]] = field(default_factory=list)  # (side, reach mm)

    @property
    def height(self) -> float:
        return self.arc_top - self.arc_bottom

    @property
    def partial(self) -> bool:
        return self.disc_below is None or self.disc_above is None


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) of the True runs of a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _discs(arcs: NDArray[np.float64], profile: NDArray[np.float64],
           central: NDArray[np.float64], cfg: VertebraConfig) -> list[tuple[float, float]]:
    """(centre arc, height) of every disc: a low run of the lateral-ray profile, bracketed.

    A run counts when it is ``disc_min_height_mm``–``disc_max_height_mm`` long, bounded by
    bone on both sides, reaches down to ``disc_core_max_hu`` (the annulus, not marrow seen
    sideways through a body without lateral cortex), and the central profile peaks (an
    endplate) at least ``endplate_contrast_hu`` above the run's median within
    ``endplate_search_mm`` on each side: a body whose lateral cortex is missing (a
    wing-like transverse process merging into it) has no endplates there.
    """
    step = float(arcs[1] - arcs[0]) if len(arcs) > 1 else 1.0
    reach = max(1, int(round(cfg.endplate_search_mm / step)))
    out = []
    runs: list[tuple[int, int]] = []
    for a, b in _runs(profile < cfg.disc_threshold_hu):
        # a disc seen through thick or noisy slices can flicker above the threshold
        if (runs and (a - runs[-1][1]) * step <= cfg.disc_merge_gap_mm
                and profile[runs[-1][1]:a].max()
                < cfg.disc_threshold_hu + cfg.endplate_contrast_hu):
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    for a, b in runs:
        if a == 0 or b == len(arcs):
            continue  # a run at the end of the axis: not bounded by bodies on both sides
        height = (b - a) * step
        if not cfg.disc_min_height_mm <= height <= cfg.disc_max_height_mm:
            continue
        if profile[a:b].min() > cfg.disc_core_max_hu:
            continue  # marrow seen sideways (no lateral cortex), not the annulus of a disc
        level = float(np.median(central[a:b]))
        below = central[max(0, a - reach):a + 1]
        above = central[b - 1:b + reach]
        if min(below.max(), above.max()) < level + cfg.endplate_contrast_hu:
            continue
        out.append(((float(arcs[a]) + float(arcs[b - 1])) / 2.0, height))
    return out


def _axis_point_index(an: BoneAnalysis, slice_index: int) -> tuple[int, int] | None:
    axis = an.axis
    assert axis is not None
    k = min(max(slice_index - axis.start, 0), len(axis.points_mm) - 1)
    sp = an.grid.spacing_mm
    p = axis.points_mm[k]
    return int(round(p[1] / sp[1])), int(round(p[2] / sp[2]))


def _fused_slices(an: BoneAnalysis, cfg: VertebraConfig) -> NDArray[np.bool_]:
    """Tell, per axis slice, whether the body joins bone beyond ``ilium_min_lateral_mm``."""
    from scipy import ndimage

    axis = an.axis
    assert axis is not None
    sp = an.grid.spacing_mm
    out = np.zeros(axis.stop - axis.start, dtype=bool)
    search = max(1, int(round(6.0 / sp[1])))
    for n, i in enumerate(range(axis.start, axis.stop)):
        filled = an.masks.filled[i]
        pr, pc = _axis_point_index(an, i)  # type: ignore[misc]
        r0, r1 = max(0, pr - search), min(filled.shape[0], pr + search + 1)
        c0, c1 = max(0, pc - search), min(filled.shape[1], pc + search + 1)
        if not filled[r0:r1, c0:c1].any():
            continue
        labels, _ = ndimage.label(filled)
        seed = labels[r0:r1, c0:c1]
        k = int(np.bincount(seed[seed > 0]).argmax())
        cols = np.flatnonzero((labels == k).any(axis=0))
        reach_left = (cols.max() - pc) * sp[2]
        reach_right = (pc - cols.min()) * sp[2]
        out[n] = max(reach_left, reach_right) >= cfg.ilium_min_lateral_mm
    return out


def _segments(an: BoneAnalysis, cfg: VertebraConfig) -> list[_Segment]:
    """Segments between discs, caudal first."""
    axis = an.axis
    assert axis is not None
    discs = _discs(an.profile_arc_mm, an.profile_hu, an.profile_centre_hu, cfg)
    bounds: list[tuple[float, tuple[float, float] | None]] = [(0.0, None)]
    bounds += [(c, (c, h)) for c, h in discs]
    bounds.append((float(axis.arc_mm[-1]), None))
    segments = []
    for (a0, d0), (a1, d1) in zip(bounds[:-1], bounds[1:], strict=True):
        segments.append(_Segment(arc_bottom=a0, arc_top=a1, disc_below=d0, disc_above=d1))
    return segments


def _central_discs(arcs: NDArray[np.float64], central: NDArray[np.float64], lo: float,
                   hi: float, cfg: VertebraConfig) -> list[tuple[float, float]]:
    """Discs between arc lengths ``lo`` and ``hi`` from the central profile alone.

    Either a *dark* disc: a run ``disc_min_height_mm``–``disc_max_height_mm`` long at least
    ``dark_disc_contrast_hu`` below the marrow on both sides (the median of the profile 8–20
    mm away; a side cut by the field of view needs two samples); or an *endplate-bracketed*
    disc: two peaks at least ``endplate_contrast_hu`` above the lowest point between them,
    ``disc_min_height_mm`` + 2 to ``endplate_pair_max_mm`` apart (an osteoporotic body may be
    darker than its discs; its endplates still show).
    """
    step = float(arcs[1] - arcs[0]) if len(arcs) > 1 else 1.0
    inside = np.flatnonzero((arcs > lo + cfg.disc_min_height_mm)
                            & (arcs < hi - cfg.disc_min_height_mm))
    if inside.size < 3:
        return []
    a0, a1 = int(inside[0]), int(inside[-1]) + 1
    found: list[tuple[float, float]] = []
    near, far = int(round(8.0 / step)), int(round(20.0 / step))
    close = int(round(3.0 / step))
    n = len(central)

    def side(k: int, sign: int) -> NDArray[np.float64]:
        """Marrow beside a point: 8–20 mm away, or the last samples before the edge."""
        if sign < 0:
            window = central[max(0, k - far):max(0, k - near)]
            return window if window.size >= 2 else central[:max(0, k - close)][-2:]
        window = central[k + near:k + far]
        return window if window.size >= 2 else central[k + close:][-2:]

    for k in range(a0, a1):
        level = central[k]
        below, above = side(k, -1), side(k, 1)
        if below.size < 2 or above.size < 2:
            continue
        if min(float(np.median(below)), float(np.median(above))) - level < \
                cfg.dark_disc_contrast_hu:
            continue
        run = central < level + 0.5 * cfg.dark_disc_contrast_hu
        a, b = k, k + 1
        while a > 0 and run[a - 1]:
            a -= 1
        while b < n and run[b]:
            b += 1
        height = (b - a) * step
        centre = (float(arcs[a]) + float(arcs[b - 1])) / 2.0
        if (cfg.disc_min_height_mm <= height <= cfg.disc_max_height_mm and lo < centre < hi
                and not any(abs(c - centre) < cfg.disc_max_height_mm for c, _ in found)):
            found.append((centre, height))
    # an endplate at the edge of the view is still a peak: pad both ends with the minimum
    pad = 3
    floor = float(central.min())
    padded = np.concatenate([np.full(pad, floor), central, np.full(pad, floor)])
    peaks = _prominent_peaks(padded, cfg.endplate_prominence_hu)
    peaks = peaks[(peaks >= pad) & (peaks < pad + n)] - pad
    for p, q in zip(peaks[:-1], peaks[1:], strict=True):
        gap = (q - p) * step
        low = float(central[p:q + 1].min())
        centre = (float(arcs[p]) + float(arcs[q])) / 2.0
        if (cfg.disc_min_height_mm + 2.0 <= gap <= cfg.endplate_pair_max_mm
                and min(central[p], central[q]) - low >= cfg.endplate_prominence_hu
                and lo + cfg.disc_min_height_mm < centre < hi - cfg.disc_min_height_mm
                and not any(abs(c - centre) < cfg.disc_max_height_mm for c, _ in found)):
            found.append((centre, gap - 2.0))
    return found



def _prominent_peaks(profile: np.ndarray, min_prominence: float) -> np.ndarray:
    """Return the local maxima of a 1-D profile at least ``min_prominence`` prominent.

    The definitions of ``scipy.signal.find_peaks(profile, prominence=min_prominence)``
    (a flat peak at the middle of its plateau, rounded down; prominence: the peak's height
    above the higher of the lowest points on each side before a higher sample), without
    importing ``scipy.signal`` (about 0.7 s, more than the labelling's whole profile step).

    Parameters
    ----------
    profile : (n,) array
    min_prominence : float

    Returns
    -------
    (k,) int array, ascending.
    """
    x = np.asarray(profile, dtype=np.float64)
    n = x.size
    peaks: list[int] = []
    i = 1
    while i < n - 1:
        if x[i - 1] < x[i]:
            ahead = i + 1
            while ahead < n - 1 and x[ahead] == x[i]:
                ahead += 1
            if x[ahead] < x[i]:
                peaks.append((i + ahead - 1) // 2)
                i = ahead
                continue
        i += 1
    kept: list[int] = []
    for peak in peaks:
        top = x[peak]
        j, left_min = peak, top
        while j >= 0 and x[j] <= top:
            left_min = min(left_min, x[j])
            j -= 1
        j, right_min = peak, top
        while j < n and x[j] <= top:
            right_min = min(right_min, x[j])
            j += 1
        if top - max(left_min, right_min) >= min_prominence:
            kept.append(peak)
    return np.asarray(kept, dtype=np.intp)


def _split_tall(an: BoneAnalysis, segments: list[_Segment], cfg: VertebraConfig
                ) -> list[_Segment]:
    """Split segments too tall for one vertebra at discs found on the central profile.

    Only segments not fused with the iliac bones; a complete segment is too tall beyond
    ``body_max_height_mm``, a partial one beyond ``partial_split_min_height_mm`` (and both
    beyond 1.5 times the typical complete segment when there are two). Every piece stays as
    tall as ``body_min_height_mm`` unless cut by the field of view.
    """
    complete = [s.height for s in segments if not s.partial and s.fused_fraction < 0.5]
    typical = float(np.median(complete)) if len(complete) >= 2 else None
    out: list[_Segment] = []
    for seg in segments:
        if seg.partial:
            limit = cfg.partial_split_min_height_mm
        else:
            limit = cfg.body_max_height_mm
        if typical is not None:
            limit = max(limit, 1.5 * typical)
        if seg.fused_fraction >= 0.5 or seg.height <= limit:
            out.append(seg)
            continue
        found = sorted(_central_discs(an.profile_arc_mm, an.profile_centre_hu, seg.arc_bottom,
                                      seg.arc_top, cfg))
        # every piece must stay as tall as a body, but a piece cut by the field of view
        discs: list[tuple[float, float]] = []
        bottom = seg.arc_bottom
        for centre, height in found:
            need_below = cfg.body_min_height_mm if (discs or seg.disc_below is not None) else \
                cfg.disc_min_height_mm
            if centre - bottom >= need_below:
                discs.append((centre, height))
                bottom = centre
        while discs:
            need_above = cfg.body_min_height_mm if seg.disc_above is not None else \
                cfg.disc_min_height_mm
            if seg.arc_top - discs[-1][0] >= need_above:
                break
            discs.pop()
        if not discs:
            out.append(seg)
            continue
        bottom, below = seg.arc_bottom, seg.disc_below
        for centre, height in discs:
            out.append(_Segment(arc_bottom=bottom, arc_top=centre, disc_below=below,
                                disc_above=(centre, height)))
            bottom, below = centre, (centre, height)
        out.append(_Segment(arc_bottom=bottom, arc_top=seg.arc_top, disc_below=below,
                            disc_above=seg.disc_above))
    return out


def _merge_short(segments: list[_Segment], cfg: VertebraConfig) -> list[_Segment]:
    """Merge a too-short complete segment (a spurious split) into its shorter neighbour."""
    changed = True
    while changed and len(segments) > 1:
        changed = False
        for k, seg in enumerate(segments):
            if seg.partial or seg.height >= cfg.body_min_height_mm:
                continue
            below = segments[k - 1] if k > 0 else None
            above = segments[k + 1] if k + 1 < len(segments) else None
            if below is None and above is None:
                break
            if above is None or (below is not None and below.height <= above.height):
                assert below is not None
                below.arc_top, below.disc_above = seg.arc_top, seg.disc_above
            else:
                above.arc_bottom, above.disc_below = seg.arc_bottom, seg.disc_below
            segments.pop(k)
            changed = True
            break
    return segments


@dataclass(frozen=True)
class _Rib:
    side: str
    arc_mm: float
    reach_mm: float
    cut: bool = False  # reaches the edge of the field of view: its length is unknown


def _ribs(an: BoneAnalysis, cfg: VertebraConfig, arc_limit: float | None) -> list[_Rib]:
    """Bone components starting at the column core and reaching far to the side."""
    from scipy import ndimage

    axis = an.axis
    assert axis is not None
    grid = an.grid
    sp = np.asarray(grid.spacing_mm)
    n_s = grid.shape[0]
    ks = np.clip(np.arange(n_s) - axis.start, 0, len(axis.points_mm) - 1)
    ap = axis.points_mm[ks, 1][:, None, None]
    al = axis.points_mm[ks, 2][:, None, None]
    pp = (np.arange(grid.shape[1]) * sp[1])[None, :, None]
    ll = (np.arange(grid.shape[2]) * sp[2])[None, None, :]
    dist = np.sqrt((pp - ap) ** 2 + (ll - al) ** 2)
    # the core: the body and, behind it, the neural arch and spinous process
    posterior_column = (np.abs(ll - al) <= cfg.rib_core_half_width_mm) & (pp - ap >= 0.0)
    outside = an.masks.bone & (dist > cfg.rib_core_radius_mm) & ~posterior_column
    outside &= (pp - ap > -30.0) & (pp - ap < 90.0)
    labels, count = ndimage.label(outside, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return []
    objects = ndimage.find_objects(labels)
    ribs = []
    voxel_ml = float(np.prod(sp)) / 1000.0
    attach = cfg.rib_core_radius_mm + cfg.rib_attach_gap_mm
    # the two cheap tests for every component at once (most are small fragments): starting
    # at the column (else a rib shaft or other bone), and not a plate such as the ilium
    index = np.arange(1, count + 1)
    nearest = _label_minimum(np.broadcast_to(dist, labels.shape), labels, count)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    candidates = (nearest <= attach) & (sizes * voxel_ml <= cfg.rib_max_volume_ml)
    for k in index[candidates]:
        sl = objects[k - 1]
        if sl is None:
            continue
        own = labels[sl] == k
        d = dist[sl][own]
        dl = np.broadcast_to(ll[0, 0, sl[2]][None, None, :] - al[sl[0]], own.shape)[own]
        reach = float(np.abs(dl).max())
        if reach < cfg.rib_min_lateral_mm:
            continue  # a transverse process
        cols = np.nonzero(own)[2] + sl[2].start
        cut = bool(cols.min() == 0 or cols.max() == grid.shape[2] - 1)
        near = d <= d.min() + 4.0
        s_idx = np.nonzero(own)[0][near] + sl[0].start
        if s_idx.min() == 0 or s_idx.max() == n_s - 1:
            continue  # it starts outside the field of view: a rib of a vertebra not seen
        l_mean = float(dl[near].mean())
        k_ax = int(np.clip(round(float(np.mean(s_idx))) - axis.start, 0, len(axis.points_mm) - 1))
        point = axis.points_mm[k_ax][None].copy()
        point[0, 0] = float(np.mean(s_idx)) * sp[0]
        arc = float(axis.arc_of(point)[0])
        if arc_limit is not None and arc < arc_limit:
            continue
        ribs.append(_Rib(side="left" if l_mean > 0 else "right", arc_mm=arc, reach_mm=reach,
                         cut=cut))
    return ribs


def _label_minimum(values: NDArray[np.floating[Any]], labels: NDArray[np.integer[Any]],
                   count: int) -> NDArray[np.float64]:
    """Minimum of ``values`` over each label 1..``count`` (inf for a label with no voxel).

    ``scipy.ndimage.minimum(values, labels, range(1, count + 1))``, without its sort of the
    whole array (1.4 s → 0.03 s for 20,000 components on a 227×205×205 grid).
    """
    flat = labels.ravel()
    found = flat > 0
    out = np.full(count + 1, np.inf)
    np.minimum.at(out, flat[found], np.asarray(values, dtype=np.float64).ravel()[found])
    return out[1:]


def _pelvis_map(an: BoneAnalysis, arc_top: float) -> NDArray[np.uint8] | None:
    """Coarse map of the pelvic bone below ``arc_top``: 1 sacrum, 2 ilium (or None).

    The sacroiliac joint gap (~2 mm) is resolved on the CT grid, not on the coarse grid:
    the filled bone below the sacral top is labelled there, the component holding the axis
    is the sacrum, components reaching far laterally are iliac bones.
    """
    from scipy import ndimage

    axis = an.axis
    assert axis is not None
    grid = an.grid
    sp = np.asarray(grid.spacing_mm)
    top_point, _ = axis.at_arc(arc_top)
    s_top = int(math.ceil(top_point[0] / sp[0])) + 2
    region = an.masks.filled.copy()
    region[s_top:] = False
    if not region.any():
        return None
    coords = np.argwhere(region)
    lo_mm = coords.min(axis=0) * sp
    hi_mm = coords.max(axis=0) * sp
    box = grid.source_box(lo_mm, hi_mm)
    coarse_in_box = grid.source_box_mask(region, box)
    ct = np.asarray(an.ct.array[box])
    fine = (ct >= 250.0) & ndimage.binary_dilation(coarse_in_box, iterations=1)
    fine = fill_holes_2d(fine)
    labels, count = ndimage.label(fine)
    if count == 0:
        return None
    # the sacrum: the component at the axis points inside the box
    ax_idx = np.round(grid.mm_to_source_index(axis.points_mm)).astype(int)
    starts = np.array([b.start for b in box])
    stops = np.array([b.stop for b in box])
    inside = np.all((ax_idx >= starts) & (ax_idx < stops), axis=1)
    hits = [labels[tuple(i - starts)] for i in ax_idx[inside]]
    hits = [h for h in hits if h > 0]
    if not hits:
        return None
    sacrum = int(np.bincount(hits).argmax())
    # back onto the coarse canonical grid: majority label of each block
    sacral = labels == sacrum
    sacrum_votes = grid.source_box_counts(sacral, box)
    ilium_votes = grid.source_box_counts((labels > 0) & ~sacral, box)
    return np.where(ilium_votes > sacrum_votes, 2,
                    np.where(sacrum_votes > 0, 1, 0)).astype(np.uint8)


def _sacral_bands(an: BoneAnalysis, sacrum_arc: float, cfg: VertebraConfig
                  ) -> tuple[DiscPlane, ...]:
    """Dense transverse bands of the central profile below the sacral top (fused discs).

    Runs ``sacral_band_contrast_hu`` above the sacrum's median central attenuation,
    ``disc_min_height_mm``–``disc_max_height_mm`` long, more than ``endplate_search_mm``
    below the L5–S1 disc (whose S1 endplate belongs to that disc).
    """
    axis = an.axis
    assert axis is not None
    arcs, central = an.profile_arc_mm, an.profile_centre_hu
    inside = arcs < sacrum_arc - cfg.endplate_search_mm
    if inside.sum() < 3:
        return ()
    level = float(np.median(central[inside]))
    step = float(arcs[1] - arcs[0]) if len(arcs) > 1 else 1.0
    out = []
    runs: list[tuple[int, int]] = []
    for a, b in _runs(inside & (central >= level + cfg.sacral_band_contrast_hu)):
        if runs and (a - runs[-1][1]) * step <= cfg.disc_merge_gap_mm:
            runs[-1] = (runs[-1][0], b)  # the two endplates of one fused disc
        else:
            runs.append((a, b))
    for a, b in runs:
        height = (b - a) * step
        if not cfg.disc_min_height_mm <= height <= cfg.disc_max_height_mm:
            continue
        centre_arc = (float(arcs[a]) + float(arcs[b - 1])) / 2.0
        p, t = axis.at_arc(centre_arc)
        c = an.mm_to_lps(p[None])[0]
        tip = an.mm_to_lps((p + t)[None])[0]
        normal = (tip - c) / np.linalg.norm(tip - c)
        out.append(DiscPlane(centre_lps_mm=_t3(c), normal_lps=_t3(normal), height_mm=height,
                             arc_mm=centre_arc))
    return tuple(out)


def _slab_mask(an: BoneAnalysis, seg_bottom: float, seg_top: float, shape_lo: NDArray[np.int_],
               shape_hi: NDArray[np.int_]) -> NDArray[np.bool_]:
    """Coarse voxels of a box lying between the axis-normal planes at two arc lengths."""
    axis = an.axis
    assert axis is not None
    sp = np.asarray(an.grid.spacing_mm)
    grids = np.meshgrid(*(np.arange(a, b) * s for a, b, s in zip(shape_lo, shape_hi, sp,
                                                                  strict=True)), indexing="ij")
    pts = np.stack(grids, axis=-1)
    pb, tb = axis.at_arc(seg_bottom)
    pt, tt = axis.at_arc(seg_top)
    above_bottom = ((pts - pb) @ tb) >= 0
    below_top = ((pts - pt) @ tt) <= 0
    return np.asarray(above_bottom & below_top)


def _body_mask_coarse(an: BoneAnalysis, seg: _Segment, cfg: VertebraConfig,
                      semi_lateral_mm: float | None = None
                      ) -> tuple[NDArray[np.bool_], NDArray[np.int_]] | None:
    """Make the coarse body mask of a segment, in a box: (mask, box start).

    Filled bone between its disc planes, the canal and posterior elements cut off.
    """
    from scipy import ndimage

    axis = an.axis
    assert axis is not None
    grid = an.grid
    sp = np.asarray(grid.spacing_mm)
    p_bottom, _ = axis.at_arc(seg.arc_bottom)
    p_top, _ = axis.at_arc(seg.arc_top)
    semi_l = semi_lateral_mm or cfg.body_max_semi_lateral_mm
    semi_ap = cfg.body_max_semi_ap_mm
    reach = np.array([0.0, semi_ap, semi_l])
    lo_mm = np.minimum(p_bottom, p_top) - reach - np.array([semi_ap, 0.0, 0.0]) * 0.5
    hi_mm = np.maximum(p_bottom, p_top) + reach + np.array([semi_ap, 0.0, 0.0]) * 0.5
    lo = np.clip(np.floor(lo_mm / sp).astype(int), 0, np.asarray(grid.shape))
    hi = np.clip(np.ceil(hi_mm / sp).astype(int) + 1, 0, np.asarray(grid.shape))
    if np.any(hi <= lo):
        return None
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    filled = an.masks.filled[box].copy()
    bone = an.masks.bone[box]
    slab = _slab_mask(an, seg.arc_bottom, seg.arc_top, lo, hi)
    opening = disk(cfg.body_opening_mm, (float(sp[1]), float(sp[2])))
    out = np.zeros_like(filled)
    for n in range(filled.shape[0]):
        i = lo[0] + n
        if not (slab[n] & filled[n]).any():
            continue
        k = int(np.clip(i - axis.start, 0, len(axis.points_mm) - 1))
        cp = axis.points_mm[k, 1] / sp[1] - lo[1]
        cl = axis.points_mm[k, 2] / sp[2] - lo[2]
        rows = (np.arange(filled.shape[1]) - cp)[:, None] * sp[1]
        cols = (np.arange(filled.shape[2]) - cl)[None, :] * sp[2]
        ellipse = (rows / semi_ap) ** 2 + (cols / semi_l) ** 2 <= 1.0
        section = filled[n] & slab[n] & ellipse
        # the canal: a hole of the bone ring posterior to the body centre
        holes = ndimage.binary_fill_holes(bone[n]) & ~bone[n]
        hl, nh = ndimage.label(holes)
        for h in range(1, nh + 1):
            rr, cc = np.nonzero(hl == h)
            if (rr.mean() - cp) * sp[1] > 6.0 and abs(cc.mean() - cl) * sp[2] < 15.0:
                front = int(rr.min())
                section[front:, :] = False
        section = ndimage.binary_opening(section, structure=opening)
        lab, nl = ndimage.label(section)
        if nl == 0:
            continue
        r_i, c_i = int(round(cp)), int(round(cl))
        if 0 <= r_i < lab.shape[0] and 0 <= c_i < lab.shape[1] and lab[r_i, c_i] > 0:
            keep = lab[r_i, c_i]
        else:
            rr, cc = np.nonzero(lab)
            near = int(np.argmin((rr - cp) ** 2 + (cc - cl) ** 2))
            if math.hypot((rr[near] - cp) * sp[1], (cc[near] - cl) * sp[2]) > 8.0:
                continue
            keep = lab[rr[near], cc[near]]
        out[n] = lab == keep
    if not out.any():
        return None
    return out, lo


def _body_on_ct(an: BoneAnalysis, coarse: NDArray[np.bool_], lo: NDArray[np.int_],
                bone_threshold_hu: float) -> tuple[NDArray[np.bool_], tuple[slice, slice, slice]]:
    """Refine a coarse body mask on the CT grid: blocks ∩ thresholded, hole-filled bone."""
    from scipy import ndimage

    grid = an.grid
    sp = np.asarray(grid.spacing_mm)
    full = np.zeros(grid.shape, dtype=bool)
    hi = lo + np.asarray(coarse.shape)
    full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = coarse
    coords = np.argwhere(coarse) + lo
    box = grid.source_box(coords.min(axis=0) * sp - sp, coords.max(axis=0) * sp + sp)
    blocks = grid.source_box_mask(full, box)
    # eroded within its own box: outside it the grid is empty, as the border is to erosion
    full[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = ndimage.binary_erosion(coarse)
    inner = grid.source_box_mask(full, box)
    ct = np.asarray(an.ct.array[box])
    # the boundary from the CT grid (cortex), the interior from the coarse mask (marrow that
    # is not enclosed by cortex on every section, as in the sacrum)
    fine = (fill_holes_2d(ct >= bone_threshold_hu) & blocks) | inner
    fine = fill_holes_2d(fine)
    lab, n = ndimage.label(fine)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        fine = lab == int(sizes.argmax())
    return fine, box


def _trabecular(an: BoneAnalysis, body: NDArray[np.bool_], box: tuple[slice, slice, slice],
                cfg: VertebraConfig) -> tuple[float | None, float | None, int]:
    """Mean and SD of the body eroded by ``trabecular_erosion_mm``, dense foci left out."""
    sp = an.ct.spacing_mm
    depth = mask_depth(body, sp)
    roi = depth >= cfg.trabecular_erosion_mm + 0.5 * max(sp)
    ct = np.asarray(an.ct.array[box], dtype=np.float32)
    dense = ct >= cfg.dense_exclusion_hu
    if dense.any() and cfg.dense_exclusion_margin_mm > 0:
        # partial volume spreads a dense focus over a slice thickness: at least one voxel
        margin = max(cfg.dense_exclusion_margin_mm, max(sp))
        roi &= ~_near(dense, roi, margin, sp)
    else:
        roi &= ~dense
    n = int(roi.sum())
    if n < cfg.trabecular_min_voxels:
        return None, None, n
    values = ct[roi]
    return float(values.mean()), float(values.std(ddof=1)), n


def _near(seeds: NDArray[np.bool_], where: NDArray[np.bool_], distance_mm: float,
          spacing_mm: tuple[float, float, float]) -> NDArray[np.bool_]:
    """Voxels of ``where`` within ``distance_mm`` of a seed (the rest False).

    The distance map is computed over the box of ``where`` grown by ``distance_mm`` and a
    voxel: no seed outside it is that close to ``where``, so the answer is that of the whole
    grid's distance map.
    """
    from scipy import ndimage

    out = np.zeros(where.shape, dtype=bool)
    box = grown_box(where, np.ceil(distance_mm / np.asarray(spacing_mm)).astype(int) + 1)
    if box is not None and seeds[box].any():
        distance = ndimage.distance_transform_edt(~seeds[box], sampling=spacing_mm)
        out[box] = where[box] & (distance <= distance_mm)
    return out


def _box_volume(ct: Volume, array: NDArray[np.bool_], box: tuple[slice, slice, slice]
                ) -> Volume:
    """Wrap a mask on a box of the CT grid as a Volume (same spacing and direction)."""
    origin = ct.index_to_lps([[b.start for b in box]])[0]
    series = SeriesInfo(series_instance_uid=ct.series.series_instance_uid,
                        frame_of_reference_uid=ct.series.frame_of_reference_uid,
                        study_instance_uid=ct.series.study_instance_uid, modality="SEG")
    return Volume(array=array, spacing_mm=ct.spacing_mm,
                  origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
                  direction_lps=ct.direction_lps, intensity_unit=IntensityUnit.MASK,
                  series=series)


@dataclass(frozen=True)
class _Labels:
    labels: list[str]
    confidence: float
    reasons: tuple[str, ...]
    anchors: tuple[str, ...]


def _count(n: int, t12: int | None, t12_at_edge: bool, t12_short: bool, s1: int | None,
           l5_sacral_like: bool, cfg: VertebraConfig) -> _Labels:
    """Labels of ``n`` segments (cranial first) from the anchor indices."""
    anchors: list[str] = []
    from_ribs = from_sacrum = None
    if t12 is not None:
        from_ribs = [level_offset("T12", i - t12) for i in range(n)]
        anchors.append(f"last rib-bearing vertebra (T12) = vertebra {t12 + 1} of {n}"
                       + (" (at the edge of the field of view)" if t12_at_edge else ""))
    if s1 is not None:
        from_sacrum = [level_offset("S1", i - s1) for i in range(n)]
        anchors.append(f"first segment fused with the iliac bones (S1) = vertebra {s1 + 1} "
                       f"of {n}")
    if from_ribs is not None and from_sacrum is not None:
        lumbar = (s1 or 0) - (t12 or 0) - 1
        if from_ribs == from_sacrum:
            return _Labels(from_sacrum, cfg.confidence_anchors_agree,
                           ("rib and sacral anchors agree (5 lumbar-type vertebrae)",),
                           tuple(anchors))
        if lumbar == 4 and t12_short:
            return _Labels(from_sacrum, cfg.confidence_conflict_explained,
                           ("anchors disagree: 4 vertebrae without ribs between the last "
                            "rib-bearing vertebra and the sacrum; its ribs are short "
                            f"(< {cfg.short_rib_max_lateral_mm:g} mm): read as lumbar ribs on "
                            "L1 and counted from the sacrum",), tuple(anchors))
        if lumbar == 4 and l5_sacral_like:
            return _Labels(from_ribs, cfg.confidence_conflict_explained,
                           ("anchors disagree: 4 vertebrae without ribs between T12 and the "
                            "sacrum and the last one looks sacralised (fused laterally or a "
                            "thin disc below): counted from the ribs",), tuple(anchors))
        if lumbar == 6 and l5_sacral_like:
            return _Labels(from_sacrum, cfg.confidence_conflict_unexplained,
                           ("anchors disagree: 6 lumbar-type vertebrae (a lumbarised S1 or "
                            "a missing rib pair); counted from the sacrum",), tuple(anchors))
        return _Labels(from_sacrum, cfg.confidence_conflict_unexplained,
                       (f"anchors disagree: {lumbar} vertebrae without ribs between the last "
                        "rib-bearing vertebra and the sacrum (expected 5); counted from the "
                        "sacrum; transitional anatomy or a missed rib or disc",),
                       tuple(anchors))
    if from_sacrum is not None:
        return _Labels(from_sacrum, cfg.confidence_sacrum_only,
                       ("counted from the sacrum only (no rib-bearing vertebra in view): a "
                        "lumbar rib or transitional anatomy cannot be checked",), tuple(anchors))
    if from_ribs is not None:
        if t12_at_edge:
            return _Labels(from_ribs, cfg.confidence_ribs_at_edge,
                           ("the lowest rib-bearing vertebra in view is at the edge of the "
                            "field of view: assumed T12, the vertebra below is not seen",),
                           tuple(anchors))
        why = ("counted from the last rib-bearing vertebra only (no sacrum in view)"
               + ("; its ribs are short: a lumbar rib cannot be excluded" if t12_short else ""))
        conf = cfg.confidence_ribs_only if not t12_short else cfg.confidence_ribs_at_edge
        return _Labels(from_ribs, conf, (why,), tuple(anchors))
    return _Labels([""] * n, cfg.confidence_no_anchor,
                   ("no counting anchor in view (no rib-bearing vertebra followed by one "
                    "without ribs, no sacrum): the level is unknown",), tuple(anchors))


class AnchorCountingLabeller:
    """Label vertebrae by their anchors (last rib-bearing vertebra, sacrum) and counting.

    Parameters
    ----------
    config : DetectionConfig, optional
        Bone analysis and vertebra settings (``configs/detection.toml``).
    """

    name = "anchor_counting"

    def __init__(self, config: DetectionConfig | None = None) -> None:
        self.config = config or DetectionConfig()

    def label(self, ct: Volume, *, analysis: BoneAnalysis | None = None) -> SpineLabelling:
        """Find, label and measure the vertebrae of a CT.

        Parameters
        ----------
        ct : Volume
            CT in HU.
        analysis : BoneAnalysis, optional
            A bone analysis of ``ct`` already made (`analyse_bone`); made here otherwise.

        Returns
        -------
        SpineLabelling
            No vertebra, with a note, when no spinal column is in view.

        Raises
        ------
        InputError
            Not a CT in HU, or too small a volume (`bonelesion.roi.bone.work_grid`).
        """
        cfg = self.config.vertebrae
        an = analysis if analysis is not None else analyse_bone(ct, config=self.config.bone)
        notes = list(an.notes)
        if an.axis is None:
            return SpineLabelling(labeller=self.name, notes=tuple(notes), analysis=an)
        segments = _merge_short(_segments(an, cfg), cfg)
        fused = _fused_slices(an, cfg)
        axis = an.axis
        slice_arc = axis.arc_mm

        def fused_fraction(seg: _Segment) -> float:
            inner = (slice_arc >= seg.arc_bottom + 0.25 * seg.height) & (
                slice_arc <= seg.arc_top - 0.25 * seg.height)
            return float(fused[inner].mean()) if inner.any() else 0.0

        for seg in segments:
            seg.fused_fraction = fused_fraction(seg)
        split = _split_tall(an, segments, cfg)
        if len(split) > len(segments):
            notes.append(f"{len(split) - len(segments)} disc(s) found from the endplates and "
                         "the disc's own attenuation only (the lateral cortex did not show "
                         "them: ribs at the disc level, or a noisy CT)")
            segments = split
            for seg in segments:
                seg.fused_fraction = fused_fraction(seg)
        # the sacrum: the most cranial fused segment, below a disc; its fused run (with the
        # segments below it) must be as tall as a sacrum, or reach the edge of the view
        s1_seg: int | None = None
        fused_idx = [k for k, s in enumerate(segments) if s.fused_fraction >= 0.5]
        if fused_idx:
            top = fused_idx[-1]
            run = top
            while run > 0 and segments[run - 1].fused_fraction >= 0.5:
                run -= 1
            height = segments[top].arc_top - segments[run].arc_bottom
            reaches_edge = run == 0 and segments[0].disc_below is None
            if segments[top].disc_above is None:
                notes.append("the most cranial segment in view is fused with the iliac bones: "
                             "no disc above the sacrum is seen")
            elif height >= cfg.sacrum_min_height_mm or reaches_edge:
                s1_seg = top
        sacrum_arc = segments[s1_seg].arc_top if s1_seg is not None else None
        # vertebrae above the sacrum (cranial first), then S1
        mobile = segments[(s1_seg + 1) if s1_seg is not None else 0:]
        below_sacrum = segments[:s1_seg] if s1_seg is not None else []
        del below_sacrum
        mobile = [s for s in mobile if s.partial or s.height >= cfg.body_min_height_mm]
        for rib in _ribs(an, cfg, sacrum_arc):
            for seg in mobile:
                margin = cfg.rib_search_margin_mm
                if seg.arc_bottom - margin <= rib.arc_mm <= seg.arc_top + margin:
                    # a rib cut by the field of view is at least as long as seen: not short
                    seg.ribs.append((rib.side, math.inf if rib.cut else rib.reach_mm))
                    break
        ordered = list(reversed(mobile))
        n_mobile = len(ordered)
        rib_idx = [i for i, s in enumerate(ordered) if s.ribs]
        t12 = rib_idx[-1] if rib_idx else None
        t12_at_edge = t12 is not None and t12 == n_mobile - 1 and s1_seg is None
        t12_short = t12 is not None and max(r for _, r in ordered[t12].ribs) < \
            cfg.short_rib_max_lateral_mm
        l5_sacral_like = False
        s1_segment = segments[s1_seg] if s1_seg is not None else None
        split_reason = ""
        if s1_segment is not None and ordered:
            last = ordered[-1]
            thin = last.disc_below is not None and last.disc_below[1] < 0.5 * float(np.median(
                [s.disc_below[1] for s in ordered if s.disc_below is not None]))
            l5_sacral_like = last.fused_fraction >= 0.2 or thin
            complete = [s.height for s in ordered if not s.partial]
            h_ref = float(np.median(complete)) if complete else s1_segment.height / 2.0
            lumbar = n_mobile - t12 - 1 if t12 is not None else None
            if (lumbar == 4 and not t12_short and s1_segment.height > cfg.body_max_height_mm
                    and s1_segment.height >= 1.5 * h_ref):
                # no disc between L5 and the sacrum: a sacralised L5 on top of the sacrum
                l5 = _Segment(arc_bottom=s1_segment.arc_top - h_ref,
                              arc_top=s1_segment.arc_top, disc_below=None,
                              disc_above=s1_segment.disc_above,
                              fused_fraction=s1_segment.fused_fraction)
                s1_segment = _Segment(arc_bottom=s1_segment.arc_bottom,
                                      arc_top=s1_segment.arc_top - h_ref,
                                      disc_below=s1_segment.disc_below, disc_above=None,
                                      fused_fraction=s1_segment.fused_fraction)
                ordered.append(l5)
                n_mobile += 1
                sacrum_arc = s1_segment.arc_top
                split_reason = (
                    f"no disc found between the last vertebra and the sacrum, and the top sacral "
                    f"segment is {l5.arc_top - s1_segment.arc_bottom:.0f} mm tall (vertebrae "
                    f"here: {h_ref:.0f} mm): read as a sacralised L5 fused to the sacrum, S1 "
                    f"placed one vertebral height below the last disc")
        n_all = n_mobile + (1 if s1_segment is not None else 0)
        counted = _count(n_all, t12, t12_at_edge, t12_short,
                         n_mobile if s1_segment is not None else None, l5_sacral_like, cfg)
        if split_reason:
            counted = _Labels(counted.labels,
                              min(counted.confidence, cfg.confidence_conflict_explained),
                              (*counted.reasons, split_reason), counted.anchors)
        if an.grid.obliquity_deg > 10.0:
            counted = _Labels(counted.labels, min(counted.confidence, cfg.confidence_ribs_at_edge),
                              (*counted.reasons, "oblique CT grid"), counted.anchors)
        vertebrae: list[Vertebra] = []
        segs_all = ordered + ([s1_segment] if s1_segment is not None else [])
        l5_semi = None
        for i, seg in enumerate(segs_all):
            is_s1 = s1_segment is not None and i == n_all - 1
            if is_s1:
                ref = ordered[-1].height if ordered else 30.0
                s1 = _Segment(arc_bottom=max(segments[0].arc_bottom,
                                             seg.arc_top - cfg.s1_height_ratio * ref),
                              arc_top=seg.arc_top, disc_below=None, disc_above=seg.disc_above,
                              fused_fraction=seg.fused_fraction)
                seg = s1
            vertebrae.append(self._vertebra(an, seg, i, counted, is_s1, l5_semi, cfg))
            if not is_s1 and vertebrae[-1].body_mask is not None:
                l5_semi = _semi_lateral(vertebrae[-1].body_mask)
        pelvis = _pelvis_map(an, sacrum_arc) if sacrum_arc is not None else None
        bands = _sacral_bands(an, sacrum_arc, cfg) if sacrum_arc is not None else ()
        if s1_seg is None:
            notes.append("no sacrum in view (no segment fused with the iliac bones below a "
                         "disc)")
        if t12 is None:
            notes.append("no rib-bearing vertebra followed by one without ribs in view")
        return SpineLabelling(labeller=self.name, vertebrae=tuple(vertebrae),
                              anchors=counted.anchors, notes=tuple(notes), analysis=an,
                              sacrum_arc_mm=sacrum_arc, pelvis=pelvis, sacral_bands=bands)

    def _vertebra(self, an: BoneAnalysis, seg: _Segment, index: int, counted: _Labels,
                  is_s1: bool, l5_semi: float | None, cfg: VertebraConfig) -> Vertebra:
        axis = an.axis
        assert axis is not None
        label = counted.labels[index]
        reasons = list(counted.reasons)
        if seg.partial and not is_s1:
            reasons.append("cut by the edge of the field of view")
        coarse = _body_mask_coarse(an, seg, cfg, semi_lateral_mm=l5_semi if is_s1 else None)
        mid_point, _ = axis.at_arc((seg.arc_bottom + seg.arc_top) / 2.0)
        centroid = an.mm_to_lps(mid_point[None])[0]
        body_volume = 0.0
        trab: tuple[float | None, float | None, int] = (None, None, 0)
        mask_volume = None
        if coarse is not None:
            fine, box = _body_on_ct(an, coarse[0], coarse[1], self.config.bone.bone_threshold_hu)
            if fine.any():
                idx = np.argwhere(fine).mean(axis=0) + np.array([b.start for b in box])
                centroid = an.ct.index_to_lps(idx[None])[0]
                body_volume = float(fine.sum()) * an.ct.voxel_volume_mm3 / 1000.0
                trab = _trabecular(an, fine, box, cfg)
                mask_volume = _box_volume(an.ct, fine, box)
        if mask_volume is None:
            reasons.append("no body mask: the body's cortex is not closed in this segment")
        if trab[0] is None:
            reasons.append("trabecular attenuation not measured: too few voxels after erosion")

        def disc(d: tuple[float, float] | None) -> DiscPlane | None:
            if d is None:
                return None
            p, t = axis.at_arc(d[0])
            c = an.mm_to_lps(p[None])[0]
            tip = an.mm_to_lps((p + t)[None])[0]
            normal = (tip - c) / np.linalg.norm(tip - c)
            return DiscPlane(centre_lps_mm=_t3(c), normal_lps=_t3(normal), height_mm=d[1],
                             arc_mm=d[0])

        ribs = tuple(sorted({side for side, _ in seg.ribs}))
        return Vertebra(
            label=label, index=index, region=region_of(label),
            confidence=counted.confidence, reasons=tuple(reasons), centroid_lps_mm=_t3(centroid),
            height_mm=seg.height, body_volume_ml=body_volume, trabecular_mean_hu=trab[0],
            trabecular_sd_hu=trab[1], trabecular_voxel_count=trab[2], rib_sides=ribs,
            rib_reach_mm=_finite_max([r for _, r in seg.ribs]),
            fused_to_ilium=seg.fused_fraction >= 0.5, partial=seg.partial and not is_s1,
            superior_disc=disc(seg.disc_above), inferior_disc=disc(seg.disc_below),
            body_mask=mask_volume, arc_top_mm=seg.arc_top, arc_bottom_mm=seg.arc_bottom)


def _finite_max(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else None


def _semi_lateral(mask: Volume) -> float:
    """Half the lateral (LPS L) extent of a mask, mm."""
    idx = np.argwhere(np.asarray(mask.array))
    lps = mask.index_to_lps(idx[:: max(1, len(idx) // 5000)])
    return float((lps[:, 0].max() - lps[:, 0].min()) / 2.0)


def _t3(v: NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))
