"""Batch engine: store, resume, force, isolation, executors, kill -9 and output-name safety.

Driven by `batchkit.checksum_study`, whose truth is hashlib over the input files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import batchkit

from bonelesion.batch.names import Pseudonymiser
from bonelesion.batch.progress import Progress
from bonelesion.batch.runner import STORE_NAME, TABLE_FILES, BatchOptions, run_batch
from bonelesion.errors import ConfigError
from bonelesion.pipeline.definition import load_pipeline

SRC = Path(__file__).resolve().parents[2] / "src"
HERE = Path(__file__).resolve().parent
#: Wall-clock limit for one subprocess run of the engine (generous for a loaded 2-core box).
SUBPROCESS_TIMEOUT_S = 120


def _quiet() -> Progress:
    return Progress(0, stream=io.StringIO(), tty=False)


def _run(inventory, out, **kw):  # type: ignore[no-untyped-def]
    fn = kw.pop("study_function", batchkit.checksum_study)
    return run_batch(load_pipeline("ct_sclerotic"), inventory, BatchOptions(out_dir=out, **kw),
                     study_function=fn, progress=_quiet())


def _lesions(out: Path) -> list[dict[str, str]]:
    with open(out / "lesions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _worker_pids(out: Path) -> set[int]:
    with sqlite3.connect(out / STORE_NAME) as conn:
        recs = [json.loads(r[0]) for r in conn.execute("SELECT record_json FROM studies WHERE status='ok'")]
    return {r["worker_pid"] for r in recs}


def _tables(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in TABLE_FILES}


def test_run_measures_every_study_and_lists_failures(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 4, failing=(2,))
    summary = _run(inv, tmp_path / "out")
    truth = batchkit.expected_rows(inv)
    rows = _lesions(tmp_path / "out")
    assert summary.studies_ok == 3 and summary.studies_failed == 1
    assert summary.exit_code == 4
    assert len(rows) == 3
    for row in rows:
        assert row["sha256"] == truth[row["study_instance_uid"]]["sha256"]
        assert int(row["bytes"]) == truth[row["study_instance_uid"]]["bytes"]
    failures = list(csv.DictReader(open(tmp_path / "out" / "failures.csv", newline="")))
    assert [(f["study_instance_uid"], f["stage"]) for f in failures] == [
        (inv.studies[2].study_instance_uid, "measure")]
    assert failures[0]["series_instance_uid"] == inv.studies[2].candidates[0].series_instance_uid
    summary_text = (tmp_path / "out" / "summary.txt").read_text()
    assert "junk.dcm | truncated: ends early" in summary_text
    assert "marked to fail" in summary_text
    # each good study has its own folder holding what the study function wrote + its plan
    for s in inv.studies:
        if s.study_instance_uid.endswith(".3"):
            continue
        found = list((tmp_path / "out" / "studies").glob(f"*/*{s.study_instance_uid}*/checksum.txt"))
        assert len(found) == 1
        assert (found[0].parent / "plan.json").exists()
    assert not (tmp_path / "out" / ".work").exists()


def test_rerun_does_only_what_changed_and_force_redoes_all(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 3)
    out = tmp_path / "out"
    first = _run(inv, out)
    before = _tables(out)
    assert first.studies_run == 3
    second = _run(inv, out)
    assert (second.studies_run, second.studies_skipped) == (0, 3)
    assert _tables(out) == before
    # change one input file: only its study reruns, and its row follows the new bytes
    changed = Path(inv.studies[1].candidates[0].files[1])
    changed.write_bytes(b"new content of a re-sent instance")
    third = _run(inv, out)
    assert (third.studies_run, third.studies_skipped) == (1, 2)
    truth = batchkit.expected_rows(inv)
    rows = {r["study_instance_uid"]: r for r in _lesions(out)}
    assert rows[inv.studies[1].study_instance_uid]["sha256"] == truth[inv.studies[1].study_instance_uid]["sha256"]
    forced = _run(inv, out, force=True)
    assert (forced.studies_run, forced.studies_skipped) == (3, 0)
    with sqlite3.connect(out / STORE_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM lesions").fetchone()[0] == 3


def test_retry_failed_redoes_only_the_failed_study(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 3)
    out = tmp_path / "out"
    first = _run(inv, out, study_function=batchkit.raising_study)
    failed_uid = inv.studies[1].study_instance_uid
    assert [f["study_instance_uid"] for f in first.failures] == [failed_uid]
    # unchanged inputs: a failure is current, so a plain rerun does nothing ...
    assert _run(inv, out, study_function=batchkit.raising_study).studies_run == 0
    # ... and --retry-failed reruns that study alone, which now succeeds
    retried = _run(inv, out, retry_failed=True)
    assert (retried.studies_run, retried.studies_skipped) == (1, 2)
    assert retried.studies_failed == 0
    truth = batchkit.expected_rows(inv)
    rows = {r["study_instance_uid"]: r for r in _lesions(out)}
    assert rows[failed_uid]["sha256"] == truth[failed_uid]["sha256"]


def test_a_raising_study_function_is_isolated(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 3)
    summary = _run(inv, tmp_path / "out", study_function=batchkit.raising_study)
    assert summary.studies_ok == 2
    assert [f["study_instance_uid"] for f in summary.failures] == [inv.studies[1].study_instance_uid]
    assert summary.failures[0]["stage"] == "worker"
    assert "raised on purpose" in summary.failures[0]["message"]


def test_process_pool_equals_local(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 4, failing=(1,))
    _run(inv, tmp_path / "local")
    _run(inv, tmp_path / "pool", executor="process", workers=2)
    assert _worker_pids(tmp_path / "local") == {os.getpid()}
    assert os.getpid() not in _worker_pids(tmp_path / "pool")
    for name in ("lesions.csv", "failures.csv", "bad_files.csv"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "pool" / name).read_bytes()


@pytest.mark.slow
def test_a_dying_worker_process_fails_only_its_study(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 4)
    summary = _run(inv, tmp_path / "out", study_function=batchkit.dying_study,
                   executor="process", workers=2)
    dead = inv.studies[1].study_instance_uid
    assert [f["study_instance_uid"] for f in summary.failures] == [dead]
    assert "worker process died" in summary.failures[0]["message"]
    assert summary.studies_ok == 3
    truth = batchkit.expected_rows(inv)
    rows = {r["study_instance_uid"]: r for r in _lesions(tmp_path / "out")}
    assert {uid: r["sha256"] for uid, r in rows.items()} == {
        uid: t["sha256"] for uid, t in truth.items() if uid != dead
    }


def test_dask_local_cluster_equals_local(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 4, failing=(3,))
    _run(inv, tmp_path / "local")
    _run(inv, tmp_path / "dask", executor="dask", workers=2)
    assert os.getpid() not in _worker_pids(tmp_path / "dask")
    for name in ("lesions.csv", "failures.csv", "bad_files.csv"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()


def test_unknown_executor_and_stray_scheduler_are_config_errors(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 1)
    with pytest.raises(ConfigError, match="--executor: 'threads' is not one of"):
        _run(inv, tmp_path / "out", executor="threads")
    with pytest.raises(ConfigError, match="--scheduler .* only applies to dask"):
        _run(inv, tmp_path / "out2", scheduler="tcp://127.0.0.1:8786")


def _engine_cmd(inv_pickle: Path, out: Path, executor: str = "local", workers: int = 1) -> list[str]:
    return [sys.executable, str(HERE / "run_engine.py"), str(inv_pickle), str(out), executor, str(workers)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE.parent)])
    return env


def _finished(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path: Path) -> None:
    n = 6
    inv = batchkit.make_export(tmp_path / "export", n, sleep_s=0.4)
    inv_pickle = tmp_path / "inventory.pickle"
    inv_pickle.write_bytes(pickle.dumps(inv))
    reference = tmp_path / "reference"
    subprocess.run(_engine_cmd(inv_pickle, reference), env=_env(), check=False,
                   timeout=SUBPROCESS_TIMEOUT_S, capture_output=True)
    assert (reference / "lesions.csv").exists()

    out = tmp_path / "killed"
    proc = subprocess.Popen(_engine_cmd(inv_pickle, out), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while _finished(out / STORE_NAME) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_at_kill = _finished(out / STORE_NAME)
    assert 1 <= done_at_kill < n, "the run must be killed part-way"
    rerun = subprocess.run(_engine_cmd(inv_pickle, out), env=_env(), timeout=SUBPROCESS_TIMEOUT_S,
                           capture_output=True, text=True)
    assert rerun.returncode == 4, rerun.stderr  # 4: the export holds a bad file
    assert f"{n - done_at_kill} studies to run, {done_at_kill} already done" in rerun.stderr
    for name in ("lesions.csv", "failures.csv", "bad_files.csv", "summary.txt"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    ref = json.loads((reference / "results.json").read_text())
    got = json.loads((out / "results.json").read_text())
    assert got.pop("run")["generated_utc"] and ref.pop("run")  # only the time may differ
    assert got == ref
    assert len(_lesions(out)) == n
    with sqlite3.connect(out / STORE_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM lesions").fetchone()[0] == n


TRAVERSAL_IDS = {0: "../../../../tmp/evil", 1: "/etc/passwd", 2: "..", 3: "a\x00b\r\n\x1b[31m" + "x" * 500}


def test_patient_ids_cannot_write_outside_out_dir(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 4, patient_ids=TRAVERSAL_IDS)
    out = tmp_path / "out"
    _run(inv, out)
    root = out.resolve()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "export" not in p.parts]
    assert written and all(root in p.resolve().parents for p in written)
    assert not (tmp_path / "tmp").exists() and not Path("/tmp/evil").exists()
    study_dirs = sorted(p for p in (out / "studies").iterdir())
    assert len(study_dirs) == 4  # distinct values stay distinct after cleaning
    for d in study_dirs:
        assert len(d.name) <= 64 and all(c.isalnum() or c in "._-" for c in d.name)
        assert not d.name.startswith(".")


def test_pseudonymise_removes_patient_ids_from_every_output(tmp_path: Path) -> None:
    ids = {0: "HOSP-884213", 1: "HOSP-884214"}
    inv = batchkit.make_export(tmp_path / "export", 2, patient_ids=ids)
    pseudo = Pseudonymiser(b"test-key-of-sufficient-length")
    out = tmp_path / "out"
    _run(inv, out, pseudonymiser=pseudo)
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    for raw in ids.values():
        assert not any(raw.encode() in b for b in blobs)
    patients = sorted({r["patient"] for r in _lesions(out)})
    assert patients == sorted(pseudo(v) for v in ids.values())
    assert all(p.startswith("PSN-") for p in patients)
    # pseudonymised and plain runs are different results: no reuse across the two
    again = _run(inv, out)
    assert again.studies_run == 2


def test_files_that_are_not_dicom_are_listed_but_do_not_fail_the_run(tmp_path: Path) -> None:
    import dataclasses

    from bonelesion.pipeline.inventory import BadFile

    inv = batchkit.make_export(tmp_path / "export", 2)
    inv = dataclasses.replace(inv, bad_files=(
        BadFile(path=str(tmp_path / "export" / "README.txt"), reason="not_dicom: a text file",
                status="not_dicom"),))
    summary = _run(inv, tmp_path / "out")
    assert summary.exit_code == 0
    assert "README.txt | not_dicom: a text file" in (tmp_path / "out" / "summary.txt").read_text()


def test_a_vanished_input_file_fails_its_study_at_plan(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 2)
    Path(inv.studies[0].candidates[0].files[1]).unlink()
    summary = _run(inv, tmp_path / "out")
    assert [(f["study_instance_uid"], f["stage"]) for f in summary.failures] == [
        (inv.studies[0].study_instance_uid, "plan")]
    assert "an input file vanished since indexing" in summary.failures[0]["message"]
    assert summary.studies_ok == 1


def test_pick_stack_matches_key_then_files_then_role(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bonelesion.errors import SeriesSelectionError
    from bonelesion.pipeline.loading import _pick_stack
    from bonelesion.pipeline.plan import StackCandidate

    def stack(key: str, role: str, files: tuple[str, ...]) -> SimpleNamespace:
        info = SimpleNamespace(series_instance_uid="1.2", role=role)
        return SimpleNamespace(key=key, info=info, files=files, raise_if_refused=lambda: None)

    a, b = stack("k1", "dwi", ("/a",)), stack("k2", "dwi", ("/b",))
    cand = StackCandidate(study_instance_uid="1", series_instance_uid="1.2", stack_key="zz",
                          modality="MR", role="dwi", files=("/b",))
    assert _pick_stack([a, b], cand) is b  # key unknown to the reader: matched by files
    lost = StackCandidate(study_instance_uid="1", series_instance_uid="1.2", stack_key="zz",
                          modality="MR", role="dwi", files=("/c",))
    with pytest.raises(SeriesSelectionError, match=r"Series 1.2: stack 'zz' \(role dwi\) not found among the 2"):
        _pick_stack([a, b], lost)


def test_a_study_that_now_fails_loses_its_stale_outputs(tmp_path: Path) -> None:
    inv = batchkit.make_export(tmp_path / "export", 2)
    out = tmp_path / "out"
    _run(inv, out)
    uid = inv.studies[0].study_instance_uid
    assert list((out / "studies").glob(f"*/*{uid}*"))
    Path(inv.studies[0].candidates[0].files[0]).write_bytes(b"FAIL after a re-send\n")
    summary = _run(inv, out)
    assert summary.studies_run == 1 and [f["study_instance_uid"] for f in summary.failures] == [uid]
    assert not list((out / "studies").glob(f"*/*{uid}*"))
    assert {r["study_instance_uid"] for r in _lesions(out)} == {inv.studies[1].study_instance_uid}
