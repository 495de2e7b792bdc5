"""Typed, frozen configuration of the measuring stages, loaded from TOML.

The defaults below are the defaults of ``configs/default.toml`` (a test keeps the two equal);
each number's citation is in that file and in CLINICAL_REFERENCE.md "Defaults the pipeline
should use". Unknown keys are errors (`bonelesion.config.build_config`).

The top-level `PipelineConfig` has a ``stages`` table and an optional ``classifier`` table that
this module passes through unchanged as a plain mapping (the classifier owns its schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.config import build_config, check_non_negative, check_positive, read_toml
from bonelesion.errors import ConfigError
from bonelesion.stages.base import check_erosion_margin

__all__ = [
    "CtAttenuationConfig",
    "EchoTimeWindow",
    "ChemicalShiftConfig",
    "DwiAdcConfig",
    "StagesConfig",
    "PipelineConfig",
    "load_config",
]


def _check_reliability(prefix: str, gap_mm: float, width_mm: float, fraction: float,
                       min_voxels: int) -> None:
    """Range-check the reference-shell and background-noise settings of a stage config."""
    check_non_negative(prefix, reference_shell_gap_mm=gap_mm)
    check_positive(prefix, reference_shell_width_mm=width_mm)
    if not 0 < fraction < 1:
        raise ConfigError(
            f"{prefix}.noise_background_fraction: must be in (0, 1), found {fraction}.")
    if min_voxels < 1:
        raise ConfigError(
            f"{prefix}.noise_min_background_voxels: must be ≥ 1, found {min_voxels}.")


@dataclass(frozen=True, kw_only=True)
class CtAttenuationConfig:
    """Settings of the CT attenuation stage.

    Parameters
    ----------
    erosion_margin_voxels : int
        Core ROI = lesion mask eroded by this many voxels along every axis (used when
        ``erosion_margin_mm`` is not set). Default 1 (CLINICAL_REFERENCE.md default 4).
    erosion_margin_mm : float or None
        Erosion margin in mm, converted per axis with the voxel spacing (ellipsoidal
        structuring element); overrides ``erosion_margin_voxels``. 0 disables erosion.
    """

    erosion_margin_voxels: int = 1
    erosion_margin_mm: float | None = None

    def __post_init__(self) -> None:
        check_erosion_margin("stages.ct_attenuation", self.erosion_margin_voxels,
                             self.erosion_margin_mm)


@dataclass(frozen=True, kw_only=True)
class EchoTimeWindow:
    """Expected opposed- and in-phase echo times at one field strength (inclusive, ms)."""

    field_strength_t: float
    # tuple[float, ...] (checked to hold two values): bonelesion.config's fixed-length tuple
    # coercion swaps type and value in this version
    opposed_phase_te_ms: tuple[float, ...]
    in_phase_te_ms: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("opposed_phase_te_ms", "in_phase_te_ms"):
            window = getattr(self, name)
            if len(window) != 2:
                raise ConfigError(f"{name}: need [low, high], found {list(window)}.")
            low, high = window
            if not 0 < low <= high:
                raise ConfigError(f"{name}: need 0 < low ≤ high, found [{low}, {high}].")
        if not self.field_strength_t > 0:
            raise ConfigError(f"field_strength_t: must be > 0, found {self.field_strength_t}.")


@dataclass(frozen=True, kw_only=True)
class ChemicalShiftConfig:
    """Settings of the MR chemical-shift (in/opposed-phase, Dixon) stage.

    Parameters
    ----------
    echo_time_windows : tuple of EchoTimeWindow
        TE sanity check per field strength (CLINICAL_REFERENCE.md default 10).
    field_strength_tolerance_t : float
        A series matches a window when its field strength is within this many tesla.
    erosion_margin_voxels, erosion_margin_mm
        Core ROI on each image grid, as in `CtAttenuationConfig` (partial volume at the
        lesion edge excluded; default 1 voxel).
    reference_shell_gap_mm, reference_shell_width_mm
        Reference marrow ROI: the shell of voxels more than ``gap`` and at most
        ``gap + width`` mm from the lesion, other lesions excluded; its median signal is the
        reference (default 2 and 5 mm).
    noise_background_fraction, noise_min_background_voxels
        Background (air) of an image = voxels ≤ this fraction of its 99th percentile; the
        noise SD (for SNR) is estimated when at least this many exist (default 0.05, 500).
    """

    echo_time_windows: tuple[EchoTimeWindow, ...] = (
        EchoTimeWindow(field_strength_t=1.5, opposed_phase_te_ms=(2.0, 2.5),
                       in_phase_te_ms=(4.2, 4.9)),
        EchoTimeWindow(field_strength_t=3.0, opposed_phase_te_ms=(1.0, 1.3),
                       in_phase_te_ms=(2.1, 2.5)),
    )
    field_strength_tolerance_t: float = 0.25
    erosion_margin_voxels: int = 1
    erosion_margin_mm: float | None = None
    reference_shell_gap_mm: float = 2.0
    reference_shell_width_mm: float = 5.0
    noise_background_fraction: float = 0.05
    noise_min_background_voxels: int = 500

    def __post_init__(self) -> None:
        check_erosion_margin("stages.mr_chemical_shift", self.erosion_margin_voxels,
                             self.erosion_margin_mm)
        _check_reliability("stages.mr_chemical_shift", self.reference_shell_gap_mm,
                           self.reference_shell_width_mm, self.noise_background_fraction,
                           self.noise_min_background_voxels)
        if not self.field_strength_tolerance_t > 0:
            raise ConfigError(
                "stages.mr_chemical_shift.field_strength_tolerance_t: must be > 0, found "
                f"{self.field_strength_tolerance_t}."
            )


@dataclass(frozen=True, kw_only=True)
class DwiAdcConfig:
    """Settings of the DWI/ADC stage.

    Parameters
    ----------
    b_min_s_per_mm2 : float
        Fit over b ≥ this value when at least two such b-values exist (default 50,
        CLINICAL_REFERENCE.md default 13); otherwise the lowest and highest b are used.
    noise_floor_fraction : float
        A voxel is masked (NaN) when its signal at the lowest fitted b-value is below this
        fraction of the 99th percentile of that image, or when any fitted signal is ≤ 0.
    prefer_scanner_adc : bool
        Use the scanner's ADC map when the study has one (default true).
    erosion_margin_voxels, erosion_margin_mm
        Core ROI on the ADC grid, as in `CtAttenuationConfig` (default 1 voxel).
    reference_shell_gap_mm, reference_shell_width_mm, noise_background_fraction,
    noise_min_background_voxels
        Reference marrow shell and background noise on the lowest-b DWI image, as in
        `ChemicalShiftConfig`.
    degenerate_max_abs_mm2_per_s : float
        An ADC map whose finite values all lie within this of 0 is degenerate (~0 everywhere,
        e.g. from identical source volumes): warned and flagged (default 1e-5 mm²/s, 1 % of a
        typical tissue ADC). A fit of identical source volumes is flagged whatever its values.
    """

    b_min_s_per_mm2: float = 50.0
    noise_floor_fraction: float = 0.05
    prefer_scanner_adc: bool = True
    erosion_margin_voxels: int = 1
    erosion_margin_mm: float | None = None
    reference_shell_gap_mm: float = 2.0
    reference_shell_width_mm: float = 5.0
    noise_background_fraction: float = 0.05
    noise_min_background_voxels: int = 500
    degenerate_max_abs_mm2_per_s: float = 1.0e-5

    def __post_init__(self) -> None:
        check_erosion_margin("stages.dwi_adc", self.erosion_margin_voxels, self.erosion_margin_mm)
        _check_reliability("stages.dwi_adc", self.reference_shell_gap_mm,
                           self.reference_shell_width_mm, self.noise_background_fraction,
                           self.noise_min_background_voxels)
        check_non_negative("stages.dwi_adc",
                           degenerate_max_abs_mm2_per_s=self.degenerate_max_abs_mm2_per_s,
                           b_min_s_per_mm2=self.b_min_s_per_mm2)
        if not 0 <= self.noise_floor_fraction < 1:
            raise ConfigError(
                "stages.dwi_adc.noise_floor_fraction: must be in [0, 1), found "
                f"{self.noise_floor_fraction}."
            )


@dataclass(frozen=True, kw_only=True)
class StagesConfig:
    """The ``[stages.*]`` tables."""

    ct_attenuation: CtAttenuationConfig = field(default_factory=CtAttenuationConfig)
    mr_chemical_shift: ChemicalShiftConfig = field(default_factory=ChemicalShiftConfig)
    dwi_adc: DwiAdcConfig = field(default_factory=DwiAdcConfig)


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Top-level configuration: the stage tables plus the classifier's raw table."""

    stages: StagesConfig = field(default_factory=StagesConfig)
    classifier: Mapping[str, Any] = field(default_factory=dict)


def load_config(path: str | Path | None = None) -> PipelineConfig:
    """Load a TOML configuration; missing keys take the defaults of configs/default.toml.

    Parameters
    ----------
    path : str or Path or None
        TOML file; None gives the defaults.

    Raises
    ------
    ConfigError
        Unreadable TOML, an unknown key (named with its dotted path) or a bad value.
    """
    if path is None:
        return PipelineConfig()
    data = read_toml(path)
    try:
        return build_config(PipelineConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"Config file {path}: {exc}") from exc
