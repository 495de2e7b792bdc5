"""Measure the lesions of one study on the volumes its plan chose.

`measure_study(volumes, lesions, config)` puts each lesion on each role's grid (through LPS)
and runs the three stages. It chooses no series: the plan did
(`bonelesion.pipeline.selection`), and ``volumes`` holds one volume per role (the DWI
volumes of one fit set). Pure apart from logging and `DataQualityWarning`s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from bonelesion.errors import PipelineError, StageError
from bonelesion.model.results import (
    MISSING_ADC,
    MISSING_CHEMICAL_SHIFT,
    MISSING_CT,
    MISSING_FAT_FRACTION,
    LesionMeasurements,
)
from bonelesion.model.volume import Volume
from bonelesion.pipeline.loading import StudyVolumes
from bonelesion.roi.lesion import Lesion
from bonelesion.roi.sources import annotations_of
from bonelesion.stages.base import MaskSource, reference_shell
from bonelesion.stages.config import PipelineConfig
from bonelesion.stages.ct_attenuation import measure_attenuation
from bonelesion.stages.dwi_adc import AdcMap, fit_adc, measure_adc, scanner_adc_map
from bonelesion.stages.mr_chemical_shift import DixonImages, measure_chemical_shift
from bonelesion.units import IntensityUnit

__all__ = ["measure_study"]

logger = logging.getLogger(__name__)


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


def _resolve_frame(lesion: Lesion, volumes: StudyVolumes) -> Lesion:
    """Give a lesion that names its series but no frame of reference that series' frame."""
    if lesion.frame_of_reference_uid or not lesion.series_instance_uid:
        return lesion
    for _, v in volumes.all():
        if (v.series.series_instance_uid == lesion.series_instance_uid
                and v.series.frame_of_reference_uid):
            return lesion.with_frame_of_reference(v.series.frame_of_reference_uid)
    return lesion


class _Study:
    """The volumes of one study and what its lesions share (ADC fit, masks per grid)."""

    def __init__(self, volumes: StudyVolumes, lesions: Sequence[Lesion],
                 config: PipelineConfig) -> None:
        self.uid = volumes.study_instance_uid
        self.config = config
        self.lesions = tuple(lesions)
        self.ct = volumes.one("ct")
        ip, op = volumes.one("dixon_in_phase"), volumes.one("dixon_opposed_phase")
        water, fat = volumes.one("dixon_water"), volumes.one("dixon_fat")
        self.dixon = (DixonImages(in_phase=ip, opposed_phase=op, water=water, fat=fat)
                      if ip is not None or op is not None or water is not None else None)
        self.scanner_adc = volumes.one("adc")
        self.dwi = volumes.by_role.get("dwi") or ()
        self._fit: AdcMap | PipelineError | None = None
        self._masks: dict[int, Callable[[Volume], Volume]] = {}

    def mask_source(self, lesion: Lesion) -> Callable[[Volume], Volume]:
        """Return the lesion's ``mask_on``, cached (one rasterisation per grid per study)."""
        if id(lesion) not in self._masks:
            self._masks[id(lesion)] = _mask_source(lesion)
        return self._masks[id(lesion)]

    def reference_source(self, lesion: Lesion, *, gap_mm: float, width_mm: float) -> MaskSource:
        """Return the lesion's reference marrow ROI: a shell around it, other lesions out.

        Each lesion is measured on its own (ROIs may overlap); the shell leaves out every
        other lesion of the study that can be put on the grid.
        """
        mask_on = self.mask_source(lesion)

        def reference_on(target: Volume) -> Volume:
            lesion_mask = np.asarray(mask_on(target).array) != 0
            exclude = np.zeros(target.shape, dtype=bool)
            for other in self.lesions:
                if other is lesion or other.lesion_id == lesion.lesion_id:
                    continue
                try:
                    exclude |= np.asarray(self.mask_source(other)(target).array) != 0
                except PipelineError:
                    continue  # not on this grid (other frame, outside the field of view)
            shell = reference_shell(lesion_mask, target.spacing_mm, gap_mm=gap_mm,
                                    width_mm=width_mm, exclude=exclude)
            return target.with_array(shell, intensity_unit=IntensityUnit.MASK)

        return reference_on

    def adc_map(self) -> AdcMap | PipelineError | None:
        """Return the ADC map the lesions are measured on, or why there is none.

        The scanner's map when the plan chose one and the configuration prefers it
        (``stages.dwi_adc.prefer_scanner_adc``), with the study's DWI volumes for its
        b-values and low-b signal; else our fit of the DWI volumes.
        """
        cfg = self.config.stages.dwi_adc
        if self.scanner_adc is not None and (cfg.prefer_scanner_adc or not self.dwi):
            return scanner_adc_map(self.scanner_adc, self.dwi)
        if self.dwi:
            if self._fit is None:
                try:
                    self._fit = fit_adc(self.dwi, config=cfg)
                except PipelineError as exc:
                    self._fit = exc
            return self._fit
        return None


def _measure_lesion(study: _Study, lesion: Lesion) -> LesionMeasurements:
    cfg = study.config.stages
    missing: dict[str, str] = {}
    results: dict[str, object] = {}
    lid = lesion.lesion_id
    mask_on = study.mask_source(lesion)
    ct = study.ct
    if ct is None:
        missing[MISSING_CT] = "study has no CT image volume (role ct)"
    elif ct.intensity_unit != IntensityUnit.HU:
        missing[MISSING_CT] = (f"CT series {ct.series.series_instance_uid} is not in HU "
                               f"({ct.intensity_unit.value})")
    else:
        _run(MISSING_CT, lambda: measure_attenuation(
            ct, mask_on(ct), config=cfg.ct_attenuation, lesion_id=lid),
            lesion, study.uid, results, missing)
    dixon = study.dixon
    if dixon is None:
        missing[MISSING_CHEMICAL_SHIFT] = ("study has no in/opposed-phase (Dixon) images "
                                           "(roles dixon_in_phase, dixon_opposed_phase)")
    else:
        cs_cfg = cfg.mr_chemical_shift
        cs_reference = study.reference_source(lesion, gap_mm=cs_cfg.reference_shell_gap_mm,
                                              width_mm=cs_cfg.reference_shell_width_mm)
        _run(MISSING_CHEMICAL_SHIFT, lambda: measure_chemical_shift(
            dixon, mask_on, config=cs_cfg, reference_mask=cs_reference, lesion_id=lid),
            lesion, study.uid, results, missing)
    cs = results.get(MISSING_CHEMICAL_SHIFT)
    if cs is not None and getattr(cs, "fat_fraction", None) is None:
        missing[MISSING_FAT_FRACTION] = (
            "fat fraction needs Dixon water and fat images (roles dixon_water, dixon_fat); "
            + ("this study has none" if dixon is None or (dixon.water is None and dixon.fat is None)
               else "see the chemical_shift warnings"))
    adc_map = study.adc_map()
    if adc_map is None:
        missing[MISSING_ADC] = ("study has no scanner ADC map (role adc) and no DWI series "
                                "(role dwi)")
    elif isinstance(adc_map, PipelineError):
        missing[MISSING_ADC] = str(adc_map)
    else:
        measured = adc_map
        adc_reference = study.reference_source(lesion,
                                               gap_mm=cfg.dwi_adc.reference_shell_gap_mm,
                                               width_mm=cfg.dwi_adc.reference_shell_width_mm)
        _run(MISSING_ADC, lambda: measure_adc(measured, mask_on, config=cfg.dwi_adc,
                                              reference_mask=adc_reference, lesion_id=lid),
             lesion, study.uid, results, missing)
    result_warnings = [w for r in results.values() for w in getattr(r, "warnings", ())]
    return LesionMeasurements(
        study_instance_uid=study.uid,
        lesion_id=lid,
        ct=results.get(MISSING_CT),  # type: ignore[arg-type]
        chemical_shift=results.get(MISSING_CHEMICAL_SHIFT),  # type: ignore[arg-type]
        adc=results.get(MISSING_ADC),  # type: ignore[arg-type]
        missing=missing,
        annotations=annotations_of(lesion),
        warnings=tuple(result_warnings),
    )


def measure_study(
    volumes: StudyVolumes, lesions: Sequence[Lesion], config: PipelineConfig
) -> list[LesionMeasurements]:
    """Measure every lesion of one study with every stage its volumes allow.

    Parameters
    ----------
    volumes : StudyVolumes
        The study's chosen volumes by role (`bonelesion.pipeline.loading`).
    lesions : sequence of Lesion
        The study's lesions (ROIs); each is put on each role's grid through LPS.
    config : PipelineConfig
        Resolved measurement configuration.

    Returns
    -------
    list of LesionMeasurements
        One per lesion, in the given order; a feature the study cannot give is None with
        its reason in ``missing``.

    Raises
    ------
    StageError
        An unexpected (non-pipeline) failure inside a stage, naming stage, lesion and study.

    Notes
    -----
    ADC: the plan's scanner ADC map when ``stages.dwi_adc.prefer_scanner_adc`` (its
    reliability read from the study's DWI volumes), else a fit of the DWI volumes.
    """
    study = _Study(volumes, lesions, config)
    out = []
    for lesion in lesions:
        start = time.perf_counter()
        m = _measure_lesion(study, _resolve_frame(lesion, volumes))
        out.append(m)
        logger.debug("study %s lesion %s: missing %s, %.2f s", study.uid, m.lesion_id,
                     sorted(m.missing), time.perf_counter() - start)
    return out
