"""Spine scores reported beside the call: SINS (Fisher 2010) and the Bilsky ESCC grade.

Both come from structured per-lesion annotations (``sins_location``, ``sins_pain``,
``sins_lesion``, ``sins_alignment``, ``sins_collapse``, ``sins_posterolateral``,
``escc_grade``). The SINS bone-lesion item may be filled from the CT attenuation; it is then
flagged, because that item has the poorest inter-observer agreement (κ 0.24, Fourney 2011).

References
----------
Fisher CG et al. Spine 2010;35(22):E1221–E1229 (SINS table, bands 0–6 / 7–12 / 13–18).
Fourney DR et al. J Clin Oncol 2011;29(22):3072–3077 (agreement per item).
Bilsky MH et al. J Neurosurg Spine 2010;13(3):324–328 (ESCC scale).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bonelesion.errors import InputError

__all__ = [
    "SINS_POINTS",
    "SinsBand",
    "SinsScore",
    "EsccGrade",
    "score_sins",
    "grade_escc",
    "location_category_from_level",
]

#: Fisher 2010 table: item → category → points (CLINICAL_REFERENCE.md §F1).
SINS_POINTS: Mapping[str, Mapping[str, int]] = {
    "sins_location": {"junctional": 3, "mobile": 2, "semi_rigid": 1, "rigid": 0},
    "sins_pain": {"mechanical": 3, "occasional": 1, "none": 0},
    "sins_lesion": {"lytic": 2, "mixed": 1, "blastic": 0},
    "sins_alignment": {"subluxation": 4, "deformity": 2, "normal": 0},
    "sins_collapse": {"over_50_pct": 3, "under_50_pct": 2, "over_50_pct_involved": 1, "none": 0},
    "sins_posterolateral": {"bilateral": 3, "unilateral": 1, "none": 0},
}

#: Accepted spellings → canonical category.
_ALIASES: Mapping[str, Mapping[str, str]] = {
    "sins_location": {"semi-rigid": "semi_rigid", "semirigid": "semi_rigid",
                      "mobile_spine": "mobile"},
    # Fisher 2010 table 3 words the pain item "Yes" (mechanical, 3), "No (occasional pain but
    # not mechanical)" (1) and "Pain-free lesion" (0): "no" is the 1-point category
    "sins_pain": {"pain_free": "none", "pain-free": "none", "pain_free_lesion": "none",
                  "no": "occasional", "yes": "mechanical", "non_mechanical": "occasional",
                  "no_occasional_pain_but_not_mechanical": "occasional",
                  "occasional_pain_but_not_mechanical": "occasional"},
    "sins_lesion": {"mixed_lytic_blastic": "mixed", "sclerotic": "blastic", "osteolytic": "lytic"},
    "sins_alignment": {"translation": "subluxation", "kyphosis": "deformity",
                       "scoliosis": "deformity", "de_novo_deformity": "deformity"},
    "sins_collapse": {">50%": "over_50_pct", "<50%": "under_50_pct", "gt50": "over_50_pct",
                      "lt50": "under_50_pct",
                      "no_collapse_over_50_pct_involved": "over_50_pct_involved"},
    "sins_posterolateral": {},
}

#: Fisher 2010 location classes by vertebral level.
_JUNCTIONAL = {"C0", "C1", "C2", "C7", "T1", "T2", "T11", "T12", "L1", "L5", "S1"}
_MOBILE = {"C3", "C4", "C5", "C6", "L2", "L3", "L4"}
_SEMI_RIGID = {f"T{i}" for i in range(3, 11)}
_RIGID = {"S2", "S3", "S4", "S5"}


class SinsBand(str, Enum):
    """SINS stability band (Fisher 2010)."""

    STABLE = "stable"
    POTENTIALLY_UNSTABLE = "potentially_unstable"
    UNSTABLE = "unstable"
    INCOMPLETE = "incomplete"


def _band(total: int) -> SinsBand:
    if total <= 6:
        return SinsBand.STABLE
    if total <= 12:
        return SinsBand.POTENTIALLY_UNSTABLE
    return SinsBand.UNSTABLE


def location_category_from_level(level: str) -> str:
    """Map a vertebral level ("T12", "L3", "occiput") to its SINS location category.

    Raises
    ------
    InputError
        If the text is not a vertebral level.

    Examples
    --------
    >>> location_category_from_level("L1"), location_category_from_level("T6")
    ('junctional', 'semi_rigid')
    """
    text = level.strip().upper()
    if text in {"OCCIPUT", "OCC"}:
        text = "C0"
    if text in _JUNCTIONAL:
        return "junctional"
    if text in _MOBILE:
        return "mobile"
    if text in _SEMI_RIGID:
        return "semi_rigid"
    if text in _RIGID:
        return "rigid"
    raise InputError(
        f"SINS location: {level!r} is neither a category nor a vertebral level (C0–C7, T1–T12, "
        "L1–L5, S1–S5). Potential fix: write e.g. 'junctional' or 'T12'."
    )


def _from_points(item: str, points: int) -> str:
    """Return the category of an item worth ``points`` (unique within an item)."""
    for category, value in SINS_POINTS[item].items():
        if value == points:
            return category
    allowed = sorted(set(SINS_POINTS[item].values()))
    raise InputError(
        f"SINS item {item}: {points} points is not a score of this item (allowed points: "
        f"{allowed}; categories: {', '.join(SINS_POINTS[item])}). Potential fix: correct the "
        "annotation."
    )


def _canonical(item: str, value: Any) -> str:
    """Return the canonical category of an item given as a name, an alias or its points."""
    if isinstance(value, bool):
        raise InputError(
            f"SINS item {item}: expected a category name or its points, found {value!r} "
            f"(allowed: {', '.join(SINS_POINTS[item])}). Potential fix: correct the annotation."
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return _from_points(item, value)
    if not isinstance(value, str):
        raise InputError(
            f"SINS item {item}: expected a category name or its points, found {value!r} "
            f"(allowed: {', '.join(SINS_POINTS[item])}). Potential fix: correct the annotation."
        )
    if value.strip().isdigit():
        return _from_points(item, int(value.strip()))
    key = re.sub(r"[\s/()\-]+", "_", value.strip().lower()).strip("_")
    key = _ALIASES[item].get(key, key)
    if key in SINS_POINTS[item]:
        return key
    if item == "sins_location" and re.fullmatch(r"(occ(iput)?|[ctls]\d{1,2})", key):
        return location_category_from_level(key)
    raise InputError(
        f"SINS item {item}: {value!r} is not a category of the Fisher 2010 table "
        f"(allowed: {', '.join(SINS_POINTS[item])}). Potential fix: correct the annotation."
    )


@dataclass(frozen=True, kw_only=True)
class SinsScore:
    """Spinal Instability Neoplastic Score of one lesion.

    ``total_min_points``/``total_max_points`` bracket the total when items are missing (equal
    when complete); ``band`` is INCOMPLETE only when the bracket spans two bands.
    """

    items: Mapping[str, str]
    points: Mapping[str, int]
    missing_items: tuple[str, ...]
    total_min_points: int
    total_max_points: int
    band: SinsBand
    flags: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every item was given (or derived)."""
        return not self.missing_items

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "items": dict(self.items),
            "points": dict(self.points),
            "missing_items": list(self.missing_items),
            "total_min_points": self.total_min_points,
            "total_max_points": self.total_max_points,
            "band": self.band.value,
            "flags": list(self.flags),
        }


def score_sins(
    annotations: Mapping[str, Any],
    *,
    bone_lesion_from_ct: str | None = None,
) -> SinsScore | None:
    """Score SINS from annotations; ``None`` when no SINS item is annotated at all.

    Parameters
    ----------
    annotations : mapping
        Per-lesion annotations; keys ``sins_location`` … ``sins_posterolateral`` hold category
        names or their points (Fisher 2010; points are unique within an item), as integers or
        digit strings; ``sins_location`` also accepts a level such as ``"T12"``.
    bone_lesion_from_ct : {"lytic", "mixed", "blastic"} or None
        Category to use when ``sins_lesion`` is not annotated; the result is then flagged as
        derived and of low agreement.

    Returns
    -------
    SinsScore or None

    Raises
    ------
    InputError
        If an annotated category or points value is not in the Fisher 2010 table.

    Examples
    --------
    >>> s = score_sins({"sins_location": "T12", "sins_pain": "mechanical", "sins_lesion": "lytic",
    ...                 "sins_alignment": "normal", "sins_collapse": "under_50_pct",
    ...                 "sins_posterolateral": "unilateral"})
    >>> s.total_min_points, s.band.value
    (11, 'potentially_unstable')
    >>> points = dict(zip(SINS_POINTS, (3, 3, 2, 0, 2, 1)))  # the same lesion, as points
    >>> score_sins(points).total_min_points
    11
    """
    given = {k: annotations[k] for k in SINS_POINTS if annotations.get(k) not in (None, "")}
    if not given:
        return None
    items: dict[str, str] = {k: _canonical(k, v) for k, v in given.items()}
    flags: list[str] = []
    if "sins_lesion" not in items and bone_lesion_from_ct is not None:
        items["sins_lesion"] = _canonical("sins_lesion", bone_lesion_from_ct)
        flags.append(
            "sins_lesion derived from CT attenuation, not read by a radiologist; the bone-lesion "
            "item has the poorest inter-observer agreement (kappa 0.24, Fourney 2011): verify it"
        )
    points = {k: SINS_POINTS[k][v] for k, v in items.items()}
    missing = tuple(k for k in SINS_POINTS if k not in items)
    low = sum(points.values())
    high = low + sum(max(SINS_POINTS[k].values()) for k in missing)
    band = _band(low) if _band(low) == _band(high) else SinsBand.INCOMPLETE
    if missing:
        flags.append(f"missing items: {', '.join(missing)} (total bracketed {low}–{high})")
    if low >= 7:
        flags.append("SINS ≥ 7: surgical consultation recommended (Fisher 2010)")
    return SinsScore(
        items=items, points=points, missing_items=missing, total_min_points=low,
        total_max_points=high, band=band, flags=tuple(flags),
    )


@dataclass(frozen=True, kw_only=True)
class EsccGrade:
    """Bilsky epidural spinal cord compression grade of one lesion."""

    grade: str
    high_grade: bool
    borderline: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {"grade": self.grade, "high_grade": self.high_grade, "borderline": self.borderline}


_ESCC_GRADES = ("0", "1a", "1b", "1c", "2", "3")


def grade_escc(value: Any) -> EsccGrade | None:
    """Record an ESCC grade (0, 1a, 1b, 1c, 2, 3); ``None`` when not annotated.

    High grade is 2 or 3; 1c is reported with ``borderline=True`` because the literature
    groups it inconsistently (Bilsky 2010; MDPI Cancers 2022).

    Raises
    ------
    InputError
        If the value is not one of the six grades.

    Examples
    --------
    >>> grade_escc("1c")
    EsccGrade(grade='1c', high_grade=False, borderline=True)
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        text = ""
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, str):
        text = value.strip().lower()
    else:
        text = ""
    if text not in _ESCC_GRADES:
        raise InputError(
            f"ESCC grade: {value!r} is not a Bilsky grade (expected one of "
            f"{', '.join(_ESCC_GRADES)}). Potential fix: correct the escc_grade annotation."
        )
    return EsccGrade(grade=text, high_grade=text in ("2", "3"), borderline=text == "1c")
