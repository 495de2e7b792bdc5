"""Declarative pipeline definitions: which stages run, and which series plays which role.

A pipeline is a TOML file (``pipelines/*.toml``) validated into a frozen
`PipelineDefinition` through `bonelesion.config.build_config` (unknown keys are errors).

Example
-------
.. code-block:: toml

    name = "ct_sclerotic"
    description = "CT attenuation of sclerotic bone lesions"
    stages = ["ct_attenuation"]

    [roles.ct]
    modality = "CT"
    stack_roles = ["ct"]
    required = true
    prefer = ["bone_kernel", "thinnest_slice", "most_slices"]

Every stage needs some roles (`STAGE_ROLES`); the definition is refused when a stage's
roles are not declared.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.config import build_config, config_to_dict, read_toml

# Vendor knowledge (each vendor's bone-kernel names) lives in the dicom vendor modules.
from bonelesion.dicom.vendors.ct import DEFAULT_BONE_KERNEL_PATTERN
from bonelesion.errors import ConfigError
from bonelesion.model.roles import SeriesRole

__all__ = [
    "RoleSpec",
    "PipelineDefinition",
    "STAGE_ROLES",
    "STAGE_OPTIONAL_ROLES",
    "PREFERENCES",
    "KNOWN_STACK_ROLES",
    "load_pipeline",
    "shipped_pipelines",
    "pipeline_hash",
    "pipelines_dir",
    "with_overrides",
]

#: Stage name → (roles all required, roles of which at least one is required).
STAGE_ROLES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ct_attenuation": (("ct",), ()),
    "mr_chemical_shift": (("dixon_in_phase", "dixon_opposed_phase"), ()),
    "dwi_adc": ((), ("dwi", "adc")),
}

#: Stage name → roles it uses when present (Dixon water/fat images give the fat fraction).
STAGE_OPTIONAL_ROLES: Mapping[str, tuple[str, ...]] = {
    "mr_chemical_shift": ("dixon_water", "dixon_fat"),
}

#: Preference keys, applied in the order given, to choose among several candidates.
PREFERENCES: Mapping[str, str] = {
    "thinnest_slice": "smallest slice thickness (spacing when thickness is absent)",
    "thickest_slice": "largest slice thickness",
    "bone_kernel": "a bone/sharp kernel (ConvolutionKernel matches bone_kernel_pattern)",
    "soft_kernel": "a kernel that does not match bone_kernel_pattern",
    "most_b_values": "the most distinct b-values",
    "most_slices": "the most images",
    "original": "ImageType ORIGINAL before DERIVED",
    "latest_series": "the highest SeriesNumber",
    "earliest_series": "the lowest SeriesNumber",
}

#: Stack roles a reader can give (``SeriesInfo.role``).
KNOWN_STACK_ROLES = tuple(role.value for role in SeriesRole)




@dataclass(frozen=True, kw_only=True)
class RoleSpec:
    """How to choose the series (stack) that plays one role in a study.

    Parameters
    ----------
    modality : str
        DICOM Modality a candidate must have (``CT``, ``MR``).
    stack_roles : tuple of str
        Accepted `SeriesInfo.role` values (``ct``, ``dwi``, ``dixon_in_phase`` …).
    unit : {"stack", "series"}
        ``stack``: each stack is a candidate; ``series``: all accepted stacks of one series
        form one candidate (a DWI series with one stack per b-value).
    required : bool
        When true, a study with no candidate fails at the ``plan`` stage; otherwise the
        stages needing the role are skipped and the reason recorded.
    prefer : tuple of str
        Keys of `PREFERENCES`, applied in order to choose among several candidates.
    description_pattern, exclude_description_pattern : str
        Regular expressions on SeriesDescription ("" = no filter).
    bone_kernel_pattern : str
        Regular expression a bone ConvolutionKernel matches.
    """

    modality: str
    stack_roles: tuple[str, ...]
    unit: str = "stack"
    required: bool = False
    prefer: tuple[str, ...] = ()
    description_pattern: str = ""
    exclude_description_pattern: str = ""
    bone_kernel_pattern: str = DEFAULT_BONE_KERNEL_PATTERN

    def __post_init__(self) -> None:
        if not self.stack_roles:
            raise ConfigError("stack_roles: need at least one stack role")
        bad = [r for r in self.stack_roles if r not in KNOWN_STACK_ROLES]
        if bad:
            raise ConfigError(
                f"stack_roles: unknown stack role {bad[0]!r} "
                f"(known: {', '.join(KNOWN_STACK_ROLES)})"
            )
        if self.unit not in ("stack", "series"):
            raise ConfigError(f"unit: expected 'stack' or 'series', found {self.unit!r}")
        bad = [p for p in self.prefer if p not in PREFERENCES]
        if bad:
            raise ConfigError(
                f"prefer: unknown preference {bad[0]!r} (known: {', '.join(PREFERENCES)})"
            )
        for key in ("description_pattern", "exclude_description_pattern", "bone_kernel_pattern"):
            try:
                re.compile(getattr(self, key))
            except re.error as exc:
                raise ConfigError(f"{key}: not a valid regular expression ({exc})") from exc


@dataclass(frozen=True, kw_only=True)
class PipelineDefinition:
    """A validated pipeline: its stages, the roles they need and per-stage settings.

    Parameters
    ----------
    name : str
        Short name (used in reports and in the results-store key).
    stages : tuple of str
        Keys of `STAGE_ROLES`, in run order.
    roles : mapping of str to RoleSpec
        Role name → how to choose it. Role names are the series roles the stages read
        (``ct``, ``dixon_in_phase``, ``dixon_opposed_phase``, ``dixon_water``, ``dixon_fat``,
        ``dwi``, ``adc``; `STAGE_ROLES`).
    description : str
        One line for humans.
    config : mapping
        Measurement configuration passed unchanged to the stages (their own typed config
        validates it).
    config_file : str
        Optional TOML file of measurement configuration, relative to the pipeline file;
        its tables are the base that ``config`` overrides.
    tilt : {"refuse", "resample"}
        A gantry-tilted CT: refused (the default: its slices are not orthogonal to the
        table), or resampled onto an orthogonal grid, recorded in the series' notes and
        every output (`bonelesion.dicom.tilt`, as dcm2niix's ``_Tilt`` output).
    detection : mapping
        CT detection settings (``configs/detection.toml`` layout) laid over the defaults:
        vertebra labelling and lesion candidates (`bonelesion.roi.config.DetectionConfig`).
    rois : {"auto", "file"}
        Where a study's lesions come from without ``--rois``: ``auto`` (the default) detects
        sclerotic-lesion candidates on the study's CT (`bonelesion.roi.candidates`); ``file``
        requires an ROI file (the study fails at stage ``roi`` without one).
    """

    name: str
    stages: tuple[str, ...]
    roles: Mapping[str, RoleSpec]
    description: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    config_file: str = ""
    tilt: str = "refuse"
    detection: Mapping[str, Any] = field(default_factory=dict)
    rois: str = "auto"
    source: str = ""

    def __post_init__(self) -> None:
        if self.tilt not in ("refuse", "resample"):
            raise ConfigError(f"tilt: expected 'refuse' or 'resample', found {self.tilt!r}")
        if self.rois not in ("auto", "file"):
            raise ConfigError(f"rois: expected 'auto' (detect on the CT) or 'file' (require "
                              f"--rois), found {self.rois!r}")
        from bonelesion.roi.config import detection_config_from_mapping

        detection_config_from_mapping(dict(self.detection))  # refuse a bad table at load
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.name):
            raise ConfigError(f"name: {self.name!r} must be 1–64 letters, digits, '_', '-', '.'")
        if not self.stages:
            raise ConfigError("stages: need at least one stage")
        for stage in self.stages:
            if stage not in STAGE_ROLES:
                raise ConfigError(
                    f"stages: unknown stage {stage!r} (known: {', '.join(STAGE_ROLES)}). "
                    "Potential fix: check the spelling."
                )
            all_of, any_of = STAGE_ROLES[stage]
            missing = [r for r in all_of if r not in self.roles]
            if missing or (any_of and not any(r in self.roles for r in any_of)):
                need = missing[0] if missing else " or ".join(any_of)
                raise ConfigError(
                    f"roles: stage {stage!r} needs role {need!r}, which is not declared. "
                    f"Potential fix: add a [roles.{need.split(' ')[0]}] table."
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (for reports, hashing and passing to workers)."""
        out = config_to_dict(self)
        out.pop("source", None)
        return dict(out)


def pipelines_dir() -> Path:
    """Folder of the shipped pipelines (``$BONELESION_PIPELINES`` overrides it).

    They are package data (``bonelesion/pipeline/shipped``; ``pipelines/`` at the top of the
    source tree links there), so a wheel install finds them as an editable one does.
    """
    env = os.environ.get("BONELESION_PIPELINES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "shipped"


def shipped_pipelines() -> list[str]:
    """Names of the shipped pipelines."""
    folder = pipelines_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def load_pipeline(name_or_path: str | Path) -> PipelineDefinition:
    """Load a pipeline by shipped name (``combined``) or from a TOML path.

    Raises
    ------
    ConfigError
        If no such pipeline exists, the TOML is invalid, a key is unknown or a value is out
        of range (the message names the dotted key and the file).
    """
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix == ".toml" or os.sep in text or path.exists()):
        path = pipelines_dir() / f"{text}.toml"
        if not path.exists():
            shipped = ", ".join(shipped_pipelines()) or f"none found in {pipelines_dir()}"
            raise ConfigError(
                f"Pipeline {text!r} is neither a file nor a shipped pipeline "
                f"(shipped: {shipped}). "
                "Potential fix: give a path to a .toml file or one of the shipped names."
            )
    data = read_toml(path)
    try:
        definition = build_config(PipelineDefinition, data)
    except ConfigError as exc:
        raise ConfigError(f"Pipeline {path}: {exc}") from exc
    config: dict[str, Any] = {}
    if definition.config_file:
        cfg_path = (path.parent / definition.config_file).resolve()
        config = read_toml(cfg_path)
    config = _deep_merge(config, config_to_dict(definition.config))
    import dataclasses

    return dataclasses.replace(definition, config=config, source=str(path))


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def pipeline_hash(
    definition: PipelineDefinition, *, version: str, extra: Mapping[str, Any] | None = None
) -> str:
    """SHA-256 of the pipeline, its resolved config, the package version and ``extra``.

    Two runs share results in the store only when this hash is equal.
    """
    payload = {"pipeline": definition.to_dict(), "version": version, "extra": dict(extra or {})}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def with_overrides(
    definition: PipelineDefinition,
    *,
    config_path: str | Path | None = None,
    classifier_config_path: str | Path | None = None,
) -> PipelineDefinition:
    """Return the pipeline with measurement and classifier configuration files laid over it.

    ``config_path`` is a TOML of ``[stages.*]`` (and optionally ``[classifier.*]`` and
    ``[detection.*]``) tables;
    ``classifier_config_path`` a classifier TOML (configs/classifier.toml layout, or the same
    under a ``[classifier]`` table). Both are validated here, so a bad file fails before any
    study is read.

    Raises
    ------
    ConfigError
        Unreadable TOML, an unknown key or a value out of range, naming the file and key.
    """
    import dataclasses

    from bonelesion.classify.config import classifier_config_from_mapping
    from bonelesion.stages.config import PipelineConfig

    config = dict(definition.config)
    detection = dict(definition.detection)
    if config_path is not None:
        table = read_toml(config_path)
        if "detection" in table:
            detection = _deep_merge(detection, table.pop("detection"))
        config = _deep_merge(config, table)
    if classifier_config_path is not None:
        table = read_toml(classifier_config_path)
        if set(table) == {"classifier"}:
            table = table["classifier"]
        config = _deep_merge(config, {"classifier": table})
    where = f"{definition.source or definition.name}"
    if config_path is not None:
        where += f" + {config_path}"
    if classifier_config_path is not None:
        where += f" + {classifier_config_path}"
    try:
        resolved = build_config(PipelineConfig, config, prefix="config")
        classifier_config_from_mapping(dict(resolved.classifier))
        return dataclasses.replace(definition, config=config, detection=detection)
    except ConfigError as exc:
        raise ConfigError(f"Configuration of pipeline {where}: {exc}") from exc
