"""`bonelesion regress`: lesion-by-lesion comparison of two runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bonelesion.cli import main
from bonelesion.errors import ConfigError, InputError
from bonelesion.phantom.regress import compare_runs, load_tolerances

COLUMNS = ["patient", "study_instance_uid", "lesion_id", "ct_attenuation_mean_hu",
           "adc_mean_mm2_per_s", "label", "reasons"]
BASE = [
    ["P1", "1.2.3", "L1", "850.0", "0.0012", "malignant", "r1"],
    ["P1", "1.2.3", "L2", "1200.5", "", "benign", "r2"],
    ["P2", "1.2.4", "L1", "400.25", "0.0009", "malignant", "r3"],
]


def _write(folder: Path, rows: list[list[str]], columns: list[str] = COLUMNS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lesions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows(rows)
    return folder


def test_identical_runs_pass_and_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _write(tmp_path / "a", BASE), _write(tmp_path / "b", BASE)
    assert compare_runs(a, b).passed
    assert main(["regress", str(a), str(b)]) == 0
    assert "compared 3 lesions: no drift" in capsys.readouterr().out


def test_drift_beyond_tolerance_is_listed_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    moved = [r[:] for r in BASE]
    moved[0][3] = "851.5"  # +1.5 HU
    moved[2][4] = "0.00093"  # +3.3 %
    moved[1][5] = "malignant"  # label flip
    moved[0][6] = "other words"  # ignored column
    a, b = _write(tmp_path / "a", BASE), _write(tmp_path / "b", moved)
    tol = tmp_path / "tol.toml"
    tol.write_text("[columns.ct_attenuation_mean_hu]\nabs = 1.0\n[columns.adc_mean_mm2_per_s]\nrel = 0.05\n")
    report = compare_runs(a, b, load_tolerances(tol))
    got = {(d.study_instance_uid, d.lesion_id, d.column) for d in report.drifts}
    assert got == {("1.2.3", "L1", "ct_attenuation_mean_hu"), ("1.2.3", "L2", "label")}
    assert main(["regress", str(a), str(b), "--tolerances", str(tol)]) == 1
    out = capsys.readouterr().out
    assert "ct_attenuation_mean_hu: 850.0 → 851.5 (Δ +1.5; tolerance ±1)" in out
    assert "'benign' → 'malignant'" in out
    # a tighter ADC tolerance catches the 3.3 % move as well
    tol.write_text("[columns.adc_mean_mm2_per_s]\nrel = 0.01\n")
    assert ("1.2.4", "L1", "adc_mean_mm2_per_s") in {
        (d.study_instance_uid, d.lesion_id, d.column) for d in compare_runs(a, b, load_tolerances(tol)).drifts}


def test_missing_extra_lesions_and_vanished_values_fail(tmp_path: Path) -> None:
    changed = [BASE[0][:], BASE[2][:], ["P3", "1.2.9", "L7", "1.0", "", "benign", ""]]
    changed[1][4] = ""  # ADC vanished
    report = compare_runs(_write(tmp_path / "a", BASE), _write(tmp_path / "b", changed))
    details = sorted(str(d) for d in report.drifts)
    assert any("lesion L2" in d and "missing from the results" in d for d in details)
    assert any("lesion L7" in d and "extra lesion" in d for d in details)
    assert any("adc_mean_mm2_per_s" in d and "vanished" in d for d in details)
    assert not report.passed


def test_missing_column_fails_and_new_column_is_a_note(tmp_path: Path) -> None:
    cols = [c for c in COLUMNS if c != "label"] + ["new_feature"]
    rows = [[v for c, v in zip(COLUMNS, r) if c != "label"] + ["1"] for r in BASE]
    report = compare_runs(_write(tmp_path / "a", BASE), _write(tmp_path / "b", rows, cols))
    assert [d.column for d in report.drifts] == ["label"]
    assert "new_feature" in report.notes[0]


def test_bad_inputs_are_input_errors(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", BASE)
    with pytest.raises(InputError, match="no lesions.csv found"):
        compare_runs(a, tmp_path)
    _write(tmp_path / "dup", [BASE[0], BASE[0]])
    with pytest.raises(InputError, match="lesion 'L1' of study 1.2.3 appears twice"):
        compare_runs(a, tmp_path / "dup")
    _write(tmp_path / "nokey", [["x"]], ["lesion_id"])
    with pytest.raises(InputError, match="column 'study_instance_uid' missing"):
        compare_runs(a, tmp_path / "nokey")


@pytest.mark.parametrize(("text", "match"), [
    ("[default]\nabss = 1\n", r"default.abss: unknown key"),
    ("[columns.x]\nabs = -1\n", r"abs: must be a finite number ≥ 0"),
    ("ignore = 'label'\n", r"ignore: expected a list"),
])
def test_bad_tolerances_are_config_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_tolerances(path)


def test_nan_equals_nan_but_not_a_number(tmp_path: Path) -> None:
    a = [r[:] for r in BASE]
    b = [r[:] for r in BASE]
    a[0][3] = b[0][3] = "nan"
    assert compare_runs(_write(tmp_path / "a", a), _write(tmp_path / "b", b)).passed
    b[0][3] = "850.0"
    assert not compare_runs(_write(tmp_path / "a", a), _write(tmp_path / "c", b)).passed


def test_shipped_ci_tolerances_load() -> None:
    path = Path(__file__).resolve().parents[2] / "configs" / "qa" / "regress_tolerances.toml"
    tol = load_tolerances(path)
    assert tol.for_column("ct_attenuation_mean_hu").abs == 0.5
    assert tol.for_column("adc_mean_mm2_per_s").rel == 0.01
    assert tol.for_column("label") == tol.default and "reasons" in tol.ignore


def test_shipped_tolerances_name_real_lesion_table_columns() -> None:
    # A tolerance on a misspelt or renamed column would never apply: every column the shipped
    # tolerances name must be a column our lesion tables actually write.
    from bonelesion.report.table import COLUMN_NAMES

    path = Path(__file__).resolve().parents[2] / "configs" / "qa" / "regress_tolerances.toml"
    tol = load_tolerances(path)
    written = set(COLUMN_NAMES)
    assert set(tol.columns) <= written, set(tol.columns) - written


def test_tolerance_for_an_absent_column_is_noted(tmp_path: Path) -> None:
    tol_file = tmp_path / "tol.toml"
    tol_file.write_text("[columns.ct_atenuation_mean_hu]\nabs = 0.5\n")
    base = _write(tmp_path / "a", BASE)
    report = compare_runs(base, base, load_tolerances(tol_file))
    assert any("ct_atenuation_mean_hu" in n for n in report.notes)
