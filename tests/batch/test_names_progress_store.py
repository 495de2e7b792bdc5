"""Safe names, pseudonyms, progress display and store errors."""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bonelesion.batch.names import (
    KEY_ENV,
    KEY_FILE_ENV,
    MAX_COMPONENT_CHARS,
    Pseudonymiser,
    safe_component,
    safe_join,
)
from bonelesion.batch.progress import Progress
from bonelesion.batch.store import ResultsStore
from bonelesion.errors import ConfigError, InputError


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_safe_component_is_one_harmless_component(value: str) -> None:
    name = safe_component(value)
    assert 0 < len(name) <= MAX_COMPONENT_CHARS
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    assert not name.startswith((".", "-")) and ".." not in name
    assert os.path.basename(name) == name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_distinct_values_stay_distinct(a: str, b: str) -> None:
    if a != b:
        assert safe_component(a) != safe_component(b)


@pytest.mark.parametrize("value", ["../../etc", "/abs/path", "..", ".", "", "CON", "a/../../b", "\x00\x1b[2J"])
def test_safe_join_stays_under_root(tmp_path: Path, value: str) -> None:
    path = safe_join(tmp_path, value, value)
    assert tmp_path.resolve() in path.resolve().parents


def test_pseudonymiser_is_keyed_and_stable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(KEY_ENV, "k" * 32)
    a = Pseudonymiser.from_environment()
    assert a("12345") == Pseudonymiser(b"k" * 32)("12345")
    assert a("12345") != Pseudonymiser(b"j" * 32)("12345")
    key_file = tmp_path / "key"
    key_file.write_bytes(b"file-key-0123456789\n")
    assert Pseudonymiser.from_environment(key_file)("x") == Pseudonymiser(b"file-key-0123456789")("x")
    assert "k" * 32 not in repr(a)


def test_pseudonymiser_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(ConfigError, match="--pseudonymise needs a key"):
        Pseudonymiser.from_environment()
    with pytest.raises(ConfigError, match=r"too short \(5 bytes"):
        Pseudonymiser(b"short")
    with pytest.raises(ConfigError, match="key file .* cannot be read"):
        Pseudonymiser.from_environment(tmp_path / "missing")


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_lines_and_eta() -> None:
    clock = _Clock()
    out = io.StringIO()
    p = Progress(4, skipped=2, stream=out, tty=False, clock=clock)
    clock.t += 300.0  # indexing and planning: not part of the per-study rate
    p.start()
    clock.t += 10.0
    p.update("1.2.3", "ok")
    clock.t += 10.0
    p.update("1.2.4", "failed", "load")
    assert p.eta_s() == pytest.approx(20.0)  # 10 s per study, 2 left
    lines = out.getvalue().splitlines()
    assert lines[0] == "[bonelesion] 4 studies to run, 2 already done"
    assert lines[2] == ("[bonelesion] 2/4 studies (50%), 1 failed, 2 already done, ETA 20s "
                        "| study 1.2.4 failed: load")


def test_progress_bar_on_a_tty() -> None:
    out = io.StringIO()
    p = Progress(2, stream=out, tty=True, width=10, clock=_Clock())
    p.start()
    p.update("1", "ok")
    p.close()
    text = out.getvalue()
    assert "\r[----------] 0/2 studies (0%)" in text
    assert "\r[#####-----] 1/2 studies (50%), 0 failed, ETA 0s" in text
    assert text.endswith("\n")


def test_store_refuses_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "results.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(InputError, match="cannot be opened as SQLite"):
        ResultsStore(bad)
    other = tmp_path / "other.sqlite"
    with ResultsStore(other):
        pass
    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InputError, match="schema version 99, expected 2"):
        ResultsStore(other)


def test_safe_join_guard_refuses_an_escaping_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bonelesion.batch.names as names

    monkeypatch.setattr(names, "safe_component", lambda value, **_: "..")  # a future regression
    with pytest.raises(InputError, match="is outside the output folder"):
        names.safe_join(tmp_path / "out", "x")


def test_indexing_progress() -> None:
    lines, bar = io.StringIO(), io.StringIO()
    p, q = Progress(0, stream=lines, tty=False), Progress(0, stream=bar, tty=True)
    for done in (0, 50, 100):
        p.indexing(done, 100)
        q.indexing(done, 100)
    p.indexing(0, 0)  # nothing to read: silent
    assert lines.getvalue() == "[bonelesion] indexed 100 new or changed files\n"
    assert bar.getvalue().endswith("\r[bonelesion] indexing: 100/100 files\x1b[K\n")
    assert "\r[bonelesion] indexing: 50/100 files" in bar.getvalue()
