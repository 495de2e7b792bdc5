"""Writers of the measure command: ``lesions.csv`` (tidy table) and ``results.json`` (canonical).

``lesions.csv`` has one row per lesion and study; its first columns are fixed (`CSV_COLUMNS`)
and further columns follow. An empty cell means the study could not give the value; the
reason is in ``results.json`` (``missing``).
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import json
import math
import platform
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bonelesion import __version__
from bonelesion.config import config_to_dict
from bonelesion.model.results import ANNOTATION_KEYS, LesionMeasurements

__all__ = ["CSV_COLUMNS", "EXTRA_CSV_COLUMNS", "lesion_row", "write_lesions_csv",
           "results_document", "write_results_json", "RESULTS_SCHEMA_VERSION", "csv_cell",
           "DEPENDENCIES", "dependency_versions", "to_jsonable", "write_json"]

RESULTS_SCHEMA_VERSION = "1.0"

CSV_COLUMNS = (
    "study_instance_uid", "lesion_id", "ct_series_uid", "ct_voxels", "ct_volume_ml",
    "ct_attenuation_mean_hu", "ct_attenuation_median_hu", "ct_attenuation_max_hu",
    "ct_attenuation_sd_hu", "ct_attenuation_p95_hu", "mr_chemical_shift_ratio",
    "mr_signal_drop_pct", "mr_fat_fraction", "adc_mean_mm2_per_s", "adc_median_mm2_per_s",
    "adc_p10_mm2_per_s", "adc_source",
)
EXTRA_CSV_COLUMNS = (
    "ct_core_voxels", "ct_attenuation_min_hu", "ct_attenuation_p05_hu",
    "mr_in_phase_series_uid", "mr_opposed_phase_series_uid", "mr_voxels",
    "adc_series_uid", "adc_voxels", "adc_p90_mm2_per_s",
    "adc_sd_mm2_per_s", "adc_b_values_s_per_mm2", "ct_erosion_margin_mm",
    "mr_signal_in_phase_mean", "mr_signal_opposed_phase_mean",
    "mr_normalised_chemical_shift_ratio", "mr_echo_time_in_phase_ms",
    "mr_echo_time_opposed_phase_ms", "mr_magnetic_field_strength_t",
    # reliability of each measurement (issue 18): the classifier sets aside what fails them
    "ct_erosion_fell_back", "ct_attenuation_central_slice_max_hu", "ct_central_slice_voxels",
    "mr_signal_water_mean", "mr_signal_fat_mean", "mr_snr_in_phase", "mr_snr_opposed_phase",
    "mr_snr_water", "mr_snr_fat", "mr_reference_voxels", "mr_reference_signal_in_phase",
    "mr_reference_signal_water", "mr_in_phase_relative_to_reference",
    "mr_water_relative_to_reference", "adc_map_degenerate", "adc_low_b_value_s_per_mm2",
    "adc_signal_low_b_mean", "adc_snr_low_b", "adc_reference_voxels",
    "adc_reference_signal_low_b", "adc_low_b_relative_to_reference",
    "treated",
    # the other annotations the classifier reads, so a table can be re-called on its own
    *(k for k in ANNOTATION_KEYS if k != "treated"),
    "missing", "warnings",
)

#: Distributions whose versions every report records.
DEPENDENCIES = ("numpy", "scipy", "scikit-image", "pydicom", "highdicom", "SimpleITK", "nibabel",
                "pillow", "pylibjpeg", "dask")


def lesion_row(m: LesionMeasurements) -> dict[str, Any]:
    """Return the CSV row of one lesion (None for a value the study could not give)."""
    ct, cs, adc = m.ct, m.chemical_shift, m.adc
    row: dict[str, Any] = {
        "study_instance_uid": m.study_instance_uid,
        "lesion_id": m.lesion_id,
        "ct_series_uid": ct.series_instance_uid if ct else None,
        "ct_voxels": ct.lesion_voxel_count if ct else None,
        "ct_volume_ml": ct.lesion_volume_ml if ct else None,
        "ct_attenuation_mean_hu": ct.attenuation_mean_hu if ct else None,
        "ct_attenuation_median_hu": ct.attenuation_median_hu if ct else None,
        "ct_attenuation_max_hu": ct.attenuation_max_hu if ct else None,
        "ct_attenuation_sd_hu": ct.attenuation_sd_hu if ct else None,
        "ct_attenuation_p95_hu": ct.attenuation_p95_hu if ct else None,
        "mr_chemical_shift_ratio": cs.chemical_shift_ratio if cs else None,
        "mr_signal_drop_pct": cs.signal_drop_pct if cs else None,
        "mr_fat_fraction": cs.fat_fraction if cs else None,
        "adc_mean_mm2_per_s": adc.adc_mean_mm2_per_s if adc else None,
        "adc_median_mm2_per_s": adc.adc_median_mm2_per_s if adc else None,
        "adc_p10_mm2_per_s": adc.adc_p10_mm2_per_s if adc else None,
        "adc_source": adc.adc_source if adc else None,
        "ct_core_voxels": ct.core_voxel_count if ct else None,
        "ct_attenuation_min_hu": ct.attenuation_min_hu if ct else None,
        "ct_attenuation_p05_hu": ct.attenuation_p05_hu if ct else None,
        "mr_in_phase_series_uid": cs.in_phase_series_uid if cs else None,
        "mr_opposed_phase_series_uid": cs.opposed_phase_series_uid if cs else None,
        "mr_voxels": cs.voxel_count if cs else None,
        "adc_series_uid": adc.series_instance_uid if adc else None,
        "adc_voxels": adc.voxel_count if adc else None,
        "adc_p90_mm2_per_s": adc.adc_p90_mm2_per_s if adc else None,
        "adc_sd_mm2_per_s": adc.adc_sd_mm2_per_s if adc else None,
        "adc_b_values_s_per_mm2": (
            ";".join(f"{b:g}" for b in adc.b_values_s_per_mm2) or None if adc else None
        ),
        "ct_erosion_margin_mm": ct.erosion_margin_mm if ct else None,
        "mr_signal_in_phase_mean": cs.signal_in_phase_mean if cs else None,
        "mr_signal_opposed_phase_mean": cs.signal_opposed_phase_mean if cs else None,
        "mr_normalised_chemical_shift_ratio": cs.normalised_chemical_shift_ratio if cs else None,
        "mr_echo_time_in_phase_ms": cs.echo_time_in_phase_ms if cs else None,
        "mr_echo_time_opposed_phase_ms": cs.echo_time_opposed_phase_ms if cs else None,
        "mr_magnetic_field_strength_t": cs.magnetic_field_strength_t if cs else None,
        "ct_erosion_fell_back": ct.erosion_fell_back if ct else None,
        "ct_attenuation_central_slice_max_hu": ct.attenuation_central_slice_max_hu if ct else None,
        "ct_central_slice_voxels": ct.central_slice_voxel_count if ct else None,
        "mr_signal_water_mean": cs.signal_water_mean if cs else None,
        "mr_signal_fat_mean": cs.signal_fat_mean if cs else None,
        "mr_snr_in_phase": cs.snr_in_phase if cs else None,
        "mr_snr_opposed_phase": cs.snr_opposed_phase if cs else None,
        "mr_snr_water": cs.snr_water if cs else None,
        "mr_snr_fat": cs.snr_fat if cs else None,
        "mr_reference_voxels": cs.reference_voxel_count if cs else None,
        "mr_reference_signal_in_phase": cs.reference_signal_in_phase if cs else None,
        "mr_reference_signal_water": cs.reference_signal_water if cs else None,
        "mr_in_phase_relative_to_reference": cs.in_phase_relative_to_reference if cs else None,
        "mr_water_relative_to_reference": cs.water_relative_to_reference if cs else None,
        "adc_map_degenerate": adc.map_degenerate if adc else None,
        "adc_low_b_value_s_per_mm2": adc.low_b_value_s_per_mm2 if adc else None,
        "adc_signal_low_b_mean": adc.signal_low_b_mean if adc else None,
        "adc_snr_low_b": adc.snr_low_b if adc else None,
        "adc_reference_voxels": adc.reference_voxel_count if adc else None,
        "adc_reference_signal_low_b": adc.reference_signal_low_b if adc else None,
        "adc_low_b_relative_to_reference": adc.low_b_relative_to_reference if adc else None,
        **{k: m.annotations.get(k) for k in ANNOTATION_KEYS},
        "missing": "; ".join(f"{k}: {v}" for k, v in sorted(m.missing.items())) or None,
        "warnings": len(m.warnings) or None,
    }
    return row


def csv_cell(value: Any) -> str:
    """Format one CSV cell: empty for None/NaN, ``true``/``false``, floats round-trip."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return str(value)


def write_lesions_csv(measurements: Sequence[LesionMeasurements], path: str | Path) -> Path:
    """Write ``lesions.csv``: `CSV_COLUMNS` then `EXTRA_CSV_COLUMNS`; empty = not available."""
    path = Path(path)
    columns = CSV_COLUMNS + EXTRA_CSV_COLUMNS
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for m in measurements:
            row = lesion_row(m)
            writer.writerow([csv_cell(row[c]) for c in columns])
    return path


def to_jsonable(obj: Any) -> Any:
    """Plain JSON form of dataclasses, mappings, enums and numbers (NaN/inf → None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return to_jsonable(obj.item())
    return str(obj)


def dependency_versions() -> dict[str, str]:
    """Installed versions of bonelesion's dependencies ("not installed" when absent)."""
    out: dict[str, str] = {}
    for name in DEPENDENCIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_json(path: str | Path, document: Mapping[str, Any]) -> Path:
    """Write a document as indented UTF-8 JSON (NaN refused); returns the path."""
    path = Path(path)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                    encoding="utf-8")
    return path


def results_document(
    measurements: Sequence[LesionMeasurements],
    config: Any,
    *,
    inputs: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """Build the canonical JSON document: versions, resolved config, inputs, lesions, warnings.

    Every lesion entry has all results (None when absent) and ``missing``: feature → reason.
    """
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "versions": {"bonelesion": __version__, "python": platform.python_version(),
                     **dependency_versions()},
        "config": config_to_dict(config),
        "inputs": to_jsonable(dict(inputs or {})),
        "warnings": list(warnings),
        "lesions": [
            {
                "study_instance_uid": m.study_instance_uid,
                "lesion_id": m.lesion_id,
                "ct": to_jsonable(m.ct),
                "chemical_shift": to_jsonable(m.chemical_shift),
                "adc": to_jsonable(m.adc),
                "missing": dict(m.missing),
                "annotations": to_jsonable(m.annotations),
                "warnings": list(m.warnings),
            }
            for m in measurements
        ],
    }


def write_results_json(
    measurements: Sequence[LesionMeasurements],
    config: Any,
    path: str | Path,
    *,
    inputs: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> Path:
    """Write ``results.json`` (see `results_document`)."""
    return write_json(path, results_document(measurements, config, inputs=inputs,
                                             warnings=warnings))


def write_nifti(volume: Any, path: str | Path) -> Path:
    """Write a `Volume` as NIfTI-1 (RAS affine; data axes i, j, k = column, row, slice).

    The values are written unchanged (an ADC map stays in mm²/s, NaN where masked).
    """
    import nibabel as nib
    import numpy as np

    path = Path(path)
    data = np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0))
    affine = volume.affine_ras[:, [2, 1, 0, 3]]
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
    return path
