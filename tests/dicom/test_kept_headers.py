"""Headers the index parsed, taken back by the series reader: the same stacks as a fresh read.

The reference is the series reader's own fresh parse of every file (the store emptied);
the stacks are compared whole: array, geometry, series information, warnings, problems.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support.testdata import shared_path

from bonelesion.dicom import index as ix
from bonelesion.dicom import kept_headers
from bonelesion.dicom.fastheader import read_header
from bonelesion.dicom.index import Catalogue, index_export
from bonelesion.dicom.series import Stack, load_series
from bonelesion.phantom.study import write_ct_series


@pytest.fixture(autouse=True)
def _empty_store() -> Iterator[None]:
    kept_headers.clear()
    yield
    kept_headers.clear()


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kept") / "ct"
    return write_ct_series(folder, shape=(24, 48, 40), seed=3)


def _catalogued_files(db: Path) -> list[str]:
    """The files of every series as the pipeline names them (catalogue root / path)."""
    with Catalogue(db) as cat:
        base = Path(cat.root)
        return sorted(str(base / r.path) for study in cat.studies()
                      for series in cat.series(study.study_instance_uid)
                      for r in cat.files(series.series_instance_uid))


def _assert_same_stacks(got: list[Stack], want: list[Stack]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.key == b.key
        assert a.files == b.files
        assert a.warnings == b.warnings
        assert a.problems == b.problems
        if b.volume is None:
            assert a.volume is None
            continue
        assert a.volume is not None
        assert a.volume.array.dtype == b.volume.array.dtype
        np.testing.assert_array_equal(a.volume.array, b.volume.array)
        assert a.volume.spacing_mm == b.volume.spacing_mm
        assert a.volume.origin_lps_mm == b.volume.origin_lps_mm
        np.testing.assert_array_equal(a.volume.direction_lps, b.volume.direction_lps)
        assert a.volume.intensity_unit == b.volume.intensity_unit
        assert a.volume.series == b.volume.series


def _index_then_load(folder: Path, tmp_path: Path) -> tuple[list[Stack], list[Stack], int]:
    """(stacks loaded with the index's headers, stacks of a fresh read, headers kept)."""
    db = tmp_path / "c.sqlite"
    index_export(folder, db, workers=2)
    files = _catalogued_files(db)
    n_kept = kept_headers.n_kept()
    reused = load_series(files)
    assert kept_headers.n_kept() == 0  # every kept header taken once
    fresh = load_series(files)
    return reused, fresh, n_kept


def test_ct_series_loaded_from_kept_headers_equals_fresh_read(ct_series: Path,
                                                               tmp_path: Path) -> None:
    reused, fresh, n_kept = _index_then_load(ct_series, tmp_path)
    assert n_kept == 24  # a small export is read in this process, every header kept
    _assert_same_stacks(reused, fresh)
    assert reused[0].volume is not None and reused[0].volume.array.shape == (24, 48, 40)


@pytest.mark.shared_data
def test_enhanced_and_classic_mr_loaded_from_kept_headers_equal_fresh_read(
        tmp_path: Path) -> None:
    """Enhanced XA30 maps (one file, 39 frames each) and a classic two-echo Philips series."""
    root = tmp_path / "mr"
    xa30 = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom")
    shutil.copytree(xa30 / "11_DWI_dir80_PA", root / "adc")
    shutil.copytree(xa30 / "12_DWI_dir80_PA", root / "trace")
    shutil.copytree(shared_path("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL"),
                    root / "dixon")
    reused, fresh, n_kept = _index_then_load(root, tmp_path)
    assert n_kept == 72
    assert len(fresh) >= 4 and all(s.volume is not None for s in fresh)
    _assert_same_stacks(reused, fresh)


def test_changed_file_is_read_again(ct_series: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(ct_series, folder)
    db = tmp_path / "c.sqlite"
    index_export(folder, db, workers=1)
    files = _catalogued_files(db)
    changed = Path(files[5])
    ds = pydicom.dcmread(changed)
    ds.RescaleIntercept = float(ds.RescaleIntercept) + 100.0
    ds.save_as(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    reused = load_series(files)
    kept_headers.clear()
    fresh = load_series(files)
    _assert_same_stacks(reused, fresh)
    assert reused[0].volume is not None
    assert reused[0].volume.series.source_files == tuple(files)


def test_other_spelling_of_the_path_is_read_again(ct_series: Path, tmp_path: Path) -> None:
    """A kept header is handed back only for the path the index read (messages name it)."""
    db = tmp_path / "c.sqlite"
    index_export(ct_series, db, workers=1)
    one = Path(_catalogued_files(db)[0])
    (tmp_path / "link").symlink_to(one.parent, target_is_directory=True)
    other = tmp_path / "link" / one.name
    assert kept_headers.take(os.fspath(other), other.stat()) is None
    assert kept_headers.take(os.fspath(one), one.stat()) is not None
    assert kept_headers.take(os.fspath(one), one.stat()) is None  # taken once


def test_worker_processes_keep_nothing(ct_series: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ix, "_POOL_MIN_FILES", 0)
    monkeypatch.setattr(ix, "_CHUNK_FILES", 6)
    summary = index_export(ct_series, tmp_path / "c.sqlite", workers=2)
    assert summary.workers == 2
    assert kept_headers.n_kept() == 0


def test_header_with_substituted_uid_is_not_kept(ct_series: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    shutil.copytree(ct_series, folder)
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    del ds.SeriesInstanceUID
    ds.save_as(first)
    index_export(folder, tmp_path / "c.sqlite", workers=1)
    assert kept_headers.n_kept() == 23
    assert kept_headers.take(os.fspath(first), first.stat()) is None


def test_store_is_bounded(ct_series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kept_headers, "MAX_KEPT_HEADERS", 5)
    files = sorted(ct_series.iterdir())
    for path in files:
        header = read_header(path)
        assert header is not None
        kept_headers.keep(os.fspath(path), path.stat(), header)
    assert kept_headers.n_kept() == 5
    assert kept_headers.take(os.fspath(files[0]), files[0].stat()) is None  # oldest dropped
    assert kept_headers.take(os.fspath(files[-1]), files[-1].stat()) is not None
