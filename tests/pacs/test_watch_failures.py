"""The PACS loop when things go wrong, against a real Orthanc.

* a study with a damaged instance is reported and the next study goes on;
* Orthanc killed in the middle of a pass: a clear message, exit code 5, no hang (bounded
  retries with time-outs); after a restart the next pass finishes the work;
* SIGTERM/SIGINT of the polling loop (real signals to a real process): the study in hand is
  finished, the process exits 0, and the results store and state file stay consistent; a
  second signal abandons the study in hand (exit 130) without corrupting anything.

The damaged study is written with a lower seed than the good one, so its UIDs sort first
and it is the study in hand when these tests interrupt a pass.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from support.orthanc_server import PASSWORD, USER, OrthancServer, free_port, modality
from support.pacs_kit import PhantomStudy, merge_rois

from bonelesion.cli.main import main
from bonelesion.pacs.inbox import Inbox
from bonelesion.pacs.state import PacsState, Phase
from bonelesion.phantom import write_study

pytestmark = pytest.mark.slow

WATCH_AET = "BLWATCH"
#: Hang guard for a subprocess (not a timing assertion): far above a normal run's seconds.
HANG_GUARD_S = 180.0


@dataclass(frozen=True)
class Scenario:
    orthanc: OrthancServer
    damaged: PhantomStudy
    damaged_sop: str
    good: PhantomStudy
    rois: Path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, phantoms) -> Iterator[Scenario]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("failures")
    damaged = PhantomStudy(root / "philips", write_study(root / "philips", vendor="philips",
                                                         seed=1999))
    cts = [p for p in damaged.dicom_files()
           if pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT"]
    victim = cts[len(cts) // 2]
    ds = pydicom.dcmread(victim)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # a consistent, but short, element
    ds.save_as(victim)
    good = phantoms.studies[0]
    assert damaged.uid < good.uid
    rois = merge_rois([damaged.folder / "rois.csv", good.folder / "rois.csv"], root / "rois.csv")
    server = OrthancServer(root / "orthanc", modalities={"watch": modality(WATCH_AET,
                                                                          free_port())})
    server.start()
    try:
        server.upload(damaged.dicom_files())
        server.upload(good.dicom_files())
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("BONELESION_DICOMWEB_USER", USER)
            mp.setenv("BONELESION_DICOMWEB_PASSWORD", PASSWORD)
            yield Scenario(server, damaged, str(ds.SOPInstanceUID), good, rois)
    finally:
        server.stop()


def run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(args)
    return code, out.getvalue()


def lesion_studies(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(out / "lesions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            counts[row["study_instance_uid"]] = counts.get(row["study_instance_uid"], 0) + 1
    return counts


def assert_consistent(out: Path) -> None:
    """Both SQLite files pass integrity checks; no partial retrieval is in the inbox."""
    for name in ("results.sqlite", "pacs.sqlite"):
        if (out / name).exists():
            con = sqlite3.connect(out / name)
            try:
                assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", name
            finally:
                con.close()
    with PacsState(out / "pacs.sqlite") as state:
        inbox = Inbox(out / "inbox", out / ".pacs" / "staging")
        for s in state.studies():  # what the state says was retrieved is complete in the inbox
            assert len(inbox.instances(s.study_instance_uid)) == s.instances


def test_damaged_instance_is_reported_and_the_next_study_goes_on(scenario: Scenario,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["watch", scenario.orthanc.dimse_source, "combined", "--out", str(out), "--rois",
            str(scenario.rois), "--once", "--ae-title", WATCH_AET]  # C-GET: no --port
    code, text = run_cli(args)
    assert code == 4, text[-3000:]
    assert f"FAILED study {scenario.damaged.uid} at measure" in text
    assert f"instance {scenario.damaged_sop}: truncated" in text and "Potential fix" in text
    assert lesion_studies(out) == {scenario.good.uid: len(scenario.good.truth.lesions)}
    with PacsState(out / "pacs.sqlite") as state:
        assert state.study(scenario.damaged.uid).status == "failed"  # type: ignore[union-attr]
        assert state.study(scenario.good.uid).status == "ok"  # type: ignore[union-attr]
    code, text = run_cli(args)  # reported once; an idle pass is a success
    assert code == 0 and "0 retrieved (0 instances), 0 measured" in text


@pytest.mark.parametrize("transport", ["dicomweb", "dimse"])
def test_a_frozen_pacs_times_out_instead_of_hanging(scenario: Scenario, tmp_path: Path,
                                                   transport: str) -> None:
    """Orthanc stopped with SIGSTOP: connections open, nothing answers; time-outs end it."""
    source = (scenario.orthanc.dicomweb_url if transport == "dicomweb"
              else scenario.orthanc.dimse_source)
    assert scenario.orthanc.process is not None
    scenario.orthanc.process.send_signal(signal.SIGSTOP)
    try:
        code, text = run_cli(["watch", source, "combined", "--out", str(tmp_path / "out"),
                              "--once", "--ae-title", WATCH_AET, "--timeout", "1",
                              "--retries", "2"])
    finally:
        scenario.orthanc.process.send_signal(signal.SIGCONT)
    assert code == 5, text[-3000:]
    assert "after 2 tries" in text and ("timed out" in text or "no answer in 1 s" in text
                                        or "no association" in text)


class Proc:
    """A ``bonelesion`` subprocess whose merged output is read line by line."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen([sys.executable, "-m", "bonelesion", *args], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.text: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> str:
        """Read output until a line matches ``pattern`` (a regular expression)."""
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                if self.p.poll() is not None and self.lines.empty():
                    break
                continue
            self.text.append(line)
            if re.search(pattern, line):
                return line
        self.kill()
        raise AssertionError(f"never saw {pattern!r}:\n" + "".join(self.text)[-3000:])

    def finish(self) -> tuple[int, str]:
        try:
            code = self.p.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("bonelesion hung:\n" + "".join(self.text)[-3000:]) from None
        time.sleep(0.2)
        while not self.lines.empty():
            self.text.append(self.lines.get())
        return code, "".join(self.text)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:  # every test stops what it started, even when it failed
        p.kill()


def test_orthanc_killed_mid_run_then_the_next_pass_resumes(scenario: Scenario, tmp_path: Path,
                                                           procs: list[Proc]) -> None:
    out = tmp_path / "out"
    args = ["watch", scenario.orthanc.dicomweb_url, "combined", "--out", str(out), "--rois",
            str(scenario.rois), "--once", "--push", "--timeout", "5", "--retries", "2"]
    proc = Proc(args)
    procs.append(proc)
    proc.wait_for(rf"study {scenario.damaged.uid}: \d+ instances in")  # the first study is in
    scenario.orthanc.kill()
    try:
        code, text = proc.finish()
        assert code == 5, text[-3000:]
        assert "PACS not answering" in text
        assert f"no answer from the PACS {scenario.orthanc.dicomweb_url} after 2 tries" in text
        assert "Potential fix" in text and "Traceback" not in text
        assert_consistent(out)
    finally:
        scenario.orthanc.start()  # same storage, same ports
    code, text = run_cli(args)
    assert code == 0, text[-3000:]
    assert "1 retrieved (240 instances), 1 measured, 1 pushed (2 instances), 1 unchanged" in text
    modalities = sorted(s["MainDicomTags"]["Modality"]
                        for s in scenario.orthanc.series_of(scenario.good.uid))
    assert modalities.count("SEG") == 1 and modalities.count("SR") == 1
    assert lesion_studies(out) == {scenario.good.uid: len(scenario.good.truth.lesions)}
    assert_consistent(out)


def test_sigterm_finishes_the_study_in_hand_and_sigint_stops_an_idle_loop(
        scenario: Scenario, tmp_path: Path, procs: list[Proc]) -> None:
    out = tmp_path / "out"
    args = ["watch", scenario.orthanc.dicomweb_url, "combined", "--out", str(out), "--rois",
            str(scenario.rois), "--poll", "1", "--settle", "0"]
    proc = Proc(args)
    procs.append(proc)
    proc.wait_for(rf"study {scenario.damaged.uid}: \d+ instances in")
    proc.p.send_signal(signal.SIGTERM)
    code, text = proc.finish()
    assert code == 0, text[-3000:]
    assert "SIGTERM: finishing the study in hand" in text and "stopped" in text
    assert f"FAILED study {scenario.damaged.uid} at measure" in text  # it was finished
    with PacsState(out / "pacs.sqlite") as state:
        assert [s.study_instance_uid for s in state.studies()] == [scenario.damaged.uid]
        assert state.studies()[0].phase is Phase.MEASURED
    assert_consistent(out)

    proc = Proc(args)  # the loop again: it does the rest, then idles until SIGINT
    procs.append(proc)
    proc.wait_for(r"pass: 2 studies listed, 1 retrieved")
    proc.wait_for(r"pass: 2 studies listed, 0 retrieved")  # an idle poll
    proc.p.send_signal(signal.SIGINT)
    code, text = proc.finish()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text
    assert lesion_studies(out) == {scenario.good.uid: len(scenario.good.truth.lesions)}
    assert_consistent(out)


def test_second_signal_abandons_the_study_in_hand_without_damage(scenario: Scenario,
                                                                 tmp_path: Path,
                                                                 procs: list[Proc]) -> None:
    out = tmp_path / "out"
    args = ["watch", scenario.orthanc.dicomweb_url, "combined", "--out", str(out), "--rois",
            str(scenario.rois), "--poll", "1", "--settle", "0"]
    proc = Proc(args)
    procs.append(proc)
    proc.wait_for(rf"study {scenario.good.uid}: measuring")  # retrieved, state recorded
    proc.p.send_signal(signal.SIGTERM)
    proc.wait_for("SIGTERM: finishing the study in hand")
    proc.p.send_signal(signal.SIGTERM)
    code, text = proc.finish()
    assert code == 130, text[-3000:]
    assert "abandoned the study in hand" in text and "Traceback" not in text
    assert_consistent(out)
    with PacsState(out / "pacs.sqlite") as state:
        assert state.study(scenario.good.uid).phase is Phase.RETRIEVED  # type: ignore[union-attr]
    code, text = run_cli(args[:-4] + ["--once"])  # resumes: measures, retrieves nothing
    assert code == 0, text[-3000:]
    assert "0 retrieved (0 instances), 1 measured" in text
    assert lesion_studies(out) == {scenario.good.uid: len(scenario.good.truth.lesions)}
    assert_consistent(out)
