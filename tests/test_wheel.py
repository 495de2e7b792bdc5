"""The installed package works without the source tree: shipped configs, pipelines, schema.

A wheel is built from this checkout and unpacked into a folder of its own; the commands run
with only that folder (plus the dependencies) on the path, from a working directory outside
the checkout, so nothing can come from ``src/`` or ``configs/`` of the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # builds a wheel and runs four commands (~15 s)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(root / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.fail(f"wheel build failed:\n{build.stderr[-3000:]}")
    (wheel,) = (root / "dist").glob("bonelesion-*.whl")
    site = root / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "bonelesion", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_qa_regress_and_measure_run_from_the_installed_wheel(installed: Path,
                                                            tmp_path: Path) -> None:
    probe = _run(installed, tmp_path, "--version")
    assert probe.returncode == 0, probe.stderr
    check = subprocess.run([sys.executable, "-c", "import bonelesion; print(bonelesion.__file__)"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
                           capture_output=True, text=True)
    assert Path(check.stdout.strip()).is_relative_to(installed)  # not the checkout's src/
    # the report templates ship compiled for this Jinja2, and the package uses them
    shipped = subprocess.run(
        [sys.executable, "-c", "import jinja2; from bonelesion.report.precompile import "
         "precompiled_loader; print(isinstance(precompiled_loader(), jinja2.ModuleLoader))"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True, text=True)
    assert shipped.stdout.strip() == "True", shipped.stderr
    scan = tmp_path / "scan"
    made = _run(installed, tmp_path, "-q", "phantom", str(scan), "--seed", "1")
    assert made.returncode == 0, made.stderr
    qa = _run(installed, tmp_path, "-q", "qa", "digital_phantom", str(scan), "--junit",
              str(tmp_path / "qa.xml"))
    assert qa.returncode == 0, qa.stdout + qa.stderr
    assert "failed" in qa.stdout and (tmp_path / "qa.xml").is_file()
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run = _run(installed, tmp_path, "-q", "measure", str(scan / "DICOM"), "--rois",
                   str(scan / "rois.csv"), "--out", str(out), "--no-dicom", "--no-qc")
        assert run.returncode == 0, run.stderr
        outs.append(out)
    regress = _run(installed, tmp_path, "-q", "regress", str(outs[0]), str(outs[1]),
                   "--tolerances", "regress_tolerances")
    assert regress.returncode == 0, regress.stdout + regress.stderr
    unknown = _run(installed, tmp_path, "-q", "qa", "no_such_spec", str(scan))
    assert unknown.returncode == 2 and "digital_phantom" in unknown.stderr
