"""What every reading command does with links, loops, damaged and duplicate files.

One phantom study (the shipped QA spec's: Siemens, seed 101) is reached only through a
symbolic link, next to link loops, a broken link and a named pipe; `series`, `convert`,
`index`, `measure` and `qa` must all see the linked study exactly as they see the real
folder. A truncated duplicate of one Dixon file must be reported and left out by
`load_series`, `convert` and `measure`, never cost the Dixon stack.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bonelesion.cli import main
from bonelesion.dicom.series import load_series

SHIPPED_SPEC = Path(__file__).resolve().parents[2] / "configs" / "qa" / "digital_phantom.toml"


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``export/`` holds only links: to the study (outside it), loops, a dangling one, a pipe."""
    from bonelesion.phantom import write_study

    root = tmp_path_factory.mktemp("links")
    real = root / "real" / "study"
    write_study(real, vendor="siemens", seed=101)
    for name in ("truth.json", "rois.csv"):
        shutil.move(str(real / name), str(root / name))
    export = root / "export"
    export.mkdir()
    os.symlink(real, export / "study_link")
    os.symlink("..", real / "DICOM" / "loop_up")  # a loop inside the linked folder
    os.symlink(".", export / "self_loop")
    os.symlink(export / "study_link", export / "second_link")  # a second path, not a loop
    os.symlink("nowhere", export / "dangling.dcm")
    os.mkfifo(export / "pipe.dcm")
    return {"root": root, "real": real, "export": export, "rois": root / "rois.csv"}


def _series_json(folder: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["-q", "series", str(folder), "--json"]) == 0
    records: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return records


def _stack_keys(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((r["series_instance_uid"], r["role"], tuple(r["shape"] or ()),
                   len(r["files"])) for r in records)


def test_series_follows_the_link_once(linked: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    through_link = _series_json(linked["export"], capsys)
    direct = _series_json(linked["real"], capsys)
    assert _stack_keys(through_link) == _stack_keys(direct)
    assert len(direct) == 10  # CT, four Dixon, four DWI, ADC
    files = [f for r in through_link for f in r["files"]]
    assert all("/study_link/" in f for f in files)  # the first path, never the loop's
    assert not any("loop_up" in f or "second_link" in f for f in files)


def test_convert_follows_the_link_once(linked: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "convert", str(linked["export"]), str(tmp_path / "a")]) == 0
    assert main(["-q", "convert", str(linked["real"]), str(tmp_path / "b")]) == 0
    written_a = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert written_a == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert sum(n.endswith(".nii.gz") for n in written_a) == 7  # CT, 4 Dixon, 4-D DWI, ADC


def test_index_follows_the_link_once_and_reports_loops(linked: dict[str, Path],
                                                       tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite"
    assert main(["-q", "index", str(linked["export"]), "--db", str(db), "--workers", "1"]) == 0
    con = sqlite3.connect(db)
    rows = dict(con.execute("SELECT path, status FROM files").fetchall())
    reasons = dict(con.execute("SELECT path, reason FROM files").fetchall())
    con.close()
    n_files = sum(1 for _ in (linked["real"] / "DICOM").rglob("*.dcm"))
    ok = [p for p, s in rows.items() if s == "ok"]
    assert len(ok) == n_files and all(p.startswith("study_link/") for p in ok)
    assert "link loop" in reasons["self_loop"] and "link loop" in reasons[
        "study_link/DICOM/loop_up"]
    assert "second path" in reasons["second_link"]
    assert "Broken symbolic link" in reasons["dangling.dcm"]
    assert rows["pipe.dcm"] == "not_dicom" and "named pipe" in reasons["pipe.dcm"]


def test_measure_follows_the_link(linked: dict[str, Path], tmp_path: Path) -> None:
    code = main(["-q", "measure", str(linked["export"]), "--rois", str(linked["rois"]),
                 "--out", str(tmp_path / "out"), "--no-dicom"])
    assert code in (0, 4)  # 4: the loop, dangling link and pipe are reported as bad files
    with open(tmp_path / "out" / "lesions.csv", newline="") as fh:
        lesions = list(csv.DictReader(fh))
    with open(linked["rois"], newline="") as fh:
        assert len(lesions) == sum(1 for _ in csv.DictReader(fh)) == 6
    assert all(row["ct_attenuation_mean_hu"] and row["mr_chemical_shift_ratio"]
               and row["adc_mean_mm2_per_s"] for row in lesions)


def test_qa_follows_the_link(linked: dict[str, Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "qa", str(SHIPPED_SPEC), str(linked["export"])]) == 0
    assert "18 passed, 0 failed" in capsys.readouterr().out


# ----------------------------------------------------------- a truncated duplicate file
@pytest.fixture(scope="module")
def dixon_with_truncated_copy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from bonelesion.phantom import write_study

    root = tmp_path_factory.mktemp("dixon_copy")
    study = root / "export" / "study"
    write_study(study, vendor="siemens", seed=101)
    for name in ("truth.json", "rois.csv"):
        shutil.move(str(study / name), str(root / name))
    in_phase = sorted((study / "DICOM" / "010_t1_vibe_dixon_sag_in").iterdir())
    original = in_phase[len(in_phase) // 2]
    data = original.read_bytes()
    copy = original.with_name("copy_of_" + original.name)
    copy.write_bytes(data[: len(data) - 1000])  # an interrupted copy: pixel data cut short
    return {"root": root, "export": root / "export", "copy": copy, "n_slices": len(in_phase),
            "rois": root / "rois.csv"}


def test_load_series_leaves_the_truncated_copy_out_by_name(
        dixon_with_truncated_copy: dict[str, Any]) -> None:
    stacks = load_series(dixon_with_truncated_copy["export"])
    copy = dixon_with_truncated_copy["copy"]
    (in_phase,) = [s for s in stacks if s.info.role == "dixon_in_phase"]
    assert in_phase.usable and in_phase.volume is not None
    assert in_phase.shape == (dixon_with_truncated_copy["n_slices"], 96, 96)
    (refused,) = [s for s in stacks if not s.usable]
    assert refused.files == (str(copy),)
    assert copy.name in refused.problems[0] and "truncated" in refused.problems[0]
    assert "decoder" not in refused.problems[0]  # never "install a decoder plugin"
    assert refused.info.role == "other"  # a series policy never picks a left-out file


def test_convert_writes_the_dixon_stack_and_reports_the_copy(
        dixon_with_truncated_copy: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "nifti"
    assert main(["-q", "convert", str(dixon_with_truncated_copy["export"]), str(out)]) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert any("dixon_in_phase" in name for name in summary["written"])
    (refused,) = summary["refused"]
    assert dixon_with_truncated_copy["copy"].name in refused["problems"][0]


def test_measure_keeps_the_dixon_values(dixon_with_truncated_copy: dict[str, Any],
                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["-q", "measure", str(dixon_with_truncated_copy["export"]), "--rois",
                 str(dixon_with_truncated_copy["rois"]), "--out", str(out), "--no-dicom"])
    assert code == 4  # the truncated copy is listed as a bad file
    with open(out / "lesions.csv", newline="") as fh:
        lesions = list(csv.DictReader(fh))
    assert len(lesions) == 6 and all(row["mr_chemical_shift_ratio"] for row in lesions)
    bad = (out / "bad_files.csv").read_text()
    assert dixon_with_truncated_copy["copy"].name in bad
