"""Session fixtures: an export of digital-phantom studies (real DICOM) and a reference run."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from support.phantom_kit import STUDIES, PhantomExport

from bonelesion.cli import main


@pytest.fixture(scope="session")
def phantom_export(tmp_path_factory: pytest.TempPathFactory) -> PhantomExport:
    import json

    from bonelesion.phantom import write_study

    root = tmp_path_factory.mktemp("phantom_export")
    export = root / "export"
    truths: dict[str, dict] = {}
    folders: dict[str, Path] = {}
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for i, (vendor, seed) in enumerate(STUDIES):
        folder = export / f"study{i}"
        truth = write_study(folder, vendor=vendor, seed=seed)
        # truth.json and rois.csv are the answer key: keep them out of the export
        side = root / "truth" / f"study{i}"
        side.mkdir(parents=True)
        for name in ("truth.json", "rois.csv"):
            shutil.move(str(folder / name), str(side / name))
        truths[truth.study_instance_uid] = json.loads((side / "truth.json").read_text())
        folders[truth.study_instance_uid] = folder
        with open(side / "rois.csv", newline="") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows.extend(reader)
    rois = root / "rois.csv"
    with open(rois, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return PhantomExport(root=root, export=export, rois=rois, truths=truths, folders=folders)


@pytest.fixture(scope="session")
def reference_run(phantom_export: PhantomExport, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """An uninterrupted local run of the combined pipeline (exit code, out folder)."""
    out = tmp_path_factory.mktemp("reference_run") / "out"
    code = main(["-q", "run", "combined", str(phantom_export.export), "--out", str(out),
                 "--rois", str(phantom_export.rois), "--progress", "lines"])
    return code, out
