"""Vertebra labelling on the spine phantom: levels, centroids, trabecular HU, anchors, refusals.

Truth comes from the phantom's truth.json (levels, body centroids sampled from the analytic
scene, trabecular HU of the written image over the truth's own eroded core), never from the
labeller.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support.detect_kit import SMALL_VARIANTS, SmallSpine, crop_slices, slice_of

from bonelesion.errors import InputError
from bonelesion.model.volume import Volume
from bonelesion.roi.config import DetectionConfig
from bonelesion.roi.vertebrae import (
    AnchorCountingLabeller,
    SpineLabelling,
    Vertebra,
    VertebraLabeller,
    level_offset,
    region_of,
)
from bonelesion.units import IntensityUnit

#: Body centroid: 2 mm pixels and 3 mm slices of the small protocol, a mask from the cortex.
CENTROID_ATOL_MM = 4.0
#: Trabecular HU: noise 12–15 HU over hundreds of voxels is < 1 HU; the rest is the ROI edge
#: (our erosion of our body mask against the truth's erosion of the analytic body).
TRABECULAR_ATOL_HU = 8.0


def _match(lab: SpineLabelling, truth_vertebra: dict[str, Any]) -> Vertebra:
    """The vertebra found nearest to a truth vertebra's body centroid."""
    return min(lab.vertebrae, key=lambda v: float(np.linalg.norm(
        np.subtract(v.centroid_lps_mm, truth_vertebra["body_centroid_lps_mm"]))))


@pytest.fixture(scope="module")
def labelled(small_spine: Any) -> dict[str, tuple[SmallSpine, SpineLabelling]]:
    out = {}
    for name in SMALL_VARIANTS:
        study = small_spine(name)
        out[name] = (study, AnchorCountingLabeller().label(study.ct))
    return out


def test_labeller_is_a_vertebra_labeller() -> None:
    assert isinstance(AnchorCountingLabeller(), VertebraLabeller)


@pytest.mark.parametrize("name", list(SMALL_VARIANTS))
def test_every_vertebra_is_found_at_its_level(
        labelled: dict[str, tuple[SmallSpine, SpineLabelling]], name: str) -> None:
    study, lab = labelled[name]
    for tv in study.spine["vertebrae"]:
        found = _match(lab, tv)
        distance = float(np.linalg.norm(np.subtract(found.centroid_lps_mm,
                                                    tv["body_centroid_lps_mm"])))
        assert distance <= CENTROID_ATOL_MM, (name, tv["label"], distance)
        assert found.label == tv["label"], (name, tv["label"], found.label, found.reasons)
        assert found.confidence >= 0.5
        assert found.trabecular_mean_hu == pytest.approx(tv["trabecular_mean_hu"],
                                                         abs=TRABECULAR_ATOL_HU)
        assert found.body_mask is not None and np.asarray(found.body_mask.array).any()


def test_anchors_agree_on_a_plain_spine(
        labelled: dict[str, tuple[SmallSpine, SpineLabelling]]) -> None:
    _, lab = labelled["siemens_plain"]
    assert len(lab.anchors) == 2
    l1 = lab.by_label("L1")
    assert l1 is not None and l1.confidence == pytest.approx(0.95)
    assert "agree" in " ".join(l1.reasons)
    t12 = lab.by_label("T12")
    assert t12 is not None and set(t12.rib_sides) == {"left", "right"}
    assert lab.by_label("L1").rib_sides == ()  # type: ignore[union-attr]
    s1 = lab.by_label("S1")
    assert s1 is not None and s1.fused_to_ilium


def test_lumbar_rib_is_named_and_counted_from_the_sacrum(
        labelled: dict[str, tuple[SmallSpine, SpineLabelling]]) -> None:
    study, lab = labelled["ge_lumbar_rib"]
    l1 = lab.by_label("L1")
    assert l1 is not None and l1.rib_sides  # the truth puts short ribs on L1
    assert [v["label"] for v in study.spine["vertebrae"] if v["transitional"]] == ["L1"]
    # anchors disagree, the short rib explains it: medium confidence with the reason
    assert 0.5 <= l1.confidence < 0.9
    assert "lumbar rib" in " ".join(l1.reasons)


def test_osteoporotic_spine_keeps_its_low_density(
        labelled: dict[str, tuple[SmallSpine, SpineLabelling]]) -> None:
    study, lab = labelled["philips_osteoporotic"]
    l1 = lab.by_label("L1")
    truth_l1 = next(v for v in study.spine["vertebrae"] if v["label"] == "L1")
    assert l1 is not None and l1.trabecular_mean_hu is not None
    assert truth_l1["trabecular_mean_hu"] <= 110.0  # the phantom's osteoporotic marrow
    assert l1.trabecular_mean_hu <= 110.0 + TRABECULAR_ATOL_HU


def test_locate_names_lesion_bones(labelled: dict[str, tuple[SmallSpine, SpineLabelling]]
                                   ) -> None:
    study, lab = labelled["siemens_plain"]
    for lesion in study.spine["lesions"]:
        where = lab.locate(lesion["centre_lps_mm"])
        bone = lesion["bone"]
        # the small protocol's 2 mm pixels do not resolve the 2 mm sacroiliac joint gap:
        # beside the sacral body, "pelvis" (ala or ilium) is the honest answer
        if bone.startswith("ilium"):
            assert where.vertebra in ("ilium", "pelvis"), lesion["lesion_id"]
        elif bone == "S1":
            assert where.vertebra in ("S1", "pelvis"), lesion["lesion_id"]
        elif bone in ("S2", "S3", "S4", "S5"):
            assert where.vertebra in ("sacrum", "pelvis"), lesion["lesion_id"]
        else:
            assert where.vertebra == bone, (lesion["lesion_id"], where)


def _flip(ct: Volume, axes: tuple[int, ...]) -> Volume:
    """The same patient on a grid whose axes ``axes`` run the other way."""
    array = np.asarray(ct.array)
    direction = np.array(ct.direction_lps)
    origin_idx = np.zeros(3)
    for a in axes:
        array = np.flip(array, axis=a)
        origin_idx[a] = ct.shape[a] - 1
        direction[:, a] = -direction[:, a]
    origin = ct.index_to_lps([origin_idx])[0]
    return Volume(array=np.ascontiguousarray(array), spacing_mm=ct.spacing_mm,
                  origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
                  direction_lps=direction, intensity_unit=ct.intensity_unit, series=ct.series)


def test_labels_do_not_depend_on_slice_order_or_in_plane_flips(
        labelled: dict[str, tuple[SmallSpine, SpineLabelling]]) -> None:
    study, lab = labelled["siemens_plain"]
    flipped = AnchorCountingLabeller().label(_flip(study.ct, (0, 2)))
    assert [v.label for v in flipped.vertebrae] == [v.label for v in lab.vertebrae]
    for a, b in zip(flipped.vertebrae, lab.vertebrae, strict=True):
        np.testing.assert_allclose(a.centroid_lps_mm, b.centroid_lps_mm, atol=1.5)


def test_partial_field_of_view_without_anchor_says_so(small_spine: Any) -> None:
    study = small_spine("siemens_plain")
    t = {v["label"]: v for v in study.spine["vertebrae"]}
    # L2 to L4: no rib-bearing vertebra, no sacrum in view
    start = slice_of(study.ct, t["L4"]["body_centroid_lps_mm"][2] - 8.0)
    stop = slice_of(study.ct, t["L2"]["body_centroid_lps_mm"][2] + 8.0)
    lab = AnchorCountingLabeller().label(crop_slices(study.ct, min(start, stop),
                                                     max(start, stop) + 1))
    assert lab.vertebrae
    for v in lab.vertebrae:
        assert v.confidence <= 0.1
        assert "no counting anchor" in " ".join(v.reasons)
        assert v.label == ""  # never a confident wrong level: unknown, not guessed


def test_ribs_only_field_of_view_is_labelled_with_medium_confidence(small_spine: Any) -> None:
    study = small_spine("siemens_plain")
    t = {v["label"]: v for v in study.spine["vertebrae"]}
    # T10 to L3: the last rib-bearing vertebra and the ones below, no sacrum
    start = slice_of(study.ct, t["L3"]["body_centroid_lps_mm"][2])
    stop = slice_of(study.ct, t["T10"]["body_centroid_lps_mm"][2] + 20.0)
    lab = AnchorCountingLabeller().label(crop_slices(study.ct, min(start, stop),
                                                     max(start, stop) + 1))
    l1 = lab.by_label("L1")
    assert l1 is not None
    assert l1.confidence == pytest.approx(DetectionConfig().vertebrae.confidence_ribs_only)
    assert "no sacrum" in " ".join(l1.reasons)
    for tv in study.spine["vertebrae"]:
        if tv["label"] in ("T11", "T12", "L1", "L2"):
            assert _match(lab, tv).label == tv["label"]


def test_not_a_ct_in_hu_is_refused() -> None:
    volume = Volume(array=np.zeros((20, 40, 40), np.float32), spacing_mm=(2.0, 2.0, 2.0),
                    origin_lps_mm=(0.0, 0.0, 0.0), direction_lps=np.eye(3),
                    intensity_unit=IntensityUnit.ARBITRARY)
    with pytest.raises(InputError, match="needs a CT in HU"):
        AnchorCountingLabeller().label(volume)


def test_too_small_a_volume_is_refused() -> None:
    volume = Volume(array=np.zeros((1, 40, 40), np.int16), spacing_mm=(2.0, 2.0, 2.0),
                    origin_lps_mm=(0.0, 0.0, 0.0), direction_lps=np.eye(3),
                    intensity_unit=IntensityUnit.HU)
    with pytest.raises(InputError, match="too small for bone analysis"):
        AnchorCountingLabeller().label(volume)


def test_soft_tissue_only_gives_no_vertebra_and_a_note(rng: np.random.Generator) -> None:
    array = (40 + 12 * rng.standard_normal((60, 128, 128))).astype(np.int16)
    volume = Volume(array=array, spacing_mm=(2.0, 1.5, 1.5), origin_lps_mm=(0.0, 0.0, 0.0),
                    direction_lps=np.eye(3), intensity_unit=IntensityUnit.HU)
    lab = AnchorCountingLabeller().label(volume)
    assert lab.vertebrae == ()
    assert any("no spinal column in view" in n for n in lab.notes)


def test_level_arithmetic() -> None:
    assert level_offset("T12", 1) == "L1"
    assert level_offset("S1", -6) == "T12"
    assert level_offset("C1", -1) == ""
    assert region_of("L3") == "lumbar" and region_of("") == ""


@pytest.mark.parametrize("seed", range(40))
def test_prominent_peaks_are_scipys(seed: int) -> None:
    """The labeller's peak finder gives scipy.signal.find_peaks' peaks (plateaus included)."""
    from scipy.signal import find_peaks

    from bonelesion.roi.vertebrae import _prominent_peaks

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 300))
    profile = np.round(rng.normal(0.0, 100.0, n).cumsum() / 10.0)  # integer steps: plateaus
    if seed % 4 == 0:
        profile = np.repeat(profile[: n // 3 + 1], 3)[:n]  # long flat runs
    for prominence in (0.0, 5.0, 40.0, 150.0):
        expected, _ = find_peaks(profile, prominence=prominence)
        assert _prominent_peaks(profile, prominence).tolist() == expected.tolist()


@pytest.mark.parametrize(("dtype", "factors"), [(np.int16, (2, 3, 3)), (np.float32, (1, 2, 3)),
                                                (np.int16, (3, 1, 2))])
def test_block_mean_and_maximum_are_numpys(dtype: Any, factors: tuple[int, int, int]) -> None:
    """The work grid's block reduction against numpy's mean and max over reshaped blocks
    (partial blocks at the far edges dropped), across a slab boundary."""
    from bonelesion.roi.bone import _block_reduce

    rng = np.random.default_rng(7)
    array = rng.integers(-1024, 3000, size=(37, 20, 23)).astype(dtype)
    mean, peak = _block_reduce(array, factors)
    shape = [n // f for n, f in zip(array.shape, factors, strict=True)]
    blocks = array[:shape[0] * factors[0], :shape[1] * factors[1], :shape[2] * factors[2]]
    blocks = blocks.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])
    np.testing.assert_allclose(mean, blocks.astype(np.float64).mean(axis=(1, 3, 5)), atol=1e-3)
    np.testing.assert_array_equal(peak, blocks.max(axis=(1, 3, 5)))
    assert mean.dtype == peak.dtype == np.float32


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_axial_hole_filling_is_scipys_slice_by_slice(seed: int) -> None:
    """One labelling of the background equals `binary_fill_holes` on every axial slice:
    rings, nested rings, holes touching the edge, empty and full slices."""
    from scipy import ndimage

    from bonelesion.roi.bone import fill_holes_2d

    rng = np.random.default_rng(seed)
    shape = (9, 31, 27)
    rings = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=2) ^ \
        ndimage.binary_dilation(rng.random(shape) > 0.99)
    blobs = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.5
    for mask in (rings, blobs, rings | blobs):
        mask[0] = False
        mask[1] = True
        expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
        filled = fill_holes_2d(mask)
        assert filled.dtype == np.bool_
        np.testing.assert_array_equal(filled, expected)
        assert (filled & ~mask).any()  # the case has holes to fill


@pytest.mark.parametrize("spacing", [(1.0, 0.7, 0.7), (3.0, 0.5, 0.9)])
def test_dense_margin_on_a_box_is_the_whole_grid_distance_map(
        spacing: tuple[float, float, float]) -> None:
    """The trabecular ROI's dense-focus exclusion, computed on the ROI's box grown by the
    margin, equals thresholding the whole grid's distance map (seeds outside the box too)."""
    from scipy import ndimage

    from bonelesion.roi.vertebrae import _near

    rng = np.random.default_rng(3)
    shape = (24, 40, 36)
    seeds = rng.random(shape) > 0.998
    where = np.zeros(shape, dtype=bool)
    where[6:15, 10:25, 9:20] = rng.random((9, 15, 11)) > 0.3
    for margin_mm in (2.0, 3.0, 4.5):
        expected = where & (ndimage.distance_transform_edt(~seeds, sampling=spacing)
                            <= margin_mm)
        assert expected.any() and (where & ~expected).any()
        np.testing.assert_array_equal(_near(seeds, where, margin_mm, spacing), expected)
    assert not _near(seeds, np.zeros(shape, dtype=bool), 2.0, spacing).any()
    assert not _near(np.zeros(shape, dtype=bool), where, 2.0, spacing).any()


def test_spine_overview_circles_each_marker_in_its_colour(
        labelled: dict[str, tuple[SmallSpine, SpineLabelling]], tmp_path: Any) -> None:
    """The spine overview circles a marker (a candidate) at its position on the sagittal
    and the coronal reformat, in the marker's colour; without markers, no such pixel."""
    from PIL import Image

    from bonelesion.report.detection import CANDIDATE_COLOUR, render_overview
    from bonelesion.report.figures import OverviewMarker

    _, lab = next(iter(labelled.values()))
    centre = lab.vertebrae[len(lab.vertebrae) // 2].centroid_lps_mm
    marker = OverviewMarker(label="C1 0.90", centroid_lps_mm=centre, radius_mm=5.0,
                            colour=CANDIDATE_COLOUR)
    red = []
    for name, marks in (("bare", []), ("marked", [marker])):
        with Image.open(render_overview(lab, tmp_path / f"{name}.png", marks=marks)) as img:
            pixels = np.asarray(img.convert("RGB"))
        red.append(np.all(pixels == (0xFF, 0x3C, 0x3C), axis=-1))
    assert not red[0].any()
    columns = np.nonzero(red[1])[1]
    assert red[1].sum() > 50
    assert columns.min() < pixels.shape[1] // 2 < columns.max()  # on both reformats


def _oblique_grid(order: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> Any:
    """A work grid whose canonical axes are source axes ``order``, ``flips`` reversed, with
    source lengths that leave voxels past the last whole block."""
    from bonelesion.roi.bone import WorkGrid

    factors = (2, 3, 1)
    source_shape = (13, 17, 7)
    shape = [source_shape[a] // factors[a] for a in order]
    empty = np.zeros(shape, np.float32)
    return WorkGrid(hu=empty, hu_max=empty, spacing_mm=(2.0, 2.0, 2.0), factors=factors,
                    order=order, flips=flips, source_shape=source_shape, obliquity_deg=0.0)


@pytest.mark.parametrize(("order", "flips"), [((0, 1, 2), (False, False, False)),
                                              ((2, 0, 1), (True, False, True)),
                                              ((1, 2, 0), (False, True, True))])
def test_block_maps_between_source_box_and_coarse_grid(
        order: tuple[int, int, int], flips: tuple[bool, bool, bool]) -> None:
    """`source_box_mask` spreads each coarse block over its source voxels and
    `source_box_counts` counts a source mask per block, both with the block of a source
    voxel given by the grid's own continuous map (`from_source_index`, rounded and clipped):
    transposed and flipped grids, partial blocks at the far edges, a box off the origin."""
    grid = _oblique_grid(order, flips)
    rng = np.random.default_rng(5)
    coarse = rng.random(grid.shape) > 0.5
    box = (slice(1, 13), slice(2, 17), slice(0, 6))
    src = np.stack(np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij"),
                   axis=-1).reshape(-1, 3)
    block = np.clip(np.round(grid.from_source_index(src)).astype(int), 0,
                    np.asarray(grid.shape) - 1)
    box_shape = tuple(b.stop - b.start for b in box)
    expected = coarse[tuple(block.T)].reshape(box_shape)
    np.testing.assert_array_equal(grid.source_box_mask(coarse, box), expected)
    fine = rng.random(box_shape) > 0.3
    counts = np.zeros(grid.shape, np.int64)
    np.add.at(counts, tuple(block[fine.ravel()].T), 1)
    got = grid.source_box_counts(fine, box)
    assert got.shape == grid.shape and got.sum() == fine.sum()
    np.testing.assert_array_equal(got, counts)


def test_minimum_per_label_is_scipys() -> None:
    """The rib search's nearest distance of each bone component: `ndimage.minimum` over
    labels, including a label with no voxel (inf)."""
    from scipy import ndimage

    from bonelesion.roi.vertebrae import _label_minimum

    rng = np.random.default_rng(9)
    labels, count = ndimage.label(ndimage.gaussian_filter(rng.random((20, 30, 30)), 1) > 0.55)
    values = rng.random(labels.shape) * 100.0
    expected = np.asarray(ndimage.minimum(values, labels, np.arange(1, count + 1)))
    assert count > 20
    np.testing.assert_array_equal(_label_minimum(values, labels, count), expected)
    assert np.isinf(_label_minimum(values, labels, count + 1)[-1])


@pytest.mark.parametrize("sampling", [(2.0, 2.0), (1.6, 2.34)])
def test_depth_on_the_mask_box_is_the_whole_arrays(sampling: tuple[float, float]) -> None:
    """A mask's depth map (the spine axis' slices, the trabecular ROI's body), computed over
    the mask's box grown by a voxel, equals the distance transform of the whole array bit
    for bit: 2-D and 3-D masks inside, touching the edges, filling the array, and empty."""
    from scipy import ndimage

    from bonelesion.roi.bone import mask_depth

    rng = np.random.default_rng(11)
    inside = np.zeros((60, 70), dtype=bool)
    inside[20:41, 15:50] = ndimage.gaussian_filter(rng.random((21, 35)), 1.5) > 0.45
    edge = np.zeros((60, 70), dtype=bool)
    edge[:25, 40:] = rng.random((25, 30)) > 0.2
    body = np.zeros((16, 30, 30), dtype=bool)
    body[3:12, 5:22, 8:25] = ndimage.gaussian_filter(rng.random((9, 17, 17)), 1.0) > 0.47
    for mask, spacing in ((inside, sampling), (edge, sampling),
                          (np.ones((60, 70), dtype=bool), sampling), (body, (1.0, *sampling))):
        assert mask.any()
        np.testing.assert_array_equal(
            mask_depth(mask, spacing), ndimage.distance_transform_edt(mask, sampling=spacing))
    assert not mask_depth(np.zeros((5, 5), dtype=bool), sampling).any()
