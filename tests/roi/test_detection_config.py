"""configs/detection.toml ↔ typed detection config; refusals name the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bonelesion.config import config_to_dict
from bonelesion.errors import ConfigError
from bonelesion.roi.config import DetectionConfig, load_detection_config

DETECTION_TOML = Path(__file__).resolve().parents[2] / "configs" / "detection.toml"


def test_detection_toml_equals_dataclass_defaults() -> None:
    assert config_to_dict(load_detection_config(DETECTION_TOML)) == config_to_dict(
        DetectionConfig())


def test_every_number_in_detection_toml_has_a_comment_above() -> None:
    lines = DETECTION_TOML.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            above = "\n".join(lines[max(0, i - 8): i])
            assert "#" in above, f"detection.toml line {i + 1} has no comment above: {line}"


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[detection.vertebrae]\nshort_rib_max_lateral_mm = 90\n")
    cfg = load_detection_config(path)
    assert cfg.vertebrae.short_rib_max_lateral_mm == 90.0
    assert cfg.osteoporosis.highly_specific_hu == 110.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[vertebrae]\nshort_rib_mm = 1\n", r"detection\.vertebrae\.short_rib_mm: unknown key"),
        ("[osteoporosis]\nhighly_specific_hu = 200\n", r"highly_specific_hu \(200.0\) must be <"),
        ("[bone]\nray_percentile = 120\n", r"bone\.ray_percentile: must be in \[0, 100\]"),
        ("[bone]\nfallback_closings_mm = [1.0]\n", "the same number of values"),
        ("[vertebrae]\nconfidence_no_anchor = 0.99\n", "confidences must fall"),
        ("[candidates]\nmin_volume_ml = 0\n", r"candidates\.min_volume_ml: must be > 0"),
        ("[bone]\nwork_spacing_mm = 'two'\n", "expected a number"),
    ],
)
def test_bad_detection_config_is_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_detection_config(path)


def test_pipeline_detection_table_is_validated_at_load(tmp_path: Path) -> None:
    from bonelesion.pipeline.definition import load_pipeline

    path = tmp_path / "p.toml"
    path.write_text('name = "p"\nstages = ["ct_attenuation"]\n[roles.ct]\nmodality = "CT"\n'
                    'stack_roles = ["ct"]\n[detection.bone]\nwork_spacing = 2\n')
    with pytest.raises(ConfigError, match=r"detection\.bone\.work_spacing: unknown key"):
        load_pipeline(path)
