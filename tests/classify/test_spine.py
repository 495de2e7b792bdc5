"""SINS (Fisher 2010 table, CLINICAL_REFERENCE.md §F1) and ESCC grades (§F2)."""

from __future__ import annotations

import pytest
from support.classify_factory import lesion

from bonelesion.classify import SinsBand, classify_lesion, grade_escc, score_sins
from bonelesion.classify.spine import location_category_from_level
from bonelesion.errors import InputError

# Fisher 2010 table typed in from CLINICAL_REFERENCE.md §F1 (independent of SINS_POINTS).
TABLE = {
    "sins_location": {"junctional": 3, "mobile": 2, "semi_rigid": 1, "rigid": 0},
    "sins_pain": {"mechanical": 3, "occasional": 1, "none": 0},
    "sins_lesion": {"lytic": 2, "mixed": 1, "blastic": 0},
    "sins_alignment": {"subluxation": 4, "deformity": 2, "normal": 0},
    "sins_collapse": {"over_50_pct": 3, "under_50_pct": 2, "over_50_pct_involved": 1, "none": 0},
    "sins_posterolateral": {"bilateral": 3, "unilateral": 1, "none": 0},
}
ZERO = {k: next(c for c, p in v.items() if p == 0) for k, v in TABLE.items()}


@pytest.mark.parametrize(("item", "category", "points"),
                         [(i, c, p) for i, cats in TABLE.items() for c, p in cats.items()])
def test_every_table_cell(item: str, category: str, points: int) -> None:
    s = score_sins({**ZERO, item: category})
    assert s is not None and s.complete
    assert s.points[item] == points
    assert s.total_min_points == s.total_max_points == points


@pytest.mark.parametrize(("total", "band"), [(0, SinsBand.STABLE), (6, SinsBand.STABLE),
                                             (7, SinsBand.POTENTIALLY_UNSTABLE),
                                             (12, SinsBand.POTENTIALLY_UNSTABLE),
                                             (13, SinsBand.UNSTABLE), (18, SinsBand.UNSTABLE)])
def test_band_edges(total: int, band: SinsBand) -> None:
    # build an annotation set with the requested total from the table
    remaining = total
    ann = dict(ZERO)
    for item, cats in TABLE.items():
        best = max((p for p in cats.values() if p <= remaining), default=0)
        ann[item] = next(c for c, p in cats.items() if p == best)
        remaining -= best
    assert remaining == 0
    s = score_sins(ann)
    assert s is not None and s.total_min_points == total and s.band is band


def test_maximum_is_18() -> None:
    ann = {k: max(v, key=v.get) for k, v in TABLE.items()}  # type: ignore[arg-type]
    s = score_sins(ann)
    assert s is not None and s.total_min_points == 18


@pytest.mark.parametrize(("level", "category"), [("occiput", "junctional"), ("C2", "junctional"),
                                                 ("C5", "mobile"), ("T1", "junctional"),
                                                 ("T7", "semi_rigid"), ("T11", "junctional"),
                                                 ("L3", "mobile"), ("L5", "junctional"),
                                                 ("S1", "junctional"), ("S3", "rigid")])
def test_location_from_level(level: str, category: str) -> None:
    assert location_category_from_level(level) == category
    s = score_sins({"sins_location": level})
    assert s is not None and s.items["sins_location"] == category


def test_location_level_error() -> None:
    with pytest.raises(InputError, match=r"'X9' is neither a category nor a vertebral level"):
        location_category_from_level("X9")


def test_incomplete_bracket_and_band() -> None:
    s = score_sins({"sins_location": "rigid", "sins_pain": "none"})
    assert s is not None and not s.complete
    assert (s.total_min_points, s.total_max_points) == (0, 12)
    assert s.band is SinsBand.INCOMPLETE
    s2 = score_sins({"sins_location": "junctional", "sins_pain": "mechanical",
                     "sins_alignment": "subluxation", "sins_collapse": "over_50_pct",
                     "sins_posterolateral": "bilateral"})
    assert s2 is not None and (s2.total_min_points, s2.total_max_points) == (16, 18)
    assert s2.band is SinsBand.UNSTABLE  # both ends in one band


def test_no_annotation_gives_none() -> None:
    assert score_sins({}) is None and grade_escc(None) is None


@pytest.mark.parametrize(("item", "value"), [("sins_pain", "severe"), ("sins_lesion", 3),
                                             ("sins_alignment", "1"), ("sins_collapse", True)])
def test_invalid_category(item: str, value: object) -> None:
    with pytest.raises(InputError, match=rf"SINS item {item}: .*Potential fix"):
        score_sins({item: value})


@pytest.mark.parametrize(("ct_mean", "ann", "category"),
                         [(700.0, {}, "blastic"), (300.0, {}, "blastic"), (299.0, {}, "mixed"),
                          (150.0, {}, "mixed"), (149.0, {}, "lytic"),
                          (100.0, {"sclerotic": True}, "blastic")])
def test_bone_lesion_item_from_ct_is_flagged(ct_mean: float, ann: dict, category: str) -> None:
    call = classify_lesion(lesion(ct=ct_mean, annotations={"sins_location": "T6", **ann}))
    assert call.sins is not None
    assert call.sins.items["sins_lesion"] == category
    assert any("kappa 0.24" in f for f in call.sins.flags)


def test_annotated_bone_lesion_item_wins_over_ct() -> None:
    call = classify_lesion(lesion(ct=700.0, annotations={"sins_lesion": "lytic"}))
    assert call.sins is not None and call.sins.items["sins_lesion"] == "lytic"
    assert not any("derived from CT" in f for f in call.sins.flags)


@pytest.mark.parametrize(("value", "high", "borderline"),
                         [("0", False, False), (0, False, False), ("1a", False, False),
                          ("1B", False, False), ("1c", False, True), (2, True, False),
                          ("3", True, False), (3.0, True, False)])
def test_escc(value: object, high: bool, borderline: bool) -> None:
    g = grade_escc(value)
    assert g is not None and g.high_grade is high and g.borderline is borderline


@pytest.mark.parametrize("value", ["4", "1d", True, 1.5, [2]])
def test_escc_invalid(value: object) -> None:
    with pytest.raises(InputError, match="is not a Bilsky grade"):
        grade_escc(value)


def test_bad_spine_annotation_is_recorded_not_raised() -> None:
    call = classify_lesion(lesion(ct=700.0, annotations={"escc_grade": "4", "sins_pain": "x",
                                                         "treated": False}))
    assert len(call.spine_problems) == 2
    assert call.label.value == "malignant"
    assert call.to_dict()["spine_problems"]


def test_points_and_categories_give_the_same_score() -> None:
    # issue 18: SINS given as points (3, 3, 2, 0, 2, 1) in the annotations CSV → 11
    points = dict(zip(TABLE, (3, 3, 2, 0, 2, 1), strict=True))
    as_text = {k: str(v) for k, v in points.items()}
    by_name = {"sins_location": "junctional", "sins_pain": "mechanical", "sins_lesion": "lytic",
               "sins_alignment": "normal", "sins_collapse": "under_50_pct",
               "sins_posterolateral": "unilateral"}
    scores = [score_sins(a) for a in (points, as_text, by_name)]
    assert all(s is not None and s.total_min_points == 11 and s.complete for s in scores)
    assert {s.band.value for s in scores if s is not None} == {"potentially_unstable"}
    assert scores[0].items == scores[2].items  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "points"), [
    ("no", 1), ("No (occasional pain but not mechanical)", 1), ("yes", 3),
    ("Pain-free lesion", 0), ("pain_free", 0), ("mechanical", 3)])
def test_pain_wording_of_fisher_table_3(text: str, points: int) -> None:
    # Fisher 2010 table 3: "No (occasional pain but not mechanical)" scores 1, not 0
    s = score_sins({"sins_pain": text})
    assert s is not None and s.points == {"sins_pain": points}
