"""Figures of the report: orientation, scale, outlines and overview against physical truth.

Truth comes from how the synthetic volumes are built (a marker placed at patient left, a
sphere of known radius, two lesions at known positions) and from the measuring stage itself
(the core it averaged), never from the figure code.
"""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.synthetic import make_volume, sphere_mask_truth

from bonelesion.report.figures import (
    CORE_COLOUR,
    ROI_COLOUR,
    OverviewMarker,
    Window,
    _edge_letters,
    _grid_hull,
    key_image,
    lesion_geometry,
    orientation_label,
    sagittal_overview,
    series_window,
)
from bonelesion.roi.lesion import Lesion, Sphere
from bonelesion.stages.config import CtAttenuationConfig
from bonelesion.stages.ct_attenuation import measure_attenuation
from bonelesion.units import IntensityUnit

#: Letter of each LPS axis direction (DICOM PS3.3 C.7.6.1.1.1): +x left, +y posterior, +z head.
LETTER = {(0, 1): "L", (0, -1): "R", (1, 1): "P", (1, -1): "A", (2, 1): "S", (2, -1): "I"}
#: 48 axis permutations and flips (nibabel ALL_ORNTS).
ORIENTATIONS = [np.diag(signs)[:, list(perm)]
                for perm in itertools.permutations(range(3))
                for signs in itertools.product((1.0, -1.0), repeat=3)]
#: A lesion outline is a digitised circle: its caliper diameter is within a voxel of 2r.
ATOL_DIAMETER_VOXELS = 1.0
#: Palette PNG and anti-aliasing: colour matches within this many 8-bit levels.
ATOL_COLOUR = 40


def rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def colour_mask(img: np.ndarray, hex_colour: str, atol: int = ATOL_COLOUR) -> np.ndarray:
    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return np.all(np.abs(img - target) <= atol, axis=-1)


def longest_run(row: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D boolean array."""
    padded = np.concatenate([[0], row.astype(int), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def direction_from_iop(row: tuple[float, float, float], col: tuple[float, float, float]
                       ) -> np.ndarray:
    """Volume direction from DICOM ImageOrientationPatient (row direction, column direction)."""
    r, c = np.asarray(row, float), np.asarray(col, float)
    return np.stack([np.cross(r, c), c, r], axis=1)  # axes: slice, row index, column index


@pytest.mark.parametrize("direction", ORIENTATIONS, ids=range(48))
def test_orientation_letters_of_every_axis_permutation(direction: np.ndarray) -> None:
    for k in range(3):
        v = direction[:, k]
        axis = int(np.flatnonzero(v)[0])
        assert orientation_label(v) == LETTER[(axis, int(np.sign(v[axis])))]
        assert orientation_label(-v) == LETTER[(axis, -int(np.sign(v[axis])))]


def test_orientation_letters_of_oblique_axes() -> None:
    assert orientation_label([0.0, 0.6, -0.8]) == "IP"
    assert orientation_label([0.98, 0.199, 0.0]) == "L"  # 11° tilt: one letter
    tilt = np.deg2rad(30.0)
    assert orientation_label([np.cos(tilt), 0.0, np.sin(tilt)]) == "LS"


AXIAL = direction_from_iop((1, 0, 0), (0, 1, 0))
#: (name, DICOM row direction, column direction, letters expected at right and bottom)
TEXTBOOK = [
    ("axial", (1, 0, 0), (0, 1, 0), "L", "P"),
    ("axial-flipped", (-1, 0, 0), (0, -1, 0), "R", "A"),
    ("sagittal", (0, 1, 0), (0, 0, -1), "P", "I"),
    ("coronal", (1, 0, 0), (0, 0, -1), "L", "I"),
]


@pytest.mark.parametrize(("name", "row", "col", "right", "bottom"), TEXTBOOK,
                         ids=[t[0] for t in TEXTBOOK])
def test_markers_at_patient_left_posterior_head_appear_under_their_letters(
        name: str, row: tuple[float, float, float], col: tuple[float, float, float],
        right: str, bottom: str) -> None:
    direction = direction_from_iop(row, col)
    shape, spacing = (9, 70, 70), (3.0, 1.0, 1.0)
    origin = -(direction @ ((np.asarray(shape) - 1) / 2 * np.asarray(spacing)))
    grid = make_volume(np.zeros(shape), spacing_mm=spacing, origin_lps_mm=origin,
                       direction_lps=direction)
    letters = _edge_letters(grid)
    assert (letters["right"], letters["bottom"]) == (right, bottom)  # DICOM textbook cases
    centres = grid.voxel_centres_lps()
    lesion = np.linalg.norm(centres, axis=-1) <= 5.0
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        if abs(direction[:, 0] @ unit) > 0.5:
            continue  # this axis runs across slices: not in the image plane
        marker = np.all(np.abs(centres - 20.0 * unit) <= 4.0, axis=-1)
        volume = grid.with_array(np.where(marker, 3000.0, np.where(lesion, 500.0, 0.0)))
        image = key_image(volume, grid.with_array(lesion), lesion_geometry("m", grid.with_array(
            lesion)), role="other", margin_voxels=1, margin_mm=None,
            window=Window(low=0.0, high=4000.0, label="test"))
        img = rgb(image.png)[30:-30, 30:-30]  # letters, scale bar and labels sit at the edges
        grey = (np.abs(img - 191).max(axis=-1) <= 12) & (np.ptp(img, axis=-1) <= 4)
        rows, cols = np.nonzero(grey)
        assert rows.size > 100, f"{name}: marker along {axis} not found"
        dy, dx = rows.mean() - img.shape[0] / 2, cols.mean() - img.shape[1] / 2
        edge = (("bottom" if dy > 0 else "top") if abs(dy) > abs(dx)
                else ("right" if dx > 0 else "left"))
        assert letters[edge] == LETTER[(axis, 1)], f"{name}: marker at +{axis} on the {edge}"


def ct_with_sphere(radius_mm: float = 8.0, centre: tuple[float, float, float] = (3.3, -2.1, 4.0)
                   ) -> tuple[object, np.ndarray]:
    shape, spacing = (14, 96, 110), (2.5, 0.7, 0.7)
    rng = np.random.default_rng(5)
    vol = make_volume(np.zeros(shape), spacing_mm=spacing, origin_lps_mm=(-38.0, -33.0, -16.0),
                      direction_lps=AXIAL, intensity_unit=IntensityUnit.HU)
    truth = sphere_mask_truth(vol, centre, radius_mm)
    arr = np.where(truth, 800.0, 60.0) + rng.normal(0.0, 15.0, shape)
    return vol.with_array(arr), truth


def test_convex_hull_matches_qhull() -> None:
    """The caliper's hull (no scipy.spatial import) is Qhull's vertices, counterclockwise
    from the lowest point (the order the calipers break ties in)."""
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(4, 300))
        pts = np.unique(np.round(rng.normal(size=(n, 2)) * 20) / 2, axis=0)
        qhull = pts[ConvexHull(pts).vertices].tolist()  # counterclockwise
        first = qhull.index(min(qhull))
        assert _grid_hull(pts).tolist() == qhull[first:] + qhull[:first]
    line = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    assert _grid_hull(line).tolist() == [[0.0, 0.0], [3.0, 3.0]]


def test_key_image_scale_bar_and_outline_match_the_sphere_and_the_stage_core() -> None:
    radius = 8.0
    ct, truth = ct_with_sphere(radius)
    mask = ct.with_array(truth)
    geometry = lesion_geometry("s", mask)
    # size and position against the sphere built
    assert geometry.long_axis_mm == pytest.approx(2 * radius, abs=ATOL_DIAMETER_VOXELS * 0.7)
    assert geometry.short_axis_mm == pytest.approx(2 * radius, abs=ATOL_DIAMETER_VOXELS * 0.7)
    np.testing.assert_allclose(geometry.centroid_lps_mm, (3.3, -2.1, 4.0), atol=0.5)
    assert geometry.plane == "axial"
    stage = measure_attenuation(ct, mask, config=CtAttenuationConfig(erosion_margin_mm=1.5))
    image = key_image(ct, mask, geometry, role="ct", margin_voxels=1, margin_mm=1.5)
    # the outlined core is the core the stage averaged
    assert image.core_voxel_count == stage.core_voxel_count
    assert image.roi_voxel_count == stage.lesion_voxel_count == int(truth.sum())
    assert image.window.startswith("W 2000 L 500")
    img = rgb(image.png)
    roi = colour_mask(img, ROI_COLOUR)
    core = colour_mask(img, CORE_COLOUR)
    assert roi.sum() > 50 and core.sum() > 50
    # the core outline lies inside the ROI outline
    rr, cc = np.nonzero(roi)
    r2, c2 = np.nonzero(core)
    assert rr.min() < r2.min() and r2.max() < rr.max() and cc.min() < c2.min()
    # scale bar: the white bar at the bottom right, its length in pixels per its label
    bottom = img[-40:, img.shape[1] // 2:]
    white = np.all(bottom >= 245, axis=-1)
    run = max(longest_run(row) for row in white)
    bar_mm = 10.0 if image.field_of_view_mm < 60 else 20.0
    px_per_mm = run / bar_mm
    # the ROI outline spans the sphere's diameter at that scale (within a voxel each side)
    width_mm = (cc.max() - cc.min()) / px_per_mm
    assert width_mm == pytest.approx(2 * radius, abs=2 * 0.7 + 1.0)
    assert image.field_of_view_mm * px_per_mm == pytest.approx(300, rel=0.03)


def test_key_image_on_another_grid_uses_the_lesions_own_mask() -> None:
    ct, truth = ct_with_sphere(7.0)
    mr = make_volume(np.full((9, 40, 44), 400.0), spacing_mm=(4.0, 1.6, 1.5),
                     origin_lps_mm=(16.0, -31.0, 30.0), direction_lps=direction_from_iop(
                         (0, 1, 0), (0, 0, -1)))  # sagittal
    lesion = Lesion(lesion_id="s", sphere=Sphere((3.3, -2.1, 4.0), 7.0),
                    frame_of_reference_uid=mr.series.frame_of_reference_uid)
    geometry = lesion_geometry("s", ct.with_array(truth))
    image = key_image(mr, ct.with_array(truth), geometry, role="dixon_in_phase",
                      margin_voxels=1, margin_mm=None, mask_on=lesion.mask_on)
    on_mr = np.asarray(lesion.mask_on(mr).array)
    assert image.roi_voxel_count == int(on_mr.sum())  # exactly what a stage on MR gets
    assert image.plane == "sagittal"
    assert 1 <= image.slice_number <= mr.shape[0]


def test_series_windows() -> None:
    ct, _ = ct_with_sphere()
    w = series_window(ct)
    assert (w.low, w.high) == (-500.0, 1500.0)
    ramp = make_volume(np.arange(40 * 50 * 60, dtype=float).reshape(40, 50, 60))
    w = series_window(ramp)
    full = np.percentile(ramp.array, [1.0, 99.5])
    np.testing.assert_allclose((w.low, w.high), full, rtol=0.02)
    adc = make_volume(np.zeros((2, 3, 4)), intensity_unit=IntensityUnit.MM2_PER_S)
    assert (series_window(adc).low, series_window(adc).high) == (0.0, 3.0e-3)


def tilted(degrees: float) -> np.ndarray:
    """The axial direction turned about the A–P axis (an oblique acquisition)."""
    a = np.deg2rad(degrees)
    turn = np.array([[np.cos(a), 0.0, -np.sin(a)], [0.0, 1.0, 0.0], [np.sin(a), 0.0, np.cos(a)]])
    return turn @ AXIAL


@pytest.mark.parametrize("direction", [AXIAL, tilted(12.0)], ids=["axial", "oblique"])
def test_overview_marks_each_lesion_where_the_reformat_shows_it(direction: np.ndarray) -> None:
    shape, spacing = (60, 64, 64), (2.0, 1.0, 1.0)
    origin = -(direction @ ((np.asarray(shape) - 1) / 2 * np.asarray(spacing)))
    vol = make_volume(np.zeros(shape), spacing_mm=spacing, origin_lps_mm=origin,
                      direction_lps=direction, intensity_unit=IntensityUnit.HU)
    # one lesion superior-anterior at patient right, one inferior-posterior at patient left
    centres = {"sup": (-10.0, -15.0, 30.0), "inf": (12.0, 14.0, -35.0)}
    arr = np.full(shape, 0.0)
    markers = []
    for (name, c), colour in zip(centres.items(), ("#ff0000", "#00ff00"), strict=True):
        truth = sphere_mask_truth(vol, c, 6.0)
        arr[truth] = 2000.0
        g = lesion_geometry(name, vol.with_array(truth))
        markers.append(OverviewMarker(label=name, centroid_lps_mm=g.centroid_lps_mm,
                                      radius_mm=10.0, colour=colour))
    overview = sagittal_overview(vol.with_array(arr), markers)
    img = rgb(overview.png)
    assert img.shape[:2] == (overview.height_px, overview.width_px)
    found = {}
    for m in markers:
        ring = colour_mask(img, m.colour, atol=60)
        rows, cols = np.nonzero(ring)
        assert rows.size > 20
        # the leader line runs level from the circle to its label (no collision here), so
        # the ring's rows and its leftmost column give the circle's box
        top, left, bottom = rows.min(), cols.min(), rows.max()
        right = left + (bottom - top)
        inside = img[top:bottom + 1, left:right + 1]
        blob = np.all(inside >= 240, axis=-1)
        br, bc = np.nonzero(blob)
        assert br.size > 20, f"lesion {m.label} not inside its circle"
        # the bright lesion sits at the circle's centre (a flip would move it away)
        assert br.mean() == pytest.approx((bottom - top) / 2, abs=3)
        assert bc.mean() == pytest.approx((right - left) / 2, abs=3)
        found[m.label] = (rows.mean(), cols.mean())
    # superior up, anterior left
    assert found["sup"][0] < found["inf"][0]
    assert found["sup"][1] < found["inf"][1]
    assert "maximum-intensity projection" in overview.description


def test_report_without_images_never_imports_matplotlib(tmp_path: Path) -> None:
    script = f"""
import sys
sys.path[:0] = {[str(Path(__file__).parents[1]), str(Path(__file__).parents[2] / 'src')]!r}
import numpy as np
from support.classify_factory import lesion
from support.synthetic import make_volume
from bonelesion.report.result import study_result
from support.report_series import write_study_views
from bonelesion.units import IntensityUnit
vol = make_volume(np.full((6, 30, 30), 700.0), intensity_unit=IntensityUnit.HU)
mask = np.zeros(vol.shape, bool); mask[2:4, 10:16, 10:16] = True
study = study_result([lesion(ct=(700.0, 800.0), lesion_id="L1")], volumes={{"ct": vol}},
                     masks={{"L1": vol.with_array(mask)}})
doc, _ = write_study_views(__import__("pathlib").Path({str(tmp_path)!r}), study, qc=False,
                           dicom=False)
assert "matplotlib" not in sys.modules, "matplotlib imported without images"
html = open({str(tmp_path / 'report.html')!r}, encoding="utf-8").read()
import re
assert "<img" not in html and "L1" in html
assert re.search(r'class="size nowrap">\\d+\u00a0×\u00a0\\d+\u00a0mm<', html), "no size"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_outline_points_are_marching_squares_vertices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calipers' outline, listed directly, is the vertex set of scikit-image's marching
    squares at level 0.5 on the padded mask (the reference): blobs with holes, diagonal
    neighbours (saddle cells), one pixel, masks touching the edges; and the diameters are
    those measured on scikit-image's contours, bit for bit."""
    from scipy import ndimage
    from skimage.measure import find_contours

    import bonelesion.report.figures as figures

    def marching_squares(mask: np.ndarray) -> np.ndarray:
        return np.concatenate(find_contours(np.pad(mask.astype(np.float64), 1), 0.5))

    rng = np.random.default_rng(4)
    saddle = np.zeros((4, 4), dtype=bool)
    saddle[1, 1] = saddle[2, 2] = True
    masks = [ndimage.gaussian_filter(rng.random((30, 40)), 1.2) > 0.5,
             rng.random((12, 15)) > 0.5, saddle, np.ones((1, 1), dtype=bool),
             np.ones((5, 7), dtype=bool)]
    ours = [figures._axes_on_slice(mask, 0.7, 1.3) for mask in masks]
    for mask in masks:  # the same vertices, each once, in np.unique's order
        np.testing.assert_array_equal(figures._outline_points(mask),
                                      np.unique(marching_squares(mask), axis=0))
    monkeypatch.setattr(figures, "_outline_points",
                        lambda mask: np.unique(marching_squares(mask), axis=0))
    assert ours == [figures._axes_on_slice(mask, 0.7, 1.3) for mask in masks]
    assert all(0 < short <= long for long, short in ours)
