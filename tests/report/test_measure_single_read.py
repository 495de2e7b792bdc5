"""`bonelesion measure` reads each series once: SEG/SR/QC come from the stacks measure loaded.

Truth: call counts of the reader entry points and of pydicom's full-file reads, and the files
the run must produce (QC images, DICOM SEG + SR per study, provenance with file hashes).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from support.report_series import study_documents
from support.testdata import sample_path

import bonelesion
import bonelesion.dicom.series
import bonelesion.roi.sources
from bonelesion.cli import EXIT_OK, main

pytestmark = pytest.mark.slow  # one full measure run with SEG/SR/QC on sample_data (~6 s)


def test_measure_reads_each_dicom_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    study = sample_path("spine_phantom")
    export = study / "DICOM"
    calls: Counter[str] = Counter()
    # pixel data read from disk, per file: pydicom full reads (compressed data, SEG sources)
    # and numpy.fromfile (the reader's native-pixel path)
    full_reads: Counter[str] = Counter()

    real_load_series = bonelesion.dicom.series.load_series
    real_load_lesions = bonelesion.roi.sources.load_lesions
    real_dcmread = pydicom.dcmread
    real_fromfile = np.fromfile

    series_files: list[set[str]] = []

    def load_series(source: Any, *args: Any, **kwargs: Any) -> Any:
        series_files.append({str(f) for f in source})
        return real_load_series(source, *args, **kwargs)

    def load_lesions(*args: Any, **kwargs: Any) -> Any:
        calls["load_lesions"] += 1
        return real_load_lesions(*args, **kwargs)

    def dcmread(fp: Any, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("stop_before_pixels") and kwargs.get("defer_size") is None:
            full_reads[str(fp)] += 1
        return real_dcmread(fp, *args, **kwargs)

    def fromfile(file: Any, *args: Any, **kwargs: Any) -> Any:
        full_reads[str(file)] += 1
        return real_fromfile(file, *args, **kwargs)

    monkeypatch.setattr(bonelesion.dicom.series, "load_series", load_series)
    monkeypatch.setattr(bonelesion, "load_series", load_series)
    monkeypatch.setattr(bonelesion.roi.sources, "load_lesions", load_lesions)
    monkeypatch.setattr(pydicom, "dcmread", dcmread)
    monkeypatch.setattr(np, "fromfile", fromfile)

    out = tmp_path / "out"
    assert main(["measure", str(export), "--rois", str(study / "rois.csv"),
                 "--out", str(out)]) == EXIT_OK
    err = capsys.readouterr().err

    assert calls == {"load_lesions": 1}
    # one reader call per chosen series, no file in two calls
    assert series_files and sum(map(len, series_files)) == len(set().union(*series_files))
    sources = {str(p) for p in export.rglob("*") if p.is_file()}
    twice = {p: n for p, n in full_reads.items() if p in sources and n > 1}
    assert not twice, f"pixel data read more than once: {sorted(twice.items())[:3]}"
    # third-party INFO (highdicom's module copies) stays out of the log
    assert not [line for line in err.splitlines()
                if " INFO " in line and " bonelesion" not in line], err[:2000]

    ((folder, doc),) = study_documents(out).values()
    n_lesions = len(doc["lesions"])
    assert n_lesions == 6 and all("call" in e for e in doc["lesions"])
    dicom_files = doc["outputs"]["dicom"]
    assert len(dicom_files) == 2 and all((folder / f).is_file() for f in dicom_files)
    assert len(doc["outputs"]["qc_images"]) == n_lesions
    for images in doc["outputs"]["qc_images"].values():
        assert {"ct", "dixon_in_phase", "adc"} <= set(images)
        assert all((folder / rel).is_file() for rel in images.values())
    hashed = {f["path"] for s in doc["series"] for f in s["files"] if len(f["sha256"]) == 64}
    assert hashed and hashed <= sources
    assert (folder / "report.html").is_file()
