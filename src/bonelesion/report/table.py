"""The lesion table (lesions.csv): one row per lesion, measurements plus the call columns."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bonelesion.classify.call import LesionCall
from bonelesion.model.results import LesionMeasurements
from bonelesion.report.study import StudyResult

__all__ = ["measurement_columns", "lesion_table_rows", "write_lesion_table", "CALL_COLUMNS"]

#: Columns the call adds (`LesionCall.table_columns`).
CALL_COLUMNS = ("label", "probability_malignant", "reasons", "sins_total_min_points",
                "sins_total_max_points", "sins_band", "escc_grade", "escc_high_grade")

_SKIP = {"lesion_id", "warnings", "provenance"}


def _prefixed(prefix: str, name: str) -> str:
    return name if name.startswith(prefix) else f"{prefix}_{name}"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, tuple):
        return ";".join(str(v) for v in value)
    return value


def measurement_columns(m: LesionMeasurements) -> dict[str, Any]:
    """Flat measurement columns of one lesion (``ct_*``, ``chemical_shift_*``, ``adc_*``).

    Every field of each present result is written (empty when the result is absent), so all
    rows share one header. Examples: ``ct_attenuation_mean_hu``, ``chemical_shift_ratio``,
    ``chemical_shift_fat_fraction``, ``adc_mean_mm2_per_s``.
    """
    from bonelesion.model.results import AdcResult, ChemicalShiftResult, CtAttenuationResult

    row: dict[str, Any] = {"study_instance_uid": m.study_instance_uid, "lesion_id": m.lesion_id}
    for prefix, cls, value in (("ct", CtAttenuationResult, m.ct),
                               ("chemical_shift", ChemicalShiftResult, m.chemical_shift),
                               ("adc", AdcResult, m.adc)):
        for f in dataclasses.fields(cls):
            if f.name in _SKIP:
                continue
            row[_prefixed(prefix, f.name)] = _cell(getattr(value, f.name) if value else None)
    row["missing"] = "; ".join(f"{k}: {v}" for k, v in m.missing.items())
    return row


def lesion_table_rows(studies: Sequence[StudyResult]) -> list[dict[str, Any]]:
    """All rows of the lesion table, measurements then call columns."""
    rows = []
    for study in studies:
        for m, call in zip(study.lesions, study.calls, strict=True):
            rows.append({**measurement_columns(m), **_call_columns(call)})
    return rows


def _call_columns(call: LesionCall) -> dict[str, Any]:
    return call.table_columns()


def write_lesion_table(path: str | Path, studies: Sequence[StudyResult]) -> Path:
    """Write lesions.csv (UTF-8, header always present); returns the path."""
    from bonelesion.model.results import LesionMeasurements

    path = Path(path)
    rows = lesion_table_rows(studies)
    header = list(measurement_columns(LesionMeasurements(study_instance_uid="", lesion_id="")))
    header += list(CALL_COLUMNS)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path
