"""The lesion table (lesions.csv): one documented column order, derived from study documents.

Every lesions.csv we write (per study, and the batch table of ``measure``/``run``) has the
columns of `LESION_COLUMNS`, in that order. A row is derived from a study document's lesion
entry (`bonelesion.report.document`), so the table and results.json cannot disagree. Rows are
native Python values (numbers are numbers, ``reasons`` a mapping); `csv_cell` formats them:
an empty cell is a value the study could not give (results.json says why under
``missing``), booleans are ``true``/``false``, floats round-trip, structured values are
compact JSON, b-value lists are joined by ``;``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion.model.results import ANNOTATION_KEYS

__all__ = ["Column", "LESION_COLUMNS", "COLUMN_NAMES", "MEASUREMENT_FIELDS", "CALL_COLUMNS",
           "call_cells", "lesion_rows", "csv_cell", "rows_csv_text", "lesions_csv_text",
           "write_lesions_csv"]

Entry = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column: its name, what it holds, and how to read it from a study document."""

    name: str
    description: str
    get: Callable[[Entry, Entry], Any]


#: Measurement columns → (result part, field of its record), in table order: the columns
#: named in schema 1.0 first, then further statistics, then the reliability of each
#: measurement (issue "calls a radiologist can rely on": what the classifier sets aside).
#: `bonelesion.report.recall` reads a table back through the same mapping.
MEASUREMENT_FIELDS: Mapping[str, tuple[str, str]] = {
    "ct_series_uid": ("ct", "series_instance_uid"),
    "ct_voxels": ("ct", "lesion_voxel_count"),
    "ct_volume_ml": ("ct", "lesion_volume_ml"),
    "ct_attenuation_mean_hu": ("ct", "attenuation_mean_hu"),
    "ct_attenuation_median_hu": ("ct", "attenuation_median_hu"),
    "ct_attenuation_max_hu": ("ct", "attenuation_max_hu"),
    "ct_attenuation_sd_hu": ("ct", "attenuation_sd_hu"),
    "ct_attenuation_p95_hu": ("ct", "attenuation_p95_hu"),
    "mr_chemical_shift_ratio": ("chemical_shift", "chemical_shift_ratio"),
    "mr_signal_drop_pct": ("chemical_shift", "signal_drop_pct"),
    "mr_fat_fraction": ("chemical_shift", "fat_fraction"),
    "adc_mean_mm2_per_s": ("adc", "adc_mean_mm2_per_s"),
    "adc_median_mm2_per_s": ("adc", "adc_median_mm2_per_s"),
    "adc_p10_mm2_per_s": ("adc", "adc_p10_mm2_per_s"),
    "adc_source": ("adc", "adc_source"),
    "ct_core_voxels": ("ct", "core_voxel_count"),
    "ct_attenuation_min_hu": ("ct", "attenuation_min_hu"),
    "ct_attenuation_p05_hu": ("ct", "attenuation_p05_hu"),
    "mr_in_phase_series_uid": ("chemical_shift", "in_phase_series_uid"),
    "mr_opposed_phase_series_uid": ("chemical_shift", "opposed_phase_series_uid"),
    "mr_voxels": ("chemical_shift", "voxel_count"),
    "adc_series_uid": ("adc", "series_instance_uid"),
    "adc_voxels": ("adc", "voxel_count"),
    "adc_p90_mm2_per_s": ("adc", "adc_p90_mm2_per_s"),
    "adc_sd_mm2_per_s": ("adc", "adc_sd_mm2_per_s"),
    "adc_b_values_s_per_mm2": ("adc", "b_values_s_per_mm2"),
    "ct_erosion_margin_mm": ("ct", "erosion_margin_mm"),
    "mr_signal_in_phase_mean": ("chemical_shift", "signal_in_phase_mean"),
    "mr_signal_opposed_phase_mean": ("chemical_shift", "signal_opposed_phase_mean"),
    "mr_normalised_chemical_shift_ratio": ("chemical_shift", "normalised_chemical_shift_ratio"),
    "mr_echo_time_in_phase_ms": ("chemical_shift", "echo_time_in_phase_ms"),
    "mr_echo_time_opposed_phase_ms": ("chemical_shift", "echo_time_opposed_phase_ms"),
    "mr_magnetic_field_strength_t": ("chemical_shift", "magnetic_field_strength_t"),
    "ct_erosion_fell_back": ("ct", "erosion_fell_back"),
    "ct_attenuation_central_slice_max_hu": ("ct", "attenuation_central_slice_max_hu"),
    "ct_central_slice_voxels": ("ct", "central_slice_voxel_count"),
    "mr_signal_water_mean": ("chemical_shift", "signal_water_mean"),
    "mr_signal_fat_mean": ("chemical_shift", "signal_fat_mean"),
    "mr_snr_in_phase": ("chemical_shift", "snr_in_phase"),
    "mr_snr_opposed_phase": ("chemical_shift", "snr_opposed_phase"),
    "mr_snr_water": ("chemical_shift", "snr_water"),
    "mr_snr_fat": ("chemical_shift", "snr_fat"),
    "mr_reference_voxels": ("chemical_shift", "reference_voxel_count"),
    "mr_reference_signal_in_phase": ("chemical_shift", "reference_signal_in_phase"),
    "mr_reference_signal_water": ("chemical_shift", "reference_signal_water"),
    "mr_in_phase_relative_to_reference": ("chemical_shift", "in_phase_relative_to_reference"),
    "mr_water_relative_to_reference": ("chemical_shift", "water_relative_to_reference"),
    "adc_map_degenerate": ("adc", "map_degenerate"),
    "adc_low_b_value_s_per_mm2": ("adc", "low_b_value_s_per_mm2"),
    "adc_signal_low_b_mean": ("adc", "signal_low_b_mean"),
    "adc_snr_low_b": ("adc", "snr_low_b"),
    "adc_reference_voxels": ("adc", "reference_voxel_count"),
    "adc_reference_signal_low_b": ("adc", "reference_signal_low_b"),
    "adc_low_b_relative_to_reference": ("adc", "low_b_relative_to_reference"),
}


def _m(part: str, key: str) -> Callable[[Entry, Entry], Any]:
    def get(_doc: Entry, lesion: Entry) -> Any:
        values = lesion["measurements"].get(part)
        return None if values is None else values.get(key)
    return get


def _annotation(key: str) -> Callable[[Entry, Entry], Any]:
    return lambda _doc, lesion: (lesion.get("annotations") or {}).get(key)


def call_cells(call: Mapping[str, Any]) -> dict[str, Any]:
    """Return the call columns of one lesion (native values) from its call record."""
    sins, escc = call.get("sins"), call.get("escc")
    p = call.get("probability_malignant")
    return {
        "label": call.get("label"),
        "probability_malignant": None if p is None else round(float(p), 6),
        "reasons": {k: call.get(k) for k in _REASON_KEYS if k in call},
        "sins_total_min_points": None if sins is None else sins.get("total_min_points"),
        "sins_total_max_points": None if sins is None else sins.get("total_max_points"),
        "sins_band": None if sins is None else sins.get("band"),
        "escc_grade": None if escc is None else escc.get("grade"),
        "escc_high_grade": None if escc is None else escc.get("high_grade"),
    }


#: Keys of a call record kept in the ``reasons`` column (the explanation of the call).
_REASON_KEYS = ("method", "statement", "prior", "decision", "set_aside", "features")

#: Columns the call adds, in order (`call_cells`).
CALL_COLUMNS = ("label", "probability_malignant", "reasons", "sins_total_min_points",
                "sins_total_max_points", "sins_band", "escc_grade", "escc_high_grade")


def _call(key: str) -> Callable[[Entry, Entry], Any]:
    return lambda _doc, lesion: call_cells(lesion["call"])[key]


def _centre(k: int) -> Callable[[Entry, Entry], Any]:
    return lambda _doc, lesion: (lesion.get("center_lps_mm") or [None] * 3)[k]


def _missing(_doc: Entry, lesion: Entry) -> Any:
    missing = lesion.get("missing") or {}
    return "; ".join(f"{k}: {v}" for k, v in sorted(missing.items())) or None


#: The columns of every lesions.csv, in order (names of schema 1.0 kept).
LESION_COLUMNS: tuple[Column, ...] = (
    Column("patient", "patient label: PatientID, or its keyed pseudonym with --pseudonymise",
           lambda doc, _: doc["study"]["patient"]),
    Column("study_instance_uid", "StudyInstanceUID",
           lambda doc, _: doc["study"]["study_instance_uid"]),
    Column("lesion_id", "lesion identifier from the ROI source",
           lambda _doc, lesion: lesion["lesion_id"]),
    Column("vertebra", "level of the bone holding the lesion's centre (T12, L3, S1, sacrum, "
           "ilium; empty: unknown), from the vertebra labelling of the study's CT",
           lambda _doc, lesion: lesion.get("vertebra") or None),
    Column("vertebra_confidence", "confidence of that level (0-1, ordinal; see results.json "
           "spine for the reasons)", lambda _doc, lesion: lesion.get("vertebra_confidence")),
    *(Column(f"center_{axis}_mm", f"lesion centre, LPS {axis.upper()} (mm)", _centre(k))
      for k, axis in enumerate(("l", "p", "s"))),
    Column("detected", "true: found by CT candidate detection; false: from an ROI file",
           lambda _doc, lesion: bool(lesion.get("detected"))),
    Column("detection_score", "detection score of the candidate (0-1)",
           lambda _doc, lesion: lesion.get("detection_score")),
    *(Column(name, f"{part}.{field}", _m(part, field))
      for name, (part, field) in MEASUREMENT_FIELDS.items()),
    *(Column(key, f"annotation {key} (from the ROI source)", _annotation(key))
      for key in ANNOTATION_KEYS if key not in CALL_COLUMNS),
    Column("missing", "features the study could not give, with the reasons", _missing),
    Column("warnings", "number of data-quality warnings (results.json lists them)",
           lambda _doc, lesion: len(lesion.get("warnings") or ()) or None),
    *(Column(name, f"call: {name}", _call(name)) for name in CALL_COLUMNS),
)

#: Column names in order.
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in LESION_COLUMNS)


def lesion_rows(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the table rows (native values) of one study document, in lesion order."""
    return [{c.name: c.get(document, lesion) for c in LESION_COLUMNS}
            for lesion in document["lesions"]]


#: ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, its encoder made once.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def csv_cell(value: Any) -> str:
    """Format one CSV cell (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return ";".join(f"{v:g}" for v in value)
    if isinstance(value, (list, tuple, dict)):
        return _COMPACT_JSON.encode(value)
    return str(value)


def lesions_csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """Return the text of a lesions.csv (header always present, Unix line ends).

    Columns are `COLUMN_NAMES`; columns a custom per-study function adds beyond them follow,
    sorted by name.
    """
    rows = list(rows)
    extra = sorted({k for r in rows for k in r} - set(COLUMN_NAMES))
    return rows_csv_text([*COLUMN_NAMES, *extra], rows)


def rows_csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Return CSV text of rows over ``columns`` (header always present, Unix line ends).

    Every cell is written by `csv_cell`; a column a row lacks is empty. The text is that of
    `csv.writer` (minimal quoting, ``"`` doubled), each line joined here (`_csv_line`).
    """
    lines = [_csv_line(list(columns))]
    for row in rows:  # most cells are empty or text: those skip csv_cell
        lines.append(_csv_line([
            "" if value is None else value if type(value) is str else csv_cell(value)
            for value in [row.get(name) for name in columns]]))
    return "".join(lines)


#: Characters for which `csv.writer` (excel dialect, "\n" line ends) quotes a cell, and
#: those after which `_csv_line` leaves the line to it.
_CSV_SPECIAL = re.compile(r'[,"\n\r\x00]')


def _csv_line(cells: list[str]) -> str:
    """Return the line ``csv.writer`` (excel dialect, line feed ends) writes for ``cells``.

    Joined in Python, which is ~4x faster than the writer for cells of long JSON (its
    quoting walks every character in a loop): a cell with a delimiter, a quote or a line
    feed is quoted, its quotes doubled (`csv.QUOTE_MINIMAL`). A line of fewer than two cells
    (the writer quotes a lone empty cell) or with a carriage return or a NUL (whose
    handling differs between Python versions) is left to the writer itself.
    """
    if len(cells) > 1:
        out = []
        for cell in cells:
            if _CSV_SPECIAL.search(cell) is None:
                out.append(cell)
            elif "\r" in cell or "\x00" in cell:
                break
            else:
                out.append('"' + cell.replace('"', '""') + '"')
        else:
            return ",".join(out) + "\n"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def write_lesions_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write lesions.csv (UTF-8); returns the path."""
    path = Path(path)
    path.write_text(lesions_csv_text(rows), encoding="utf-8")
    return path
