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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Column", "LESION_COLUMNS", "COLUMN_NAMES", "lesion_rows", "csv_cell",
           "lesions_csv_text", "write_lesions_csv"]

Entry = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column: its name, what it holds, and how to read it from a study document."""

    name: str
    description: str
    get: Callable[[Entry, Entry], Any]


def _m(part: str, key: str) -> Callable[[Entry, Entry], Any]:
    def get(_doc: Entry, lesion: Entry) -> Any:
        values = lesion["measurements"].get(part)
        return None if values is None else values.get(key)
    return get


def _call(key: str) -> Callable[[Entry, Entry], Any]:
    return lambda _doc, lesion: lesion["call"].get(key)


def _sins(key: str) -> Callable[[Entry, Entry], Any]:
    def get(_doc: Entry, lesion: Entry) -> Any:
        sins = lesion["call"].get("sins")
        return None if sins is None else sins.get(key)
    return get


def _escc(key: str) -> Callable[[Entry, Entry], Any]:
    def get(_doc: Entry, lesion: Entry) -> Any:
        escc = lesion["call"].get("escc")
        return None if escc is None else escc.get(key)
    return get


def _probability(_doc: Entry, lesion: Entry) -> Any:
    p = lesion["call"].get("probability_malignant")
    return None if p is None else round(float(p), 6)


def _reasons(_doc: Entry, lesion: Entry) -> Any:
    call = lesion["call"]
    return {"method": call.get("method"), "decision": call.get("decision"),
            "features": call.get("features")}


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
    Column("ct_series_uid", "CT series measured", _m("ct", "series_instance_uid")),
    Column("ct_voxels", "lesion voxels on the CT grid", _m("ct", "lesion_voxel_count")),
    Column("ct_volume_ml", "lesion volume on the CT grid, ml", _m("ct", "lesion_volume_ml")),
    Column("ct_attenuation_mean_hu", "mean CT number of the eroded core, HU",
           _m("ct", "attenuation_mean_hu")),
    Column("ct_attenuation_median_hu", "median CT number of the core, HU",
           _m("ct", "attenuation_median_hu")),
    Column("ct_attenuation_max_hu", "maximum CT number of the core, HU",
           _m("ct", "attenuation_max_hu")),
    Column("ct_attenuation_sd_hu", "standard deviation of the core, HU",
           _m("ct", "attenuation_sd_hu")),
    Column("ct_attenuation_p95_hu", "95th percentile of the core, HU",
           _m("ct", "attenuation_p95_hu")),
    Column("mr_chemical_shift_ratio", "SIR = SI(opposed phase) / SI(in phase)",
           _m("chemical_shift", "chemical_shift_ratio")),
    Column("mr_signal_drop_pct", "(1 − SIR) × 100, %", _m("chemical_shift", "signal_drop_pct")),
    Column("mr_fat_fraction", "signal fat fraction F / (W + F) from Dixon water and fat",
           _m("chemical_shift", "fat_fraction")),
    Column("adc_mean_mm2_per_s", "mean ADC of the core, mm²/s", _m("adc", "adc_mean_mm2_per_s")),
    Column("adc_median_mm2_per_s", "median ADC, mm²/s", _m("adc", "adc_median_mm2_per_s")),
    Column("adc_p10_mm2_per_s", "10th percentile ADC, mm²/s", _m("adc", "adc_p10_mm2_per_s")),
    Column("adc_source", "scanner (the scanner's ADC map) or fitted (our fit)",
           _m("adc", "adc_source")),
    Column("ct_core_voxels", "voxels of the eroded core", _m("ct", "core_voxel_count")),
    Column("ct_attenuation_min_hu", "minimum CT number of the core, HU",
           _m("ct", "attenuation_min_hu")),
    Column("ct_attenuation_p05_hu", "5th percentile of the core, HU",
           _m("ct", "attenuation_p05_hu")),
    Column("mr_in_phase_series_uid", "in-phase series measured",
           _m("chemical_shift", "in_phase_series_uid")),
    Column("mr_opposed_phase_series_uid", "opposed-phase series measured",
           _m("chemical_shift", "opposed_phase_series_uid")),
    Column("mr_voxels", "core voxels on the in-phase grid", _m("chemical_shift", "voxel_count")),
    Column("adc_series_uid", "ADC (or DWI) series measured", _m("adc", "series_instance_uid")),
    Column("adc_voxels", "core voxels on the ADC grid", _m("adc", "voxel_count")),
    Column("adc_p90_mm2_per_s", "90th percentile ADC, mm²/s", _m("adc", "adc_p90_mm2_per_s")),
    Column("adc_sd_mm2_per_s", "standard deviation of the ADC, mm²/s",
           _m("adc", "adc_sd_mm2_per_s")),
    Column("adc_b_values_s_per_mm2", "b-values fitted (s/mm²), ';'-separated",
           _m("adc", "b_values_s_per_mm2")),
    Column("ct_erosion_margin_mm", "erosion margin of the CT core, mm",
           _m("ct", "erosion_margin_mm")),
    Column("mr_signal_in_phase_mean", "mean in-phase signal of the core",
           _m("chemical_shift", "signal_in_phase_mean")),
    Column("mr_signal_opposed_phase_mean", "mean opposed-phase signal of the core",
           _m("chemical_shift", "signal_opposed_phase_mean")),
    Column("mr_normalised_chemical_shift_ratio", "SIR of the lesion / SIR of reference marrow",
           _m("chemical_shift", "normalised_chemical_shift_ratio")),
    Column("mr_echo_time_in_phase_ms", "in-phase echo time, ms",
           _m("chemical_shift", "echo_time_in_phase_ms")),
    Column("mr_echo_time_opposed_phase_ms", "opposed-phase echo time, ms",
           _m("chemical_shift", "echo_time_opposed_phase_ms")),
    Column("mr_magnetic_field_strength_t", "field strength, T",
           _m("chemical_shift", "magnetic_field_strength_t")),
    Column("treated", "treatment status from the annotations (true, false or empty)",
           lambda _doc, lesion: (lesion.get("annotations") or {}).get("treated")),
    Column("missing", "features the study could not give, with the reasons", _missing),
    Column("warnings", "number of data-quality warnings (results.json lists them)",
           lambda _doc, lesion: len(lesion.get("warnings") or ()) or None),
    Column("label", "the call: malignant, benign or indeterminate", _call("label")),
    Column("probability_malignant", "posterior probability of malignancy", _probability),
    Column("reasons", "JSON: method, decision notes, and per feature its value, threshold, "
           "status (applied or set aside, and why), likelihood ratio and citation", _reasons),
    Column("sins_total_min_points", "SINS total, lowest over unknown items",
           _sins("total_min_points")),
    Column("sins_total_max_points", "SINS total, highest over unknown items",
           _sins("total_max_points")),
    Column("sins_band", "SINS band: stable, potentially unstable, unstable", _sins("band")),
    Column("escc_grade", "Bilsky ESCC grade", _escc("grade")),
    Column("escc_high_grade", "ESCC grade 2 or 3", _escc("high_grade")),
)

#: Column names in order.
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in LESION_COLUMNS)


def lesion_rows(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the table rows (native values) of one study document, in lesion order."""
    return [{c.name: c.get(document, lesion) for c in LESION_COLUMNS}
            for lesion in document["lesions"]]


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
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def lesions_csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """Return the text of a lesions.csv (header always present, Unix line ends).

    Columns are `COLUMN_NAMES`; columns a custom per-study function adds beyond them follow,
    sorted by name.
    """
    rows = list(rows)
    extra = sorted({k for r in rows for k in r} - set(COLUMN_NAMES))
    columns = [*COLUMN_NAMES, *extra]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in columns])
    return buf.getvalue()


def write_lesions_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write lesions.csv (UTF-8); returns the path."""
    path = Path(path)
    path.write_text(lesions_csv_text(rows), encoding="utf-8")
    return path
