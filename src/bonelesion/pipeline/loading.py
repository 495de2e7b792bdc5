"""Load the stacks a study plan chose: the volumes the stages read, by role.

Each chosen series is read once (a Dixon or DWI series holds several chosen stacks) and only
its planned files are read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.errors import SeriesSelectionError
from bonelesion.model.volume import Volume
from bonelesion.pipeline.plan import StackCandidate, StudyPlan

__all__ = ["StudyVolumes", "load_study_volumes"]

#: ``stage(name, series_uid)``: a context manager attributing failures (see `run_study`).
StageContext = Callable[[str, str], AbstractContextManager[Any]]


@dataclass(frozen=True, kw_only=True)
class StudyVolumes:
    """The volumes of one study that the stages read.

    ``by_role`` maps a role (``ct``, ``dixon_in_phase`` …, ``dwi``, ``adc``) to its volumes:
    one for every role but ``dwi``, whose volumes (one per b-value and direction) are fitted
    together.
    """

    study_instance_uid: str
    by_role: Mapping[str, tuple[Volume, ...]] = field(default_factory=dict)

    def one(self, role: str) -> Volume | None:
        """Return the volume of a single-volume role (None when the study has none)."""
        vols = self.by_role.get(role) or ()
        return vols[0] if vols else None

    def all(self) -> list[tuple[str, Volume]]:
        """Every (role, volume) pair, roles in plan order."""
        return [(role, v) for role, vols in self.by_role.items() for v in vols]


def _no_stage(_name: str, _series: str) -> AbstractContextManager[Any]:
    return nullcontext()


def _pick_stack(stacks: list[Any], cand: StackCandidate) -> Any:
    """Find the loaded stack the plan chose (by stack key, else by its files, else by role)."""
    same = [s for s in stacks if s.info.series_instance_uid == cand.series_instance_uid]
    wanted_files = {str(Path(f).resolve()) for f in cand.files}
    for match in (
        lambda s: str(s.key) == cand.stack_key,
        lambda s: {str(Path(f).resolve()) for f in s.files} == wanted_files,
        lambda s: s.info.role == cand.role,
    ):
        found = [s for s in same if match(s)]
        if len(found) == 1:
            found[0].raise_if_refused()
            return found[0]
    raise SeriesSelectionError(
        f"Series {cand.series_instance_uid}: stack {cand.stack_key!r} (role {cand.role}) not found "
        f"among the {len(same)} stacks the reader made of its files. Potential fix: re-index the "
        "export (files may have changed since indexing)."
    )


def load_study_volumes(plan: StudyPlan, *, stage: StageContext = _no_stage,
                       tilt: str = "refuse",
                       on_loaded: Callable[[str, Volume], None] | None = None) -> StudyVolumes:
    """Read the stacks ``plan`` chose for the roles the stages use.

    Parameters
    ----------
    plan : StudyPlan
        The study's plan (`bonelesion.pipeline.selection.plan_study`).
    stage : callable, optional
        ``stage("load", series_uid)`` wraps the reading of each series, so a failure is
        attributed to it.
    tilt : {"refuse", "resample"}
        A gantry-tilted CT stack: refused, or resampled onto an orthogonal grid (the
        pipeline's ``tilt``).
    on_loaded : callable, optional
        ``on_loaded(role, volume)`` as soon as a role's first volume is read, before the
        next series is (the per-study run starts the CT's vertebra labelling there, while
        the MR series load).

    Returns
    -------
    StudyVolumes

    Raises
    ------
    InputError
        A chosen stack the reader refuses (its message names the series and the reason).
    """
    from bonelesion.dicom.series import load_series

    cache: dict[str, list[Any]] = {}
    by_role: dict[str, list[Volume]] = {}
    for choice in plan.choices:
        if not choice.used:
            continue
        for cand in choice.chosen:
            with stage("load", cand.series_instance_uid):
                if cand.series_instance_uid not in cache:
                    files = sorted({f for c in plan.inputs
                                    if c.series_instance_uid == cand.series_instance_uid
                                    for f in c.files})
                    cache[cand.series_instance_uid] = load_series(files, tilt=tilt)
                loaded = cache[cand.series_instance_uid]
                if choice.role == "dwi":
                    # a DWI series plays the role whole (one stack per b-value/direction):
                    # every stack the reader made of it with that role, as the index did
                    stacks = [s for s in loaded
                              if s.info.series_instance_uid == cand.series_instance_uid
                              and s.info.role == "dwi"] or [_pick_stack(loaded, cand)]
                else:
                    stacks = [_pick_stack(loaded, cand)]
                volumes = by_role.setdefault(choice.role, [])
                for stack in stacks:
                    stack.raise_if_refused()
                    if all(stack.volume is not v for v in volumes):
                        volumes.append(stack.volume)
                        if on_loaded is not None and len(volumes) == 1:
                            on_loaded(choice.role, stack.volume)
    return StudyVolumes(study_instance_uid=plan.study_instance_uid,
                        by_role={r: tuple(v) for r, v in by_role.items()})
