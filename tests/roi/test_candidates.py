"""Sclerotic-lesion candidates on thin-slice spine phantoms: recall, false positives, rules.

Truth: the phantom's truth.json (lesion centres and volumes sampled from the analytic scene,
the look-alikes: endplate sclerosis bands, osteophytes, facet sclerosis), never the detector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support.detect_kit import CROP_VARIANTS, SmallSpine, in_view

from bonelesion.model.volume import Volume
from bonelesion.roi.candidates import CandidateSearch, detect_candidates
from bonelesion.roi.config import DetectionConfig
from bonelesion.roi.vertebrae import AnchorCountingLabeller
from bonelesion.units import IntensityUnit

#: Recall target: sclerotic lesions (metastases and bone islands) of at least 0.3 ml.
TARGET_ML = 0.3
#: A candidate matches a truth lesion when its centroid lies within the lesion's equivalent
#: radius + 2 mm (at least 6 mm) of the lesion's centroid.
MATCH_MIN_MM = 6.0
LOOK_ALIKE_KINDS = {"endplate_sclerosis", "osteophyte", "facet_sclerosis"}


def _match(c: Any, objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    best = None
    for o in objects:
        d = float(np.linalg.norm(np.subtract(c.centre_lps_mm, o["centre_lps_mm"])))
        if d <= max(MATCH_MIN_MM, o["equivalent_radius_mm"] + 2.0) and (
                best is None or d < best[1]):
            best = (o, d)
    return best[0] if best else None


@pytest.fixture(scope="module")
def searched(small_spine: Any) -> dict[str, tuple[SmallSpine, CandidateSearch]]:
    out = {}
    for name in ("siemens_crop", "philips_osteoporotic_crop"):
        study = small_spine(name)
        lab = AnchorCountingLabeller().label(study.ct)
        out[name] = (study, detect_candidates(lab))
    return out


@pytest.mark.parametrize("name", ["siemens_crop", "philips_osteoporotic_crop"])
def test_every_sclerotic_lesion_of_03_ml_is_found(
        searched: dict[str, tuple[SmallSpine, CandidateSearch]], name: str) -> None:
    study, search = searched[name]
    lesions = [les for les in study.spine["lesions"] if les["kind"] != "lytic_metastasis"]
    targets = [les for les in lesions if les["volume_ml"] >= TARGET_ML
               and in_view(study.ct, les["centre_lps_mm"])]
    assert len(targets) >= 5
    found = {id(m) for c in search.accepted if (m := _match(c, lesions)) is not None}
    for les in targets:
        assert id(les) in found, (name, les["lesion_id"], [c.reasons for c in search.rejected
                                                           if _match(c, [les])])


@pytest.mark.parametrize("name", ["siemens_crop", "philips_osteoporotic_crop"])
def test_at_most_one_false_positive_and_no_look_alike(
        searched: dict[str, tuple[SmallSpine, CandidateSearch]], name: str) -> None:
    study, search = searched[name]
    lesions = study.spine["lesions"]
    false = [c for c in search.accepted if _match(c, lesions) is None]
    assert len(false) <= 1, [(c.centre_lps_mm, c.reasons) for c in false]
    looks = study.spine["look_alikes"]
    assert {la["kind"] for la in looks} == LOOK_ALIKE_KINDS
    for c in search.accepted:
        hit = _match(c, looks)
        assert hit is None or _match(c, lesions) is not None, (hit, c.reasons)


def test_candidates_carry_level_reasons_and_a_box_mask(
        searched: dict[str, tuple[SmallSpine, CandidateSearch]]) -> None:
    study, search = searched["siemens_crop"]
    lesions = study.spine["lesions"]
    for c in search.accepted:
        truth = _match(c, lesions)
        assert truth is not None
        if truth["bone"][:1] in "TL":
            assert c.vertebra == truth["bone"]
        assert c.reasons and "above the local marrow" in c.reasons[0]
        assert 0.0 < c.score <= 1.0
        mask = np.asarray(c.mask.array)
        assert mask.any() and mask.size < 0.01 * np.prod(study.ct.shape)  # a box, not the CT
        # the mask holds the lesion's centre, and its volume is close to the truth's
        idx = np.round(c.mask.lps_to_index([truth["centre_lps_mm"]])[0]).astype(int)
        assert mask[tuple(idx)]
        assert c.volume_ml == pytest.approx(truth["volume_ml"], rel=0.5)
        lesion = c.lesion(study_instance_uid="1.2.3")
        assert lesion.treated is None  # detection cannot see treatment
        assert lesion.annotations["sclerotic"] is True and lesion.annotations["detected"] is True
        assert lesion.frame_of_reference_uid == study.ct.series.frame_of_reference_uid


def test_rejections_are_stated(searched: dict[str, tuple[SmallSpine, CandidateSearch]]) -> None:
    _, search = searched["siemens_crop"]
    assert search.rejected
    for c in search.rejected:
        assert c.reasons[0].startswith("rejected: ")
    assert any("foci rejected" in n for n in search.notes)


def test_coarse_ct_is_refused_with_the_reason(small_spine: Any) -> None:
    study = small_spine("siemens_plain")  # 2 mm pixels, 3 mm slices
    search = detect_candidates(AnchorCountingLabeller().label(study.ct))
    assert search.candidates == ()
    assert "coarser than the detector is validated for" in search.notes[0]
    config = DetectionConfig()
    import dataclasses

    searching = dataclasses.replace(config, candidates=dataclasses.replace(
        config.candidates, coarse_ct="search"))
    anyway = detect_candidates(AnchorCountingLabeller(searching).label(study.ct),
                               config=searching)
    assert any("coarse CT" in n for n in anyway.notes)


def test_no_spine_gives_no_candidate_and_a_note(rng: np.random.Generator) -> None:
    array = (40 + 12 * rng.standard_normal((60, 128, 128))).astype(np.int16)
    volume = Volume(array=array, spacing_mm=(1.0, 0.8, 0.8), origin_lps_mm=(0.0, 0.0, 0.0),
                    direction_lps=np.eye(3), intensity_unit=IntensityUnit.HU)
    search = detect_candidates(AnchorCountingLabeller().label(volume))
    assert search.candidates == () and "no spinal column" in search.notes[0]


def test_variants_are_declared() -> None:
    assert {"siemens_crop", "philips_osteoporotic_crop", "ge_mr_crop"} <= set(CROP_VARIANTS)


def test_bone_without_canal_is_scipys_slice_by_slice() -> None:
    """The fine bone map of the candidate search, all slices at once, equals the per-slice
    computation with scipy (holes by `binary_fill_holes`, each hole's mean by
    `ndimage.mean`, kept when it is marrow, not canal): rings around marrow and around
    fluid, a ring open to the edge, slices without bone."""
    from scipy import ndimage

    from bonelesion.roi.candidates import _bone_without_canal

    rng = np.random.default_rng(2)
    hu = rng.normal(40.0, 30.0, size=(6, 40, 50)).astype(np.float32)
    yy, xx = np.mgrid[:40, :50]
    for k, (cy, cx, inside) in enumerate([(12, 12, 180.0), (25, 30, 5.0), (20, 45, 150.0)]):
        r = np.hypot(yy - cy, xx - cx)
        for i in range(1, 5):
            hu[i][(r >= 6) & (r <= 8)] = 700.0  # cortex ring (the third runs off the edge)
            hu[i][r < 6] = inside + k
    hu[3, 10:14, 10:14] = 600.0  # a dense spot inside the marrow: two holes around it

    def reference(hu: np.ndarray, threshold: float, hole_min: float) -> np.ndarray:
        dense = hu >= threshold
        out = dense.copy()
        for i in range(hu.shape[0]):
            if not dense[i].any():
                continue
            holes = ndimage.binary_fill_holes(dense[i]) & ~dense[i]
            labels, n = ndimage.label(holes)
            if n == 0:
                continue
            means = ndimage.mean(hu[i], labels, index=np.arange(1, n + 1))
            keep = np.concatenate([[False], np.asarray(means) >= hole_min])
            out[i] |= keep[labels]
        return out

    for threshold, hole_min in ((250.0, 60.0), (400.0, 100.0), (250.0, 2000.0)):
        expected = reference(hu, threshold, hole_min)
        np.testing.assert_array_equal(_bone_without_canal(hu, threshold, hole_min), expected)
    assert (reference(hu, 250.0, 60.0) & ~(hu >= 250.0)).any()  # marrow holes filled
    assert not reference(hu, 250.0, 60.0)[1:5][(np.hypot(yy - 25, xx - 30) < 5)[None]
                                                 .repeat(4, 0)].any()  # fluid hole not
