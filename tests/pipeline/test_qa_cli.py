"""`bonelesion qa` on digital-phantom scans with the shipped spec; `regress` on real runs."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support.phantom_kit import PhantomExport

from bonelesion.cli import main
from bonelesion.phantom.qa import load_qa_spec, spec_from_truth

SHIPPED_SPEC = Path(__file__).resolve().parents[2] / "configs" / "qa" / "digital_phantom.toml"


def _truth_file(phantom_export: PhantomExport, tmp_path: Path, index: int = 0) -> tuple[Path, Path]:
    uid = list(phantom_export.truths)[index]
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(phantom_export.truths[uid]))
    return path, phantom_export.folders[uid]


def test_shipped_spec_matches_the_phantom_geometry(phantom_export: PhantomExport, tmp_path: Path) -> None:
    truth, _ = _truth_file(phantom_export, tmp_path, 1)
    regenerated = tmp_path / "spec.toml"
    regenerated.write_text(spec_from_truth(truth))
    shipped = load_qa_spec(SHIPPED_SPEC)
    fresh = load_qa_spec(regenerated)
    key = lambda c: (c.name, c.quantity, c.centre_lps_mm, c.radius_mm, c.expected)  # noqa: E731
    assert [key(c) for c in shipped.checks] == [key(c) for c in fresh.checks]
    assert len(shipped.checks) == 3 * len(phantom_export.truths[list(phantom_export.truths)[1]]["lesions"])


def test_qa_passes_on_the_phantom_and_writes_junit(
    phantom_export: PhantomExport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, scan = _truth_file(phantom_export, tmp_path)
    junit = tmp_path / "junit" / "qa.xml"
    code = main(["-q", "qa", str(SHIPPED_SPEC), str(scan), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "18 passed, 0 failed" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "18" and suite.get("failures") == "0"


def test_qa_fails_with_exit_1_on_drift(phantom_export: PhantomExport, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, scan = _truth_file(phantom_export, tmp_path)
    text = SHIPPED_SPEC.read_text().replace("expected = 650.000", "expected = 700.000", 1)
    spec = tmp_path / "drifted.toml"
    spec.write_text(text)
    assert main(["-q", "qa", str(spec), str(scan)]) == 1
    out = capsys.readouterr().out
    assert "les01_ct" in out and "FAIL les01_ct: measured" in out and "expected 700 ± 7" in out


def test_qa_on_a_folder_without_images_is_an_input_error(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert main(["-q", "qa", str(SHIPPED_SPEC), str(tmp_path / "empty")]) == 3
    assert "no usable DICOM stack" in capsys.readouterr().err


def test_regress_between_two_real_runs(reference_run: tuple[int, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, ref = reference_run
    copy = tmp_path / "copy"
    shutil.copytree(ref, copy, ignore=shutil.ignore_patterns("studies", "*.sqlite*"))
    assert main(["regress", str(ref), str(copy)]) == 0
    lines = (copy / "lesions.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("ct_attenuation_mean_hu")
    cells = lines[1].split(",")
    cells[col] = str(float(cells[col]) + 5.0)
    (copy / "lesions.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[3:]]) + "\n")
    assert main(["regress", str(ref), str(copy)]) == 1
    out = capsys.readouterr().out
    assert "ct_attenuation_mean_hu" in out and "missing from the results" in out
