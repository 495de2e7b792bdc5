"""Regression check: compare two runs lesion by lesion (``lesions.csv``) within tolerances.

Lesions are matched by (``study_instance_uid``, ``lesion_id``). A lesion present in one run
only is a failure; so is a column of the baseline missing from the results, a numeric value
that moved beyond its tolerance, a value that appeared or vanished, and any change of a
text value (a label flipping from ``benign`` to ``malignant`` is drift).

Tolerances are a TOML file (unknown keys are errors)::

    [default]            # for every numeric column without its own entry
    abs = 1e-9
    rel = 1e-6

    [columns.ct_attenuation_mean_hu]
    abs = 1.0            # |results − baseline| ≤ abs + rel·|baseline|

    [columns.adc_mean_mm2_per_s]
    rel = 0.02

    ignore = ["reasons"] # (top level) columns not compared

Defaults: abs 1e-9 and rel 1e-6 (float round-trip through CSV, not a scientific
tolerance), ignoring ``patient`` (pseudonymised or not), ``reasons`` (free text) and
``warnings`` (a count of messages).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bonelesion.config import build_config, read_toml
from bonelesion.errors import ConfigError, InputError

__all__ = [
    "Tolerance",
    "Tolerances",
    "Drift",
    "RegressionReport",
    "load_tolerances",
    "compare_runs",
    "KEY_COLUMNS",
]

KEY_COLUMNS = ("study_instance_uid", "lesion_id")


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """``|results − baseline| ≤ abs + rel·|baseline|``."""

    abs: float = 1e-9
    rel: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("abs", "rel"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name}: must be a finite number ≥ 0, found {v}")


@dataclass(frozen=True, kw_only=True)
class Tolerances:
    """Per-column tolerances and ignored columns."""

    default: Tolerance = field(default_factory=Tolerance)
    columns: Mapping[str, Tolerance] = field(default_factory=dict)
    ignore: tuple[str, ...] = ("patient", "reasons", "warnings")

    def for_column(self, column: str) -> Tolerance:
        """Return the tolerance of one column."""
        return self.columns.get(column, self.default)


@dataclass(frozen=True, kw_only=True)
class Drift:
    """One difference between the runs."""

    study_instance_uid: str
    lesion_id: str
    column: str
    baseline: str
    results: str
    detail: str

    def __str__(self) -> str:
        where = (
            f"study {self.study_instance_uid} lesion {self.lesion_id}"
            if self.lesion_id
            else "table"
        )
        return f"{where}: {self.column}: {self.detail}"


@dataclass(frozen=True, kw_only=True)
class RegressionReport:
    """All differences; ``passed`` when there are none."""

    baseline: str
    results: str
    lesions_compared: int
    drifts: tuple[Drift, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when nothing drifted."""
        return not self.drifts

    def format(self) -> str:
        """Human-readable summary."""
        lines = [
            f"compared {self.lesions_compared} lesions: "
            + ("no drift" if self.passed else f"{len(self.drifts)} differences beyond tolerance")
        ]
        lines += [f"  DRIFT {d}" for d in self.drifts]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def load_tolerances(path: str | Path | None) -> Tolerances:
    """Read a tolerances TOML (None gives the defaults).

    Raises
    ------
    ConfigError
        Unreadable TOML, unknown key or invalid value.
    """
    if path is None:
        return Tolerances()
    try:
        return build_config(Tolerances, read_toml(path))
    except ConfigError as exc:
        raise ConfigError(f"Tolerances file {path}: {exc}") from exc


def _table(path: str | Path) -> tuple[Path, list[str], dict[tuple[str, str], dict[str, str]]]:
    p = Path(path)
    if p.is_dir():
        p = p / "lesions.csv"
    if not p.is_file():
        raise InputError(
            f"Run folder {path}: no lesions.csv found ({p}). Potential fix: give the "
            "--out folder of a `bonelesion run` or `bonelesion measure`."
        )
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        missing = [k for k in KEY_COLUMNS if k not in columns]
        if missing:
            raise InputError(
                f"{p}: column {missing[0]!r} missing; expected a lesions table with "
                f"{', '.join(KEY_COLUMNS)}. Potential fix: compare lesions.csv files."
            )
        rows: dict[tuple[str, str], dict[str, str]] = {}
        for line, row in enumerate(reader, start=2):
            key = (row["study_instance_uid"], row["lesion_id"])
            if key in rows:
                raise InputError(
                    f"{p} line {line}: lesion {key[1]!r} of study {key[0]} appears "
                    "twice. Potential fix: rebuild the table (bonelesion run)."
                )
            rows[key] = row
    return p, columns, rows


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def compare_runs(
    baseline: str | Path, results: str | Path, tolerances: Tolerances | None = None
) -> RegressionReport:
    """Compare the lesion tables of two runs (see module docstring).

    Raises
    ------
    InputError
        When a table is missing, lacks the key columns or holds a lesion twice.
    """
    tol = tolerances or Tolerances()
    b_path, b_cols, b_rows = _table(baseline)
    r_path, r_cols, r_rows = _table(results)
    drifts: list[Drift] = []
    notes: list[str] = []
    compared = [c for c in b_cols if c not in KEY_COLUMNS and c not in tol.ignore]
    for c in compared:
        if c not in r_cols:
            drifts.append(
                Drift(
                    study_instance_uid="",
                    lesion_id="",
                    column=c,
                    baseline="",
                    results="",
                    detail="column of the baseline is missing from the results",
                )
            )
    unused = sorted(c for c in tol.columns if c not in b_cols and c not in r_cols)
    if unused:
        notes.append(
            f"tolerances name columns found in neither table (check the names): {', '.join(unused)}"
        )
    extra_cols = [c for c in r_cols if c not in b_cols]
    if extra_cols:
        notes.append(f"results have new columns (not compared): {', '.join(extra_cols)}")
    for key in sorted(set(b_rows) - set(r_rows)):
        drifts.append(
            Drift(
                study_instance_uid=key[0],
                lesion_id=key[1],
                column="(lesion)",
                baseline="present",
                results="absent",
                detail="missing from the results",
            )
        )
    for key in sorted(set(r_rows) - set(b_rows)):
        drifts.append(
            Drift(
                study_instance_uid=key[0],
                lesion_id=key[1],
                column="(lesion)",
                baseline="absent",
                results="present",
                detail="extra lesion in the results",
            )
        )
    for key in sorted(set(b_rows) & set(r_rows)):
        b, r = b_rows[key], r_rows[key]
        for c in compared:
            if c not in r_cols:
                continue
            bv, rv = b.get(c, "") or "", r.get(c, "") or ""
            if bv == rv:
                continue
            detail = _difference(c, bv, rv, tol)
            if detail:
                drifts.append(
                    Drift(
                        study_instance_uid=key[0],
                        lesion_id=key[1],
                        column=c,
                        baseline=bv,
                        results=rv,
                        detail=detail,
                    )
                )
    return RegressionReport(
        baseline=str(b_path),
        results=str(r_path),
        lesions_compared=len(set(b_rows) & set(r_rows)),
        drifts=tuple(drifts),
        notes=tuple(notes),
    )


def _difference(column: str, bv: str, rv: str, tol: Tolerances) -> str:
    """Describe a difference beyond tolerance ("" when within)."""
    if not bv or not rv:
        return (
            f"{bv or '(empty)'} → {rv or '(empty)'} (value {'appeared' if not bv else 'vanished'})"
        )
    bn, rn = _number(bv), _number(rv)
    if bn is None or rn is None:
        return f"{bv!r} → {rv!r}"
    if math.isnan(bn) and math.isnan(rn):
        return ""
    t = tol.for_column(column)
    limit = t.abs + t.rel * abs(bn)
    delta = rn - bn
    if math.isfinite(delta) and abs(delta) <= limit:
        return ""
    return f"{bv} → {rv} (Δ {delta:+.6g}; tolerance ±{limit:.3g})"
