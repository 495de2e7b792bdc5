"""Measure the lesions of one study on the volumes its plan chose.

`measure_study(volumes, lesions, config)` puts each lesion on each role's grid (through LPS)
and runs the three stages. It chooses no series: the plan did
(`bonelesion.pipeline.selection`), and ``volumes`` holds one volume per role (the DWI
volumes of one fit set). Pure apart from logging and `DataQualityWarning`s.

Per-lesion work is done on the lesion, not the volume: each role's volume is cropped to the
lesion's bounding box on its grid plus a margin (`lesion_margin_voxels`), and the stages get
the crop (a view, no copy) and the lesion's mask on the crop. The results are those of the
whole volumes, number for number: the stages' statistics run over the same voxels in the
same order, and erosion treats voxels beyond the crop as background, as the lesion's own
mask is there. ``measure_study(..., crop=False)`` keeps the whole-volume computation (for
the tests that pin this equality).
"""

from __future__ import annotations

import dataclasses
import logging
import math
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
from bonelesion.model.volume import IndexBox, Volume
from bonelesion.pipeline.loading import StudyVolumes
from bonelesion.roi.lesion import Lesion
from bonelesion.roi.sources import annotations_of
from bonelesion.stages.base import (
    MaskSource,
    NoiseEstimate,
    background_noise_sd,
    reference_shell,
)
from bonelesion.stages.config import (
    ChemicalShiftConfig,
    CtAttenuationConfig,
    DwiAdcConfig,
    PipelineConfig,
)
from bonelesion.stages.ct_attenuation import measure_attenuation
from bonelesion.stages.dwi_adc import (
    AdcMap,
    adc_map_degenerate,
    fit_adc,
    measure_adc,
    scanner_adc_map,
)
from bonelesion.stages.mr_chemical_shift import DixonImages, measure_chemical_shift
from bonelesion.units import IntensityUnit

__all__ = ["measure_study", "lesion_margin_voxels"]

logger = logging.getLogger(__name__)

def lesion_margin_voxels(
    volume: Volume, *, erosion_margin_voxels: int, erosion_margin_mm: float | None,
    context_mm: float = 0.0,
) -> tuple[int, int, int]:
    """Voxels kept around a lesion's bounding box on ``volume``, per axis.

    The stage's erosion radius (``erosion_margin_mm`` per axis, else
    ``erosion_margin_voxels``) rounded up, one voxel, and ``context_mm``: the reach of what
    a stage measures around the lesion (its reference-marrow shell, gap + width).
    """
    if erosion_margin_mm is not None:
        radii = [float(erosion_margin_mm) / s for s in volume.spacing_mm]
    else:
        radii = [float(erosion_margin_voxels)] * 3
    context = volume.margin_voxels(context_mm) if context_mm > 0 else (0, 0, 0)
    return tuple(int(math.ceil(r)) + 1 + c  # type: ignore[return-value]
                 for r, c in zip(radii, context, strict=True))


def _same_grid(a: Volume, b: Volume) -> bool:
    """Identical shape, spacing, origin, direction and frame of reference (no tolerance)."""
    return (a.shape == b.shape and a.spacing_mm == b.spacing_mm
            and a.origin_lps_mm == b.origin_lps_mm
            and np.array_equal(a.direction_lps, b.direction_lps)
            and a.series.frame_of_reference_uid == b.series.frame_of_reference_uid)


class _LesionOnGrids:
    """One lesion put on the study's grids: crops of the volumes and the masks on them.

    ``image(volume, margin)`` returns what a stage measures the lesion on: the crop of
    ``volume`` around the lesion (``crop=True``) or ``volume`` itself. ``mask_on`` (a stage
    `MaskSource`) returns the lesion's mask on such an image. A lesion whose box cannot be
    made on a grid (another frame of reference, outside the field of view) gets the whole
    volume there, so the stage meets the error `Lesion.mask_on` raises, at the same point
    as without cropping. Masks are computed once per grid (Dixon images often share one).
    """

    def __init__(self, lesion: Lesion, *, crop: bool) -> None:
        self.lesion = lesion
        self.crop = crop
        self._boxes: dict[int, tuple[Volume, IndexBox, Volume]] = {}  # id(crop) → parent, box
        self._masks: list[tuple[Volume, Volume]] = []

    def image(self, volume: Volume, margin_voxels: tuple[int, int, int]) -> Volume:
        if not self.crop:
            return volume
        try:
            box = self.lesion.box_on(volume, margin_voxels=margin_voxels)
        except PipelineError:
            return volume  # the stage's mask_on call raises it again, where it would
        if box.is_empty:
            return volume
        cropped = volume.crop(box)
        self._boxes[id(cropped)] = (volume, box, cropped)
        return cropped

    def parent_of(self, target: Volume) -> tuple[Volume, IndexBox] | None:
        """Return the volume and box a crop made by `image` was cut from (None if none)."""
        boxed = self._boxes.get(id(target))
        if boxed is not None and boxed[2] is target:
            return boxed[0], boxed[1]
        return None

    def mask_on(self, target: Volume) -> Volume:
        for grid, mask in self._masks:
            if _same_grid(grid, target):
                return mask
        boxed = self._boxes.get(id(target))
        if boxed is not None and boxed[2] is target:
            parent, box, _ = boxed
            array = self.lesion.mask_in_box(parent, box)
            if not array.any():
                self.lesion.mask_on(parent)  # raises EmptyMaskError naming the series
            mask = target.with_array(array, intensity_unit=IntensityUnit.MASK)
        else:
            mask = self.lesion.mask_on(target)
        self._masks.append((target, mask))
        return mask


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
    """The volumes of one study and what its lesions share (the ADC fit, lesion boxes)."""

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
        self._scanner: AdcMap | None = None
        self._boxes: dict[tuple[int, int], IndexBox | None] = {}
        self._noise: dict[tuple[int, float, int], tuple[Volume, float | None]] = {}

    def adc_map(self) -> AdcMap | PipelineError | None:
        """Return the ADC map the lesions are measured on, or why there is none.

        The scanner's map when the plan chose one and the configuration prefers it
        (``stages.dwi_adc.prefer_scanner_adc``), with the study's DWI volumes for its
        b-values and low-b signal; else our fit of the DWI volumes.
        """
        cfg = self.config.stages.dwi_adc
        if self.scanner_adc is not None and (cfg.prefer_scanner_adc or not self.dwi):
            if self._scanner is None:  # judged degenerate on the whole map, not on a crop
                scanner = scanner_adc_map(self.scanner_adc, self.dwi)
                self._scanner = dataclasses.replace(scanner, degenerate=adc_map_degenerate(
                    scanner.volume, tolerance_mm2_per_s=cfg.degenerate_max_abs_mm2_per_s))
            return self._scanner
        if self.dwi:
            if self._fit is None:
                try:
                    self._fit = fit_adc(self.dwi, config=cfg)
                except PipelineError as exc:
                    self._fit = exc
            return self._fit
        return None

    def noise_source(self, grids: _LesionOnGrids, *, background_fraction: float,
                     min_voxels: int) -> NoiseEstimate:
        """Return the stages' noise estimate: the background of the whole image, per study.

        A crop around a lesion holds little or no air; the noise SD is that of the image
        the crop was cut from, estimated once for all the lesions of the study.
        """

        def noise_of(target: Volume) -> float | None:
            parent = grids.parent_of(target)
            whole = target if parent is None else parent[0]
            key = (id(whole), float(background_fraction), int(min_voxels))
            hit = self._noise.get(key)
            if hit is None or hit[0] is not whole:
                sd = background_noise_sd(np.asarray(whole.array),
                                         background_fraction=background_fraction,
                                         min_voxels=min_voxels)
                hit = self._noise[key] = (whole, sd)
            return hit[1]

        return noise_of

    def _box(self, lesion: Lesion, grid: Volume) -> IndexBox | None:
        """Return a lesion's bounding box on a grid (no margin; None off it), cached."""
        key = (id(lesion), id(grid))
        if key not in self._boxes:
            try:
                box = lesion.box_on(grid, margin_voxels=(0, 0, 0))
            except PipelineError:
                box = None
            self._boxes[key] = None if box is None or box.is_empty else box
        return self._boxes[key]

    def reference_source(self, lesion: Lesion, grids: _LesionOnGrids, *, gap_mm: float,
                         width_mm: float) -> MaskSource:
        """Return the lesion's reference marrow ROI: a shell around it, other lesions out.

        Each lesion is measured on its own (ROIs may overlap); the shell leaves out every
        other lesion of the study on the grid. On a crop, only the lesions whose boxes meet
        the crop are put on it, so the cost does not grow with the square of the lesions.
        """

        def reference_on(target: Volume) -> Volume:
            lesion_mask = np.asarray(grids.mask_on(target).array) != 0
            exclude = np.zeros(target.shape, dtype=bool)
            parent = grids.parent_of(target)
            for other in self.lesions:
                if other is lesion or other.lesion_id == lesion.lesion_id:
                    continue
                try:
                    if parent is None:
                        exclude |= np.asarray(other.mask_on(target).array) != 0
                        continue
                    grid, box = parent
                    other_box = self._box(other, grid)
                    if other_box is not None and other_box.intersects(box):
                        exclude |= other.mask_in_box(grid, box)
                except PipelineError:
                    continue  # not on this grid (other frame, outside the field of view)
            shell = reference_shell(lesion_mask, target.spacing_mm, gap_mm=gap_mm,
                                    width_mm=width_mm, exclude=exclude)
            return target.with_array(shell, intensity_unit=IntensityUnit.MASK)

        return reference_on


def _margin(volume: Volume, cfg: CtAttenuationConfig | ChemicalShiftConfig | DwiAdcConfig
            ) -> tuple[int, int, int]:
    context = (cfg.reference_shell_gap_mm + cfg.reference_shell_width_mm
               if isinstance(cfg, ChemicalShiftConfig | DwiAdcConfig) else 0.0)
    return lesion_margin_voxels(volume, erosion_margin_voxels=cfg.erosion_margin_voxels,
                                erosion_margin_mm=cfg.erosion_margin_mm, context_mm=context)


def _dixon_on(grids: _LesionOnGrids, dixon: DixonImages, cfg: ChemicalShiftConfig
              ) -> DixonImages:
    def on(volume: Volume | None) -> Volume | None:
        return None if volume is None else grids.image(volume, _margin(volume, cfg))

    return DixonImages(in_phase=on(dixon.in_phase), opposed_phase=on(dixon.opposed_phase),
                       water=on(dixon.water), fat=on(dixon.fat))


def _measure_lesion(study: _Study, lesion: Lesion, *, crop: bool) -> LesionMeasurements:
    cfg = study.config.stages
    missing: dict[str, str] = {}
    results: dict[str, object] = {}
    lid = lesion.lesion_id
    grids = _LesionOnGrids(lesion, crop=crop)
    ct = study.ct
    if ct is None:
        missing[MISSING_CT] = "study has no CT image volume (role ct)"
    elif ct.intensity_unit != IntensityUnit.HU:
        missing[MISSING_CT] = (f"CT series {ct.series.series_instance_uid} is not in HU "
                               f"({ct.intensity_unit.value})")
    else:
        ct_cfg = cfg.ct_attenuation

        def ct_stage() -> object:
            image = grids.image(ct, _margin(ct, ct_cfg))
            return measure_attenuation(image, grids.mask_on(image), config=ct_cfg,
                                       lesion_id=lid)

        _run(MISSING_CT, ct_stage, lesion, study.uid, results, missing)
    dixon = study.dixon
    if dixon is None:
        missing[MISSING_CHEMICAL_SHIFT] = ("study has no in/opposed-phase (Dixon) images "
                                           "(roles dixon_in_phase, dixon_opposed_phase)")
    else:
        cs_cfg = cfg.mr_chemical_shift
        cs_reference = study.reference_source(lesion, grids,
                                              gap_mm=cs_cfg.reference_shell_gap_mm,
                                              width_mm=cs_cfg.reference_shell_width_mm)
        _run(MISSING_CHEMICAL_SHIFT, lambda: measure_chemical_shift(
            _dixon_on(grids, dixon, cs_cfg), grids.mask_on, config=cs_cfg,
            reference_mask=cs_reference, lesion_id=lid,
            noise_sd=study.noise_source(
                grids, background_fraction=cs_cfg.noise_background_fraction,
                min_voxels=cs_cfg.noise_min_background_voxels)),
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
        adc_cfg = cfg.dwi_adc
        adc_reference = study.reference_source(lesion, grids,
                                               gap_mm=adc_cfg.reference_shell_gap_mm,
                                               width_mm=adc_cfg.reference_shell_width_mm)

        def adc_stage() -> object:
            image = grids.image(measured.volume, _margin(measured.volume, adc_cfg))
            sources = tuple(grids.image(v, _margin(v, adc_cfg))
                            for v in measured.source_images)
            return measure_adc(dataclasses.replace(measured, volume=image,
                                                   source_images=sources),
                               grids.mask_on, config=adc_cfg, reference_mask=adc_reference,
                               lesion_id=lid,
                               noise_sd=study.noise_source(
                                   grids, background_fraction=adc_cfg.noise_background_fraction,
                                   min_voxels=adc_cfg.noise_min_background_voxels))

        _run(MISSING_ADC, adc_stage, lesion, study.uid, results, missing)
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
    volumes: StudyVolumes,
    lesions: Sequence[Lesion],
    config: PipelineConfig,
    *,
    crop: bool = True,
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
    crop : bool
        Measure each lesion on crops of the volumes around it (default; cost scales with
        the lesions, not the volumes). False measures on the whole volumes: the same
        results, number for number, much slower; kept for the tests that pin the equality.

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
        m = _measure_lesion(study, _resolve_frame(lesion, volumes), crop=crop)
        out.append(m)
        logger.debug("study %s lesion %s: missing %s, %.2f s", study.uid, m.lesion_id,
                     sorted(m.missing), time.perf_counter() - start)
    return out
