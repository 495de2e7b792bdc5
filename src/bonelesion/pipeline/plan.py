"""Plan a study: choose which stack (or series) plays each role of a pipeline.

Pure functions over plain records (`StackCandidate`, built from the catalogue of an export):
no I/O. Every choice is recorded (`RoleChoice`) with the candidates seen and why one won,
so a report can say "3 CT series; chose 1.0 mm bone kernel over 5.0 mm soft".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bonelesion.pipeline.definition import STAGE_ROLES, PipelineDefinition, RoleSpec

__all__ = ["StackCandidate", "RoleChoice", "StudyPlan", "plan_study", "ChoiceStatus"]


class ChoiceStatus:
    """Closed vocabulary of `RoleChoice.status`."""

    SINGLE = "single"  # exactly one candidate
    PREFERRED = "preferred"  # several; a preference decided
    TIE = "tie"  # several equal under every preference; lowest (SeriesNumber, UID) taken
    MISSING = "missing"  # no candidate


@dataclass(frozen=True, kw_only=True)
class StackCandidate:
    """One stack of a study, as the catalogue describes it (plain data, picklable).

    ``files`` are absolute paths; ``sop_instance_uids`` and ``file_signatures`` (size and
    mtime, or a content hash) define the exact input for the results-store key.
    """

    study_instance_uid: str
    series_instance_uid: str
    stack_key: str
    modality: str
    role: str
    files: tuple[str, ...]
    sop_instance_uids: tuple[str, ...] = ()
    file_signatures: tuple[str, ...] = ()
    series_number: int | None = None
    series_description: str = ""
    slice_thickness_mm: float | None = None
    slice_spacing_mm: float | None = None
    convolution_kernel: str = ""
    b_values_s_per_mm2: tuple[float, ...] = ()
    image_type: tuple[str, ...] = ()
    echo_time_ms: float | None = None

    @property
    def label(self) -> str:
        """Short identification for records and logs (no patient identifier)."""
        return f"series {self.series_instance_uid} stack {self.stack_key}"


@dataclass(frozen=True, kw_only=True)
class RoleChoice:
    """How one role of a study was filled."""

    role: str
    status: str
    chosen: tuple[StackCandidate, ...] = ()
    candidates: tuple[str, ...] = ()
    reason: str = ""

    @property
    def series_instance_uid(self) -> str:
        """UID of the chosen series ("" when missing)."""
        return self.chosen[0].series_instance_uid if self.chosen else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (UIDs only)."""
        return {
            "role": self.role,
            "status": self.status,
            "series_instance_uid": self.series_instance_uid,
            "stack_keys": [c.stack_key for c in self.chosen],
            "candidates": list(self.candidates),
            "reason": self.reason,
        }


@dataclass(frozen=True, kw_only=True)
class StudyPlan:
    """Roles chosen for one study and the stages that can run.

    ``skipped_stages`` maps a stage to the reason it cannot run; ``refusal`` is non-empty
    when a required role has no candidate (the study then fails at the ``plan`` stage).
    """

    study_instance_uid: str
    choices: tuple[RoleChoice, ...]
    stages: tuple[str, ...]
    skipped_stages: dict[str, str]
    refusal: str = ""

    def choice(self, role: str) -> RoleChoice:
        """Return the `RoleChoice` of ``role``."""
        for c in self.choices:
            if c.role == role:
                return c
        raise KeyError(role)

    @property
    def inputs(self) -> tuple[StackCandidate, ...]:
        """Every chosen stack, in role order, each once."""
        seen: dict[tuple[str, str], StackCandidate] = {}
        for c in self.choices:
            for s in c.chosen:
                seen.setdefault((s.series_instance_uid, s.stack_key), s)
        return tuple(seen.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "roles": [c.to_dict() for c in self.choices],
            "stages": list(self.stages),
            "skipped_stages": dict(self.skipped_stages),
            "refusal": self.refusal,
        }


def _thickness(c: StackCandidate) -> float:
    for v in (c.slice_thickness_mm, c.slice_spacing_mm):
        if v is not None and v > 0:
            return float(v)
    return float("inf")


def _series_number(c: StackCandidate) -> int:
    return c.series_number if c.series_number is not None else -1


def _preference_key(pref: str, group: Sequence[StackCandidate], spec: RoleSpec) -> float:
    """Smaller is better."""
    first = group[0]
    bone = re.search(spec.bone_kernel_pattern, first.convolution_kernel or "") is not None
    if pref == "thinnest_slice":
        return min(_thickness(c) for c in group)
    if pref == "thickest_slice":
        return -max((_thickness(c) for c in group if _thickness(c) != float("inf")), default=0.0)
    if pref == "bone_kernel":
        return 0.0 if bone else 1.0
    if pref == "soft_kernel":
        return 1.0 if bone else 0.0
    if pref == "most_b_values":
        return -float(len({round(b, 3) for c in group for b in c.b_values_s_per_mm2}))
    if pref == "most_slices":
        return -float(sum(len(c.files) for c in group))
    if pref == "original":
        return 0.0 if first.image_type[:1] == ("ORIGINAL",) else 1.0
    if pref == "latest_series":
        return -float(_series_number(first))
    if pref == "earliest_series":
        return float(_series_number(first))
    raise KeyError(pref)  # definition validated the names


def _describe(pref: str, group: Sequence[StackCandidate]) -> str:
    first = group[0]
    if pref in ("thinnest_slice", "thickest_slice"):
        return f"{min(_thickness(c) for c in group):g} mm"
    if pref in ("bone_kernel", "soft_kernel"):
        return f"kernel {first.convolution_kernel or '(none)'}"
    if pref == "most_b_values":
        return f"{len({b for c in group for b in c.b_values_s_per_mm2})} b-values"
    if pref == "most_slices":
        return f"{sum(len(c.files) for c in group)} images"
    if pref == "original":
        return "/".join(first.image_type[:1]) or "no ImageType"
    return f"SeriesNumber {first.series_number}"


def _groups(
    spec: RoleSpec, candidates: Iterable[StackCandidate]
) -> list[tuple[StackCandidate, ...]]:
    inc = re.compile(spec.description_pattern) if spec.description_pattern else None
    exc = re.compile(spec.exclude_description_pattern) if spec.exclude_description_pattern else None
    kept = [
        c
        for c in candidates
        if c.modality.upper() == spec.modality.upper()
        and c.role in spec.stack_roles
        and (inc is None or inc.search(c.series_description or ""))
        and (exc is None or not exc.search(c.series_description or ""))
    ]
    if spec.unit == "stack":
        return [(c,) for c in kept]
    by_series: dict[str, list[StackCandidate]] = {}
    for c in kept:
        by_series.setdefault(c.series_instance_uid, []).append(c)
    return [tuple(sorted(v, key=lambda c: c.stack_key)) for v in by_series.values()]


def _group_label(group: Sequence[StackCandidate]) -> str:
    first = group[0]
    if len(group) == 1:
        return first.label
    return f"series {first.series_instance_uid} ({len(group)} stacks)"


def choose_role(role: str, spec: RoleSpec, candidates: Sequence[StackCandidate]) -> RoleChoice:
    """Choose the candidate for one role (see `RoleSpec.prefer`)."""
    groups = _groups(spec, candidates)
    labels = tuple(sorted(_group_label(g) for g in groups))
    if not groups:
        return RoleChoice(
            role=role,
            status=ChoiceStatus.MISSING,
            candidates=(),
            reason=f"no {spec.modality} stack with role {' or '.join(spec.stack_roles)}",
        )
    if len(groups) == 1:
        return RoleChoice(
            role=role,
            status=ChoiceStatus.SINGLE,
            chosen=groups[0],
            candidates=labels,
            reason="only candidate",
        )
    tiebreak = lambda g: (_series_number(g[0]), g[0].series_instance_uid, g[0].stack_key)  # noqa: E731
    remaining = sorted(groups, key=tiebreak)
    reasons: list[str] = []
    for pref in spec.prefer:
        keys = [_preference_key(pref, g, spec) for g in remaining]
        best = min(keys)
        winners = [g for g, k in zip(remaining, keys, strict=False) if k == best]
        if len(winners) < len(remaining):
            losers = [g for g, k in zip(remaining, keys, strict=False) if k != best]
            reasons.append(
                f"{pref}: {_describe(pref, winners[0])} over "
                + ", ".join(sorted({_describe(pref, g) for g in losers}))
            )
            remaining = winners
        if len(remaining) == 1:
            return RoleChoice(
                role=role,
                status=ChoiceStatus.PREFERRED,
                chosen=remaining[0],
                candidates=labels,
                reason=f"{len(groups)} candidates; " + "; ".join(reasons),
            )
    chosen = remaining[0]
    return RoleChoice(
        role=role,
        status=ChoiceStatus.TIE,
        chosen=chosen,
        candidates=labels,
        reason=(
            f"{len(groups)} candidates, {len(remaining)} equal under "
            f"{', '.join(spec.prefer) or 'no preference'}; took the lowest SeriesNumber/UID "
            f"({_group_label(chosen)}). Potential fix: add a preference or a "
            "description_pattern to the pipeline's role."
        ),
    )


def plan_study(
    study_instance_uid: str,
    candidates: Sequence[StackCandidate],
    definition: PipelineDefinition,
) -> StudyPlan:
    """Choose a stack (or series) for every role of ``definition`` in one study.

    Parameters
    ----------
    study_instance_uid : str
        The study planned.
    candidates : sequence of StackCandidate
        Every readable stack of the study (from the catalogue).
    definition : PipelineDefinition
        The pipeline.

    Returns
    -------
    StudyPlan
        The choices, the stages that can run, the stages skipped (with reasons), and a
        refusal message when a required role is missing or no stage can run.
    """
    choices = tuple(choose_role(role, spec, candidates) for role, spec in definition.roles.items())
    by_role = {c.role: c for c in choices}
    refusal = ""
    missing_required = [
        c.role
        for c in choices
        if c.status == ChoiceStatus.MISSING and definition.roles[c.role].required
    ]
    if missing_required:
        role = missing_required[0]
        refusal = (
            f"Study {study_instance_uid}: required role {role!r} has no candidate "
            f"({by_role[role].reason}; {len(candidates)} stacks in the study). "
            "Potential fix: check the export holds that series, or loosen the role in the pipeline."
        )
    stages: list[str] = []
    skipped: dict[str, str] = {}
    for stage in definition.stages:
        all_of, any_of = STAGE_ROLES[stage]
        lacking = [r for r in all_of if by_role[r].status == ChoiceStatus.MISSING]
        if any_of and all(
            by_role[r].status == ChoiceStatus.MISSING for r in any_of if r in by_role
        ):
            lacking.append(" or ".join(r for r in any_of if r in by_role))
        if lacking:
            skipped[stage] = f"no series for role {', '.join(lacking)}"
        else:
            stages.append(stage)
    if not refusal and not stages:
        refusal = (
            f"Study {study_instance_uid}: no stage of the pipeline can run ("
            + "; ".join(f"{s}: {r}" for s, r in skipped.items())
            + f"; {len(candidates)} stacks in the study). Potential fix: check the export, "
            "or use a pipeline matching the study's modalities."
        )
    return StudyPlan(
        study_instance_uid=study_instance_uid,
        choices=choices,
        stages=tuple(stages),
        skipped_stages=skipped,
        refusal=refusal,
    )
