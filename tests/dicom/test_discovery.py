"""The one walk of the catalogue and the reader (`bonelesion.dicom.discovery`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonelesion.dicom.discovery import ProblemKind, discover_files, walk_export
from bonelesion.dicom.index import Catalogue, index_export
from bonelesion.dicom.series import load_series

#: Folder depth beyond Python's recursion limit: a recursive walk would fail here.
DEEP_LEVELS = sys.getrecursionlimit() + 100


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail (instead of hanging the suite) if a test blocks for 20 s, e.g. on a FIFO."""

    def _raise(signum: int, frame: object) -> None:
        raise TimeoutError("blocked: a named pipe was opened?")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_named_pipe_is_reported_never_opened(tmp_path: Path, ct_writer, alarm: None) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    ct_writer(export / "ct", n=3)
    os.mkfifo(export / "ct" / "pipe")
    walk = walk_export(export)
    (problem,) = walk.problems
    assert problem.rel == "ct/pipe" and problem.kind is ProblemKind.NOT_REGULAR
    assert "named pipe" in problem.reason
    found = discover_files(export)
    assert len(found.files) == 3
    assert any(s.path.endswith("pipe") and "named pipe" in s.reason for s in found.skipped)
    assert discover_files([export / "ct" / "pipe"]).skipped[0].reason.startswith("Not a regular")
    (stack,) = load_series(export, decode=False)
    assert stack.usable and stack.shape is not None and stack.shape[0] == 3
    index_export(export, tmp_path / "cat.sqlite", workers=1)
    with Catalogue(tmp_path / "cat.sqlite") as cat:
        (entry,) = [r for r in cat.files(status=None) if r.path == "ct/pipe"]
    assert entry.status == "not_dicom" and "named pipe" in entry.reason


def test_link_loop_and_second_path_followed_once(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    ct_writer(export / "b" / "ct", n=2)
    (export / "a").mkdir()
    os.symlink("../b", export / "a" / "to_b")  # a second path to b (walked after b)
    os.symlink("..", export / "b" / "loop")  # a loop
    walk = walk_export(export)
    assert [rel for rel, _, _ in walk.files] == sorted(
        f"b/ct/{p.name}" for p in (export / "b" / "ct").iterdir())
    reasons = {p.rel: p.reason for p in walk.problems}
    assert set(reasons) == {"a/to_b", "b/loop"}
    assert all("already indexed" in r for r in reasons.values())
    (stack,) = load_series(export, decode=False)
    assert len(stack.files) == 2  # each file once, under its real path


def test_deeper_than_the_recursion_limit(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    export.mkdir()
    deep = os.fspath(export)
    for _ in range(DEEP_LEVELS):  # iteratively: Path.mkdir(parents=True) recurses
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    try:
        ct_writer(Path(deep), n=2)
        walk = walk_export(export)
        assert len(walk.files) == 2 and all(rel.count("/") == DEEP_LEVELS for rel, _, _ in walk.files)
        assert len(discover_files(export).files) == 2
    finally:
        subprocess.run(["rm", "-rf", os.fspath(export / "d")], check=True)  # rmtree recurses


def test_file_names_that_are_not_utf8(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    """A Latin-1 file name (byte 0xE9) is read, catalogued and found again by its path."""
    export = tmp_path / "export"
    files, _ = ct_writer(export / "ct", n=3)
    raw_dir = os.fsencode(export / "ct")
    odd = os.path.join(raw_dir, b"caf\xe9\nlatin1.dcm")  # not UTF-8, and a line break
    os.rename(os.fsencode(files[0]), odd)
    name = os.fsdecode(odd)
    with pytest.raises(UnicodeEncodeError):
        name.encode("utf-8")
    found = discover_files(export)
    assert str(Path(name)) in {str(p) for p in found.files}
    (stack,) = load_series(export)
    assert stack.usable and stack.volume is not None and stack.volume.shape[0] == 3
    index_export(export, tmp_path / "cat.sqlite", workers=1)
    with Catalogue(tmp_path / "cat.sqlite") as cat:
        recs = cat.files()
        (series,) = cat.series()
        (cat_stack,) = cat.stacks(series.series_instance_uid)
    assert len(recs) == 3 and all(r.status == "ok" for r in recs)
    rel = os.path.relpath(name, export)
    assert rel in {r.path for r in recs} and rel in cat_stack.paths
    assert (export / rel).read_bytes()[128:132] == b"DICM"  # the stored path opens the file
    # re-indexing sees the same file unchanged (no re-read, no removal)
    again = index_export(export, tmp_path / "cat.sqlite", workers=1)
    assert (again.files_read, again.files_unchanged, again.files_removed) == (0, 3, 0)


def test_missing_input_path_raises(tmp_path: Path) -> None:
    from bonelesion.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        discover_files(tmp_path / "nowhere")
