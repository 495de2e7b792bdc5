"""The ``bonelesion`` program's own process: numpy's start-up options and the fast exit.

`bonelesion.cli.main.run` (the console script and ``python -m bonelesion``) turns numpy's
huge-page advice off before numpy is imported, unless the user set it, and ends the process
without the interpreter's teardown once everything is flushed and the ``atexit`` callbacks
ran. Each test runs a fresh interpreter, as the program runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    base["PYTHONPATH"] = os.pathsep.join([str(SRC), base.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_importing_bonelesion_imports_no_numpy_yet(tmp_path: Path) -> None:
    # what lets the program set numpy's start-up options: the package and the command-line
    # modules import numpy only when a command needs it; the public names still resolve
    probe = _python("""
        import sys
        import bonelesion, bonelesion.cli.main
        before = "numpy" in sys.modules
        from bonelesion import Volume, SeriesInfo
        import bonelesion.model.volume as volume
        assert Volume is volume.Volume and SeriesInfo is volume.SeriesInfo
        assert {"Volume", "SeriesInfo", "load_volume"} <= set(dir(bonelesion))
        print(before, "numpy" in sys.modules)
    """, tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["False", "True"]
    with pytest.raises(AttributeError, match="no_such_name"):
        import bonelesion

        bonelesion.no_such_name  # noqa: B018


_RUN_REPORTING_HUGEPAGES = """
    import sys
    import bonelesion.cli.main
    program = sys.modules["bonelesion.cli.main"]  # the package's `main` is the function

    def main(argv=None):
        import gc
        import numpy
        print(numpy._core.multiarray._get_madvise_hugepage(), *gc.get_threshold())
        return 0

    program.main = main
    program.run()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux only")
def test_program_turns_numpys_hugepage_advice_off_unless_the_user_chose(tmp_path: Path
                                                                        ) -> None:
    default = _python(_RUN_REPORTING_HUGEPAGES, tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["False", "20000", "20", "20"]  # and the collector
    chosen = _python(_RUN_REPORTING_HUGEPAGES, tmp_path, NUMPY_MADVISE_HUGEPAGE="1")
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.split()[0] == "True"


_RUN_AND_EXIT = """
    import atexit, logging, sys, threading, time
    from pathlib import Path
    import bonelesion.cli.main
    program = sys.modules["bonelesion.cli.main"]

    class Teardown:  # its __del__ runs only in the interpreter's teardown of this module
        def __del__(self):
            Path("teardown").write_text("ran")

    kept = Teardown()
    atexit.register(lambda: Path("atexit").write_text("ran"))

    def main(argv=None):
        print("partial line without newline", end="")  # still in the stdout buffer
        print("on stderr", end="", file=sys.stderr)
        handler = logging.FileHandler("log.txt")
        logging.getLogger("bonelesion").addHandler(handler)
        logging.getLogger("bonelesion").warning("last record")  # flushed at the exit
        if sys.argv[1] == "thread":
            threading.Thread(target=lambda: (time.sleep(0.3),
                                             Path("thread").write_text("done"))).start()
        return 4

    program.main = main
    program.run()
"""


@pytest.mark.parametrize("thread", [False, True], ids=["alone", "thread-running"])
def test_program_exit_flushes_runs_exit_callbacks_and_keeps_the_code(tmp_path: Path,
                                                                     thread: bool) -> None:
    base = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    base["PYTHONPATH"] = os.pathsep.join([str(SRC), base.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_RUN_AND_EXIT),
                           "thread" if thread else "alone"], cwd=tmp_path, env=base,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4
    assert done.stdout == "partial line without newline"
    assert done.stderr == "on stderr"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "log.txt").read_text() == "last record\n"
    if thread:  # a thread still running: the ordinary exit, which waits for it
        assert (tmp_path / "thread").read_text() == "done"
        assert (tmp_path / "teardown").exists()
    else:  # the fast exit: no module teardown
        assert not (tmp_path / "teardown").exists()


def test_a_real_command_ends_with_its_outputs_and_log_complete(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "bonelesion", "-v", "--log-file", "log.txt",
                           "phantom", "scan", "--seed", "3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("scan: 7 series, 6 lesions")
    log = (tmp_path / "log.txt").read_text()
    assert "Phantom study" in log and log.endswith("series)\n")
    assert "Phantom study" in done.stderr  # the stderr handler, flushed too
    truth = (tmp_path / "scan" / "truth.json").read_text()
    assert truth.rstrip().endswith("}")
    assert len(list((tmp_path / "scan" / "DICOM").rglob("*.dcm"))) > 0
