"""The five fault families of the reader's fuzz campaign, one regression test each.

Files are damaged at the byte level (`fuzz.layout`, `fuzz.mutate`): recursion, the guard
around pydicom's parser, lazy conversion, bare ``int()``/``float()`` on file text, wrong
types where a sequence is expected and absurd geometry; then named pipes, non-UTF-8 file
names and what ``series --json`` prints. Every refusal must name the file; a bad file never
costs its stack.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from fuzz.campaign import remove_tree
from fuzz.layout import layout
from fuzz.mutate import _element_bytes, deep_nesting, replace_element

from bonelesion.cli import main
from bonelesion.dicom.series import Stack, load_series
from bonelesion.errors import (
    DamagedFileError,
    InputError,
    MissingAttributeError,
    SeriesGeometryError,
)

#: Peak Python allocation allowed while refusing a file that declares a 4 GB element.
ALLOCATION_LIMIT_BYTES = 64 * 1024**2


def _set(path: Path, tag: int, vr: str, value: bytes) -> None:
    """Write one top-level element of ``path`` at the byte level (hostile value, valid lengths).

    An element the file lacks is inserted before the first one with a higher tag.
    """
    data = path.read_bytes()
    lay = layout(data)
    assert lay is not None
    found = [e for e in lay.elements if e.tag == tag and e.depth == 0]
    if found:
        el = found[0]
        path.write_bytes(replace_element(data, lay, el, _element_bytes(el, lay, vr, value)))
        return
    after = next(e for e in lay.elements if e.depth == 0 and not e.in_meta and e.tag > tag)
    value += b" " * (len(value) % 2)
    added = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode() + \
        struct.pack("<H", len(value)) + value
    path.write_bytes(data[:after.offset] + added + data[after.offset:])


def _refused(stacks: list[Stack], path: Path) -> Stack:
    (stack,) = [s for s in stacks if s.files == (str(path),) and not s.usable]
    assert path.name in stack.problems[0], stack.problems
    return stack


def _usable(stacks: list[Stack]) -> list[Stack]:
    return [s for s in stacks if s.usable]


@pytest.fixture
def ct(tmp_path: Path, ct_writer: Any) -> list[Path]:
    files, _ = ct_writer(tmp_path / "ct", n=5)
    return [Path(f) for f in files]


# ------------------------------------------------------------------- family 1: recursion
@pytest.mark.parametrize("fast_path", [True, False])
def test_deep_sequence_nesting_refuses_the_file_not_the_stack(ct: list[Path],
                                                              fast_path: bool) -> None:
    import random

    data = ct[-1].read_bytes()
    rng = random.Random(0)
    while True:  # draw a depth beyond the limit
        mutated, text = deep_nesting(data, layout(data), rng)
        if int(text.split()[2]) > 64:
            break
    ct[-1].write_bytes(mutated)
    stacks = load_series(ct[0].parent, fast_path=fast_path)
    refused = _refused(stacks, ct[-1])
    assert "nested deeper than 64 levels" in refused.problems[0]
    (rest,) = _usable(stacks)
    assert rest.shape == (4, 8, 6)


def test_a_folder_1100_levels_deep_is_found(tmp_path: Path, ct_writer: Any) -> None:
    folder = tmp_path / "deep"
    folder.mkdir()
    for _ in range(1100):
        folder = folder / "d"
        folder.mkdir()
    ct_writer(folder, n=3)
    try:
        (stack,) = load_series(tmp_path / "deep")
        assert stack.usable and stack.shape == (3, 8, 6)
    finally:
        remove_tree(tmp_path / "deep")  # iteratively: pytest's rmtree recurses per level


# ------------------------------------------------- family 2: the guard around the parser
def test_unknown_vr_is_refused_by_name(ct: list[Path]) -> None:
    data = ct[2].read_bytes()
    lay = layout(data)
    assert lay is not None
    (el,) = [e for e in lay.elements if e.tag == 0x00080070]  # Manufacturer LO
    assert el.vr_offset is not None
    ct[2].write_bytes(data[:el.vr_offset] + b"OX" + data[el.vr_offset + 2:])
    for fast_path in (True, False):
        refused = _refused(load_series(ct[0].parent, fast_path=fast_path), ct[2])
        assert "unknown VR 'OX'" in refused.problems[0]


def test_a_length_far_beyond_the_file_allocates_nothing(ct: list[Path]) -> None:
    data = bytearray(ct[0].read_bytes())
    lay = layout(bytes(data))
    assert lay is not None
    (el,) = [e for e in lay.elements if e.tag == 0x7FE00010]
    struct.pack_into("<L", data, el.length_offset, 0xFFFFFFF0)
    ct[0].write_bytes(bytes(data))
    tracemalloc.start()
    try:
        stacks = load_series(ct[0].parent, fast_path=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < ALLOCATION_LIMIT_BYTES
    assert "truncated" in _refused(stacks, ct[0]).problems[0]


def test_deflated_syntax_over_raw_data_is_refused_by_name(ct: list[Path]) -> None:
    _set(ct[1], 0x00020010, "UI", b"1.2.840.10008.1.2.1.99\x00")
    refused = _refused(load_series(ct[0].parent), ct[1])
    assert "Deflated" in refused.problems[0] and "inflate" in refused.problems[0]


def test_truncation_inside_the_header_is_refused_by_name(ct: list[Path]) -> None:
    data = ct[3].read_bytes()
    ct[3].write_bytes(data[:400])
    refused = _refused(load_series(ct[0].parent), ct[3])
    assert "ends" in refused.problems[0]


# --------------------------------------------------------- family 3: lazy conversion
def test_a_binary_value_of_the_wrong_length_is_refused_by_element(ct: list[Path]) -> None:
    _set(ct[4], 0x00280010, "US", b"\x08")  # Rows: one byte for a 2-byte US
    refused = _refused(load_series(ct[0].parent), ct[4])
    assert "(0028,0010) Rows" in refused.problems[0]
    assert "whole number of 2-byte values" in refused.problems[0]


# ------------------------------------------------ family 4: bare int()/float() on text
def test_descriptive_values_that_are_not_numbers_cost_nothing(ct: list[Path]) -> None:
    _set(ct[0], 0x00200011, "IS", b"-rf ")  # SeriesNumber
    _set(ct[1], 0x00200013, "IS", b"abc ")  # InstanceNumber
    (stack,) = load_series(ct[0].parent)
    assert stack.usable and stack.shape == (5, 8, 6)
    assert any(ct[0].name in w and "SeriesNumber" in w and "'-rf" in w for w in stack.warnings)


@pytest.mark.parametrize(("tag", "vr", "value", "expected"), [
    (0x00280008, "IS", b"0x1 ", r"NumberOfFrames: integer string \(IS\) b'0x1 '"),
    (0x00200032, "DS", b"nan\\nan\\0 ", r"ImagePositionPatient: decimal string"),
    (0x00281053, "DS", b"1e-320\\1e309", r"RescaleSlope: decimal string .* not a finite"),
])
def test_values_the_volume_needs_refuse_the_file_by_element_and_value(
        ct: list[Path], tag: int, vr: str, value: bytes, expected: str) -> None:
    _set(ct[4], tag, vr, value)
    stacks = load_series(ct[0].parent)
    import re

    assert re.search(expected, _refused(stacks, ct[4]).problems[0])
    (rest,) = _usable(stacks)
    assert rest.shape == (4, 8, 6)


def test_nul_inside_the_siemens_ascconv_is_named(tmp_path: Path) -> None:
    from support.testdata import shared_path

    src = shared_path("multivendor_cases_dicom2nifti", "dicom", "siemens", "dti", "001")
    mosaic = sorted(p for p in src.iterdir() if p.is_file())[0]
    data = mosaic.read_bytes()
    assert b"sSliceArray.lSize" in data
    start = data.index(b"sSliceArray.lSize")
    end = data.index(b"\n", start)
    line = data[start:end]
    assert line.endswith(b"= 40")  # this mosaic has no CSA tile count: the protocol says 40
    hostile = line[:-4] + b"=4\x000"  # a NUL inside the value, same length
    target = tmp_path / "mosaic.dcm"
    target.write_bytes(data[:start] + hostile + data[end:])
    (stack,) = load_series(target, decode=False)
    assert not stack.usable
    assert "mosaic.dcm" in stack.problems[0]
    assert "ASCCONV sSliceArray.lSize: value '4\\x000' is not a number" in stack.problems[0]


# --------------------------------------------- family 5: wrong types, absurd geometry
def test_a_number_where_the_per_frame_sequence_belongs_is_refused(tmp_path: Path) -> None:
    from support.testdata import shared_path

    src = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "11_DWI_dir80_PA")
    target = tmp_path / "adc.dcm"
    target.write_bytes(next(p for p in src.iterdir() if p.is_file()).read_bytes())
    _set(target, 0x52009230, "US", b"\x02\x00")
    stacks = load_series(target)
    refused = _refused(stacks, target)
    assert "PerFrameFunctionalGroupsSequence" in refused.problems[0]
    assert "not a sequence" in refused.problems[0]


@pytest.mark.parametrize("spacing", [b"1e-320", b"1e9 "])
def test_absurd_slice_spacing_is_refused_before_a_volume(tmp_path: Path, ct_writer: Any,
                                                         spacing: bytes) -> None:
    files, _ = ct_writer(tmp_path / "one", n=1)
    path = Path(files[0])
    data = path.read_bytes()
    lay = layout(data)
    assert lay is not None
    (thick,) = [e for e in lay.elements if e.tag == 0x00180050]
    value = spacing + (b" " if len(spacing) % 2 else b"")
    sbs = b"\x18\x00\x88\x00DS" + struct.pack("<H", len(value)) + value
    path.write_bytes(data[:thick.end] + sbs + data[thick.end:])
    (stack,) = load_series(path)
    assert not stack.usable
    assert "implausible slice spacing" in stack.problems[0] and path.name in stack.problems[0]
    with pytest.raises(SeriesGeometryError):
        stack.raise_if_refused()
    assert main(["-q", "convert", str(path), str(tmp_path / "out")]) == 4  # refused, no crash


# ------------------------------------------------------------ pipes, names, stdout
def test_a_named_pipe_is_never_opened(ct: list[Path], tmp_path: Path) -> None:
    os.mkfifo(ct[0].parent / "IM_pipe.dcm")
    stacks = load_series(ct[0].parent)  # would block forever if the pipe were opened
    assert len(_usable(stacks)) == 1
    assert main(["-q", "convert", str(ct[0].parent), str(tmp_path / "nifti")]) == 0


def test_file_names_that_are_not_utf8_are_carried_everywhere(
        ct: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = os.fsencode(ct[0].parent) + b"/caf\xe9\xff.dcm"
    os.rename(os.fsencode(ct[0]), odd)
    truncated = os.fsencode(ct[0].parent) + b"/cut\xfe.dcm"
    with open(truncated, "wb") as fh:
        fh.write(ct[1].read_bytes()[:-40])
    folder = ct[0].parent
    stacks = load_series(folder)
    assert len(_usable(stacks)) == 1 and _usable(stacks)[0].shape == (5, 8, 6)
    (refused,) = [s for s in stacks if not s.usable]
    assert "cut\\xfe.dcm" in refused.problems[0]  # printable, never a UnicodeEncodeError
    assert main(["-q", "series", str(folder), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert any(os.fsdecode(odd) in r["files"] for r in records)
    assert main(["-q", "series", str(folder)]) == 0
    assert "cut\\xfe.dcm" in capsys.readouterr().out
    db = tmp_path / "index.sqlite"
    assert main(["-q", "index", str(folder), "--db", str(db), "--workers", "1"]) == 0
    from bonelesion.dicom.index import Catalogue

    with Catalogue(db) as cat:
        paths = {r.path: r.status for r in cat.files(status=None)}
    assert paths[os.fsdecode(b"caf\xe9\xff.dcm")] == "ok"
    assert paths[os.fsdecode(b"cut\xfe.dcm")] == "truncated"
    con = sqlite3.connect(db)  # stored reversibly as valid text
    assert all(isinstance(p, str) for (p,) in con.execute("SELECT path FROM files"))
    con.close()
    assert main(["-q", "convert", str(folder), str(tmp_path / "nifti")]) == 4


def test_series_json_is_one_array_on_stdout_and_errors_go_to_stderr(
        ct: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ct[1].write_bytes(ct[1].read_bytes()[:300])
    assert main(["series", str(ct[0].parent), "--json"]) == 0
    captured = capsys.readouterr()
    records = json.loads(captured.out)
    assert isinstance(records, list) and len(records) == 2
    assert ct[1].name in captured.err  # the refusal is logged on stderr, never on stdout
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("not DICOM")
    assert main(["series", str(empty), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_the_api_raises_only_pipeline_errors(ct: list[Path]) -> None:
    _set(ct[0], 0x00200032, "DS", b"abc ")
    from bonelesion.dicom.series import load_volume

    with pytest.raises(InputError):
        load_volume([ct[0]])
    with pytest.raises((DamagedFileError, MissingAttributeError, InputError)):
        load_series(ct[0].parent / "missing")
