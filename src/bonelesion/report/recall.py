"""Re-call a measurement table: ``lesions.csv`` in, the same table with new call columns out.

Researchers try thresholds, priors or a trained model on a cohort they have measured once;
the clinical scenario tests feed constructed rows. No image is read: each row is turned back
into the `LesionMeasurements` it was written from (same column names as ``measure`` / ``run``
write, `bonelesion.report.table`), classified, and written to ``OUT/lesions.csv`` with the
call columns (``label``, ``probability_malignant``, ``reasons``, SINS, ESCC) replaced. Every
other column is kept as it was. ``OUT/classify.json`` records the input (path, SHA-256), the
resolved classifier configuration (prior included), the model and every problem found.

A row is called on what it has: an empty cell is a value the study could not give. A cell
that cannot be read (``abc`` where a number belongs) is a problem of that row, reported with
its line and column; the value is treated as missing (and, for a feature's own value, the
feature as missing with that reason), and the row is still called.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion import __version__
from bonelesion.classify.call import LesionCall
from bonelesion.classify.config import ClassifierConfig
from bonelesion.classify.rules import classify_lesion
from bonelesion.config import config_to_dict
from bonelesion.errors import ConfigError, InputError
from bonelesion.model.results import (
    ANNOTATION_KEYS,
    MISSING_ADC,
    MISSING_CHEMICAL_SHIFT,
    MISSING_CT,
    MISSING_FAT_FRACTION,
    AdcResult,
    ChemicalShiftResult,
    CtAttenuationResult,
    LesionMeasurements,
)
from bonelesion.report.table import CALL_COLUMNS, MEASUREMENT_FIELDS, call_cells, csv_cell

__all__ = ["RowProblem", "RecallResult", "measurements_from_row", "read_measurement_table",
           "recall_table", "check_prior_with_model", "TABLE_FIELDS"]

_FLOAT, _INT, _BOOL, _STR, _BVALS = "float", "int", "bool", "str", "b-values"
_RECORDS: Mapping[str, type[Any]] = {"ct": CtAttenuationResult,
                                     "chemical_shift": ChemicalShiftResult, "adc": AdcResult}


def _kind(part: str, field_name: str) -> str:
    """How a cell of a record field is parsed, from the field's type."""
    import typing

    hint = str(typing.get_type_hints(_RECORDS[part])[field_name])
    if "tuple" in hint:
        return _BVALS
    for name, kind in (("bool", _BOOL), ("int", _INT), ("float", _FLOAT)):
        if name in hint:
            return kind
    return _STR


#: lesions.csv column → (result part, field, kind): `MEASUREMENT_FIELDS` read back.
TABLE_FIELDS: Mapping[str, tuple[str, str, str]] = {
    column: (part, name, _kind(part, name))
    for column, (part, name) in MEASUREMENT_FIELDS.items()
}
#: The column whose value makes a result part present, with the part's record and defaults.
_PARTS: Mapping[str, tuple[str, type[Any], str]] = {
    "ct": ("ct_attenuation_mean_hu", CtAttenuationResult, MISSING_CT),
    "chemical_shift": ("mr_chemical_shift_ratio", ChemicalShiftResult, MISSING_CHEMICAL_SHIFT),
    "adc": ("adc_mean_mm2_per_s", AdcResult, MISSING_ADC),
}
#: Yes/no annotations (empty = unknown).
_FLAG_ANNOTATIONS = ("treated", "sclerotic", "medullary", "endplate_adjacent", "fat_dominant",
                     "t1_bright", "signal_void")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


@dataclass(frozen=True, kw_only=True)
class RowProblem:
    """A value of one row that could not be used (the row is still called)."""

    line: int
    lesion_id: str
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line} (lesion {self.lesion_id!r}), column {self.column!r}: " \
               f"{self.message}"


@dataclass(frozen=True, kw_only=True)
class RecallResult:
    """What `recall_table` wrote and found."""

    lesions_csv: Path
    document_json: Path
    calls: tuple[LesionCall, ...]
    problems: tuple[RowProblem, ...]

    @property
    def label_counts(self) -> dict[str, int]:
        """Number of calls per label."""
        return dict(Counter(c.label.value for c in self.calls))


def _parse(text: str, kind: str) -> Any:
    """Parse one cell (None when empty); ValueError says what was expected."""
    text = text.strip()
    if text == "" or text.lower() in ("nan", "none", "null"):
        return None
    if kind == _STR:
        return text
    if kind == _FLOAT:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    if kind == _INT:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not (math.isfinite(value) and value.is_integer() and value >= 0):
            raise ValueError("expected a whole number ≥ 0")
        return int(value)
    if kind == _BOOL:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("expected true or false")
    if kind == _BVALS:
        try:
            values = tuple(float(v) for v in text.replace(",", ";").split(";") if v.strip())
        except ValueError:
            raise ValueError("expected b-values separated by ';' (e.g. 0;800)") from None
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError("expected b-values ≥ 0")
        return values
    raise AssertionError(kind)


def _missing_column(text: str) -> dict[str, str]:
    """Parse the ``missing`` column ("ct: reason; adc: reason") into a mapping."""
    out: dict[str, str] = {}
    keys = (MISSING_CT, MISSING_CHEMICAL_SHIFT, MISSING_ADC, MISSING_FAT_FRACTION)
    for part in text.split("; "):
        key, sep, reason = part.partition(": ")
        if sep and key in keys:
            out[key] = reason
        elif out:  # a reason that itself holds "; "
            last = next(reversed(out))
            out[last] += "; " + part
    return out


def measurements_from_row(row: Mapping[str, str | None], *, line: int
                          ) -> tuple[LesionMeasurements, list[RowProblem]]:
    """Rebuild one lesion's measurements from a lesions.csv row.

    Parameters
    ----------
    row : mapping
        Column → cell text (csv.DictReader row).
    line : int
        Line number in the file, for the problems.

    Returns
    -------
    (LesionMeasurements, list of RowProblem)
        A result part (ct, chemical_shift, adc) exists when its value column holds a number;
        fields missing from the table are None (NaN for required statistics); unreadable
        cells are problems and count as missing.
    """
    lesion_id = (row.get("lesion_id") or "").strip()
    problems: list[RowProblem] = []
    values: dict[str, dict[str, Any]] = {part: {} for part in _PARTS}
    bad: dict[str, str] = {}
    for column, (part, name, kind) in TABLE_FIELDS.items():
        text = row.get(column)
        if text is None:
            continue
        try:
            value = _parse(text, kind)
        except ValueError as exc:
            problems.append(RowProblem(line=line, lesion_id=lesion_id, column=column,
                                       message=f"{exc}, found {text.strip()!r}; treated as "
                                       "missing"))
            bad[column] = text.strip()
            continue
        if value is not None:
            values[part][name] = value
    missing = _missing_column(row.get("missing") or "")
    parts: dict[str, Any] = {}
    for part, (key_column, cls, missing_key) in _PARTS.items():
        key_field = TABLE_FIELDS[key_column][1]
        if key_field not in values[part]:
            if key_column in bad:
                missing[missing_key] = (f"unreadable value {bad[key_column]!r} in column "
                                        f"{key_column!r} of the table (line {line})")
            else:
                missing.setdefault(missing_key, f"no value in column {key_column!r} of the table")
            continue
        parts[part] = _record(cls, values[part], lesion_id)
    cs = parts.get("chemical_shift")
    if cs is not None and cs.fat_fraction is None:
        missing.setdefault(MISSING_FAT_FRACTION, "no value in column 'mr_fat_fraction'")
    annotations: dict[str, Any] = {}
    for key in ANNOTATION_KEYS:
        text = (row.get(key) or "").strip()
        if not text:
            continue
        if key in _FLAG_ANNOTATIONS:
            low = text.lower()
            if low in _TRUE | _FALSE:
                annotations[key] = low in _TRUE
            else:
                problems.append(RowProblem(line=line, lesion_id=lesion_id, column=key,
                                           message=f"expected true, false or empty, found "
                                           f"{text!r}; treated as not given"))
            continue
        annotations[key] = text
    m = LesionMeasurements(
        study_instance_uid=(row.get("study_instance_uid") or "").strip(), lesion_id=lesion_id,
        ct=parts.get("ct"), chemical_shift=parts.get("chemical_shift"), adc=parts.get("adc"),
        missing=missing, annotations=annotations,
    )
    return m, problems


def _record(cls: type[Any], values: Mapping[str, Any], lesion_id: str) -> Any:
    """Build a result record from a table's fields; absent required ones NaN / '' / None."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kwargs[f.name] = values[f.name]
        elif f.name == "lesion_id":
            kwargs[f.name] = lesion_id
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        elif "float" in str(f.type):
            kwargs[f.name] = float("nan")
        elif "str" in str(f.type):
            kwargs[f.name] = ""
        else:
            kwargs[f.name] = None
    return cls(**kwargs)


def read_measurement_table(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read the header and rows of a lesions.csv.

    Raises
    ------
    InputError
        Unreadable file, no ``lesion_id`` column, a row longer than the header, or no row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"lesion table {path}: cannot be read as UTF-8 text ({exc}). Potential "
                         "fix: pass the lesions.csv written by `bonelesion measure`.") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "lesion_id" not in header:
        raise InputError(
            f"lesion table {path}, line 1: no 'lesion_id' column (found "
            f"{', '.join(header[:8]) or 'no header'}{' …' if len(header) > 8 else ''}); expected "
            "the header of a lesions.csv written by `bonelesion measure` or `run`. Potential "
            "fix: pass that file, or add the columns lesion_id, ct_attenuation_mean_hu, …")
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:
            raise InputError(f"lesion table {path}, line {reader.line_num}: more values than "
                             "header columns. Potential fix: quote cells that hold commas.")
        rows.append({k: v or "" for k, v in row.items()})
    if not rows:
        raise InputError(f"lesion table {path}: no lesion row after the header. Potential fix: "
                         "check the file.")
    return header, rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recall_table(
    table: str | Path,
    out_dir: str | Path,
    *,
    config: ClassifierConfig | None = None,
    model: Any | None = None,
    force: bool = False,
) -> RecallResult:
    """Re-call every row of a measurement table and write ``out_dir/lesions.csv``.

    Parameters
    ----------
    table : path
        A lesions.csv written by ``measure`` / ``run`` (or any CSV with its column names).
    out_dir : path
        Output folder (created); receives ``lesions.csv`` and ``classify.json``.
    config : ClassifierConfig, optional
        Thresholds, gates and prior; default the cited defaults.
    model : LogisticModel, optional
        A trained model to call with instead of the literature rules.
    force : bool
        Overwrite an existing ``out_dir/lesions.csv``.

    Returns
    -------
    RecallResult
        Paths, the calls in row order and the row problems (bad values; invalid SINS/ESCC
        annotations).

    Raises
    ------
    InputError
        Unreadable table, output present without ``force``, or output = input.
    """
    table = Path(table)
    out = Path(out_dir)
    config = config or ClassifierConfig()
    header, rows = read_measurement_table(table)
    target = out / "lesions.csv"
    if target.exists():
        if target.resolve() == table.resolve():
            raise InputError(f"classify: the output {target} is the input table. Potential "
                             "fix: choose another --out folder.")
        if not force:
            raise InputError(f"classify: output {target} already exists. Potential fix: pass "
                             "--force to overwrite it or choose another --out folder.")
    calls: list[LesionCall] = []
    problems: list[RowProblem] = []
    for i, row in enumerate(rows):
        line = i + 2  # header is line 1 (no multi-line cells in our tables)
        m, row_problems = measurements_from_row(row, line=line)
        if not m.lesion_id:
            row_problems.append(RowProblem(line=line, lesion_id="", column="lesion_id",
                                           message="empty lesion_id; called anyway"))
        call = model.call(m, config=config) if model is not None else \
            classify_lesion(m, config=config)
        row_problems += [RowProblem(line=line, lesion_id=m.lesion_id, column="sins/escc",
                                    message=p) for p in call.spine_problems]
        calls.append(call)
        problems += row_problems
    out.mkdir(parents=True, exist_ok=True)
    columns = header + [c for c in CALL_COLUMNS if c not in header]
    with target.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row, call in zip(rows, calls, strict=True):
            writer.writerow({**row, **{k: csv_cell(v)
                                       for k, v in call_cells(call.to_dict()).items()}})
    document = {
        "bonelesion_version": __version__,
        "input": {"path": str(table), "sha256": _sha256(table), "rows": len(rows)},
        "method": "trained_logistic_model" if model is not None else "rules",
        "classifier": config_to_dict(config),
        "model": model.to_dict() if model is not None else None,
        "labels": dict(Counter(c.label.value for c in calls)),
        "problems": [dataclasses.asdict(p) for p in problems],
        "calls": [c.to_dict() for c in calls],
    }
    doc_path = out / "classify.json"
    doc_path.write_text(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False,
                                   default=str) + "\n", encoding="utf-8")
    return RecallResult(lesions_csv=target, document_json=doc_path, calls=tuple(calls),
                        problems=tuple(problems))


def check_prior_with_model(prior: float | None, model: Any | None) -> None:
    """Refuse ``--prior`` together with a trained model (its prior is its training mix).

    Raises
    ------
    ConfigError
        When both are given.
    """
    if prior is not None and model is not None:
        training = getattr(model, "training", {}) or {}
        mix = (f" ({training.get('n_malignant')} malignant of {training.get('n_lesions')})"
               if training.get("n_lesions") else "")
        raise ConfigError(
            f"classify: --prior applies to the literature rules; a trained model's prior is the "
            f"malignant share of its training set{mix}. Potential fix: drop --prior, or drop "
            "--model to call with the rules.")
