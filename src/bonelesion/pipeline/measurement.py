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
from bonelesion.stages.config import PipelineConfig
from bonelesion.stages.ct_attenuation import measure_attenuation
from bonelesion.stages.dwi_adc import ADC_SOURCE_SCANNER, AdcMap, fit_adc, measure_adc
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
    """The volumes of one study and what its lesions share (the ADC fit, computed once)."""

    def __init__(self, volumes: StudyVolumes, config: PipelineConfig) -> None:
        self.uid = volumes.study_instance_uid
        self.config = config
        self.ct = volumes.one("ct")
        ip, op = volumes.one("dixon_in_phase"), volumes.one("dixon_opposed_phase")
        water, fat = volumes.one("dixon_water"), volumes.one("dixon_fat")
        self.dixon = (DixonImages(in_phase=ip, opposed_phase=op, water=water, fat=fat)
                      if ip is not None or op is not None or water is not None else None)
        self.scanner_adc = volumes.one("adc")
        self.dwi = volumes.by_role.get("dwi") or ()
        self._fit: AdcMap | PipelineError | None = None

    def adc_map(self) -> AdcMap | PipelineError | None:
        """Return the ADC map the lesions are measured on: the scanner map, else our fit."""
        if self.dwi:  # the plan loads DWI only when its fit is wanted
            if self._fit is None:
                try:
                    self._fit = fit_adc(self.dwi, config=self.config.stages.dwi_adc)
                except PipelineError as exc:
                    self._fit = exc
            return self._fit
        if self.scanner_adc is not None:
            return AdcMap(volume=self.scanner_adc, source=ADC_SOURCE_SCANNER)
        return None


def _measure_lesion(study: _Study, lesion: Lesion) -> LesionMeasurements:
    cfg = study.config.stages
    missing: dict[str, str] = {}
    results: dict[str, object] = {}
    lid = lesion.lesion_id
    mask_on = _mask_source(lesion)
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
        _run(MISSING_CHEMICAL_SHIFT, lambda: measure_chemical_shift(
            dixon, mask_on, config=cfg.mr_chemical_shift, lesion_id=lid),
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
        fitted = adc_map
        _run(MISSING_ADC, lambda: measure_adc(fitted, mask_on, config=cfg.dwi_adc,
                                              lesion_id=lid),
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
    ADC: a fit of the plan's DWI volumes when the plan loaded them, else the plan's scanner
    ADC map (the plan loads DWI only when no scanner map is preferred).
    """
    study = _Study(volumes, config)
    out = []
    for lesion in lesions:
        start = time.perf_counter()
        m = _measure_lesion(study, _resolve_frame(lesion, volumes))
        out.append(m)
        logger.debug("study %s lesion %s: missing %s, %.2f s", study.uid, m.lesion_id,
                     sorted(m.missing), time.perf_counter() - start)
    return out
