"""Figures of the study report: key images per lesion and series, and a sagittal overview.

Everything here works on a lesion's neighbourhood: a lesion's bounding box on the mask grid
is found once (`lesion_geometry`), and each series is cropped around it before the mask is
resampled onto it, so a study of 200 lesions on a 512×512×300 CT never builds a full-volume
array per lesion. Figures are drawn with matplotlib's Agg canvas (no pyplot, no global
backend switch); matplotlib is imported only when a figure is drawn, so a run without
images (``--no-qc``) never imports it.

What a key image shows, on the series' own grid and plane (no reformatting):

* the slice where the lesion has its largest cross-section on that series;
* the lesion ROI (yellow) and the core the stage measured (cyan: the ROI eroded by the
  stage's configured margin, `bonelesion.stages.base.core_roi`), outlined along voxel edges;
* a scale bar, orientation letters from the series' direction cosines, the window used.

Window presets: CT bone window W 2000 L 500 HU (shows blastic metastases, ~650 HU, and
enostoses, ~1200 HU, apart: Ulano 2016); ADC maps 0–3.0 ×10⁻³ mm²/s (the usual display
range of ADC maps); fractions 0–100 %; other MR images the 1st–99.5th percentile of the
series (robust to a few bright voxels, one window for every lesion of the series).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import DataQualityWarning, EmptyMaskError, InputError
from bonelesion.model.volume import Volume
from bonelesion.units import IntensityUnit

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported lazily
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CT_BONE_WINDOW_HU",
    "ADC_WINDOW_MM2_PER_S",
    "ROI_COLOUR",
    "CORE_COLOUR",
    "CALL_COLOURS",
    "Window",
    "LesionGeometry",
    "KeyImage",
    "Overview",
    "OverviewMarker",
    "orientation_label",
    "plane_name",
    "series_window",
    "mask_bounding_box",
    "lesion_geometry",
    "key_image",
    "sagittal_overview",
    "lesion_geometries",
    "StudyFigures",
]

#: (level, width) of the CT bone window, HU.
CT_BONE_WINDOW_HU = (500.0, 2000.0)
#: (low, high) display range of ADC maps, mm²/s.
ADC_WINDOW_MM2_PER_S = (0.0, 3.0e-3)
#: Percentiles of a series' voxels that bound the window of MR (arbitrary-unit) images.
MR_WINDOW_PERCENTILES = (1.0, 99.5)
#: At most this many voxels of a series are sampled to find its percentile window.
_WINDOW_SAMPLE_VOXELS = 2_000_000
#: Field of view of a key image: the lesion's in-plane extent plus this margin on each side.
KEY_IMAGE_MARGIN_MM = 25.0
#: Size of a key image, pixels (square).
KEY_IMAGE_PX = 300
#: Outline colours: the lesion ROI, and the core the stage measured.
ROI_COLOUR = "#ffd21f"
CORE_COLOUR = "#19e3ff"
#: Marker colours of the calls (overview, report).
CALL_COLOURS = {"malignant": "#d7263d", "indeterminate": "#f08c00", "benign": "#2b9348"}
#: A component of a direction below this (cos 78°) does not add a letter to its label.
_OBLIQUE_COMPONENT = 0.2
#: Sagittal overview: sampling step bounds (mm), slab bounds and padding around the lesions.
_OVERVIEW_STEP_MM = (0.5, 2.0)
_OVERVIEW_SLAB_PAD_MM = 8.0
_OVERVIEW_MAX_SLAB_MM = 60.0
#: Anterior–posterior field of the overview: the lesions' span plus this on each side.
_OVERVIEW_AP_MARGIN_MM = 70.0
_OVERVIEW_MAX_PLANES = 48
#: Largest size of the overview figure, pixels.
_OVERVIEW_WIDTH_PX = 560
_OVERVIEW_HEIGHT_PX = 720
#: A series short from head to foot is drawn at least this tall, up to this wide.
_OVERVIEW_MIN_HEIGHT_PX = 260
_OVERVIEW_MAX_WIDTH_PX = 1100
#: Letters of the LPS axes: (negative, positive) direction.
_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


# ---------------------------------------------------------------------------- small helpers
@dataclass(frozen=True, kw_only=True)
class Window:
    """Display window of a series: values ``low``..``high`` map to black..white."""

    low: float
    high: float
    label: str


def orientation_label(vector_lps: Sequence[float] | NDArray[np.float64]) -> str:
    """Patient-direction letters of an LPS vector, the strongest component first.

    Components weaker than cos 78° are left out, so a slightly tilted axis keeps one
    letter and a truly oblique one shows two or three (as DICOM viewers do).

    Examples
    --------
    >>> orientation_label([1.0, 0.0, 0.0]), orientation_label([0.0, -1.0, 0.0])
    ('L', 'A')
    >>> orientation_label([0.0, 0.6, -0.8])
    'IP'
    """
    v = np.asarray(vector_lps, dtype=np.float64)
    order = np.argsort(-np.abs(v), kind="stable")
    letters = [
        _AXIS_LETTERS[i][1 if v[i] > 0 else 0]
        for n, i in enumerate(order)
        if n == 0 or abs(v[i]) >= _OBLIQUE_COMPONENT
    ]
    return "".join(letters)


def plane_name(volume: Volume) -> str:
    """``axial``, ``coronal``, ``sagittal`` or ``oblique``: the plane of the volume's slices."""
    normal = np.abs(volume.slice_normal_lps)
    axis = int(np.argmax(normal))
    if normal[axis] < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _edge_letters(volume: Volume) -> dict[str, str]:
    """Letters at the four edges of a displayed slice (rows down, columns right)."""
    row_dir = np.asarray(volume.direction_lps[:, 1])
    col_dir = np.asarray(volume.direction_lps[:, 2])
    return {"top": orientation_label(-row_dir), "bottom": orientation_label(row_dir),
            "left": orientation_label(-col_dir), "right": orientation_label(col_dir)}


def series_window(volume: Volume) -> Window:
    """Return the display window of a series (see the module notes for the presets)."""
    if volume.intensity_unit is IntensityUnit.HU:
        level, width = CT_BONE_WINDOW_HU
        return Window(low=level - width / 2, high=level + width / 2,
                      label=f"W {width:.0f} L {level:.0f} (bone)")
    if volume.intensity_unit is IntensityUnit.MM2_PER_S:
        low, high = ADC_WINDOW_MM2_PER_S
        return Window(low=low, high=high,
                      label=f"{low * 1e3:.1f}–{high * 1e3:.1f} ×10⁻³ mm²/s")
    if volume.intensity_unit is IntensityUnit.FRACTION:
        return Window(low=0.0, high=1.0, label="0–100 %")
    arr = volume.array
    step = max(1, int(round((arr.size / _WINDOW_SAMPLE_VOXELS) ** (1.0 / 3.0))))
    sample = np.asarray(arr[::step, ::step, ::step], dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return Window(low=0.0, high=1.0, label="no finite voxel")
    low, high = (float(x) for x in np.percentile(sample, MR_WINDOW_PERCENTILES))
    if not high > low:
        high = low + 1.0
    p_low, p_high = MR_WINDOW_PERCENTILES
    return Window(low=low, high=high,
                  label=f"{low:.0f}–{high:.0f} ({p_low:g}–{p_high:g}th percentile of series)")


def mask_bounding_box(mask: NDArray[np.bool_]) -> tuple[slice, slice, slice]:
    """Index bounding box of a boolean (S, R, C) mask, found without a full-size temporary.

    Raises
    ------
    EmptyMaskError
        If the mask holds no voxel.
    """
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    if slices.size == 0:
        raise EmptyMaskError("the lesion mask holds no voxel. Potential fix: check the ROI "
                             "lies inside the series and its frame of reference.")
    s0, s1 = int(slices[0]), int(slices[-1]) + 1
    sub = mask[s0:s1]
    rows = np.flatnonzero(sub.any(axis=(0, 2)))
    cols = np.flatnonzero(sub.any(axis=(0, 1)))
    return (slice(s0, s1), slice(int(rows[0]), int(rows[-1]) + 1),
            slice(int(cols[0]), int(cols[-1]) + 1))


def _sub_volume(volume: Volume, box: tuple[slice, slice, slice],
                array: NDArray[Any] | None = None) -> Volume:
    """Return the part ``box`` of ``volume`` (a view of its array) with its own origin."""
    start = [b.start for b in box]
    origin = volume.index_to_lps([start])[0]
    return Volume(array=volume.array[box] if array is None else array,
                  spacing_mm=volume.spacing_mm,
                  origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
                  direction_lps=volume.direction_lps, intensity_unit=volume.intensity_unit,
                  series=volume.series)


def _box_around(volume: Volume, corners_lps: NDArray[np.float64],
                margin_mm: tuple[float, float, float]) -> tuple[slice, slice, slice] | None:
    """Index box of ``volume`` holding the LPS points plus a margin per axis; None if outside."""
    idx = volume.lps_to_index(corners_lps)
    box = []
    for axis in range(3):
        pad = margin_mm[axis] / volume.spacing_mm[axis]
        lo = int(math.floor(idx[:, axis].min() - pad))
        hi = int(math.ceil(idx[:, axis].max() + pad)) + 1
        lo, hi = max(lo, 0), min(hi, volume.shape[axis])
        if hi <= lo:
            return None
        box.append(slice(lo, hi))
    return box[0], box[1], box[2]


def _box_corners_lps(volume: Volume, box: tuple[slice, slice, slice]) -> NDArray[np.float64]:
    """LPS positions of the 8 outer voxel corners of an index box."""
    lo = [b.start - 0.5 for b in box]
    hi = [b.stop - 0.5 for b in box]
    corners = [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
    return volume.index_to_lps(np.asarray(corners, dtype=np.float64))


# ---------------------------------------------------------------------------- geometry
@dataclass(frozen=True, kw_only=True)
class LesionGeometry:
    """Where a lesion is and how big, from its mask (on the mask's own grid).

    Parameters
    ----------
    lesion_id : str
    centroid_lps_mm : (3,) tuple of float
        Centre of mass of the mask voxels, LPS.
    box : tuple of slice
        Index bounding box of the mask on its grid.
    long_axis_mm, short_axis_mm : float
        Longest diameter on the slice of largest cross-section (calipers over the voxel
        edges) and the longest diameter perpendicular to it (bidimensional measurement).
    plane : str
        Plane of that slice (``axial`` …).
    volume_ml : float
        Mask volume.
    """

    lesion_id: str
    centroid_lps_mm: tuple[float, float, float]
    box: tuple[slice, slice, slice]
    long_axis_mm: float
    short_axis_mm: float
    plane: str
    volume_ml: float


def _grid_hull(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vertices of the convex hull of distinct, sorted points on the half-pixel grid.

    Andrew's monotone chain (counterclockwise from the first point; collinear points on an
    edge are dropped, and a set of collinear points gives its two ends), in integers
    (half-pixel units), so its turn tests are exact: a chain over the points in mm rounds
    them, and may keep a point that lies on an edge. Only the points first or last in
    their row and first or last in their column go through the chain: a vertex between
    two points of its row or of its column would lie on their segment. (scipy.spatial
    would cost 0.16 s of import per process.)

    Examples
    --------
    >>> square = np.array([[0, 0], [0, 1], [0, 2], [1, 1], [2, 0], [2, 2]], float)
    >>> _grid_hull(square).tolist()
    [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]
    """
    doubled = np.rint(points * 2.0).astype(np.int64)
    r, c = doubled[:, 0], doubled[:, 1]
    row_break = r[1:] != r[:-1]
    row_end = np.concatenate([[True], row_break]) | np.concatenate([row_break, [True]])
    by_column = np.lexsort((r, c))
    col_break = c[by_column][1:] != c[by_column][:-1]
    col_end = np.empty(len(points), dtype=bool)
    col_end[by_column] = (np.concatenate([[True], col_break])
                          | np.concatenate([col_break, [True]]))
    kept = np.flatnonzero(row_end & col_end)
    listed = list(zip(r[kept].tolist(), c[kept].tolist(), strict=True))

    def chain(pts: list[tuple[int, int]]) -> list[int]:
        out: list[int] = []
        hull: list[tuple[int, int]] = []
        for k, (x, y) in enumerate(pts):
            while len(hull) >= 2:
                (ax, ay), (bx, by) = hull[-2], hull[-1]
                if (bx - ax) * (y - ay) - (by - ay) * (x - ax) > 0:
                    break
                hull.pop()
                out.pop()
            hull.append((x, y))
            out.append(k)
        return out

    lower = chain(listed)
    upper = chain(listed[::-1])
    n = len(listed)
    return points[kept[lower[:-1] + [n - 1 - k for k in upper[:-1]]]]


def _outline_points(mask2d: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Vertices of the 0.5 iso-line of a 2-D mask, (row, column) of the mask padded by one.

    Marching squares (`skimage.measure.find_contours` at level 0.5) puts a vertex on every
    cell edge whose two pixels differ, half-way between them: on a binary mask, that is the
    set of midpoints of the 4-neighbour pairs of one pixel in and one out, listed here
    directly (without the 70 ms import of `skimage.measure`), each once, sorted by row then
    column (as ``np.unique(..., axis=0)`` would sort them).
    """
    mask2d = np.asarray(mask2d, dtype=bool)
    padded = np.zeros((mask2d.shape[0] + 2, mask2d.shape[1] + 2), dtype=bool)
    padded[1:-1, 1:-1] = mask2d
    # in half-pixel units: a vertex between rows r and r + 1 is at 2r + 1, on row r at 2r
    rows, cols = np.nonzero(padded[1:, :] != padded[:-1, :])
    half_rows = [2 * rows + 1]
    half_cols = [2 * cols]
    rows, cols = np.nonzero(padded[:, 1:] != padded[:, :-1])
    half_rows.append(2 * rows)
    half_cols.append(2 * cols + 1)
    r, c = np.concatenate(half_rows), np.concatenate(half_cols)
    order = np.argsort(r * (2 * padded.shape[1] + 1) + c)  # distinct keys: row, then column
    return np.stack([r[order] * 0.5, c[order] * 0.5], axis=1)


def _axes_on_slice(mask2d: NDArray[np.bool_], row_mm: float, col_mm: float
                   ) -> tuple[float, float]:
    """(long, short) diameters of a 2-D mask, mm: calipers on its outline.

    The outline is the 0.5 iso-line of the mask (marching squares, as pyradiomics'
    Maximum2DDiameter; `_outline_points`), so an edge lies half-way between a lesion voxel
    and its neighbour outside. ``long`` is the largest distance between two outline points
    (Feret diameter); ``short`` the width of the outline across that direction.
    """
    pts = _outline_points(mask2d)  # sorted, distinct, on the half-pixel grid
    if len(pts) > 3:
        pts = _grid_hull(pts)
    pts = pts * np.array([row_mm, col_mm])  # a positive scale per axis keeps the hull
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    long_mm = float(dist[i, j])
    if long_mm == 0.0:
        return 0.0, 0.0
    axis = (pts[j] - pts[i]) / long_mm
    across = pts @ np.array([-axis[1], axis[0]])
    return long_mm, float(across.max() - across.min())


def lesion_geometry(lesion_id: str, mask: Volume) -> LesionGeometry:
    """Centroid, bidimensional size and volume of one lesion mask.

    Raises
    ------
    EmptyMaskError
        If the mask holds no voxel.
    """
    full = np.asarray(mask.array)
    box = mask_bounding_box(full if full.dtype == bool else full != 0)
    sub = full[box] if full.dtype == bool else np.asarray(full[box]) != 0
    counts = sub.sum(axis=(1, 2))
    voxels = int(counts.sum())
    # mean voxel index: index sums are integers, exact in int64 and in float64 (< 2**53),
    # so this is the mean of np.argwhere(sub) bit for bit, without listing the voxels
    index_sums = [int(counts @ np.arange(sub.shape[0])),
                  int(sub.sum(axis=(0, 2)) @ np.arange(sub.shape[1])),
                  int(sub.sum(axis=(0, 1)) @ np.arange(sub.shape[2]))]
    index_sums = [total + voxels * b.start for total, b in zip(index_sums, box, strict=True)]
    centroid = mask.index_to_lps(np.array(index_sums, dtype=np.float64)[None, :] / voxels)[0]
    k = int(np.argmax(counts))
    long_mm, short_mm = _axes_on_slice(sub[k], mask.spacing_mm[1], mask.spacing_mm[2])
    return LesionGeometry(
        lesion_id=lesion_id, centroid_lps_mm=(float(centroid[0]), float(centroid[1]),
                                               float(centroid[2])),
        box=box, long_axis_mm=long_mm, short_axis_mm=short_mm, plane=plane_name(mask),
        volume_ml=float(voxels) * mask.voxel_volume_mm3 / 1000.0)


# ---------------------------------------------------------------------------- drawing
def _new_figure(width_px: int, height_px: int) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100.0
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_facecolor("black")
    return fig, ax


def _png(fig: Figure) -> bytes:
    """Encode the figure as an 8-bit palette PNG (greyscale and a few colours compress well)."""
    from PIL import Image

    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    image = Image.fromarray(rgba[..., :3].copy(), mode="RGB")
    out = io.BytesIO()
    image.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(out, format="PNG")
    return out.getvalue()


def _outline_segments(mask2d: NDArray[np.bool_], row_mm: float, col_mm: float
                      ) -> NDArray[np.float64]:
    """Voxel-edge outline of a 2-D mask as (N, 2, 2) segments of (x = column mm, y = row mm)."""
    pad = np.pad(mask2d, 1)
    segs = []
    # edges between horizontally adjacent voxels: vertical segments
    r, k = np.nonzero(pad[1:-1, 1:] != pad[1:-1, :-1])
    x = (k - 0.5) * col_mm
    segs.append(np.stack([np.stack([x, (r - 0.5) * row_mm], 1),
                          np.stack([x, (r + 0.5) * row_mm], 1)], 1))
    k, c = np.nonzero(pad[1:, 1:-1] != pad[:-1, 1:-1])
    y = (k - 0.5) * row_mm
    segs.append(np.stack([np.stack([(c - 0.5) * col_mm, y], 1),
                          np.stack([(c + 0.5) * col_mm, y], 1)], 1))
    return np.concatenate(segs).astype(np.float64)


def _nice_length_mm(field_mm: float) -> float:
    """Return a round scale-bar length of about a fifth of the field of view."""
    target = field_mm / 5.0
    for length in (1, 2, 5, 10, 20, 50, 100, 200):
        if length >= target:
            return float(length)
    return 500.0


def _letter(ax: Axes, x: float, y: float, text: str, *, ha: str, va: str,
            size: float = 12) -> None:
    from matplotlib import patheffects

    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, color="white", fontsize=size,
            fontweight="bold",
            path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])


def _scale_bar(ax: Axes, field_mm: float) -> None:
    from matplotlib import patheffects
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = _nice_length_mm(field_mm)
    bar = AnchoredSizeBar(ax.transData, length, f"{length:g} mm", loc="lower right",
                          color="white", frameon=False, size_vertical=field_mm / 120.0,
                          pad=0.4, sep=3, fontproperties={"size": 9, "weight": "bold"})
    for child in bar.txt_label.get_children():
        child.set_path_effects([patheffects.withStroke(linewidth=2, foreground="black")])
    ax.add_artist(bar)


# ---------------------------------------------------------------------------- key images
@dataclass(frozen=True, kw_only=True)
class KeyImage:
    """One key image of a lesion on one series.

    ``slice_number`` is 1-based along the series' slice axis (as a viewer counts);
    ``core_voxel_count`` counts the measured core in 3-D on this series' grid (what the
    stage averaged), ``roi_voxel_count`` the ROI; ``slice_*`` count them on the slice shown.
    """

    role: str
    png: bytes
    width_px: int
    height_px: int
    plane: str
    slice_number: int
    slice_count: int
    window: str
    roi_voxel_count: int
    core_voxel_count: int
    slice_roi_voxel_count: int
    slice_core_voxel_count: int
    core_margin_mm: float
    core_fell_back: bool
    field_of_view_mm: float


def key_image(
    volume: Volume,
    mask: Volume,
    geometry: LesionGeometry,
    *,
    role: str,
    margin_voxels: int,
    margin_mm: float | None,
    window: Window | None = None,
    title: str = "",
    mask_on: Callable[[Volume], Volume] | None = None,
) -> KeyImage:
    """Draw the key image of one lesion on one series.

    Parameters
    ----------
    volume : Volume
        The series.
    mask : Volume
        The lesion mask (any grid of the same frame of reference); only the part inside
        ``geometry.box`` is read.
    geometry : LesionGeometry
        From `lesion_geometry` on ``mask``.
    role : str
        The series' role (``ct``, ``dixon_in_phase`` …), for the result.
    margin_voxels, margin_mm : int, float or None
        The erosion of the stage that measures this series (its configuration).
    window : Window, optional
        Display window; `series_window` of ``volume`` by default.
    title : str
        Drawn in the top-left corner.
    mask_on : callable, optional
        Puts the lesion on a grid as the stage did (``Lesion.mask_on``); called with the
        crop of ``volume`` around the lesion. Without it, ``mask`` is resampled (nearest
        neighbour) onto the crop.

    Raises
    ------
    EmptyMaskError
        If the lesion does not reach this series.
    FrameOfReferenceError
        If the mask is in another frame of reference.
    """
    from bonelesion.stages.base import core_roi

    mask_sub = _sub_volume(mask, geometry.box,
                           array=np.asarray(mask.array[geometry.box]) != 0)
    corners = _box_corners_lps(mask, geometry.box)
    # in-plane margin for the field of view; one voxel across slices for the resampling
    margin = (volume.spacing_mm[0], KEY_IMAGE_MARGIN_MM, KEY_IMAGE_MARGIN_MM)
    box = _box_around(volume, corners, margin)
    if box is None:
        raise EmptyMaskError(f"lesion {geometry.lesion_id!r} lies outside series "
                             f"{volume.series.series_instance_uid or '(no UID)'} (its field "
                             "of view). Potential fix: none needed if the series does not "
                             "cover the lesion; otherwise check the frame of reference.")
    target = _sub_volume(volume, box)
    placed = mask_on(target) if mask_on is not None else mask_sub.resample_like(target, order=0)
    roi = np.asarray(placed.array) != 0
    counts = roi.reshape(roi.shape[0], -1).sum(axis=1)
    if not counts.any():
        raise EmptyMaskError(f"lesion {geometry.lesion_id!r} holds no voxel on series "
                             f"{volume.series.series_instance_uid or '(no UID)'}: smaller "
                             "than a voxel there, or outside the field of view. Potential "
                             "fix: check the ROI against this series.")
    with warnings.catch_warnings():
        # the stage already warned (once) when its erosion fell back to the whole mask
        warnings.simplefilter("ignore", DataQualityWarning)
        core = core_roi(roi, target, margin_voxels=margin_voxels, margin_mm=margin_mm,
                        stage="report", lesion_id=geometry.lesion_id, warnings=[])
    k = int(np.argmax(counts))
    if window is None:
        window = series_window(volume)
    row_mm, col_mm = volume.spacing_mm[1], volume.spacing_mm[2]
    image = np.asarray(target.array[k], dtype=np.float64)
    roi_k, core_k = roi[k], core.core[k]
    # a square field of view centred on the lesion
    rr, cc = np.nonzero(roi_k)
    centre_y = (rr.min() + rr.max()) / 2.0 * row_mm
    centre_x = (cc.min() + cc.max()) / 2.0 * col_mm
    extent_mm = max((rr.max() - rr.min() + 1) * row_mm, (cc.max() - cc.min() + 1) * col_mm)
    field = extent_mm + 2.0 * KEY_IMAGE_MARGIN_MM

    from matplotlib.collections import LineCollection

    fig, ax = _new_figure(KEY_IMAGE_PX, KEY_IMAGE_PX)
    ax.imshow(np.nan_to_num(image, nan=window.low), cmap="gray", vmin=window.low,
              vmax=window.high, interpolation="bilinear", origin="upper",
              extent=(-0.5 * col_mm, (image.shape[1] - 0.5) * col_mm,
                      (image.shape[0] - 0.5) * row_mm, -0.5 * row_mm))
    ax.add_collection(LineCollection(list(_outline_segments(roi_k, row_mm, col_mm)),
                                     colors=ROI_COLOUR, linewidths=1.3))
    if core_k.any() and not core.fell_back:
        ax.add_collection(LineCollection(list(_outline_segments(core_k, row_mm, col_mm)),
                                         colors=CORE_COLOUR, linewidths=1.1))
    ax.set_xlim(centre_x - field / 2, centre_x + field / 2)
    ax.set_ylim(centre_y + field / 2, centre_y - field / 2)
    ax.set_aspect("equal")
    letters = _edge_letters(volume)
    _letter(ax, 0.5, 0.985, letters["top"], ha="center", va="top")
    _letter(ax, 0.5, 0.015, letters["bottom"], ha="center", va="bottom")
    _letter(ax, 0.015, 0.5, letters["left"], ha="left", va="center")
    _letter(ax, 0.985, 0.5, letters["right"], ha="right", va="center")
    if title:
        _letter(ax, 0.02, 0.06, title, ha="left", va="bottom", size=8)
    _letter(ax, 0.02, 0.015, window.label.split(" (")[0], ha="left", va="bottom", size=8)
    _scale_bar(ax, field)
    png = _png(fig)
    return KeyImage(
        role=role, png=png, width_px=KEY_IMAGE_PX, height_px=KEY_IMAGE_PX,
        plane=plane_name(volume), slice_number=box[0].start + k + 1,
        slice_count=volume.shape[0], window=window.label,
        roi_voxel_count=int(roi.sum()), core_voxel_count=int(core.core.sum()),
        slice_roi_voxel_count=int(roi_k.sum()), slice_core_voxel_count=int(core_k.sum()),
        core_margin_mm=core.margin_mm, core_fell_back=core.fell_back,
        field_of_view_mm=field)


# ---------------------------------------------------------------------------- overview
@dataclass(frozen=True, kw_only=True)
class OverviewMarker:
    """A lesion on the overview: where, how big, its label and colour."""

    label: str
    centroid_lps_mm: tuple[float, float, float]
    radius_mm: float
    colour: str


@dataclass(frozen=True, kw_only=True)
class Overview:
    """The sagittal overview figure and what it shows."""

    png: bytes
    width_px: int
    height_px: int
    description: str


def _sample_plane_stack(volume: Volume, points_lps: NDArray[np.float64]
                        ) -> NDArray[np.float64]:
    """Values of ``volume`` at (P, N, 3) LPS points (trilinear; NaN outside)."""
    from scipy import ndimage

    flat = points_lps.reshape(-1, 3)
    idx = volume.lps_to_index(flat)
    inside = np.all((idx >= -0.5) & (idx <= np.asarray(volume.shape) - 0.5), axis=1)
    out = np.full(len(flat), np.nan)
    if not inside.any():
        return out.reshape(points_lps.shape[:-1])
    sel = idx[inside]
    lo = np.maximum(np.floor(sel.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(sel.max(axis=0)).astype(int) + 2, np.asarray(volume.shape))
    sub = np.asarray(volume.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    out[inside] = ndimage.map_coordinates(sub, (sel - lo).T, order=1, mode="nearest")
    return out.reshape(points_lps.shape[:-1])


def _slab_projection(volume: Volume, ys: NDArray[np.float64], zs: NDArray[np.float64],
                     x_lo: float, x_hi: float, *, mip: bool) -> NDArray[np.float64]:
    """Project the slab ``x_lo..x_hi`` (LPS mm) of ``volume`` onto the (z, y) display grid.

    ``mip``: maximum intensity, else the mean. When an array axis runs along L–R (axial and
    sagittal acquisitions), the slab is a range of that axis: it is projected exactly, then
    sampled on the grid (bilinear). Otherwise sagittal planes across the slab are sampled
    and combined. NaN where the volume has no data.
    """
    from scipy import ndimage

    x_component = np.abs(np.asarray(volume.direction_lps)[0, :])
    axis = int(np.argmax(x_component))
    zz, yy = np.meshgrid(zs, ys, indexing="ij")
    x_mid = (x_lo + x_hi) / 2.0
    if x_component[axis] > 0.999:
        ends = volume.lps_to_index([[x_lo, ys[0], zs[0]], [x_hi, ys[0], zs[0]]])[:, axis]
        lo = max(int(np.floor(ends.min() + 0.5)), 0)
        hi = min(int(np.ceil(ends.max() - 0.5)), volume.shape[axis] - 1)
        if hi < lo:
            return np.full(zz.shape, np.nan)
        index: list[slice] = [slice(None)] * 3
        index[axis] = slice(lo, hi + 1)
        slab = np.asarray(volume.array[tuple(index)])
        projected = (slab.max(axis=axis) if mip else slab.mean(axis=axis, dtype=np.float64))
        idx = volume.lps_to_index(np.stack([np.full(zz.size, x_mid), yy.ravel(), zz.ravel()],
                                           axis=1))
        others = [k for k in range(3) if k != axis]
        coords = idx[:, others].T
        inside = np.all((coords >= -0.5) & (coords <= np.asarray(
            [volume.shape[k] for k in others])[:, None] - 0.5), axis=0)
        out = np.full(zz.size, np.nan)
        out[inside] = ndimage.map_coordinates(projected.astype(np.float32), coords[:, inside],
                                              order=1, mode="nearest")
        return out.reshape(zz.shape)
    n_planes = int(min(_OVERVIEW_MAX_PLANES,
                       max(1, math.ceil((x_hi - x_lo) / min(volume.spacing_mm)))))
    planes = np.linspace(x_lo, x_hi, n_planes) if n_planes > 1 else np.array([x_mid])
    total = np.full(zz.shape, -np.inf if mip else 0.0)
    count = np.zeros(zz.shape)
    for x in planes:
        values = _sample_plane_stack(volume, np.stack([np.full(zz.shape, x), yy, zz], axis=-1))
        finite = np.isfinite(values)
        total = (np.where(finite, np.maximum(total, values), total) if mip
                 else total + np.where(finite, values, 0.0))
        count += finite
    shown = total if mip else total / np.maximum(count, 1)
    return np.where(count > 0, shown, np.nan)


def sagittal_overview(
    volume: Volume,
    markers: Sequence[OverviewMarker],
    *,
    window: Window | None = None,
    role_label: str = "",
) -> Overview:
    """Draw a sagittal reformat of ``volume`` through the lesions, each lesion marked.

    CT is shown as a maximum-intensity projection of a slab spanning the lesions'
    left–right positions (plus 8 mm each side, at most 60 mm): sclerotic lesions off the
    midline still show. MR is shown as the mean of the same slab (a thick reformat). The
    field spans the whole series from head to foot, and the lesions plus 70 mm front to
    back. Anterior is on the left, superior at the top (radiological convention for
    sagittal images).

    Raises
    ------
    InputError
        If no lesion is given or the slab misses the volume.
    """
    if not markers:
        raise InputError("sagittal overview: no lesion to mark. Potential fix: give lesions "
                         "with masks.")
    window = window or series_window(volume)
    corners = _box_corners_lps(volume, (slice(0, volume.shape[0]), slice(0, volume.shape[1]),
                                        slice(0, volume.shape[2])))
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    xs = np.array([m.centroid_lps_mm[0] for m in markers])
    x_lo = max(float(xs.min()) - _OVERVIEW_SLAB_PAD_MM, float(lo[0]))
    x_hi = min(float(xs.max()) + _OVERVIEW_SLAB_PAD_MM, float(hi[0]))
    if x_hi - x_lo > _OVERVIEW_MAX_SLAB_MM:
        mid = float(np.median(xs))
        x_lo, x_hi = mid - _OVERVIEW_MAX_SLAB_MM / 2, mid + _OVERVIEW_MAX_SLAB_MM / 2
    step = float(np.clip(min(volume.spacing_mm), *_OVERVIEW_STEP_MM))
    # no finer than the figure shows: the image part is at most ~440 × 720 px
    step = max(step, min(float(hi[1] - lo[1]), 2 * _OVERVIEW_AP_MARGIN_MM) / 440.0,
               float(hi[2] - lo[2]) / _OVERVIEW_HEIGHT_PX)
    # anterior–posterior: the lesions and their surroundings (the spine), not the whole body;
    # superior–inferior: the whole series (to count levels)
    lesion_ys = np.array([m.centroid_lps_mm[1] for m in markers])
    y_lo = max(float(lo[1]), float(lesion_ys.min()) - _OVERVIEW_AP_MARGIN_MM)
    y_hi = min(float(hi[1]), float(lesion_ys.max()) + _OVERVIEW_AP_MARGIN_MM)
    if y_hi <= y_lo:
        y_lo, y_hi = float(lo[1]), float(hi[1])
    ys = np.arange(y_lo + step / 2, y_hi, step)
    zs = np.arange(hi[2] - step / 2, lo[2], -step)  # superior first: rows go down
    mip = volume.intensity_unit is IntensityUnit.HU
    shown = _slab_projection(volume, ys, zs, x_lo, x_hi, mip=mip)
    if not np.isfinite(shown).any():
        raise InputError(f"sagittal overview: the slab L {x_lo:.0f}..{x_hi:.0f} mm misses "
                         f"series {volume.series.series_instance_uid or '(no UID)'}. Potential "
                         "fix: none needed; the key images still show each lesion.")

    from matplotlib import patheffects
    from matplotlib.patches import Circle

    height_mm, width_mm = len(zs) * step, len(ys) * step
    # a column for the labels right of the image, as wide as the longest label; one scale
    # for both axes of the image (no distortion) within the page's room for the figure
    label_px = min(280, 24 + 7 * max(len(m.label) for m in markers))
    scale = min((_OVERVIEW_WIDTH_PX - label_px) / width_mm, _OVERVIEW_HEIGHT_PX / height_mm)
    if height_mm * scale < _OVERVIEW_MIN_HEIGHT_PX:  # a short series: use the page's width
        scale = min(_OVERVIEW_MIN_HEIGHT_PX / height_mm,
                    (_OVERVIEW_MAX_WIDTH_PX - label_px) / width_mm)
    label_mm = label_px / scale
    width_px = max(1, round(width_mm * scale + label_px))
    height_px = max(1, round(height_mm * scale))
    fig, ax = _new_figure(width_px, height_px)
    ax.imshow(np.nan_to_num(shown, nan=window.low), cmap="gray", vmin=window.low,
              vmax=window.high, interpolation="bilinear", origin="upper",
              extent=(float(ys[0] - step / 2), float(ys[-1] + step / 2),
                      float(zs[-1] - step / 2), float(zs[0] + step / 2)))
    y0, y1 = float(ys[0] - step / 2), float(ys[-1] + step / 2) + label_mm
    z0, z1 = float(zs[-1] - step / 2), float(zs[0] + step / 2)
    ax.set_xlim(y0, y1)
    ax.set_ylim(z0, z1)
    # labels in a column right of the image, superior to inferior, each beside its lesion
    # unless that would overlap the label above (then pushed down, and the column shifted up
    # or, if it still does not fit, spread evenly with a smaller font)
    order = sorted(range(len(markers)), key=lambda i: -markers[i].centroid_lps_mm[2])
    n = len(order)
    mm_per_px = (z1 - z0) / height_px
    top, bottom = z1 - 12 * mm_per_px, z0 + 12 * mm_per_px
    font = 9.0
    gap = font * 100.0 / 72.0 * 1.35 * mm_per_px
    placed = np.clip([markers[i].centroid_lps_mm[2] for i in order], bottom, top)
    for j in range(1, n):
        placed[j] = min(placed[j], placed[j - 1] - gap)
    if n and placed[-1] < bottom:
        placed = np.minimum(placed + (bottom - placed[-1]), top)
        for j in range(1, n):
            placed[j] = min(placed[j], placed[j - 1] - gap)
    if n > 1 and placed[-1] < bottom - 1e-9:
        placed = np.linspace(top, bottom, n)
        font = float(np.clip((top - bottom) / (n - 1) / mm_per_px / 1.35 * 72.0 / 100.0,
                             5.0, 9.0))
    x_text = float(ys[-1] + step / 2) + 12.0 / scale
    stroke = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    for j, i in enumerate(order):
        m = markers[i]
        y, z = m.centroid_lps_mm[1], m.centroid_lps_mm[2]
        ax.add_patch(Circle((y, z), m.radius_mm, fill=False, edgecolor=m.colour, linewidth=2.0))
        ax.annotate(m.label, xy=(y + m.radius_mm * 0.7, z), xytext=(x_text, float(placed[j])),
                    textcoords="data", color="white", fontsize=font, fontweight="bold",
                    va="center", ha="left", path_effects=stroke,
                    arrowprops={"arrowstyle": "-", "color": m.colour, "linewidth": 1.2,
                                "shrinkA": 2, "shrinkB": 0})
    _letter(ax, 0.01, 0.5, "A", ha="left", va="center")
    edge = (float(ys[-1] + step / 2) - y0) / (y1 - y0)
    _letter(ax, edge - 0.01, 0.5, "P", ha="right", va="center")
    _letter(ax, edge / 2, 0.99, "S", ha="center", va="top")
    _letter(ax, edge / 2, 0.01, "I", ha="center", va="bottom")
    _letter(ax, 0.01, 0.99, role_label, ha="left", va="top", size=9)
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = _nice_length_mm(width_mm)
    bar = AnchoredSizeBar(ax.transData, length, f"{length:g} mm", loc="lower left",
                          color="white", frameon=False, size_vertical=(z1 - z0) / 250.0,
                          pad=0.5, sep=3, fontproperties={"size": 9, "weight": "bold"},
                          bbox_to_anchor=(0.06, 0.0), bbox_transform=ax.transAxes)
    ax.add_artist(bar)
    how = (f"maximum-intensity projection of a {x_hi - x_lo:.0f} mm slab" if mip
           else f"mean of a {x_hi - x_lo:.0f} mm slab")
    side = ("R" if x_lo < 0 else "L") + f" {abs(x_lo):.0f} mm"
    side_hi = ("R" if x_hi < 0 else "L") + f" {abs(x_hi):.0f} mm"
    description = (f"Sagittal reformat, {how} ({side} to {side_hi}), window {window.label}; "
                   "anterior left, superior up.")
    return Overview(png=_png(fig), width_px=width_px, height_px=height_px,
                    description=description)


@dataclass(frozen=True, kw_only=True)
class StudyFigures:
    """The figures of one study report (`bonelesion.report.figures`), embedded in the page.

    ``key_images`` maps lesion id → key images in series order; ``geometry`` lesion id →
    its size and position (why a figure is missing is a warning of the study document).
    """

    overview: Overview | None = None
    key_images: Mapping[str, Sequence[KeyImage]] = field(default_factory=dict)
    geometry: Mapping[str, LesionGeometry] = field(default_factory=dict)


def lesion_geometries(masks: Mapping[str, Volume], lesion_ids: Sequence[str],
                      problems: list[str]) -> dict[str, LesionGeometry]:
    """`lesion_geometry` of every lesion with a mask; a lesion whose mask fails is noted."""
    out: dict[str, LesionGeometry] = {}
    for lesion_id in lesion_ids:
        mask = masks.get(lesion_id)
        if mask is None:
            continue
        try:
            out[lesion_id] = lesion_geometry(lesion_id, mask)
        except InputError as exc:
            problems.append(f"lesion {lesion_id}: no size or position: {exc}")
    return out
