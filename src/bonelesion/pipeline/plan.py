"""What a study plan is made of: candidate stacks, role choices, the plan (plain records).

The records are picklable plain data, built from the catalogue of an export
(`bonelesion.pipeline.inventory`) and filled by the one series-selection policy
(`bonelesion.pipeline.selection`). Every choice is recorded with the candidates seen and why
one won, so a report can say "3 CT series; chose 1.0 mm bone kernel over 5.0 mm soft".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StackCandidate", "RoleChoice", "StudyPlan", "ChoiceStatus"]


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
    mtime, or a content hash) define the exact input for the results-store key. The grid
    fields (``frame_of_reference_uid``, ``image_orientation_lps``, ``rows``, ``columns``,
    ``pixel_spacing_mm``) are those of the stack's first image; None when unknown.
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
    n_frames: int | None = None
    sop_class_uid: str = ""
    frame_of_reference_uid: str = ""
    image_orientation_lps: tuple[float, ...] | None = None
    rows: int | None = None
    columns: int | None = None
    pixel_spacing_mm: tuple[float, ...] | None = None

    @property
    def label(self) -> str:
        """Short identification for records and logs (no patient identifier)."""
        return f"series {self.series_instance_uid} stack {self.stack_key}"

    @property
    def slice_count(self) -> int:
        """Number of images (frames) in the stack: ``n_frames``, else one per file."""
        return self.n_frames if self.n_frames is not None else len(self.files)


@dataclass(frozen=True, kw_only=True)
class RoleChoice:
    """How one role of a study was filled.

    ``excluded`` lists candidates of the role's modality and stack role that the policy never
    considers for measuring (a localizer, a screen capture …), each with the reason.
    """

    role: str
    status: str
    chosen: tuple[StackCandidate, ...] = ()
    candidates: tuple[str, ...] = ()
    reason: str = ""
    excluded: tuple[tuple[str, str], ...] = ()

    @property
    def series_instance_uid(self) -> str:
        """UID of the (first) chosen series ("" when missing)."""
        return self.chosen[0].series_instance_uid if self.chosen else ""

    @property
    def used(self) -> bool:
        """True when a stack was chosen (the stages read it)."""
        return bool(self.chosen)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (UIDs only)."""
        return {
            "role": self.role,
            "status": self.status,
            "series_instance_uids": list(dict.fromkeys(c.series_instance_uid
                                                       for c in self.chosen)),
            "stack_keys": [c.stack_key for c in self.chosen],
            "candidates": list(self.candidates),
            "excluded": [{"candidate": c, "reason": r} for c, r in self.excluded],
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
        """Every stack the stages read, in role order, each once."""
        seen: dict[tuple[str, str], StackCandidate] = {}
        for c in self.choices:
            if not c.used:
                continue
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
