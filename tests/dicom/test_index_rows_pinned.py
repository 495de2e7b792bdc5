"""Catalogue rows of the real scanner exports are pinned: a faster index writes the same rows.

Truth: (1) the rows the index wrote for every export of ../shared/data before the index was
tuned for speed, kept as one SHA-256 per export and column in ``catalogue_rows.json``
(regenerate with ``BONELESION_UPDATE_CATALOGUE_DIGESTS=1`` only after a deliberate change
of what the catalogue records, which also bumps ``READER_VERSION``); (2) pydicom's own full
reading of every usable single-frame file, for the plain values the catalogue copies.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from support.testdata import shared_path

from bonelesion.dicom.index import Catalogue, FileRecord, index_export

pytestmark = pytest.mark.slow  # indexes every shared export (~1,100 files, ~4 s)

DIGESTS = Path(__file__).with_name("catalogue_rows.json")
UPDATE_ENV = "BONELESION_UPDATE_CATALOGUE_DIGESTS"
#: Columns that depend on the copy of the data, not on what the reader makes of it.
UNPINNED_COLUMNS = frozenset({"mtime_ns"})
#: Positions and spacings: DS text written with at most 16 characters.
ATOL_MM = 1e-6


def _exports() -> list[Path]:
    data = shared_path()
    return sorted(p for p in data.iterdir() if p.is_dir() and (p / "dicom").is_dir())


@pytest.fixture(scope="module")
def catalogues(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One catalogue per shared export (one worker: this process)."""
    out = tmp_path_factory.mktemp("pinned")
    dbs = {}
    for export in _exports():
        db = out / f"{export.name}.sqlite"
        index_export(export, db, workers=1)
        dbs[export.name] = db
    return dbs


def _column_digests(db: Path) -> dict[str, str]:
    """SHA-256 (16 hex characters) of each column over all rows, in path order."""
    con = sqlite3.connect(db)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(files)")]
        rows = con.execute("SELECT * FROM files ORDER BY path").fetchall()
        stacks = con.execute("SELECT * FROM file_stacks ORDER BY path, stack_key").fetchall()
        pending = con.execute("SELECT count(*) FROM pending_series").fetchone()[0]
    finally:
        con.close()
    digests = {"n_rows": str(len(rows)), "pending_series": str(pending)}
    for i, col in enumerate(cols):
        if col not in UNPINNED_COLUMNS:
            text = json.dumps([row[i] for row in rows])
            digests[col] = hashlib.sha256(text.encode()).hexdigest()[:16]
    digests["file_stacks"] = hashlib.sha256(json.dumps(stacks).encode()).hexdigest()[:16]
    return digests


def test_catalogue_rows_equal_the_pinned_rows(catalogues: dict[str, Path]) -> None:
    found = {name: _column_digests(db) for name, db in catalogues.items()}
    if os.environ.get(UPDATE_ENV):
        DIGESTS.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"{DIGESTS.name} rewritten ({UPDATE_ENV} is set)")
    pinned = json.loads(DIGESTS.read_text())
    assert set(pinned) <= set(found), f"exports missing from the shared data: " \
        f"{sorted(set(pinned) - set(found))}"
    changed = {name: sorted(col for col in pinned[name]
                            if found[name].get(col) != pinned[name][col])
               for name in pinned}
    assert not any(changed.values()), {k: v for k, v in changed.items() if v}


def _read_quiet(path: Path) -> pydicom.Dataset:
    """Full pydicom read (real data warns about odd values; not under test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _number(ds: pydicom.Dataset, keyword: str) -> Any:
    """pydicom's value of a numeric attribute: None when absent, empty or not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        try:
            seq = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
            numbers = [float(v) for v in seq]
        except (TypeError, ValueError):
            return None
    return numbers if all(math.isfinite(v) for v in numbers) else None


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v).strip() for v in value) or None
    return str(value).strip() or None


def test_single_frame_values_equal_pydicoms(catalogues: dict[str, Path]) -> None:
    """Plain values of every usable single-frame real file, against pydicom's full read."""
    n_checked = 0
    for name, db in catalogues.items():
        with Catalogue(db) as cat:
            recs: list[FileRecord] = [r for r in cat.files() if r.number_of_frames is None]
        for rec in recs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # hashed (invalid) UIDs, odd values
                _check_plain_values(name, rec, _read_quiet(shared_path(name) / rec.path))
            n_checked += 1
    assert n_checked >= 700


def _check_plain_values(name: str, rec: FileRecord, ds: pydicom.Dataset) -> None:
    """Assert the plain values of one record equal pydicom's reading ``ds`` of its file."""
    for field, keyword in (("sop_instance_uid", "SOPInstanceUID"),
                           ("study_instance_uid", "StudyInstanceUID"),
                           ("frame_of_reference_uid", "FrameOfReferenceUID"),
                           ("modality", "Modality"),
                           ("manufacturer", "Manufacturer"),
                           ("manufacturer_model_name", "ManufacturerModelName"),
                           ("series_description", "SeriesDescription"),
                           ("protocol_name", "ProtocolName"),
                           ("photometric_interpretation", "PhotometricInterpretation"),
                           ("image_type", "ImageType"),
                           ("convolution_kernel", "ConvolutionKernel")):
        truth = _text(ds, keyword)  # an empty SOPInstanceUID: the file meta's (tested apart)
        if truth is not None and truth.isascii():
            assert getattr(rec, field) == truth, (name, rec.path, field)
    for field, keyword in (("rows", "Rows"), ("columns", "Columns"),
                           ("bits_allocated", "BitsAllocated"),
                           ("samples_per_pixel", "SamplesPerPixel"),
                           ("series_number", "SeriesNumber"),
                           ("instance_number", "InstanceNumber"),
                           ("echo_number", "EchoNumbers")):
        truth = _number(ds, keyword)
        if truth is not None and truth[0].is_integer():
            assert getattr(rec, field) == int(truth[0]), (name, rec.path, field)
    for field, keyword in (("image_position_lps_mm", "ImagePositionPatient"),
                           ("image_orientation_lps", "ImageOrientationPatient"),
                           ("pixel_spacing_mm", "PixelSpacing"),
                           ("slice_thickness_mm", "SliceThickness"),
                           ("echo_time_ms", "EchoTime"),
                           ("repetition_time_ms", "RepetitionTime")):
        truth = _number(ds, keyword)
        if truth is None:
            continue
        value = getattr(rec, field)
        found = list(value) if isinstance(value, tuple) else [value]
        assert found == pytest.approx(truth, abs=ATOL_MM), (name, rec.path, field)
