"""Run one entry point on one export in a child process with limits, and judge the outcome.

The fuzzing process imports bonelesion once and *forks* a child per run (a fork server,
as AFL does): the child sets its limits (address space, CPU time, no core files), its own
process group, working directory, ``HOME`` and ``TMPDIR`` inside the case folder, sends
stdout and stderr to files, runs the entry point and exits with its code. The parent kills
the process group when the wall-clock limit passes. ``exec_mode`` runs a fresh
``python -m bonelesion`` (or ``python -c``) instead, for fidelity checks.

Oracles (a run is a *finding* when any fails):

* exit code 0, 3 or 4 for commands (3 for an input error); the API raises only
  `bonelesion.errors.PipelineError` subclasses — anything else is a ``crash``
  (``oom`` when it is a MemoryError); death by a signal is ``signal``; the wall-clock
  limit is ``hang``;
* ``series --json``: on success stdout is exactly one JSON array, on failure it is empty
  (``stdout``);
* every refusal names a file: an input error's message, and every problem of a refused
  stack (``series --json``, ``convert``'s ``summary.json``, ``load_series``), mentions a
  file or folder of the export (``naming``);
* nothing is written anywhere but the run's output folder: the export, the working
  directory, ``HOME``, ``TMPDIR``, the case folder and the campaign folder are unchanged,
  and the canary folder that hostile values point at never appears (``write_outside``).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TARGETS", "READER_TARGETS", "Outcome", "run_target", "snapshot"]

#: Entry points of the reader, and the two that read through the pipeline.
READER_TARGETS = ("index", "series", "convert", "load_series")
TARGETS = (*READER_TARGETS, "load_volume", "run")
#: Targets that misbehave on purpose: the oracles must catch each (tests of the harness).
SELFTEST_TARGETS = ("selftest_crash", "selftest_oom", "selftest_hang", "selftest_write",
                    "selftest_stdout", "selftest_signal", "selftest_unnamed")

_EXIT_OK = {0, 3, 4}
_MARK_EXC = "FUZZ-EXCEPTION"
_MARK_PIPELINE = "FUZZ-PIPELINE-ERROR"
_MARK_PROBLEM = "FUZZ-PROBLEM"


@dataclass
class Outcome:
    """What one run of one entry point did."""

    target: str
    kind: str  # ok | crash | oom | hang | signal | stdout | naming | write_outside
    exit_code: int | None
    signature: str = ""
    detail: str = ""
    seconds: float = 0.0
    max_rss_mib: float = 0.0
    problems_checked: int = 0
    extra: list[str] = field(default_factory=list)


def _argv(target: str, export: Path, out: Path) -> list[str]:
    e, o = os.fspath(export), os.fspath(out)
    return {
        "index": ["-q", "index", e, "--db", os.path.join(o, "index.sqlite"), "--workers", "1"],
        "series": ["-q", "series", e, "--json"],
        "convert": ["-q", "convert", e, os.path.join(o, "nifti")],
        "run": ["-q", "run", "combined", e, "--out", os.path.join(o, "run"), "--progress",
                "lines"] + (["--rois", os.path.join(e, "rois.csv")]
                            if os.path.isfile(os.path.join(e, "rois.csv")) else []),
    }[target]


def _api(target: str, export: Path) -> int:
    """Child side of the API targets: 0, or 3 after a PipelineError (printed)."""
    from bonelesion.dicom.series import load_series, load_volume
    from bonelesion.errors import PipelineError

    try:
        if target == "load_volume":
            volume = load_volume(export)
            float(volume.array.sum())
            return 0
        stacks = load_series(export)
        for stack in stacks:
            if stack.volume is not None:
                float(stack.volume.array.sum())
            assert isinstance(stack.usable, bool)
            files = list(stack.files)
            for problem in stack.problems:
                sys.stderr.write(f"{_MARK_PROBLEM} {json.dumps([problem, files])}\n")
        return 0
    except PipelineError as exc:
        sys.stderr.write(f"{_MARK_PIPELINE} {type(exc).__name__}: {exc}\n")
        return 3


def _selftest(target: str, export: Path) -> int:
    """Misbehave as ``target`` says (child side): what each oracle must catch."""
    if target == "selftest_crash":
        raise ValueError("an unexpected exception")
    if target == "selftest_oom":
        return len(bytearray(8 * 1024**3))  # beyond the address-space limit
    if target == "selftest_hang":
        time.sleep(3600)
    if target == "selftest_write":
        Path("stray.txt").write_text("written into the working directory\n")
        return 0
    if target == "selftest_stdout":
        print("[]\nnot JSON")
        return 0
    if target == "selftest_signal":
        os.kill(os.getpid(), signal.SIGSEGV)
    if target == "selftest_unnamed":
        sys.stderr.write("bonelesion: error: something is wrong with some file\n")
        return 3
    return 0


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "bonelesion" in f.filename]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "?"
    name = frame.filename.split("site-packages/")[-1].split("src/")[-1]
    return f"{name}:{frame.name}"


def _child(target: str, export: Path, out: Path, case: Path, memory_bytes: int,
           cpu_s: int) -> None:
    """Runs in the forked child; never returns."""
    code = 1
    try:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        for fd, name in ((1, "stdout"), (2, "stderr")):
            handle = os.open(os.fspath(out / f".{name}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(handle, fd)
            os.close(handle)
        os.chdir(case / "cwd")
        os.environ["HOME"] = os.fspath(case / "home")
        os.environ["TMPDIR"] = os.fspath(case / "tmp")
        import tempfile

        tempfile.tempdir = None
        try:
            if target.startswith("selftest_"):
                code = _selftest(target, export)
            elif target in ("load_series", "load_volume"):
                code = _api(target, export)
            else:
                from bonelesion.cli.main import main

                code = main(_argv(target, export, out))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - the finding itself
            traceback.print_exc()
            sys.stderr.write(f"\n{_MARK_EXC} {type(exc).__name__} {_where(exc)}\n")
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, tuple[int, int, int]]:
    """(mode, size, mtime ns) of every entry under ``root`` (links not followed)."""
    out: dict[str, tuple[int, int, int]] = {}
    stack = [os.fsencode(root)]
    skipped = os.fsencode(skip) if skip is not None else None
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if skipped is not None and entry.path == skipped:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = os.fsdecode(entry.path)
            out[key] = (st.st_mode, st.st_size if not entry.is_dir(follow_symlinks=False)
                        else 0, st.st_mtime_ns if entry.is_file(follow_symlinks=False) else 0)
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return out


_CATCH_ALL = re.compile(r"^(?:Unexpected (\w+) while|The header cannot be parsed: (\w+):)")


def _index_catch_alls(db: Path) -> list[tuple[str, str]]:
    """(exception type, reason) of catalogue records that a catch-all handler wrote.

    The catalogue records every failure as a status with a reason; a reason naming an
    unexpected exception type means a fault that was caught, not fixed.
    """
    import sqlite3

    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT reason FROM files WHERE reason LIKE 'Unexpected %' "
                           "OR reason LIKE 'The header cannot be parsed: %'").fetchall()
    finally:
        con.close()
    out = []
    for (reason,) in rows:
        match = _CATCH_ALL.match(reason)
        if match:
            out.append((match.group(1) or match.group(2), reason))
    return out


def _names(export: Path) -> set[str]:
    """Names a refusal may use for a file of the export (and the export itself)."""
    names = {os.fspath(export)}
    for path, (mode, _, _) in snapshot(export).items():
        if stat.S_ISDIR(mode):
            names.add(path)
            continue
        base = os.path.basename(path)
        names.add(base)
        names.add(base.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
        names.add(base.encode("utf-8", "backslashreplace").decode("ascii"))
    return {n for n in names if n}


def _names_a_file(text: str, names: set[str]) -> bool:
    return any(n in text for n in names)


def _problems_from(target: str, out: Path, stdout: str, stderr: str) -> list[tuple[str, str]]:
    """(where, problem) pairs of refused stacks the run reported."""
    found: list[tuple[str, str]] = []
    if target == "series" and stdout.strip():
        try:
            records = json.loads(stdout)
        except ValueError:
            return found
        for record in records if isinstance(records, list) else []:
            for p in record.get("problems", []) or []:
                found.append(("series record", str(p)))
    if target == "convert":
        summary = out / "nifti" / "summary.json"
        if summary.exists():
            try:
                refused = json.loads(summary.read_text())["refused"]
            except (ValueError, KeyError):
                refused = []
            for entry in refused:
                for p in entry.get("problems", []):
                    found.append(("convert summary", str(p)))
    if target == "load_series":
        for line in stderr.splitlines():
            if line.startswith(_MARK_PROBLEM):
                found.append(("load_series stack", json.loads(line[len(_MARK_PROBLEM):])[0]))
    return found


def run_target(target: str, case: Path, *, timeout_s: float, memory_bytes: int,
               exec_mode: bool = False) -> Outcome:
    """Run ``target`` on ``case/export`` with output in ``case/out/<target>``; judge it."""
    export = case / "export"
    out = case / "out" / target
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("cwd", "home", "tmp"):
        (case / sub).mkdir(exist_ok=True)
    before = snapshot(case, skip=case / "out")
    campaign_before = {p.name for p in case.parent.iterdir()}
    names = _names(export)
    start = time.monotonic()
    timed_out, status, rusage = _execute(target, export, out, case, timeout_s, memory_bytes,
                                         exec_mode)
    seconds = time.monotonic() - start
    stdout = (out / ".stdout").read_bytes().decode("utf-8", "backslashreplace")
    stderr = (out / ".stderr").read_bytes().decode("utf-8", "backslashreplace")
    rss = rusage.ru_maxrss / 1024.0 if rusage is not None else 0.0
    outcome = Outcome(target, "ok", None, seconds=seconds, max_rss_mib=rss)
    if timed_out:
        outcome.kind, outcome.signature = "hang", f"{target}:hang"
        outcome.detail = stderr[-2000:]
        return outcome
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        outcome.kind, outcome.signature = "signal", f"{target}:signal:{sig}"
        outcome.detail = stderr[-2000:]
        return outcome
    code = os.WEXITSTATUS(status)
    outcome.exit_code = code
    allowed = {0, 3} if target in ("load_series", "load_volume") else _EXIT_OK
    judged_as = "series" if target == "selftest_stdout" else target
    if code not in allowed:
        marks = [line for line in stderr.splitlines() if line.startswith(_MARK_EXC)]
        exc_type, where = "?", "?"
        if marks:
            _, exc_type, where = (marks[-1].split(" ", 2) + ["?", "?"])[:3]
        elif "Traceback" in stderr:
            last = [ln for ln in stderr.splitlines() if ln and not ln.startswith(" ")]
            exc_type = last[-1].split(":")[0] if last else "?"
        outcome.kind = "oom" if exc_type == "MemoryError" else "crash"
        outcome.signature = f"{target}:{outcome.kind}:{exc_type}:{where}:exit{code}"
        outcome.detail = stderr[-4000:]
        return outcome
    after = snapshot(case, skip=case / "out")
    changed = sorted(set(before.items()) ^ set(after.items()))
    campaign_after = {p.name for p in case.parent.iterdir()}
    new_in_campaign = sorted(campaign_after - campaign_before - {case.name})
    if changed or new_in_campaign or (case / "canary").exists():
        paths = sorted({p for p, _ in changed})[:10] + new_in_campaign[:10]
        outcome.kind, outcome.signature = "write_outside", f"{target}:write_outside"
        outcome.detail = "changed outside the output folder: " + ", ".join(paths)
        return outcome
    if target == "index" and code in (0, 4):
        caught = _index_catch_alls(out / "index.sqlite")
        if caught:
            outcome.kind = "crash"
            outcome.signature = f"index:catch-all:{caught[0][0]}"
            outcome.detail = f"{len(caught)} record(s) from a catch-all: {caught[0][1][:500]}"
            return outcome
    if judged_as == "series":
        text = stdout.strip()
        bad = ""
        if code == 0:
            try:
                if not isinstance(json.loads(text), list):
                    bad = "stdout is JSON but not an array"
            except ValueError as exc:
                bad = f"stdout is not one JSON array ({exc})"
        elif text:
            bad = "stdout not empty after an error"
        if bad:
            outcome.kind, outcome.signature, outcome.detail = "stdout", "series:stdout", bad
            return outcome
    messages: list[tuple[str, str]] = []
    if code == 3:
        errors = [ln for ln in stderr.splitlines()
                  if ln.startswith("bonelesion: error:") or ln.startswith(_MARK_PIPELINE)]
        messages.extend(("error", e) for e in errors[-1:])
    messages.extend(_problems_from(target, out, stdout, stderr))
    outcome.problems_checked = len(messages)
    unnamed = [(w, m) for w, m in messages if not _names_a_file(m, names)]
    if unnamed:
        where, message = unnamed[0]
        outcome.kind = "naming"
        outcome.signature = f"{target}:naming:{where}:" + "".join(
            c for c in message[:50] if not c.isdigit())
        outcome.detail = message[:1000]
    return outcome


def _execute(target: str, export: Path, out: Path, case: Path, timeout_s: float,
             memory_bytes: int, exec_mode: bool
             ) -> tuple[bool, int, resource.struct_rusage | None]:
    """Run the child; return (timed out, wait status, rusage)."""
    if exec_mode:
        return _execute_subprocess(target, export, out, case, timeout_s, memory_bytes)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(target, export, out, case, memory_bytes, int(timeout_s) + 5)
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        done, status, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            _reap_group(pid)
            return False, status, rusage
        if time.monotonic() > deadline:
            _kill_group(pid)
            _, status, rusage = os.wait4(pid, 0)
            return True, status, rusage
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap_group(pid: int) -> None:
    """Kill anything the child left running in its process group (e.g. pool workers)."""
    _kill_group(pid)


def _execute_subprocess(target: str, export: Path, out: Path, case: Path, timeout_s: float,
                        memory_bytes: int) -> tuple[bool, int, resource.struct_rusage | None]:
    if target in ("load_series", "load_volume"):
        code = (f"import sys; sys.path.insert(0, {os.fspath(Path(__file__).parents[1])!r}); "
                f"from fuzz.runner import _api; sys.exit(_api({target!r}, "
                f"__import__('pathlib').Path({os.fspath(export)!r})))")
        argv = [sys.executable, "-c", code]
    else:
        argv = [sys.executable, "-m", "bonelesion", *_argv(target, export, out)]

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = dict(os.environ, HOME=os.fspath(case / "home"), TMPDIR=os.fspath(case / "tmp"))
    with open(out / ".stdout", "wb") as so, open(out / ".stderr", "wb") as se:
        proc = subprocess.Popen(argv, stdout=so, stderr=se, cwd=case / "cwd", env=env,
                                preexec_fn=limits, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            timed_out = True
    status = (proc.returncode << 8) if proc.returncode >= 0 else -proc.returncode
    return timed_out, status, None


#: Signature of a run used by minimisation: same target, kind, exception type and place.
def same_failure(a: Outcome, b: Outcome) -> bool:
    """True when two outcomes are the same finding (line numbers ignored)."""
    return a.kind == b.kind and a.signature == b.signature


Judge = Callable[[Outcome], bool]
