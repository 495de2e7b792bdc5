"""Study assembly: pick the series of each role, put each lesion on each grid, run the stages.

`measure_study(stacks, lesions, config)` is the per-study function (pure apart from logging
and `DataQualityWarning`s): the batch runner calls it once per study. The writers of
``lesions.csv`` and ``results.json`` are separate (`bonelesion.stages.output`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bonelesion.errors import InputError, PipelineError, StageError
from bonelesion.model.results import (
    MISSING_ADC,
    MISSING_CHEMICAL_SHIFT,
    MISSING_CT,
    MISSING_FAT_FRACTION,
    LesionMeasurements,
)
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.roi.lesion import Lesion
from bonelesion.roi.sources import annotations_of
from bonelesion.stages.base import MaskSource, reference_shell
from bonelesion.stages.config import PipelineConfig
from bonelesion.stages.ct_attenuation import measure_attenuation
from bonelesion.stages.dwi_adc import AdcMap, fit_adc, measure_adc, scanner_adc_map
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
    "FEATURE_FAT_FRACTION",
]

logger = logging.getLogger(__name__)

# keys of LesionMeasurements.missing: one vocabulary, defined in bonelesion.model.results
FEATURE_CT = MISSING_CT
FEATURE_CHEMICAL_SHIFT = MISSING_CHEMICAL_SHIFT
FEATURE_ADC = MISSING_ADC
#: A value inside the chemical-shift result that can be missing on its own.
FEATURE_FAT_FRACTION = MISSING_FAT_FRACTION


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
                 for n, uid in zip(self.series_numbers, self.series_instance_uids,
                                   strict=True)]
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


def _in_frame(volume: Volume, frame_of_reference_uid: str) -> bool:
    """Return True unless both the volume's and the given frame are known and differ."""
    return (not frame_of_reference_uid
            or volume.series.frame_of_reference_uid in ("", frame_of_reference_uid))


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
        numbers = tuple(
            next(v.series.series_number for v in vols if v.series.series_instance_uid == u)
            for u in uids
        )
        sets.append(DwiSet(volumes=tuple(vols), series_instance_uids=uids, series_numbers=numbers))
    return sets


def _dwi_preference(s: DwiSet) -> tuple[int, int, int]:
    directional = sum(v.series.diffusion_direction is not None for v in s.volumes)
    return (-len(s.b_values_s_per_mm2), directional, min((n or 0) for n in s.series_numbers))


def select_dixon(
    stacks: Iterable[StackLike], frame_of_reference_uid: str = ""
) -> tuple[DixonImages | None, list[str]]:
    """In/opposed-phase (and water/fat) images of one acquisition, and notes on the choice.

    Prefers an in/opposed pair from one series (a dual-echo series holds both echoes), then
    a pair in one frame of reference; water and fat in the in-phase image's frame.
    """
    notes: list[str] = []
    roles = {r: [v for v in _usable(stacks, r) if _in_frame(v, frame_of_reference_uid)]
             for r in ("dixon_in_phase", "dixon_opposed_phase", "dixon_water", "dixon_fat")}
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
    first = pair[0] if pair[0] is not None else pair[1]
    ref_for = first.series.frame_of_reference_uid if first is not None else ""
    water, fat = (
        next((v for v in vs if v.series.frame_of_reference_uid == ref_for), vs[0] if vs else None)
        for vs in (roles["dixon_water"], roles["dixon_fat"])
    )
    return DixonImages(in_phase=pair[0], opposed_phase=pair[1], water=water, fat=fat), notes


def _pick_ct(cts: list[Volume], lesion: Lesion) -> tuple[Volume, list[str]]:
    named = [v for v in cts if lesion.series_instance_uid
             and v.series.series_instance_uid == lesion.series_instance_uid]
    if named:
        return named[0], []
    cands = [v for v in cts if _in_frame(v, lesion.frame_of_reference_uid)] or cts
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
        if (s.info.series_instance_uid == lesion.series_instance_uid
                and s.info.frame_of_reference_uid):
            return lesion.with_frame_of_reference(s.info.frame_of_reference_uid)
    return lesion


@dataclass
class _StudyContext:
    """The series choices of one study, shared by its lesions (fits are cached here)."""

    study_uid: str
    stacks: Sequence[StackLike]
    config: PipelineConfig
    cts: list[Volume]
    scanner_adcs: list[Volume]
    sets: list[DwiSet]
    lesions: Sequence[Lesion] = ()
    fitted: dict[int, AdcMap | PipelineError] = field(default_factory=dict)
    masks: dict[int, Callable[[Volume], Volume]] = field(default_factory=dict)

    def mask_source(self, lesion: Lesion) -> Callable[[Volume], Volume]:
        """Return the lesion's cached ``mask_on`` (one rasterisation per grid per study)."""
        if id(lesion) not in self.masks:
            self.masks[id(lesion)] = _mask_source(lesion)
        return self.masks[id(lesion)]


def _mask_source(lesion: Lesion) -> Callable[[Volume], Volume]:
    """``lesion.mask_on``, computed once per grid: Dixon images often share one grid.

    A mask is reused only for a target of identical shape, spacing, origin, direction and
    frame of reference, so the result equals a fresh ``lesion.mask_on(target)``.
    """
    done: list[tuple[Volume, Volume]] = []

    def mask_on(target: Volume) -> Volume:
        for grid, mask in done:
            if (grid.shape == target.shape and grid.spacing_mm == target.spacing_mm
                    and grid.origin_lps_mm == target.origin_lps_mm
                    and np.array_equal(grid.direction_lps, target.direction_lps)
                    and grid.series.frame_of_reference_uid
                    == target.series.frame_of_reference_uid):
                return mask
        mask = lesion.mask_on(target)
        done.append((target, mask))
        return mask

    return mask_on


def _reference_source(ctx: _StudyContext, lesion: Lesion, *, gap_mm: float,
                      width_mm: float) -> MaskSource:
    """Return the reference marrow ROI of a lesion: a shell around it, other lesions excluded.

    Each lesion is measured on its own (ROIs may overlap); the shell leaves out every other
    lesion of the study that can be put on the grid. Masks come from the study's per-lesion
    caches, so each lesion is rasterised once per grid.
    """
    mask_on = ctx.mask_source(lesion)

    def reference_on(target: Volume) -> Volume:
        lesion_mask = np.asarray(mask_on(target).array) != 0
        exclude = np.zeros(target.shape, dtype=bool)
        for other in ctx.lesions:
            if other is lesion or other.lesion_id == lesion.lesion_id:
                continue
            try:
                exclude |= np.asarray(ctx.mask_source(other)(target).array) != 0
            except PipelineError:
                continue  # not on this grid (other frame, outside the field of view)
        shell = reference_shell(lesion_mask, target.spacing_mm, gap_mm=gap_mm,
                                width_mm=width_mm, exclude=exclude)
        return target.with_array(shell, intensity_unit=IntensityUnit.MASK)

    return reference_on


def _run(feature: str, fn: Callable[[], object], lesion: Lesion, study_uid: str,
         results: dict[str, object], missing: dict[str, str]) -> None:
    """Run one stage; a pipeline error becomes the reason the feature is missing."""
    try:
        results[feature] = fn()
    except PipelineError as exc:
        missing[feature] = str(exc)
    except Exception as exc:  # a bug, not bad data: wrap with context
        raise StageError(f"stage {feature} failed unexpectedly on lesion {lesion.lesion_id!r} "
                         f"of study {study_uid}: {exc!r}. Potential fix: report this with the "
                         "-v traceback.") from exc


def _measure_lesion(ctx: _StudyContext, lesion: Lesion) -> LesionMeasurements:
    cfg = ctx.config.stages
    missing: dict[str, str] = {}
    notes: list[str] = []
    results: dict[str, object] = {}
    lid = lesion.lesion_id
    mask_on = ctx.mask_source(lesion)
    # ---- CT
    if not ctx.cts:
        missing[FEATURE_CT] = "study has no CT stack in HU (role ct)"
    else:
        ct, ct_notes = _pick_ct(ctx.cts, lesion)
        notes += ct_notes
        _run(FEATURE_CT, lambda: measure_attenuation(
            ct, mask_on(ct), config=cfg.ct_attenuation, lesion_id=lid),
            lesion, ctx.study_uid, results, missing)
    # ---- chemical shift
    dixon, dixon_notes = select_dixon(ctx.stacks, lesion.frame_of_reference_uid)
    notes += dixon_notes
    if dixon is None:
        missing[FEATURE_CHEMICAL_SHIFT] = ("study has no in/opposed-phase (Dixon) stack "
                                           "(roles dixon_in_phase, dixon_opposed_phase)")
    else:
        cs_cfg = cfg.mr_chemical_shift
        cs_reference = _reference_source(ctx, lesion, gap_mm=cs_cfg.reference_shell_gap_mm,
                                         width_mm=cs_cfg.reference_shell_width_mm)
        _run(FEATURE_CHEMICAL_SHIFT, lambda: measure_chemical_shift(
            dixon, mask_on, config=cs_cfg, reference_mask=cs_reference, lesion_id=lid),
            lesion, ctx.study_uid, results, missing)
    cs = results.get(FEATURE_CHEMICAL_SHIFT)
    if cs is not None and getattr(cs, "fat_fraction", None) is None:
        missing[FEATURE_FAT_FRACTION] = (
            "fat fraction needs Dixon water and fat images (roles dixon_water, dixon_fat); "
            + ("this study has none" if dixon is None or (dixon.water is None and dixon.fat is None)
               else "see the chemical_shift warnings"))
    # ---- ADC
    adcs = [v for v in ctx.scanner_adcs if _in_frame(v, lesion.frame_of_reference_uid)]
    sets = [s for s in ctx.sets if _in_frame(s.volumes[0], lesion.frame_of_reference_uid)]
    adc_reference = _reference_source(ctx, lesion, gap_mm=cfg.dwi_adc.reference_shell_gap_mm,
                                      width_mm=cfg.dwi_adc.reference_shell_width_mm)
    if adcs and (cfg.dwi_adc.prefer_scanner_adc or not sets):
        if len(adcs) > 1:
            notes.append(f"{len(adcs)} scanner ADC maps; used series "
                         f"{adcs[0].series.series_instance_uid}")
        # the DWI set of the map's frame gives its b-values and the lesion's low-b signal
        scanner = scanner_adc_map(adcs[0], sets[0].volumes if sets else ())
        _run(FEATURE_ADC, lambda: measure_adc(scanner, mask_on, config=cfg.dwi_adc,
                                              reference_mask=adc_reference, lesion_id=lid),
             lesion, ctx.study_uid, results, missing)
    elif sets:
        chosen = sets[0]
        if id(chosen) not in ctx.fitted:
            try:
                ctx.fitted[id(chosen)] = fit_adc(chosen.volumes, config=cfg.dwi_adc)
            except PipelineError as exc:
                ctx.fitted[id(chosen)] = exc
        fit = ctx.fitted[id(chosen)]
        if len(sets) > 1:
            notes.append(f"{len(sets)} DWI sets; fitted series {chosen.label} "
                         f"(b {list(chosen.b_values_s_per_mm2)})")
        if isinstance(fit, PipelineError):
            missing[FEATURE_ADC] = str(fit)
        else:
            _run(FEATURE_ADC, lambda: measure_adc(fit, mask_on, config=cfg.dwi_adc,
                                                  reference_mask=adc_reference, lesion_id=lid),
                 lesion, ctx.study_uid, results, missing)
    else:
        missing[FEATURE_ADC] = ("study has no scanner ADC map (role adc) and no DWI stack "
                                "(role dwi)")
    result_warnings = [w for r in results.values() for w in getattr(r, "warnings", ())]
    return LesionMeasurements(
        study_instance_uid=ctx.study_uid,
        lesion_id=lid,
        ct=results.get(FEATURE_CT),  # type: ignore[arg-type]
        chemical_shift=results.get(FEATURE_CHEMICAL_SHIFT),  # type: ignore[arg-type]
        adc=results.get(FEATURE_ADC),  # type: ignore[arg-type]
        missing=missing,
        annotations=annotations_of(lesion),
        warnings=tuple(notes + result_warnings),
    )


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
        An unexpected (non-pipeline) failure inside a stage, naming stage, lesion and study.

    Notes
    -----
    Series choice: CT — the stack named by the lesion, else the finest grid in the lesion's
    frame; Dixon — an in/opposed pair of one series, else of one frame; ADC — the scanner map
    (if ``prefer_scanner_adc``), else a fit of the DWI set with most b-values (trace before
    directional). Each choice with alternatives is noted in the lesion's warnings.
    """
    studies = {s.info.study_instance_uid for s in stacks}
    if len(studies) > 1:
        raise InputError(f"measure_study: stacks of {len(studies)} studies given "
                         f"({', '.join(sorted(studies))}); expected one. Potential fix: group "
                         "the stacks with group_by_study first.")
    ctx = _StudyContext(
        study_uid=next(iter(studies), ""),
        stacks=stacks,
        config=config,
        cts=[v for v in _usable(stacks, "ct") if v.intensity_unit == IntensityUnit.HU],
        scanner_adcs=[v for v in _usable(stacks, "adc")
                      if v.intensity_unit == IntensityUnit.MM2_PER_S],
        sets=sorted(dwi_sets(stacks), key=_dwi_preference),
        lesions=[le for le in lesions if le.applies_to_study(next(iter(studies), ""))],
    )
    out = []
    for lesion in lesions:
        if not lesion.applies_to_study(ctx.study_uid):
            continue
        start = time.perf_counter()
        m = _measure_lesion(ctx, _resolve_frame(lesion, stacks))
        out.append(m)
        logger.info("study %s lesion %s: missing %s, %.2f s", ctx.study_uid, m.lesion_id,
                    sorted(m.missing), time.perf_counter() - start)
    return out
