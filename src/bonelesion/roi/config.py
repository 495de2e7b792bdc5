"""Typed configuration of CT detection: bone analysis, vertebra labelling, lesion candidates.

The defaults equal ``configs/detection.toml`` (a test keeps the two identical); every
number's source or design reason is written there. Unknown keys are errors
(`bonelesion.config.build_config`); range checks name the dotted key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.config import (
    build_config,
    check_fraction,
    check_non_negative,
    check_ordered,
    check_positive,
    read_toml,
)
from bonelesion.errors import ConfigError

__all__ = [
    "BoneConfig",
    "VertebraConfig",
    "OsteoporosisConfig",
    "CandidateConfig",
    "DetectionConfig",
    "detection_config_from_mapping",
    "load_detection_config",
]


@dataclass(frozen=True, kw_only=True)
class BoneConfig:
    """Working grid, bone masks, spinal axis and the lateral-ray disc profile."""

    work_spacing_mm: float = 2.0
    bone_threshold_hu: float = 250.0
    patient_threshold_hu: float = -300.0
    midline_window_mm: float = 45.0
    body_depth_min_mm: float = 6.0
    body_depth_max_mm: float = 30.0
    min_column_length_mm: float = 30.0
    min_found_fraction: float = 0.4
    fallback_thresholds_hu: tuple[float, ...] = (200.0, 150.0)
    fallback_closings_mm: tuple[float, ...] = (5.0, 3.0)
    axis_median_window_mm: float = 30.0
    axis_outlier_mm: float = 10.0
    axis_smoothing_mm: float = 6.0
    tangent_smoothing_mm: float = 12.0
    ray_start_mm: float = 2.0
    ray_length_mm: float = 25.0
    ray_anterior_deg: float = 60.0
    ray_posterior_deg: float = 15.0
    ray_count_per_side: int = 9
    ray_percentile: float = 25.0
    central_radius_mm: float = 6.0

    def __post_init__(self) -> None:
        p = "bone"
        check_positive(p, work_spacing_mm=self.work_spacing_mm,
                       midline_window_mm=self.midline_window_mm,
                       min_column_length_mm=self.min_column_length_mm,
                       axis_median_window_mm=self.axis_median_window_mm,
                       axis_outlier_mm=self.axis_outlier_mm,
                       axis_smoothing_mm=self.axis_smoothing_mm,
                       tangent_smoothing_mm=self.tangent_smoothing_mm,
                       ray_length_mm=self.ray_length_mm, central_radius_mm=self.central_radius_mm)
        check_non_negative(p, ray_start_mm=self.ray_start_mm)
        check_ordered(p, "body_depth_min_mm", self.body_depth_min_mm, "body_depth_max_mm",
                      self.body_depth_max_mm)
        check_ordered(p, "ray_start_mm", self.ray_start_mm, "ray_length_mm", self.ray_length_mm)
        check_ordered(p, "patient_threshold_hu", self.patient_threshold_hu, "bone_threshold_hu",
                      self.bone_threshold_hu)
        check_fraction(p, min_found_fraction=self.min_found_fraction)
        if len(self.fallback_thresholds_hu) != len(self.fallback_closings_mm):
            raise ConfigError(f"{p}.fallback_thresholds_hu and {p}.fallback_closings_mm: need "
                              "the same number of values (one closing per threshold).")
        for value in self.fallback_thresholds_hu:
            check_ordered(p, "patient_threshold_hu", self.patient_threshold_hu,
                          "fallback_thresholds_hu", value)
        for value in self.fallback_closings_mm:
            check_non_negative(p, fallback_closings_mm=value)
        if not 0 <= self.ray_percentile <= 100:
            raise ConfigError(f"{p}.ray_percentile: must be in [0, 100], found "
                              f"{self.ray_percentile}.")
        if self.ray_count_per_side < 1:
            raise ConfigError(f"{p}.ray_count_per_side: must be ≥ 1, found "
                              f"{self.ray_count_per_side}.")
        for name in ("ray_anterior_deg", "ray_posterior_deg"):
            if not 0 <= getattr(self, name) < 90:
                raise ConfigError(f"{p}.{name}: must be in [0, 90), found {getattr(self, name)}.")


@dataclass(frozen=True, kw_only=True)
class VertebraConfig:
    """Splitting the column at the discs, the anchors, labels and the trabecular ROI."""

    disc_threshold_hu: float = 250.0
    disc_min_height_mm: float = 3.0
    disc_max_height_mm: float = 20.0
    disc_merge_gap_mm: float = 3.0
    disc_core_max_hu: float = 160.0
    endplate_contrast_hu: float = 150.0
    endplate_search_mm: float = 6.0
    dark_disc_contrast_hu: float = 60.0
    endplate_prominence_hu: float = 100.0
    endplate_pair_max_mm: float = 16.0
    partial_split_min_height_mm: float = 30.0
    body_min_height_mm: float = 12.0
    body_max_height_mm: float = 40.0
    body_max_semi_lateral_mm: float = 35.0
    body_max_semi_ap_mm: float = 30.0
    body_opening_mm: float = 4.0
    rib_core_radius_mm: float = 30.0
    rib_core_half_width_mm: float = 28.0
    rib_attach_gap_mm: float = 12.0
    rib_min_lateral_mm: float = 60.0
    rib_max_volume_ml: float = 60.0
    rib_search_margin_mm: float = 10.0
    short_rib_max_lateral_mm: float = 80.0
    ilium_min_lateral_mm: float = 70.0
    sacrum_min_height_mm: float = 45.0
    sacral_band_contrast_hu: float = 250.0
    s1_height_ratio: float = 1.0
    trabecular_erosion_mm: float = 3.0
    dense_exclusion_hu: float = 400.0
    dense_exclusion_margin_mm: float = 2.0
    trabecular_min_voxels: int = 50
    confidence_anchors_agree: float = 0.95
    confidence_conflict_explained: float = 0.6
    confidence_sacrum_only: float = 0.6
    confidence_ribs_only: float = 0.5
    confidence_ribs_at_edge: float = 0.35
    confidence_conflict_unexplained: float = 0.3
    confidence_no_anchor: float = 0.1
    min_confidence_for_level: float = 0.5

    def __post_init__(self) -> None:
        p = "vertebrae"
        check_positive(p, disc_min_height_mm=self.disc_min_height_mm,
                       endplate_contrast_hu=self.endplate_contrast_hu,
                       endplate_search_mm=self.endplate_search_mm,
                       dark_disc_contrast_hu=self.dark_disc_contrast_hu,
                       endplate_prominence_hu=self.endplate_prominence_hu,
                       endplate_pair_max_mm=self.endplate_pair_max_mm,
                       partial_split_min_height_mm=self.partial_split_min_height_mm,
                       body_min_height_mm=self.body_min_height_mm,
                       body_max_semi_lateral_mm=self.body_max_semi_lateral_mm,
                       body_max_semi_ap_mm=self.body_max_semi_ap_mm,
                       rib_core_radius_mm=self.rib_core_radius_mm,
                       rib_core_half_width_mm=self.rib_core_half_width_mm,
                       rib_min_lateral_mm=self.rib_min_lateral_mm,
                       rib_max_volume_ml=self.rib_max_volume_ml,
                       ilium_min_lateral_mm=self.ilium_min_lateral_mm,
                       sacrum_min_height_mm=self.sacrum_min_height_mm,
                       sacral_band_contrast_hu=self.sacral_band_contrast_hu,
                       s1_height_ratio=self.s1_height_ratio)
        check_non_negative(p, body_opening_mm=self.body_opening_mm,
                           disc_merge_gap_mm=self.disc_merge_gap_mm,
                           rib_attach_gap_mm=self.rib_attach_gap_mm,
                           rib_search_margin_mm=self.rib_search_margin_mm,
                           trabecular_erosion_mm=self.trabecular_erosion_mm,
                           dense_exclusion_margin_mm=self.dense_exclusion_margin_mm)
        check_ordered(p, "disc_min_height_mm", self.disc_min_height_mm, "disc_max_height_mm",
                      self.disc_max_height_mm)
        check_ordered(p, "body_min_height_mm", self.body_min_height_mm, "body_max_height_mm",
                      self.body_max_height_mm)
        check_ordered(p, "rib_core_radius_mm", self.rib_core_radius_mm, "rib_min_lateral_mm",
                      self.rib_min_lateral_mm)
        check_ordered(p, "rib_min_lateral_mm", self.rib_min_lateral_mm, "short_rib_max_lateral_mm",
                      self.short_rib_max_lateral_mm)
        if self.trabecular_min_voxels < 1:
            raise ConfigError(f"{p}.trabecular_min_voxels: must be ≥ 1, found "
                              f"{self.trabecular_min_voxels}.")
        check_fraction(p, confidence_anchors_agree=self.confidence_anchors_agree,
                       confidence_conflict_explained=self.confidence_conflict_explained,
                       confidence_sacrum_only=self.confidence_sacrum_only,
                       confidence_ribs_only=self.confidence_ribs_only,
                       confidence_ribs_at_edge=self.confidence_ribs_at_edge,
                       confidence_conflict_unexplained=self.confidence_conflict_unexplained,
                       confidence_no_anchor=self.confidence_no_anchor,
                       min_confidence_for_level=self.min_confidence_for_level)
        if not (self.confidence_anchors_agree > self.confidence_conflict_explained
                >= self.confidence_conflict_unexplained > self.confidence_no_anchor):
            raise ConfigError(
                f"{p}: confidences must fall from anchors_agree over conflict_explained and "
                "conflict_unexplained to no_anchor.")


@dataclass(frozen=True, kw_only=True)
class OsteoporosisConfig:
    """Opportunistic osteoporosis screening from trabecular attenuation (Pickhardt 2013)."""

    level: str = "L1"
    highly_specific_hu: float = 110.0
    sensitive_hu: float = 160.0
    citation: str = ("Pickhardt PJ et al., Ann Intern Med 2013;158(8):588-595: L1 trabecular "
                     "attenuation <= 110 HU >90% specific, <= 160 HU >90% sensitive for "
                     "osteoporosis (DXA T-score <= -2.5)")

    def __post_init__(self) -> None:
        check_ordered("osteoporosis", "highly_specific_hu", self.highly_specific_hu, "sensitive_hu",
                      self.sensitive_hu)
        if not self.level.strip():
            raise ConfigError("osteoporosis.level: must name a vertebra such as 'L1'.")


@dataclass(frozen=True, kw_only=True)
class CandidateConfig:
    """Sclerotic-lesion candidates inside bone."""

    seed_contrast_hu: float = 280.0
    seed_min_hu: float = 420.0
    seed_mean_contrast_hu: float = 120.0
    grow_contrast_hu: float = 180.0
    background_sigma_mm: float = 6.0
    background_max_hu: float = 350.0
    interior_margin_mm: float = 1.5
    cortex_margin_mm: float = 3.0
    shell_mm: float = 3.0
    core_erosion_mm: float = 1.5
    min_core_fraction: float = 0.15
    split_contrast_hu: float = 150.0
    split_similarity: float = 0.25
    min_marrow_fraction: float = 0.5
    fragment_max_volume_ml: float = 1.0
    fragment_max_depth_mm: float = 5.0
    hole_min_hu: float = 40.0
    min_volume_ml: float = 0.2
    min_depth_mm: float = 2.0
    box_margin_mm: float = 6.0
    endplate_band_max_thickness_ratio: float = 0.35
    endplate_band_min_width_mm: float = 15.0
    endplate_distance_mm: float = 6.0
    band_max_thickness_mm: float = 7.0
    osteophyte_outside_fraction: float = 0.5
    plate_max_thickness_ratio: float = 0.3
    max_candidates: int = 500
    score_contrast_hu: float = 400.0
    score_volume_ml: float = 0.3
    column_radius_mm: float = 60.0
    max_pixel_mm: float = 1.0
    max_slice_mm: float = 2.0
    coarse_ct: str = "refuse"
    body_posterior_margin_mm: float = 4.0

    def __post_init__(self) -> None:
        p = "candidates"
        check_positive(p, seed_contrast_hu=self.seed_contrast_hu,
                       grow_contrast_hu=self.grow_contrast_hu,
                       seed_mean_contrast_hu=self.seed_mean_contrast_hu,
                       background_sigma_mm=self.background_sigma_mm,
                       min_volume_ml=self.min_volume_ml,
                       shell_mm=self.shell_mm, split_contrast_hu=self.split_contrast_hu,
                       fragment_max_volume_ml=self.fragment_max_volume_ml,
                       fragment_max_depth_mm=self.fragment_max_depth_mm,
                       endplate_band_min_width_mm=self.endplate_band_min_width_mm,
                       score_contrast_hu=self.score_contrast_hu,
                       score_volume_ml=self.score_volume_ml,
                       column_radius_mm=self.column_radius_mm)
        check_non_negative(p, interior_margin_mm=self.interior_margin_mm,
                           cortex_margin_mm=self.cortex_margin_mm,
                           min_depth_mm=self.min_depth_mm, box_margin_mm=self.box_margin_mm,
                           endplate_distance_mm=self.endplate_distance_mm,
                           band_max_thickness_mm=self.band_max_thickness_mm)
        check_ordered(p, "grow_contrast_hu", self.grow_contrast_hu, "seed_contrast_hu",
                      self.seed_contrast_hu)
        check_fraction(p, endplate_band_max_thickness_ratio=self.endplate_band_max_thickness_ratio,
                       osteophyte_outside_fraction=self.osteophyte_outside_fraction,
                       min_marrow_fraction=self.min_marrow_fraction,
                       plate_max_thickness_ratio=self.plate_max_thickness_ratio)
        if self.coarse_ct not in ("refuse", "search"):
            raise ConfigError(f"{p}.coarse_ct: expected 'refuse' or 'search', found "
                              f"{self.coarse_ct!r}.")
        if self.max_candidates < 1:
            raise ConfigError(f"{p}.max_candidates: must be ≥ 1, found {self.max_candidates}.")


@dataclass(frozen=True, kw_only=True)
class DetectionConfig:
    """Every table of ``configs/detection.toml``."""

    bone: BoneConfig = field(default_factory=BoneConfig)
    vertebrae: VertebraConfig = field(default_factory=VertebraConfig)
    osteoporosis: OsteoporosisConfig = field(default_factory=OsteoporosisConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)


def detection_config_from_mapping(data: Mapping[str, Any]) -> DetectionConfig:
    """Build a `DetectionConfig` from parsed TOML (a top-level ``[detection]`` table too).

    Raises
    ------
    ConfigError
        On an unknown key, a wrong type or a value out of range; names the dotted key.
    """
    if set(data) == {"detection"}:
        return build_config(DetectionConfig, data["detection"], prefix="detection")
    return build_config(DetectionConfig, data, prefix="detection")


def load_detection_config(path: str | Path | None = None) -> DetectionConfig:
    """Read a detection TOML file; ``None`` gives the defaults (= configs/detection.toml).

    Raises
    ------
    ConfigError
        Missing or invalid file, unknown key or bad value.
    """
    if path is None:
        return DetectionConfig()
    try:
        return detection_config_from_mapping(read_toml(path))
    except ConfigError as exc:
        if str(path) in str(exc):
            raise
        raise ConfigError(f"Detection config {path}: {exc}") from exc
