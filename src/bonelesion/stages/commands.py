"""Library side of the ``measure`` and ``adc`` commands (the CLI only parses arguments)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion.errors import InputError, PipelineError
from bonelesion.model.results import LesionMeasurements
from bonelesion.stages.config import PipelineConfig, load_config
from bonelesion.stages.dwi_adc import fit_adc
from bonelesion.stages.output import write_lesions_csv, write_nifti, write_results_json
from bonelesion.stages.study import dwi_sets, group_by_study, measure_study

__all__ = ["MeasureSummary", "AdcSummary", "StudyCallback", "measure_export", "fit_export_adc"]

logger = logging.getLogger(__name__)

#: ``on_study(study_instance_uid, stacks, lesions, measurements)``: called by `measure_export`
#: once per study, right after measuring it, with the study's loaded stacks (volumes
#: included), all ROI lesions and the study's measurements. The stacks are released when it
#: returns, so a callback that renders from them (QC images, DICOM SEG/SR) needs no second
#: read of the export; it should not keep references to the volumes.
StudyCallback = Callable[[str, Sequence[Any], Sequence[Any], Sequence[LesionMeasurements]], None]


@dataclass(frozen=True, kw_only=True)
class MeasureSummary:
    """What `measure_export` did."""

    measurements: tuple[LesionMeasurements, ...]
    lesions_csv: Path
    results_json: Path
    warnings: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class AdcSummary:
    """What `fit_export_adc` wrote, and the DWI sets it could not fit."""

    written: tuple[Path, ...]
    failures: tuple[str, ...]


def _prepare_out(out_dir: Path, names: tuple[str, ...], force: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [n for n in names if (out_dir / n).exists()]
    if existing and not force:
        raise InputError(f"Output folder {out_dir} already holds {', '.join(existing)}; refusing "
                         "to overwrite. Potential fix: pass --force or choose another --out.")


def _load_stacks(export_dir: Path) -> list[Any]:
    from bonelesion.dicom.series import load_series

    stacks = load_series(export_dir)
    if not stacks:
        raise InputError(f"Export folder {export_dir}: no DICOM stack found. Potential fix: "
                         "check the folder holds the DICOM export.")
    for stack in stacks:
        for problem in getattr(stack, "problems", ()) or ():
            logger.warning("series %s: %s", stack.info.series_instance_uid, problem)
    return stacks


def measure_export(
    export_dir: str | Path,
    rois: str | Path,
    out_dir: str | Path,
    *,
    config: PipelineConfig | None = None,
    config_path: str | Path | None = None,
    force: bool = False,
    on_study: StudyCallback | None = None,
) -> MeasureSummary:
    """Measure every lesion of ``rois`` in every study of an export; write CSV and JSON.

    Parameters
    ----------
    export_dir, rois, out_dir : path
        DICOM export folder, ROI file, output folder (``lesions.csv``, ``results.json``).
    config, config_path
        Resolved configuration, or a TOML file to load it from.
    force : bool
        Overwrite existing outputs.
    on_study : StudyCallback, optional
        Called once per study with its loaded stacks, the lesions and its measurements
        (see `StudyCallback`), before the next study; each study's stacks are dropped after
        it, so peak memory beyond the reader's is one study's derived objects.

    Raises
    ------
    InputError
        Unreadable export or ROI file, or existing outputs without ``force``.
    ConfigError
        Invalid configuration.
    """
    from bonelesion.roi.sources import load_lesions

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    cfg = config or load_config(config_path)
    _prepare_out(out_dir, ("lesions.csv", "results.json"), force)
    lesions = load_lesions(rois)
    by_study = group_by_study(_load_stacks(export_dir))
    warnings: list[str] = []
    known = set(by_study)
    for lesion in lesions:
        if lesion.study_instance_uid and lesion.study_instance_uid not in known:
            warnings.append(f"lesion {lesion.lesion_id!r} ({lesion.source}) names study "
                            f"{lesion.study_instance_uid}, which is not in the export")
    inputs = {
        "export_dir": str(export_dir),
        "rois": str(rois),
        "config_file": str(config_path) if config_path else None,
        "studies": {
            uid: [{"series_instance_uid": s.info.series_instance_uid, "role": s.info.role,
                   "series_number": s.info.series_number,
                   "b_value_s_per_mm2": s.info.b_value_s_per_mm2,
                   "echo_time_ms": s.info.echo_time_ms,
                   "loaded": s.volume is not None,
                   "sop_instance_uids": list(s.info.sop_instance_uids)}
                  for s in ss]
            for uid, ss in by_study.items()
        },
    }
    measurements: list[LesionMeasurements] = []
    for study_uid in list(by_study):
        study_stacks = by_study.pop(study_uid)  # released after this study
        logger.info("study %s: %d stacks", study_uid, len(study_stacks))
        study_measurements = measure_study(study_stacks, lesions, cfg)
        measurements.extend(study_measurements)
        if on_study is not None:
            on_study(study_uid, study_stacks, lesions, study_measurements)
        del study_stacks
    csv_path = write_lesions_csv(measurements, out_dir / "lesions.csv")
    json_path = write_results_json(measurements, cfg, out_dir / "results.json", inputs=inputs,
                                   warnings=warnings)
    return MeasureSummary(measurements=tuple(measurements), lesions_csv=csv_path,
                          results_json=json_path, warnings=tuple(warnings))


def fit_export_adc(
    export_dir: str | Path,
    out_dir: str | Path,
    *,
    config: PipelineConfig | None = None,
    force: bool = False,
) -> AdcSummary:
    """Fit an ADC map (mm²/s) for each DWI set of an export, ignoring scanner ADC maps.

    Writes ``adc_<series>.nii.gz`` and a JSON sidecar per set into ``out_dir``.

    Raises
    ------
    InputError
        No DWI stack in the export, or existing outputs without ``force``.
    """
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    cfg = config or load_config(None)
    stacks = _load_stacks(export_dir)
    written: list[Path] = []
    failures: list[str] = []
    sets = [(uid, s) for uid, ss in group_by_study(stacks).items() for s in dwi_sets(ss)]
    if not sets:
        raise InputError(f"Export folder {export_dir}: no DWI stack (role dwi) with a b-value. "
                         "Potential fix: check the export holds diffusion-weighted series.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for study_uid, dwi in sets:
        name = f"adc_{dwi.label}"
        target = out_dir / f"{name}.nii.gz"
        if target.exists() and not force:
            raise InputError(f"Output {target} exists; refusing to overwrite. Potential fix: "
                             "pass --force or choose another output folder.")
        try:
            fit = fit_adc(dwi.volumes, config=cfg.stages.dwi_adc)
        except PipelineError as exc:
            failures.append(f"DWI set {dwi.label}: {exc}")
            logger.error("DWI set %s: %s", dwi.label, exc)
            continue
        written.append(write_nifti(fit.volume, target))
        sidecar = {
            "study_instance_uid": study_uid,
            "series_instance_uids": list(dwi.series_instance_uids),
            "b_values_s_per_mm2": list(fit.b_values_s_per_mm2),
            "unit": "mm2/s",
            "masked_voxels": fit.masked_voxel_count,
            "notes": list(fit.notes),
        }
        (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
        logger.info("wrote %s (b %s)", target, list(fit.b_values_s_per_mm2))
    return AdcSummary(written=tuple(written), failures=tuple(failures))
