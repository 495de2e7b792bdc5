"""Typed config builder: types, unknown keys, nested tables, dotted error keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bonelesion.config import build_config, config_to_dict
from bonelesion.errors import ConfigError
from bonelesion.units import IntensityUnit


@dataclass(frozen=True, kw_only=True)
class Inner:
    threshold_hu: float = 885.0
    window_hu: tuple[float, float] = (-1000.0, 3000.0)
    b_values_s_per_mm2: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.window_hu[0] >= self.window_hu[1]:
            raise ConfigError("window_hu: low must be below high")


@dataclass(frozen=True, kw_only=True)
class Outer:
    name: str = "x"
    workers: int = 1
    unit: IntensityUnit = IntensityUnit.HU
    inner: Inner = field(default_factory=Inner)


def test_builds_nested_typed_config() -> None:
    cfg = build_config(Outer, {"name": "a", "workers": 2, "unit": "MM2_PER_S",
                               "inner": {"threshold_hu": 900, "window_hu": [0, 10],
                                         "b_values_s_per_mm2": [0, 50, 800]}})
    assert cfg.inner.threshold_hu == pytest.approx(900.0)
    assert cfg.inner.window_hu == (0.0, 10.0)
    assert cfg.inner.b_values_s_per_mm2 == (0.0, 50.0, 800.0)
    assert cfg.unit is IntensityUnit.MM2_PER_S
    assert config_to_dict(cfg)["inner"]["window_hu"] == [0.0, 10.0]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"nmae": "a"}, r"^nmae: unknown key"),
        ({"inner": {"treshold_hu": 1}}, r"^inner\.treshold_hu: unknown key"),
        ({"workers": 1.5}, r"^workers: expected an integer"),
        ({"workers": True}, r"^workers: expected an integer"),
        ({"inner": {"threshold_hu": "high"}}, r"^inner\.threshold_hu: expected a number"),
        ({"inner": {"window_hu": [1, 2, 3]}}, r"^inner\.window_hu: expected 2 values"),
        ({"inner": {"window_hu": [5, 1]}}, r"^inner\.window_hu: low must be below high"),
        ({"unit": "KELVIN"}, r"^unit: 'KELVIN' is not one of"),
        ({"inner": 3}, r"^inner: expected a table"),
    ],
)
def test_errors_name_the_dotted_key(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_config(Outer, data)
