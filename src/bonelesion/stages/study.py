"""Study assembly: pick the series of each role, put each lesion on each grid, run the stages.

`measure_study(stacks, lesions, config)` is the per-study function (pure apart from logging
and `DataQualityWarning`s): the batch runner calls it once per study. The writers of
``lesions.csv`` and ``results.json`` are separate (`bonelesion.stages.output`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bonelesion.errors import InputError, PipelineError, StageError
from bonelesion.model.results import LesionMeasurements
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.roi.lesion import Lesion
from bonelesion.stages.config import PipelineConfig
from bonelesion.stages.ct_attenuation import measure_attenuation
from bonelesion.stages.dwi_adc import ADC_SOURCE_SCANNER, AdcMap, fit_adc, measure_adc
from bonelesion.stages.mr_chemical_shift import DixonImages, measure_chemical_shift
from bonelesion.units import IntensityUnit

__all__ = [
    "StackLike",
    "DwiSet",
    "measure_study",
    "group_by_study",
    "dwi_sets",
    "select_dixon",
    "FEATURE_CT",
    "FEATURE_CHEMICAL_SHIFT",
    "FEATURE_ADC",
]

logger = logging.getLogger(__name__)

FEATURE_CT = "ct"
FEATURE_CHEMICAL_SHIFT = "chemical_shift"
FEATURE_ADC = "adc"


class StackLike(Protocol):
    """What the study assembly needs of a loaded stack (`bonelesion.dicom.series.Stack`)."""

    @property
    def info(self) -> SeriesInfo:
        """Identifiers, role and acquisition values of the stack."""

    @property
    def volume(self) -> Volume | None:
        """The stack's voxels, or None when the reader refused it."""


@dataclass(frozen=True, kw_only=True)
class DwiSet:
    """DWI volumes of one acquisition on one grid, to be fitted together."""

    volumes: tuple[Volume, ...]
    series_instance_uids: tuple[str, ...]
    series_numbers: tuple[int | None, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def b_values_s_per_mm2(self) -> tuple[float, ...]:
        """Distinct b-values, sorted."""
        return tuple(sorted({float(v.series.b_value_s_per_mm2) for v in self.volumes
                             if v.series.b_value_s_per_mm2 is not None}))

    @property
    def label(self) -> str:
        """Short name: series numbers (or UIDs) joined by '+'."""
        parts = [str(n) if n is not None else uid[-8:]
                 for n, uid in zip(self.series_numbers, self.series_instance_uids)]
        return "+".join(parts)


def group_by_study(stacks: Iterable[StackLike]) -> dict[str, list[StackLike]]:
    """Stacks grouped by StudyInstanceUID (insertion order kept)."""
    out: dict[str, list[StackLike]] = {}
    for stack in stacks:
        out.setdefault(stack.info.study_instance_uid, []).append(stack)
    return out


def _usable(stacks: Iterable[StackLike], role: str) -> list[Volume]:
    vols = [s.volume for s in stacks if s.info.role == role and s.volume is not None]
    return sorted(vols, key=lambda v: (v.series.series_number or 0, v.series.series_instance_uid))


def dwi_sets(stacks: Iterable[StackLike]) -> list[DwiSet]:
    """Group DWI stacks into fit sets.

    A series holding two or more b-values is its own set (split by grid if needed); series
    holding one b-value each (e.g. a scanner's b = 0 and trace series) are combined when
    they share frame of reference and grid.
    """
    by_series: dict[str, list[Volume]] = {}
    for vol in _usable(stacks, "dwi"):
        if vol.series.b_value_s_per_mm2 is None:
            continue
        by_series.setdefault(vol.series.series_instance_uid, []).append(vol)
    multi: list[list[Volume]] = []
    single: list[list[Volume]] = []
    for vols in by_series.values():
        distinct = {round(float(v.series.b_value_s_per_mm2 or 0.0)) for v in vols}
        (multi if len(distinct) >= 2 else single).append(vols)

    def cluster(groups: list[list[Volume]]) -> list[list[Volume]]:
        clusters: list[list[Volume]] = []
        for vols in groups:
            for vol in vols:
                for c in clusters:
                    ref = c[0]
                    if (ref.series.frame_of_reference_uid == vol.series.frame_of_reference_uid
                            and ref.geometry_equal(vol)):
                        c.append(vol)
                        break
                else:
                    clusters.append([vol])
        return clusters

    out = []
    for vols in multi:
        out.extend(cluster([vols]))
    out.extend(cluster(single))
    sets = []
    for vols in out:
        uids = tuple(dict.fromkeys(v.series.series_instance_uid for v in vols))
        numbers = tuple(next(v.series.series_number for v in vols if v.series.series_instance_uid == u)
                        for u in uids)
        sets.append(DwiSet(volumes=tuple(vols), series_instance_uids=uids, series_numbers=numbers))
    return sets


def _dwi_preference(s: DwiSet) -> tuple[int, int, int]:
    directional = sum(v.series.diffusion_direction is not None for v in s.volumes)
    return (-len(s.b_values_s_per_mm2), directional, min((n or 0) for n in s.series_numbers))


def select_dixon(stacks: Iterable[StackLike], frame_of_reference_uid: str = "") -> tuple[DixonImages | None, list[str]]:
    """In/opposed-phase (and water/fat) images of one acquisition, and notes on the choice.

    Prefers an in/opposed pair from one series (a dual-echo series holds both echoes), then
    a pair in one frame of reference; water and fat in the in-phase image's frame.
    """
    notes: list[str] = []
    roles = {r: _usable(stacks, r) for r in
             ("dixon_in_phase", "dixon_opposed_phase", "dixon_water", "dixon_fat")}
    if frame_of_reference_uid:
        roles = {r: [v for v in vs if v.series.frame_of_reference_uid in ("", frame_of_reference_uid)]
                 for r, vs in roles.items()}
    ips, ops = roles["dixon_in_phase"], roles["dixon_opposed_phase"]
    if not ips and not ops and not roles["dixon_water"]:
        return None, notes
    pair: tuple[Volume | None, Volume | None] = (ips[0] if ips else None, ops[0] if ops else None)
    for ip in ips:
        same = [op for op in ops if op.series.series_instance_uid == ip.series.series_instance_uid]
        if same:
            pair = (ip, same[0])
            break
    else:
        for ip in ips:
            same_for = [op for op in ops
                        if op.series.frame_of_reference_uid == ip.series.frame_of_reference_uid]
            if same_for:
                pair = (ip, same_for[0])
                break
    if len(ips) > 1 or len(ops) > 1:
        notes.append(f"{len(ips)} in-phase and {len(ops)} opposed-phase stacks; used series "
                     f"{pair[0].series.series_instance_uid if pair[0] else '-'} / "
                     f"{pair[1].series.series_instance_uid if pair[1] else '-'}")
    ref_for = (pair[0] or pair[1]).series.frame_of_reference_uid if (pair[0] or pair[1]) else ""
    water = next((v for v in roles["dixon_water"] if v.series.frame_of_reference_uid == ref_for),
                 roles["dixon_water"][0] if roles["dixon_water"] else None)
    fat = next((v for v in roles["dixon_fat"] if v.series.frame_of_reference_uid == ref_for),
               roles["dixon_fat"][0] if roles["dixon_fat"] else None)
    return DixonImages(in_phase=pair[0], opposed_phase=pair[1], water=water, fat=fat), notes


def _pick_ct(cts: list[Volume], lesion: Lesion) -> tuple[Volume, list[str]]:
    named = [v for v in cts if lesion.series_instance_uid
             and v.series.series_instance_uid == lesion.series_instance_uid]
    if named:
        return named[0], []
    cands = [v for v in cts if not lesion.frame_of_reference_uid
             or v.series.frame_of_reference_uid in ("", lesion.frame_of_reference_uid)] or cts
    # the finest grid resolves the lesion best
    chosen = min(cands, key=lambda v: (v.voxel_volume_mm3, -v.shape[0]))
    notes = []
    if len(cands) > 1:
        notes.append(f"{len(cands)} CT stacks; used series {chosen.series.series_instance_uid} "
                     f"(smallest voxel, {chosen.voxel_volume_mm3:.3g} mm³)")
    return chosen, notes


def _resolve_frame(lesion: Lesion, stacks: Sequence[StackLike]) -> Lesion:
    if lesion.frame_of_reference_uid or not lesion.series_instance_uid:
        return lesion
    for s in stacks:
        if s.info.series_instance_uid == lesion.series_instance_uid and s.info.frame_of_reference_uid:
            return lesion.with_frame_of_reference(s.info.frame_of_reference_uid)
    return lesion


def measure_study(
    stacks: Sequence[StackLike], lesions: Sequence[Lesion], config: PipelineConfig
) -> list[LesionMeasurements]:
    """Measure every lesion that applies to this study with every stage the study allows.

    Parameters
    ----------
    stacks : sequence of Stack
        The loaded stacks of one study (``.info`` with role, ``.volume``).
    lesions : sequence of Lesion
        All lesions; those restricted to another study are skipped.
    config : PipelineConfig

    Returns
    -------
    list of LesionMeasurements
        One per applicable lesion; a feature the study cannot give is None with its reason in
        ``missing``.

    Raises
    ------
    InputError
        Stacks of more than one study.
    StageError
        An unexpected (non-pipeline) failure inside a stage, naming stage, lesion and series.
    """
    studies = {s.info.study_instance_uid for s in stacks}
    if len(studies) > 1:
        raise InputError(f"measure_study: stacks of {len(studies)} studies given "
                         f"({', '.join(sorted(studies))}); expected one. Potential fix: group "
                         "the stacks with group_by_study first.")
    study_uid = next(iter(studies), "")
    cfg = config.stages
    cts = [v for v in _usable(stacks, "ct") if v.intensity_unit == IntensityUnit.HU]
    scanner_adcs = [v for v in _usable(stacks, "adc") if v.intensity_unit == IntensityUnit.MM2_PER_S]
    sets = sorted(dwi_sets(stacks), key=_dwi_preference)
    fitted: dict[int, AdcMap | PipelineError] = {}
    out = []
    for lesion in lesions:
        if not lesion.applies_to_study(study_uid):
            continue
        lesion = _resolve_frame(lesion, stacks)
        start = time.perf_counter()
        missing: dict[str, str] = {}
        notes: list[str] = []
        results: dict[str, object] = {}

        def run(feature: str, fn: object) -> None:
            try:
                results[feature] = fn()  # type: ignore[operator]
            except PipelineError as exc:
                missing[feature] = str(exc)
            except Exception as exc:  # a bug, not bad data: wrap with context
                raise StageError(f"stage {feature} failed unexpectedly on lesion "
                                 f"{lesion.lesion_id!r} of study {study_uid}: {exc!r}") from exc

        # ---- CT
        if not cts:
            missing[FEATURE_CT] = "study has no CT stack in HU (role ct)"
        else:
            ct, ct_notes = _pick_ct(cts, lesion)
            notes += ct_notes
            run(FEATURE_CT, lambda ct=ct: measure_attenuation(
                ct, lesion.mask_on(ct), config=cfg.ct_attenuation, lesion_id=lesion.lesion_id))
        # ---- chemical shift
        dixon, dixon_notes = select_dixon(stacks, lesion.frame_of_reference_uid)
        notes += dixon_notes
        if dixon is None:
            missing[FEATURE_CHEMICAL_SHIFT] = ("study has no in/opposed-phase (Dixon) stack "
                                               "(roles dixon_in_phase, dixon_opposed_phase)")
        else:
            run(FEATURE_CHEMICAL_SHIFT, lambda d=dixon: measure_chemical_shift(
                d, lesion.mask_on, config=cfg.mr_chemical_shift, lesion_id=lesion.lesion_id))
        # ---- ADC
        adcs = [v for v in scanner_adcs if not lesion.frame_of_reference_uid
                or v.series.frame_of_reference_uid in ("", lesion.frame_of_reference_uid)]
        cand_sets = [s for s in sets if not lesion.frame_of_reference_uid or
                     s.volumes[0].series.frame_of_reference_uid in ("", lesion.frame_of_reference_uid)]
        if adcs and (cfg.dwi_adc.prefer_scanner_adc or not cand_sets):
            if len(adcs) > 1:
                notes.append(f"{len(adcs)} scanner ADC maps; used series "
                             f"{adcs[0].series.series_instance_uid}")
            run(FEATURE_ADC, lambda a=adcs[0]: measure_adc(
                AdcMap(volume=a, source=ADC_SOURCE_SCANNER), lesion.mask_on,
                config=cfg.dwi_adc, lesion_id=lesion.lesion_id))
        elif cand_sets:
            chosen = cand_sets[0]
            key = id(chosen)
            if key not in fitted:
                try:
                    fitted[key] = fit_adc(chosen.volumes, config=cfg.dwi_adc)
                except PipelineError as exc:
                    fitted[key] = exc
            fit = fitted[key]
            if len(cand_sets) > 1:
                notes.append(f"{len(cand_sets)} DWI sets; fitted series {chosen.label} "
                             f"(b {list(chosen.b_values_s_per_mm2)})")
            if isinstance(fit, PipelineError):
                missing[FEATURE_ADC] = str(fit)
            else:
                run(FEATURE_ADC, lambda f=fit: measure_adc(
                    f, lesion.mask_on, config=cfg.dwi_adc, lesion_id=lesion.lesion_id))
        else:
            missing[FEATURE_ADC] = "study has no scanner ADC map (role adc) and no DWI stack (role dwi)"
        result_warnings = [w for r in results.values() for w in getattr(r, "warnings", ())]
        annotations = {"treated": lesion.treated, **dict(lesion.annotations)}
        out.append(LesionMeasurements(
            study_instance_uid=study_uid,
            lesion_id=lesion.lesion_id,
            ct=results.get(FEATURE_CT),  # type: ignore[arg-type]
            chemical_shift=results.get(FEATURE_CHEMICAL_SHIFT),  # type: ignore[arg-type]
            adc=results.get(FEATURE_ADC),  # type: ignore[arg-type]
            missing=missing,
            annotations=annotations,
            warnings=tuple(notes + result_warnings),
        ))
        logger.info("study %s lesion %s: measured %s, missing %s in %.2f s", study_uid,
                    lesion.lesion_id, sorted(results), sorted(missing), time.perf_counter() - start)
    return out

