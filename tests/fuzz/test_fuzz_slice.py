"""A short, deterministic slice of the fuzz campaign, and tests of the harness itself.

The slice runs in a subprocess (``python -m fuzz``, its own fork server) so that no
state of the test session leaks into the children. Deselect with ``-m "not fuzz"``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.campaign import build_case
from fuzz.layout import layout
from fuzz.minimise import ddmin
from fuzz.mutate import BYTE_FAMILIES, mutate_bytes
from fuzz.seeds import Seed

TESTS = Path(__file__).resolve().parents[1]
#: Cases of the slice (each runs index, series --json, convert and load_series; every 20th
#: case is a whole phantom study run through load_volume and run as well).
SLICE_CASES = 80
SLICE_SEED = 20261206

pytestmark = pytest.mark.fuzz


def _fuzz(*args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")]), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "fuzz", *args], cwd=TESTS, env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def test_every_oracle_catches_its_failure(tmp_path: Path) -> None:
    """Crash, out of memory, hang, signal, stray write, bad stdout, unnamed refusal."""
    proc = _fuzz("--selftest", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    kinds = json.loads(proc.stdout.strip().splitlines()[-1])
    assert kinds == {"selftest_crash": "crash", "selftest_oom": "oom", "selftest_hang": "hang",
                     "selftest_write": "write_outside", "selftest_stdout": "stdout",
                     "selftest_signal": "signal", "selftest_unnamed": "naming"}


def test_fuzz_slice_finds_nothing(tmp_path: Path) -> None:
    proc = _fuzz("--cases", str(SLICE_CASES), "--seed", str(SLICE_SEED), "--study-every", "20",
                 "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "phantoms"),
                 "--minimise-budget", "40")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    findings = "\n".join(f"{f['count']} × {f['signature']} (case {f['case']['index']}, "
                         f"{f['case']['families']})" for f in report["findings"])
    assert proc.returncode == 0 and not report["findings"], findings + proc.stderr[-2000:]
    runs = report["runs"]
    assert set(runs) == {"index", "series", "convert", "load_series", "load_volume", "run"}
    assert sum(runs["series"].values()) == SLICE_CASES
    assert all(set(counts) == {"ok"} for counts in runs.values())
    assert len(report["families"]) >= 12  # most byte and file-system families were drawn
    assert report["refusal_messages_checked"] > 0
    assert not report["harness_errors"]


# ------------------------------------------------------------------ harness unit tests
def test_ddmin_finds_the_one_bad_byte() -> None:
    data = bytes(range(200)) + b"\xff" + bytes(range(100))
    small, runs = ddmin(data, lambda d: b"\xff" in d, budget=500)
    assert small == b"\xff" and runs < 500


def test_ddmin_keeps_what_the_failure_needs() -> None:
    small, _ = ddmin(b"xxAxxxxBxx", lambda d: b"A" in d and b"B" in d, budget=500)
    assert small == b"AB"


@pytest.fixture
def tiny_seed(tmp_path: Path) -> Seed:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), "CT"
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.Rows, ds.Columns = [1, 1], 2, 2
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 16, 16, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\x01\x00" * 4
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "seed.dcm"
    ds.save_as(path, enforce_file_format=True)
    return Seed("tiny", (path,), ("a/seed.dcm",))


def test_cases_are_deterministic(tiny_seed: Seed, tmp_path: Path) -> None:
    for index in range(20):
        first = build_case(index, tiny_seed, 7, tmp_path / "one")
        second = build_case(index, tiny_seed, 7, tmp_path / "two")
        assert first == second
        if first.mutated is not None:
            assert (tmp_path / "one" / "export" / first.mutated).read_bytes() == \
                (tmp_path / "two" / "export" / second.mutated).read_bytes()


@pytest.mark.parametrize("family", sorted(BYTE_FAMILIES))
def test_every_byte_family_changes_the_file(tiny_seed: Seed, family: str) -> None:
    data = tiny_seed.files[0].read_bytes()
    changed = 0
    for k in range(10):
        mutated, description = mutate_bytes(data, layout(data), random.Random(k), family)
        changed += mutated != data
        assert description
    assert changed >= 8


def test_layout_maps_every_element_of_the_seed(tiny_seed: Seed) -> None:
    lay = layout(tiny_seed.files[0].read_bytes())
    assert lay is not None and not lay.implicit and lay.part10
    tags = {el.tag for el in lay.elements}
    assert {0x00020010, 0x00280010, 0x00200032, 0x7FE00010} <= tags
