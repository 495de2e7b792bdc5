"""Measuring stages: pure functions over volumes plus thin stage classes, and their registry.

Registry (explicit, STYLE.md §3): `STAGES` maps a stage name to its class and config type.
"""

from __future__ import annotations

from bonelesion.stages.config import (
    ChemicalShiftConfig,
    CtAttenuationConfig,
    DwiAdcConfig,
    PipelineConfig,
    StagesConfig,
    load_config,
)
from bonelesion.stages.ct_attenuation import CtAttenuationStage, measure_attenuation
from bonelesion.stages.dwi_adc import AdcMap, DwiAdcStage, fit_adc, measure_adc
from bonelesion.stages.mr_chemical_shift import (
    ChemicalShiftStage,
    DixonImages,
    measure_chemical_shift,
)

__all__ = [
    "STAGES",
    "CtAttenuationStage",
    "ChemicalShiftStage",
    "DwiAdcStage",
    "measure_attenuation",
    "measure_chemical_shift",
    "fit_adc",
    "measure_adc",
    "AdcMap",
    "DixonImages",
    "CtAttenuationConfig",
    "ChemicalShiftConfig",
    "DwiAdcConfig",
    "StagesConfig",
    "PipelineConfig",
    "load_config",
]

#: name → (stage class, config class); the name is also the ``[stages.<name>]`` TOML table.
STAGES: dict[str, tuple[type, type]] = {
    "ct_attenuation": (CtAttenuationStage, CtAttenuationConfig),
    "mr_chemical_shift": (ChemicalShiftStage, ChemicalShiftConfig),
    "dwi_adc": (DwiAdcStage, DwiAdcConfig),
}
