"""The catalogue uses the reader's stack keys and keeps every frame's position.

Vendor rules run once per header; a multi-frame object records each frame's position.

Truth: the reader itself (`load_series(decode=False)` groups frames by the same keys), the
per-frame PlanePositionSequence read back with pydicom, and call counts of the vendor rules.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from bonelesion.dicom import index as ix
from bonelesion.dicom import multiframe, vendors
from bonelesion.dicom.index import Catalogue, index_export, read_file_record
from bonelesion.dicom.series import load_series
from bonelesion.phantom import write_study

pytestmark = pytest.mark.slow  # writes two phantom studies and indexes them (~9 s)

#: ImagePositionPatient is written with at most 16 characters (DS) by the phantom.
ATOL_POSITION_MM = 1e-4
#: Vendor rules the index (directly or through stack_key) applies to a header.
VENDOR_RULES = ("b_value_s_per_mm2", "diffusion_direction_lps", "diffusion_kind",
                "echo_time_ms", "magnetic_field_strength_t", "stack_role", "classify_stack")


@pytest.fixture(scope="module")
def enhanced_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("enh") / "study"
    write_study(out, vendor="ge", enhanced=True, noise_free=True, seed=2)
    return out / "DICOM"


@pytest.fixture(scope="module")
def classic_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("classic") / "study"
    write_study(out, vendor="philips", noise_free=True, seed=2)
    return out / "DICOM"



@pytest.mark.parametrize("which", ["enhanced_study", "classic_study"])
def test_catalogue_stack_keys_are_the_readers(which: str, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    folder: Path = request.getfixturevalue(which)
    summary = index_export(folder, tmp_path / "cat.sqlite", workers=1)
    with Catalogue(summary.db_path) as cat:
        indexed = {(st.series_instance_uid, st.stack_key): st.n_frames
                   for se in cat.series() for st in cat.stacks(se.series_instance_uid)}
    stacks = load_series(folder, decode=False)
    expected = {(s.info.series_instance_uid, str(s.key)): s.shape[0] for s in stacks}
    assert indexed == expected


def test_every_frame_position_is_stored(enhanced_study: Path) -> None:
    files = sorted(enhanced_study.rglob("*.dcm"))
    multi = 0
    for path in files:
        rec = read_file_record(enhanced_study, path.relative_to(enhanced_study).as_posix())
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        truth = [[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                 for f in ds.PerFrameFunctionalGroupsSequence]
        assert rec.frame_positions_lps_mm is not None
        np.testing.assert_allclose(np.array(rec.frame_positions_lps_mm), np.array(truth),
                                   atol=ATOL_POSITION_MM)
        assert sum(rec.stack_n_frames) == int(ds.NumberOfFrames)
        multi += 1
    assert multi == len(files) > 0


def test_single_frame_files_have_no_frame_positions(classic_study: Path) -> None:
    path = next(classic_study.rglob("*.dcm"))
    rec = read_file_record(classic_study, path.relative_to(classic_study).as_posix())
    assert rec.frame_positions_lps_mm is None and rec.image_position_lps_mm is not None


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Count every call of the vendor rules (also calls between the rules themselves)."""
    calls: Counter[str] = Counter()
    for name in VENDOR_RULES:
        real = getattr(vendors, name)

        def wrapper(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(vendors, name, wrapper)
    yield calls


@pytest.mark.parametrize("which", ["enhanced_study", "classic_study"])
def test_vendor_rules_run_once_per_frame(which: str, request: pytest.FixtureRequest,
                                         counted: Counter[str]) -> None:
    """Call the vendor rules exactly as often as the keys and the role need.

    That is one stack_key per frame, one role per stack (from its first frame) and, for
    MR, one field strength per file: nothing is computed twice.
    """
    folder: Path = request.getfixturevalue(which)
    for path in sorted(folder.rglob("*.dcm"))[:3] + sorted(folder.rglob("*.dcm"))[-3:]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        flats = multiframe.flatten_frames(ds)
        counted.clear()
        seen_keys: set[str] = set()
        for flat in flats:
            key = str(multiframe.stack_key(flat))
            if key not in seen_keys:  # each stack's own role, from its first frame
                seen_keys.add(key)
                vendors.classify_stack(flat)
        if ds.Modality == "MR":
            vendors.magnetic_field_strength_t(flats[0])
        expected = Counter(counted)
        counted.clear()
        rec = read_file_record(folder, path.relative_to(folder).as_posix())
        assert rec.status == "ok", rec.reason
        assert counted == expected, (path.name, counted, expected)


def test_rows_of_an_older_reader_are_read_again(classic_study: Path, tmp_path: Path) -> None:
    """A catalogue written by an older reader (e.g. its stand-in keys) is not trusted."""
    db = tmp_path / "cat.sqlite"
    first = index_export(classic_study, db, workers=1)
    assert first.files_read > 0
    older = f"reader {ix.READER_VERSION - 1}, patient key -"
    con = sqlite3.connect(db)
    try:
        with con:
            con.execute("UPDATE files SET read_with = ?", (older,))
    finally:
        con.close()
    again = index_export(classic_study, db, workers=1)
    assert (again.files_read, again.files_unchanged) == (first.files_read, 0)
    con = sqlite3.connect(db)
    try:
        stamps = {row[0] for row in con.execute("SELECT DISTINCT read_with FROM files")}
    finally:
        con.close()
    assert older not in stamps and len(stamps) == 1


def test_every_frame_has_its_stack_in_a_multi_b_file() -> None:
    """Philips enhanced DWI: one file, 32 frames = b 0 + b 1300 × 3 directions, 8 slices."""
    from support.testdata import shared_path

    folder = shared_path("multivendor_cases_dicom2nifti", "dicom", "philips_enhanced", "dti",
                         "001")
    path = next(p for p in sorted(folder.iterdir()) if p.is_file())
    rec = read_file_record(folder, path.name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    frames = ds.PerFrameFunctionalGroupsSequence
    assert rec.frame_stack_indices is not None and len(rec.frame_stack_indices) == len(frames)
    # truth: each frame's own MR Diffusion functional group and plane position
    signature = []
    for f in frames:
        diff = f.MRDiffusionSequence[0]
        b = round(float(diff.DiffusionBValue))
        direction = ()
        if b and "DiffusionGradientDirectionSequence" in diff:
            direction = tuple(round(float(v), 2) for v in
                              diff.DiffusionGradientDirectionSequence[0]
                              .DiffusionGradientOrientation)
        signature.append((b, direction))
    groups: dict[tuple[Any, ...], set[int]] = {}
    for sig, index in zip(signature, rec.frame_stack_indices, strict=True):
        groups.setdefault(sig, set()).add(index)
    assert len(groups) == 4  # MANIFEST: b 0 and b 1300 along 3 directions
    assert all(len(v) == 1 for v in groups.values())  # one stack per (b, direction)
    assert len({next(iter(v)) for v in groups.values()}) == len(groups) == len(rec.stack_keys)
    for (b, _), indices in groups.items():
        assert f"b {b:g}" in rec.stack_keys[next(iter(indices))] or b == 0
    counts = Counter(rec.frame_stack_indices)
    assert tuple(counts[i] for i in range(len(rec.stack_keys))) == rec.stack_n_frames
    np.testing.assert_allclose(
        np.array(rec.frame_positions_lps_mm),
        np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                  for f in frames]), atol=ATOL_POSITION_MM)
