"""`bonelesion -v/-q` sets only bonelesion's log level; other libraries stay at WARNING."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bonelesion.dicom.series
from bonelesion.cli import EXIT_OK, main


@pytest.fixture()
def chatty_reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`series` command whose reader logs like highdicom/pydicom do, at every level."""

    def load_series(*_: Any, **__: Any) -> list[Any]:
        for name in ("highdicom.seg.sop", "pydicom", "bonelesion.dicom.series"):
            log = logging.getLogger(name)
            log.debug("%s DEBUG marker", name)
            log.info("%s INFO marker", name)
            log.warning("%s WARNING marker", name)
        return []

    monkeypatch.setattr(bonelesion.dicom.series, "load_series", load_series)
    hd = logging.getLogger("highdicom")
    before = hd.level
    hd.setLevel(logging.DEBUG)  # a library that lowers its own level must still be quiet
    try:
        yield
    finally:
        hd.setLevel(before)


@pytest.mark.parametrize(("flags", "own_levels"), [
    ([], {"INFO", "WARNING"}),
    (["-q"], {"WARNING"}),
    (["-vv"], {"DEBUG", "INFO", "WARNING"}),
])
@pytest.mark.usefixtures("chatty_reader")
def test_only_bonelesion_follows_verbosity(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           flags: list[str], own_levels: set[str]) -> None:
    log_file = tmp_path / "run.log"
    assert main([*flags, "--log-file", str(log_file), "series", str(tmp_path)]) == EXIT_OK
    err = capsys.readouterr().err
    for text in (err, log_file.read_text(encoding="utf-8")):
        for level in ("DEBUG", "INFO", "WARNING"):
            own = f"bonelesion.dicom.series {level} marker"
            assert (own in text) == (level in own_levels), (flags, own)
            for lib in ("highdicom.seg.sop", "pydicom"):
                assert (f"{lib} {level} marker" in text) == (level == "WARNING"), (flags, lib)
