"""The run's helper process (`bonelesion.pipeline.side`): same results, nothing lost or left.

The helper is a forked process; every test here forks one from the test process and ends
it. What it computes is checked against the same function run in this process, and a run
of the phantom export with the helper against the same run on a thread.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.phantom_kit import PhantomExport
from support.testdata import sample_path, shared_path

from bonelesion.dicom.decode import output_arrays
from bonelesion.errors import DataQualityWarning, InputError
from bonelesion.pipeline import side

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the helper process is Linux only (memfd, fork)")

HERE = __name__


# ------------------------------------------------------------ functions the helper runs
def summarise(array: np.ndarray, box: Any) -> dict[str, Any]:
    """Values of the shared array, the argument itself, and a new large array."""
    return {"sum": float(array.sum(dtype=np.float64)), "pid": os.getpid(),
            "box": box, "same_box": box, "cube": np.arange(2_000_000, dtype=np.float32),
            "writeable": bool(array.flags.writeable)}


def scribble(array: np.ndarray) -> None:
    array[0, 0, 0] = 1  # the helper maps shared arrays read-only


def warn_then_fail(kind: str) -> None:
    warnings.warn("a thin cortex", DataQualityWarning, stacklevel=1)
    if kind == "input":
        raise InputError("Series 1.2.3: not a CT in HU. Potential fix: choose the CT.")


def unpicklable() -> Any:
    return lambda: None


def die() -> None:
    os._exit(3)


#: Tests that could not fork a helper here (another thread runs in this process: e.g. the
#: offload thread a Dask test leaves behind); the last test runs them in a fresh interpreter.
NOT_RUN_HERE: list[str] = []


def _needs_a_single_thread(request: pytest.FixtureRequest) -> None:
    if threading.active_count() != 1:
        NOT_RUN_HERE.append(request.node.name)
        pytest.skip("another thread runs in the test process, so no helper is forked here; "
                    "the last test of this module runs this one in a fresh interpreter")


@pytest.fixture()
def helper(request: pytest.FixtureRequest) -> Any:
    _needs_a_single_thread(request)
    with side.started(()) as started:
        assert started is not None
        yield started


def test_a_call_sees_the_shared_array_and_returns_the_callers_own_objects(helper: Any
                                                                          ) -> None:
    volume = helper.shared_array((7, 8, 9), np.int16)
    volume[...] = np.random.default_rng(1).integers(-1000, 3000, volume.shape)
    box = {"lesion": (slice(1, 3), "L2")}
    got = helper.call(f"{HERE}:summarise", volume, box).result()
    assert got["pid"] != os.getpid()
    assert got["sum"] == float(volume.sum(dtype=np.float64))
    assert got["box"] is box and got["same_box"] is box  # the caller's object, not a copy
    np.testing.assert_array_equal(got["cube"], np.arange(2_000_000, dtype=np.float32))
    got["cube"][0] = -1  # arrays that came back are the caller's to change
    assert got["writeable"] is False
    with pytest.raises(ValueError, match="read-only"):
        helper.call(f"{HERE}:scribble", volume).result()
    assert helper.usable  # a call that failed leaves the helper serving


def test_warnings_and_errors_of_the_helper_are_raised_again_here(helper: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="not a CT in HU"):
            helper.call(f"{HERE}:warn_then_fail", "input").result()
        helper.call(f"{HERE}:warn_then_fail", "no").result()
    assert [(w.category, str(w.message)) for w in caught] == [
        (DataQualityWarning, "a thin cortex")] * 2


def test_an_answer_that_cannot_come_back_is_lost_and_the_helper_still_serves(helper: Any
                                                                              ) -> None:
    with pytest.raises(side.SideProcessLost, match="lambda|pickle|attribute"):
        helper.call(f"{HERE}:unpicklable").result()
    volume = helper.shared_array((2, 2, 2), np.float32)
    assert helper.call(f"{HERE}:summarise", volume, None).result()["sum"] == 0.0


def test_without_shared_memory_the_array_goes_through_the_socket(
        helper: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "memfd_create", refuse)
    volume = helper.shared_array((5, 6, 7), np.int16)
    volume[...] = 3
    got = helper.call(f"{HERE}:summarise", volume, None).result()
    assert got["sum"] == 3.0 * volume.size and got["writeable"] is True  # a copy there


def test_a_helper_that_dies_is_lost_reaped_and_not_used_again(helper: Any) -> None:
    pid = helper.pid
    with pytest.raises(side.SideProcessLost):
        helper.call(f"{HERE}:die").result()
    assert side.current() is None and not helper.usable
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left
    with pytest.raises(side.SideProcessLost):
        helper.call(f"{HERE}:summarise", np.zeros(1), None)


def test_closing_a_busy_helper_kills_it(helper: Any) -> None:
    volume = helper.shared_array((4,), np.float64)
    helper.call(f"{HERE}:summarise", volume, None)  # answered, but never collected
    helper.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(helper.pid, os.WNOHANG)


def test_closing_a_helper_still_importing_ends_it_there(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        request: pytest.FixtureRequest) -> None:
    # a run with nothing left to do does not wait for the helper's imports
    _needs_a_single_thread(request)
    marker = tmp_path / "imported"
    (tmp_path / "slow_to_import.py").write_text(
        f"import time\ntime.sleep(1.5)\nopen({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with side.started(("slow_to_import",)) as started:
        assert started is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(started.pid, os.WNOHANG)
    import time

    time.sleep(2.0)
    assert not marker.exists()


def test_the_helper_hashes_until_a_call_waits_and_the_rest_is_hashed_here(
        helper: Any, tmp_path: Path) -> None:
    from bonelesion.pipeline.per_study import _source_hashes, hash_while_idle
    from bonelesion.report.document import file_hashes

    rng = np.random.default_rng(4)
    paths = []
    for k in range(120):
        path = tmp_path / f"f{k:03d}.dcm"
        path.write_bytes(rng.bytes(1 << 20))
        paths.append(str(path))
    files = [*paths[:3], str(tmp_path / "gone.dcm"), *paths, paths[0]]  # missing, repeated
    assert hash_while_idle(paths) == file_hashes(paths)  # outside the helper: all of them
    hashing = helper.call("bonelesion.pipeline.per_study:hash_while_idle", paths)
    waiting = helper.call(f"{HERE}:summarise", np.zeros(3), None)  # queued behind it
    partial = hashing.result()
    assert 0 <= len(partial) < len(paths)  # it stopped for the waiting call
    assert partial == {p: file_hashes([p])[p] for p in paths[:len(partial)]}
    assert waiting.result()["sum"] == 0.0  # answers in order, nothing lost
    again = helper.call("bonelesion.pipeline.per_study:hash_while_idle", paths)
    combined = _source_hashes(files, again)
    assert combined == file_hashes(files)  # same values, same order, "unreadable: …" too
    assert list(combined) == list(dict.fromkeys(files))


def test_no_helper_is_forked_while_another_thread_runs() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with side.started(()) as started:
            assert started is None and side.current() is None
    finally:
        stop.set()
        other.join()


def test_volumes_read_into_shared_memory_equal_the_plain_read(helper: Any) -> None:
    import bonelesion

    folder = shared_path("ct_bone_phantom_ge_ctpace", "dicom")
    plain = bonelesion.load_volume(folder)
    with output_arrays(helper.ct_array):
        shared = bonelesion.load_volume(folder)
    root: Any = shared.array
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    assert type(root).__name__ in ("memoryview", "mmap")  # in the helper's memory
    assert helper.ct_array((2, 3, 4), np.float32, False) is None  # only CTs are shared
    assert shared.array.dtype == plain.array.dtype
    np.testing.assert_array_equal(shared.array, plain.array)
    assert shared.geometry_equal(plain)


def _document(out: Path) -> dict[str, Any]:
    (path,) = (out / "studies").rglob("results.json")
    document = json.loads(path.read_text())
    document.pop("run", None)  # when and how long
    return document


@pytest.mark.parametrize("rois", [False, True], ids=["detection", "roi-file"])
def test_a_run_with_the_helper_equals_the_run_on_a_thread(
        phantom_export: PhantomExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        rois: bool, request: pytest.FixtureRequest) -> None:
    # detection: candidates found on the thin-slice sample CT (and labelled); ROI file: the
    # phantom export's first study, labelled only
    from bonelesion.batch import run_export
    from bonelesion.report.outputs import OutputOptions

    _needs_a_single_thread(request)
    if rois:
        folder, roi_file = sorted(phantom_export.folders.items())[0][1], phantom_export.rois
    else:
        folder, roi_file = sample_path("lumbar_thin_ct"), None
    calls: list[str] = []
    call = side.SideProcess.call

    def spy(self: Any, target: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(target)
        return call(self, target, *args, **kwargs)

    monkeypatch.setattr(side.SideProcess, "call", spy)
    options = OutputOptions(qc=False, dicom=False, html=True)
    run_export("combined", folder, tmp_path / "helper", outputs=options, rois=roi_file,
               rois_cover_other_studies=True)
    assert calls == ["bonelesion.pipeline.per_study:hash_while_idle",
                     "bonelesion.pipeline.detection:detect_on_ct"]
    monkeypatch.setattr(side.SideProcess, "start", classmethod(lambda cls, modules=(): None))
    run_export("combined", folder, tmp_path / "thread", outputs=options, rois=roi_file,
               rois_cover_other_studies=True)
    assert len(calls) == 2
    helper_doc, thread_doc = _document(tmp_path / "helper"), _document(tmp_path / "thread")
    assert helper_doc["lesions"] and helper_doc["spine"]["vertebrae"]
    assert helper_doc == thread_doc
    for table in ("lesions.csv", "warnings.csv", "failures.csv"):
        assert (tmp_path / "helper" / table).read_bytes() == \
            (tmp_path / "thread" / table).read_bytes()
    reports = [re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "(when)",
                      next((tmp_path / run / "studies").rglob("report.html")).read_text())
               for run in ("helper", "thread")]
    assert reports[0] == reports[1]


def test_a_study_that_fails_while_the_helper_labels_leaves_it_for_the_next(
        phantom_export: PhantomExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    import bonelesion.pipeline.measurement as measurement
    from bonelesion.batch import run_export
    from bonelesion.report.outputs import OutputOptions

    _needs_a_single_thread(request)
    calls: list[int] = []
    call = side.SideProcess.call

    def spy(self: Any, target: str, *args: Any, **kwargs: Any) -> Any:
        sent = call(self, target, *args, **kwargs)  # raises when the helper is not free
        if target.endswith(":detect_on_ct"):
            calls.append(self.pid)
        return sent

    measure = measurement.measure_study

    def fail_first(*args: Any, **kwargs: Any) -> Any:
        if len(calls) == 1:
            raise RuntimeError("a bug in the first study's measurement")
        return measure(*args, **kwargs)

    monkeypatch.setattr(side.SideProcess, "call", spy)
    monkeypatch.setattr(measurement, "measure_study", fail_first)
    summary = run_export("combined", phantom_export.export, tmp_path / "out",
                         rois=phantom_export.rois, outputs=OutputOptions(qc=False, dicom=False))
    assert (summary.studies_failed, summary.studies_ok) == (1, 2)
    assert len(calls) == 3 and len(set(calls)) == 1  # one helper labelled all three


def test_a_ct_measure_with_the_helper_imports_no_scipy_in_the_main_process(tmp_path: Path
                                                                           ) -> None:
    # the point of the helper for `measure`: scipy.ndimage (≈ 0.15 s) is imported by the
    # helper only, before the CT arrives; the lesion cores are eroded without it. A fresh interpreter, as the
    # program runs (this one may run other threads, or have scipy imported already).
    from bonelesion.phantom import write_ct_series

    ct = write_ct_series(tmp_path / "ct", shape=(60, 96, 96), seed=3)
    rois = tmp_path / "rois.csv"
    rois.write_text("lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm\n"
                    "a,0,0,-20,5\nb,10,-5,-30,3\n")
    code = f"""
import sys
from bonelesion.cli.main import main
calls = []
import bonelesion.pipeline.side as side
call = side.SideProcess.call
side.SideProcess.call = lambda self, *a, **k: calls.append(a[0]) or call(self, *a, **k)
answer = side._answer
def answer_noting_imports(*a):  # runs in the helper: were its imports done before the call?
    print("helper had scipy.ndimage:", "scipy.ndimage" in sys.modules, file=sys.stderr)
    return answer(*a)
side._answer = answer_noting_imports
code = main(["-q", "measure", {str(ct)!r}, "--rois", {str(rois)!r}, "--out",
             {str(tmp_path / "out")!r}, "--no-dicom", "--no-qc"])
print(code, calls.count("bonelesion.pipeline.detection:detect_on_ct"), "scipy" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["0", "1", "False"], done.stdout + done.stderr
    assert "helper had scipy.ndimage: True" in done.stderr  # imported while indexing
    assert (tmp_path / "out" / "lesions.csv").read_text().count("\n") == 3


def test_zz_tests_skipped_for_another_thread_pass_in_a_fresh_interpreter() -> None:
    # last in this module: pytest runs a module's tests in the order they are written
    if not NOT_RUN_HERE:
        pytest.skip("every test of this module ran in this process")
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         str(Path(__file__).resolve()), "-k", " or ".join(
             name.split("[")[0] for name in NOT_RUN_HERE) + " and not test_zz_"],
        cwd=tests.parent, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    counts = done.stdout.strip().splitlines()[-1]
    assert f"{len(NOT_RUN_HERE)} passed" in counts and "skipped" not in counts, done.stdout
