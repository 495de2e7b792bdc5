"""The lesion table (lesions.csv): one row per lesion, measurements plus the call columns."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bonelesion.model.results import LesionMeasurements
from bonelesion.report.study import StudyResult
from bonelesion.stages.output import CSV_COLUMNS, EXTRA_CSV_COLUMNS, csv_cell, lesion_row

__all__ = [
    "measurement_columns", "lesion_table_rows", "write_lesion_table", "CALL_COLUMNS",
    "MEASUREMENT_COLUMNS",
]

#: Measurement columns, required ones first (names kept stable for users' analyses).
MEASUREMENT_COLUMNS = CSV_COLUMNS + EXTRA_CSV_COLUMNS
#: Columns the call adds (`LesionCall.table_columns`).
CALL_COLUMNS = ("label", "probability_malignant", "reasons", "sins_total_min_points",
                "sins_total_max_points", "sins_band", "escc_grade", "escc_high_grade")


def measurement_columns(m: LesionMeasurements) -> dict[str, Any]:
    """Measurement columns of one lesion: the canonical row of `bonelesion measure`.

    The same names in every lesions.csv we write (``ct_voxels``, ``ct_attenuation_mean_hu``,
    ``mr_chemical_shift_ratio``, ``mr_fat_fraction``, ``adc_mean_mm2_per_s`` …; see
    `bonelesion.stages.output.CSV_COLUMNS`), formatted as CSV cells.
    """
    row = lesion_row(m)
    return {c: csv_cell(row[c]) for c in MEASUREMENT_COLUMNS}


def lesion_table_rows(studies: Sequence[StudyResult]) -> list[dict[str, Any]]:
    """All rows of the lesion table, measurements then call columns."""
    rows = []
    for study in studies:
        for m, call in zip(study.lesions, study.calls, strict=True):
            rows.append({**measurement_columns(m), **call.table_columns()})
    return rows


def write_lesion_table(path: str | Path, studies: Sequence[StudyResult]) -> Path:
    """Write lesions.csv (UTF-8, header always present); returns the path."""
    path = Path(path)
    rows = lesion_table_rows(studies)
    header = list(MEASUREMENT_COLUMNS) + list(CALL_COLUMNS)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path
