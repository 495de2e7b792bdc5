"""configs/default.toml ↔ typed stage configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bonelesion.config import config_to_dict
from bonelesion.errors import ConfigError
from bonelesion.stages.config import PipelineConfig, load_config

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "configs" / "default.toml"


def test_default_toml_equals_dataclass_defaults() -> None:
    assert config_to_dict(load_config(DEFAULT_TOML)) == config_to_dict(PipelineConfig())


def test_every_number_in_default_toml_has_a_citation_comment() -> None:
    lines = DEFAULT_TOML.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            above = "\n".join(lines[max(0, i - 6) : i])
            assert "#" in above, f"default.toml line {i + 1} has no comment above: {line}"


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[stages.dwi_adc]\nb_min_s_per_mm2 = 100\n"
        "[classifier]\nmean_hu_threshold = 885\n[classifier.extra]\nx = 1\n"
    )
    cfg = load_config(path)
    assert cfg.stages.dwi_adc.b_min_s_per_mm2 == 100.0
    assert cfg.stages.ct_attenuation.erosion_margin_voxels == 1
    assert cfg.classifier["mean_hu_threshold"] == 885  # passed through unchanged
    assert cfg.classifier["extra"]["x"] == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[stages.dwi_adc]\nb_min = 50\n", r"stages\.dwi_adc\.b_min: unknown key"),
        ("[stages.ct_attenuaton]\n", r"stages\.ct_attenuaton: unknown key"),
        ("[pipeline]\n", r"pipeline: unknown key"),
        ("[stages.ct_attenuation]\nerosion_margin_voxels = 'one'\n", "expected an integer"),
        ("[stages.ct_attenuation]\nerosion_margin_voxels = -2\n", "must be ≥ 0"),
        (
            "[[stages.mr_chemical_shift.echo_time_windows]]\nfield_strength_t = 1.5\n"
            "opposed_phase_te_ms = [2.5, 2.0]\nin_phase_te_ms = [4.2, 4.9]\n",
            r"opposed_phase_te_ms: need 0 < low ≤ high",
        ),
        ("[stages.mr_chemical_shift]\nfield_strength_tolerance_t = 0\n", "must be > 0"),
        ("[stages\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("window", "match"),
    [
        (
            "field_strength_t = 0.0\nopposed_phase_te_ms = [2.0, 2.5]\nin_phase_te_ms = [4.2, 4.9]",
            "field_strength_t: must be > 0",
        ),
        (
            "field_strength_t = 1.5\nopposed_phase_te_ms = [2.0]\nin_phase_te_ms = [4.2, 4.9]",
            r"opposed_phase_te_ms: need \[low, high\]",
        ),
    ],
)
def test_bad_echo_time_window(tmp_path: Path, window: str, match: str) -> None:
    path = tmp_path / "w.toml"
    path.write_text("[[stages.mr_chemical_shift.echo_time_windows]]\n" + window + "\n")
    with pytest.raises(ConfigError, match=match):
        load_config(path)
