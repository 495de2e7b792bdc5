"""Fitted ADC maps of every DWI set of an export (the ``adc`` research command).

Discovery and grouping are the pipeline's own: the export is indexed
(`bonelesion.pipeline.inventory`), its diffusion stacks grouped into fit sets by the series
policy's rule (`bonelesion.pipeline.selection.dwi_fit_groups`), each set loaded and fitted
(`bonelesion.stages.dwi_adc.fit_adc`). Outputs are named per study and series, so two
studies with the same series numbers never write the same file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bonelesion.errors import InputError, PipelineError
from bonelesion.pipeline.inventory import build_inventory
from bonelesion.pipeline.plan import ChoiceStatus, RoleChoice, StackCandidate, StudyPlan
from bonelesion.pipeline.selection import dwi_fit_groups, not_measurable

__all__ = ["AdcSummary", "fit_export_adc", "adc_output_name"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AdcSummary:
    """What `fit_export_adc` wrote, and the DWI sets it could not fit."""

    written: tuple[Path, ...]
    failures: tuple[str, ...]


def adc_output_name(group: tuple[StackCandidate, ...]) -> str:
    """File stem of a fit set's map: series numbers plus a short hash of the series UIDs.

    Examples
    --------
    >>> c = StackCandidate(study_instance_uid="1", series_instance_uid="1.2.3", stack_key="b0",
    ...                    modality="MR", role="dwi", files=("a",), series_number=14)
    >>> adc_output_name((c,))
    'adc_s14_2ea7b1e8'
    """
    uids = list(dict.fromkeys(c.series_instance_uid for c in group))
    numbers = list(dict.fromkeys(
        str(c.series_number) if c.series_number is not None else "x" for c in group))
    digest = hashlib.sha1("\n".join(uids).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"adc_s{'+'.join(numbers)}_{digest}"


def fit_export_adc(
    export_dir: str | Path,
    out_dir: str | Path,
    *,
    config_path: str | Path | None = None,
    force: bool = False,
) -> AdcSummary:
    """Fit an ADC map (mm²/s) for each DWI set of an export, ignoring scanner ADC maps.

    Writes ``OUT/<study>/adc_s<series>_<hash>.nii.gz`` and a JSON sidecar per set.

    Raises
    ------
    InputError
        No DWI stack in the export, or an existing output without ``force``.
    ConfigError
        An invalid configuration file.
    """
    from bonelesion.pipeline.loading import load_study_volumes
    from bonelesion.report.nifti import write_nifti
    from bonelesion.report.result import safe_name
    from bonelesion.stages.config import load_config
    from bonelesion.stages.dwi_adc import fit_adc

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    cfg = load_config(config_path)
    with tempfile.TemporaryDirectory(prefix="bonelesion-adc-") as tmp:
        inventory = build_inventory(export_dir, Path(tmp) / "catalogue.sqlite")
    sets = [(study.study_instance_uid, group)
            for study in inventory.studies
            for group in dwi_fit_groups(c for c in study.candidates
                                        if c.role == "dwi" and not not_measurable(c))]
    if not sets:
        raise InputError(f"Export folder {export_dir}: no DWI stack (role dwi) with a b-value. "
                         "Potential fix: check the export holds diffusion-weighted series.")
    written: list[Path] = []
    failures: list[str] = []
    for study_uid, group in sets:
        folder = out_dir / safe_name(study_uid)
        name = adc_output_name(group)
        target = folder / f"{name}.nii.gz"
        if target.exists() and not force:
            raise InputError(f"Output {target} exists; refusing to overwrite. Potential fix: "
                             "pass --force or choose another output folder.")
        plan = StudyPlan(study_instance_uid=study_uid, stages=("dwi_adc",), skipped_stages={},
                         choices=(RoleChoice(role="dwi", status=ChoiceStatus.SINGLE,
                                             chosen=group),))
        label = f"study {study_uid}, DWI series {name.removeprefix('adc_')}"
        try:
            volumes = load_study_volumes(plan)
            fit = fit_adc(volumes.by_role["dwi"], config=cfg.stages.dwi_adc)
        except PipelineError as exc:
            failures.append(f"{label}: {exc}")
            logger.error("%s: %s", label, exc)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        written.append(write_nifti(fit.volume, target))
        sidecar = {
            "study_instance_uid": study_uid,
            "series_instance_uids": list(dict.fromkeys(c.series_instance_uid for c in group)),
            "series_numbers": list(dict.fromkeys(c.series_number for c in group)),
            "b_values_s_per_mm2": list(fit.b_values_s_per_mm2),
            "unit": "mm2/s",
            "masked_voxels": fit.masked_voxel_count,
            "notes": list(fit.notes),
        }
        (folder / f"{name}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
        logger.info("wrote %s (b %s)", target, list(fit.b_values_s_per_mm2))
    return AdcSummary(written=tuple(written), failures=tuple(failures))
