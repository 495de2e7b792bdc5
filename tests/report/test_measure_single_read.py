"""`bonelesion measure` reads the export once: SEG/SR/QC come from the stacks measure loaded.

Truth: call counts of the reader entry points and of pydicom's full-file reads, and the files
the run must produce (QC images, DICOM SEG + SR per study, provenance with file hashes).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from testdata import sample_path

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

    def load_series(*args: Any, **kwargs: Any) -> Any:
        calls["load_series"] += 1
        return real_load_series(*args, **kwargs)

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

    assert calls == {"load_series": 1, "load_lesions": 1}
    sources = {str(p) for p in export.rglob("*") if p.is_file()}
    twice = {p: n for p, n in full_reads.items() if p in sources and n > 1}
    assert not twice, f"pixel data read more than once: {sorted(twice.items())[:3]}"
    # third-party INFO (highdicom's module copies) stays out of the log
    assert not [line for line in err.splitlines()
                if " INFO " in line and " bonelesion" not in line], err[:2000]

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    n_lesions = len(doc["lesions"])
    assert n_lesions == 6 and all("call" in e for e in doc["lesions"])
    (study_uid, dicom_files), = doc["outputs"]["dicom"].items()
    assert len(dicom_files) == 2 and all((out / f).is_file() for f in dicom_files)
    assert len(doc["outputs"]["qc_images"]) == n_lesions
    for images in doc["outputs"]["qc_images"].values():
        assert {"ct", "dixon_in_phase", "adc"} <= set(images)
        assert all((out / rel).is_file() for rel in images.values())
    (inputs,) = doc["provenance"]["inputs"]
    assert inputs["study_instance_uid"] == study_uid
    hashed = {f["path"] for s in inputs["series"] for f in s["files"] if len(f["sha256"]) == 64}
    assert hashed and hashed <= sources
    assert (out / "report.html").is_file()


def test_render_study_views_refuses_two_studies(tmp_path: Path) -> None:
    from classify_factory import lesion

    from bonelesion.errors import InputError
    from bonelesion.report.measure_hook import render_study_views

    two = [lesion(ct=600.0, study="1.2.3"), lesion(ct=600.0, study="1.2.4", lesion_id="L2")]
    with pytest.raises(InputError, match=r"measurements of 2 studies .*expected one study"):
        render_study_views(tmp_path, two, [], [])
    none = render_study_views(tmp_path, [], [], [])
    assert none.calls == () and none.study_instance_uid == ""
