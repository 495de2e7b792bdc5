r"""The one series-selection policy: which stack (or series) plays each role of a pipeline.

Every command that measures (``measure``, ``run``, ``qa``, ``detect``, ``watch``) plans its
studies here, from the catalogue's `StackCandidate` records and the pipeline's role
specifications (`bonelesion.pipeline.definition.RoleSpec`). Pure functions, no I/O.

The policy, in order:

1. **Eligibility.** Only cross-sectional image volumes can play a measuring role. Never a
   candidate, whatever its description says: localizers (ImageType ``LOCALIZER``, or a
   single-image stack such as a projection scout), Secondary Capture objects (judged by SOP
   Class, not by ImageType: a real reformatted CT may be ``DERIVED\\SECONDARY\\AXIAL``),
   structured reports (dose reports), segmentations, RT objects, presentation states and
   encapsulated documents. They stay in the catalogue (``bonelesion series`` lists them)
   and each plan records them under ``excluded`` with the reason.
2. **Filters** of the role: modality, accepted stack roles, description patterns.
3. **Candidates**: each stack (``unit = "stack"``) or each series (``unit = "series"``). For a
   diffusion role, series holding one b-value each on one grid (a scanner's b = 0 series and
   its trace series) form one candidate together, so they can be fitted.
4. **Preferences** (`PREFERENCES`), applied in the pipeline's order; equal candidates are a
   recorded tie, broken by the lowest (SeriesNumber, SeriesInstanceUID).
The DWI series is loaded beside a scanner ADC map: it gives the map's b-values and the
lesion's low-b signal (the reliability of the ADC); which map is measured is the measuring
configuration's choice (``stages.dwi_adc.prefer_scanner_adc``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bonelesion.dicom.vendors import MOSAIC_IMAGE_TYPES
from bonelesion.model.roles import SeriesRole
from bonelesion.pipeline.definition import STAGE_ROLES, PipelineDefinition, RoleSpec
from bonelesion.pipeline.plan import ChoiceStatus, RoleChoice, StackCandidate, StudyPlan

__all__ = ["not_measurable", "choose_role", "plan_study", "dwi_fit_groups"]

#: SOP Classes that never hold a cross-sectional image volume (prefix match; PS3.4 B.5).
NON_VOLUME_SOP_CLASSES: Mapping[str, str] = {
    "1.2.840.10008.5.1.4.1.1.7": "a Secondary Capture object (a screen capture)",
    "1.2.840.10008.5.1.4.1.1.88.": "a structured report (e.g. a dose report)",
    "1.2.840.10008.5.1.4.1.1.66": "a segmentation or registration object",
    "1.2.840.10008.5.1.4.1.1.481.": "a radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.11.": "a presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "an encapsulated document",
    "1.2.840.10008.5.1.4.1.1.9.": "a waveform",
}

#: ImageType values that mark a projection localizer (PS3.3 C.8.2.1.1.1 "LOCALIZER").
LOCALIZER_IMAGE_TYPES = frozenset({"LOCALIZER"})

#: Stack roles the reader gives to objects that are not measurable volumes.
NOT_MEASURABLE_ROLES = frozenset({SeriesRole.LOCALIZER.value, SeriesRole.OTHER.value})

#: Decimals to which grid values are compared when single-b DWI series are combined.
_GRID_DECIMALS = 3


def not_measurable(candidate: StackCandidate) -> str:
    """Why a stack can never play a measuring role ("" when it can).

    Examples
    --------
    >>> c = StackCandidate(study_instance_uid="1", series_instance_uid="2", stack_key="k",
    ...                    modality="CT", role="ct", files=("a.dcm",), n_frames=1)
    >>> not_measurable(c)
    'a single image (a localizer, projection or screen capture), not a cross-sectional volume'
    """
    for prefix, what in NON_VOLUME_SOP_CLASSES.items():
        if candidate.sop_class_uid.startswith(prefix):
            return f"{what} (SOP Class {candidate.sop_class_uid})"
    if LOCALIZER_IMAGE_TYPES & set(candidate.image_type):
        return "a localizer (ImageType " + "\\".join(candidate.image_type) + ")"
    if candidate.role in NOT_MEASURABLE_ROLES:
        return f"not a measurable image volume (reader role {candidate.role!r})"
    if candidate.slice_count < 2 and not MOSAIC_IMAGE_TYPES & set(candidate.image_type):
        return ("a single image (a localizer, projection or screen capture), not a "
                "cross-sectional volume")
    return ""


def _thickness(c: StackCandidate) -> float:
    for v in (c.slice_thickness_mm, c.slice_spacing_mm):
        if v is not None and v > 0:
            return float(v)
    return float("inf")


def _series_number(c: StackCandidate) -> int:
    return c.series_number if c.series_number is not None else -1


def _b_values(group: Sequence[StackCandidate]) -> set[float]:
    return {round(b, 3) for c in group for b in c.b_values_s_per_mm2}


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
        return -float(len(_b_values(group)))
    if pref == "most_slices":
        return -float(sum(c.slice_count for c in group))
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
        return f"{len(_b_values(group))} b-values"
    if pref == "most_slices":
        return f"{sum(c.slice_count for c in group)} images"
    if pref == "original":
        return "/".join(first.image_type[:1]) or "no ImageType"
    return f"SeriesNumber {first.series_number}"


def _grid(c: StackCandidate) -> tuple[Any, ...] | None:
    """Grid signature of a stack (None when the catalogue does not know it)."""
    if (not c.frame_of_reference_uid or c.image_orientation_lps is None or c.rows is None
            or c.columns is None or c.pixel_spacing_mm is None):
        return None
    return (c.frame_of_reference_uid,
            tuple(round(v, _GRID_DECIMALS) for v in c.image_orientation_lps),
            c.rows, c.columns, tuple(round(v, _GRID_DECIMALS) for v in c.pixel_spacing_mm))


def dwi_fit_groups(candidates: Iterable[StackCandidate]) -> list[tuple[StackCandidate, ...]]:
    """Group diffusion stacks into sets that are fitted together.

    A series holding two or more b-values is its own set; series holding one b-value each
    (a scanner's b = 0 series and its trace series) are combined when they share frame of
    reference and grid (orientation, rows, columns, pixel spacing). Stacks are sorted by
    (SeriesNumber, series UID, stack key) within a set.
    """
    by_series: dict[str, list[StackCandidate]] = {}
    for c in candidates:
        by_series.setdefault(c.series_instance_uid, []).append(c)
    groups: list[list[StackCandidate]] = []
    single: dict[tuple[Any, ...], list[StackCandidate]] = {}
    for stacks in by_series.values():
        grid = _grid(stacks[0])
        if len(_b_values(stacks)) >= 2 or grid is None:
            groups.append(stacks)
        else:
            single.setdefault(grid, []).extend(stacks)
    for stacks in single.values():
        groups.append(stacks)
    order = lambda c: (_series_number(c), c.series_instance_uid, c.stack_key)  # noqa: E731
    return [tuple(sorted(g, key=order)) for g in groups]


def _groups(
    spec: RoleSpec, candidates: Iterable[StackCandidate]
) -> tuple[list[tuple[StackCandidate, ...]], list[tuple[str, str]]]:
    """Candidate groups of one role, and the excluded stacks with their reasons."""
    inc = re.compile(spec.description_pattern) if spec.description_pattern else None
    exc = re.compile(spec.exclude_description_pattern) if spec.exclude_description_pattern else None
    kept: list[StackCandidate] = []
    excluded: list[tuple[str, str]] = []
    for c in candidates:
        if c.modality.upper() != spec.modality.upper():
            continue
        why = not_measurable(c)
        if why and (c.role in spec.stack_roles or c.role in NOT_MEASURABLE_ROLES):
            excluded.append((c.label, why))
            continue
        if (c.role in spec.stack_roles
                and (inc is None or inc.search(c.series_description or ""))
                and (exc is None or not exc.search(c.series_description or ""))):
            kept.append(c)
    if spec.unit == "stack":
        return [(c,) for c in kept], excluded
    if SeriesRole.DWI.value in spec.stack_roles:
        return dwi_fit_groups(kept), excluded
    by_series: dict[str, list[StackCandidate]] = {}
    for c in kept:
        by_series.setdefault(c.series_instance_uid, []).append(c)
    return [tuple(sorted(v, key=lambda c: c.stack_key)) for v in by_series.values()], excluded


def _group_label(group: Sequence[StackCandidate]) -> str:
    first = group[0]
    if len(group) == 1:
        return first.label
    uids = list(dict.fromkeys(c.series_instance_uid for c in group))
    return f"series {'+'.join(uids)} ({len(group)} stacks)"


def choose_role(role: str, spec: RoleSpec, candidates: Sequence[StackCandidate]) -> RoleChoice:
    """Choose the candidate for one role (see the module docstring for the policy)."""
    groups, excluded = _groups(spec, candidates)
    labels = tuple(sorted(_group_label(g) for g in groups))
    kept_out = tuple(sorted(excluded))
    if not groups:
        return RoleChoice(
            role=role,
            status=ChoiceStatus.MISSING,
            candidates=(),
            excluded=kept_out,
            reason=f"no {spec.modality} image volume with role {' or '.join(spec.stack_roles)}"
            + (f" ({len(kept_out)} not measurable: {kept_out[0][1]}"
               + (" …" if len(kept_out) > 1 else "") + ")" if kept_out else ""),
        )
    if len(groups) == 1:
        return RoleChoice(role=role, status=ChoiceStatus.SINGLE, chosen=groups[0],
                          candidates=labels, excluded=kept_out, reason="only candidate")
    tiebreak = lambda g: (_series_number(g[0]), g[0].series_instance_uid, g[0].stack_key)  # noqa: E731
    remaining = sorted(groups, key=tiebreak)
    reasons: list[str] = []
    for pref in spec.prefer:
        keys = [_preference_key(pref, g, spec) for g in remaining]
        best = min(keys)
        winners = [g for g, k in zip(remaining, keys, strict=True) if k == best]
        if len(winners) < len(remaining):
            losers = [g for g, k in zip(remaining, keys, strict=True) if k != best]
            reasons.append(f"{pref}: {_describe(pref, winners[0])} over "
                           + ", ".join(sorted({_describe(pref, g) for g in losers})))
            remaining = winners
        if len(remaining) == 1:
            return RoleChoice(role=role, status=ChoiceStatus.PREFERRED, chosen=remaining[0],
                              candidates=labels, excluded=kept_out,
                              reason=f"{len(groups)} candidates; " + "; ".join(reasons))
    chosen = remaining[0]
    return RoleChoice(
        role=role,
        status=ChoiceStatus.TIE,
        chosen=chosen,
        candidates=labels,
        excluded=kept_out,
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
    choices = [choose_role(role, spec, candidates) for role, spec in definition.roles.items()]
    by_role = {c.role: c for c in choices}
    refusal = ""
    missing_required = [c.role for c in choices
                        if c.status == ChoiceStatus.MISSING and definition.roles[c.role].required]
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
        choices=tuple(choices),
        stages=tuple(stages),
        skipped_stages=skipped,
        refusal=refusal,
    )
