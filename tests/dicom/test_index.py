"""Tests of the export catalogue (`bonelesion.dicom.index`) and `bonelesion index`.

Truth comes from outside the indexer: pydicom reading the same files directly, the
dcm2niix reference b-values and NIfTI shapes kept with the shared data, and HMAC computed
here with the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from support.testdata import shared_path

from bonelesion.cli import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, main
from bonelesion.dicom import discovery
from bonelesion.dicom import index as ix
from bonelesion.dicom.catalogue import read as catalogue_read
from bonelesion.dicom.identity import SERIES_UID_SUBSTITUTE_NOTE
from bonelesion.dicom.index import Catalogue, FileStatus, index_export, read_file_record
from bonelesion.dicom.series import load_series
from bonelesion.errors import ConfigError, InputError

pytestmark = pytest.mark.shared_data

#: The catalogue stores DICOM DS values parsed to float; DS holds ≤ 16 characters, so a
#: float64 round trip is exact to well below this (mm).
ATOL_POSITION_MM = 1e-9
#: b-values in the dcm2niix .bval reference are integers; headers store them exactly.
ATOL_B_S_PER_MM2 = 0.5

GE_DWI = ("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
PATIENT_SECRET = b"test-secret-kept-outside-the-catalogue"
PATIENT_ID = "PID-7731-QZX"
PATIENT_NAME = "Doe^Jane^Q"


def _read_quiet(path: Path, **kwargs: Any) -> Dataset:
    """pydicom read of a real file (real data warns about odd values; not under test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)


def _copy(src: Path, dst: Path) -> Path:
    """Copy bytes (not the read-only mode of the shared data) so tests may touch copies."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def _write_sr(path: Path) -> None:
    """A Basic Text SR object (an unsupported SOP class) written with pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.TextValue = "Sclerotic focus L2, 12 mm."
    ds.ContentSequence = [item]
    ds.save_as(path, enforce_file_format=True)


def _write_dicomdir(folder: Path, image: Path) -> None:
    """A DICOMDIR file set (pydicom FileSet) holding a copy of one real image."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs.add(pydicom.dcmread(image))
        fs.write(folder)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A messy export: real files from ../shared/data mixed with junk of every kind.

    Returns the root and the expected status of every entry.
    """
    root = tmp_path_factory.mktemp("export")
    expected: dict[str, str] = {}
    ge_dir = shared_path(*GE_DWI)
    ge_files = sorted(p for p in ge_dir.iterdir() if p.is_file())
    for p in ge_files:  # GE export names without extension, two folders deep
        _copy(p, root / "ge" / "dwi" / p.name)
        expected[f"ge/dwi/{p.name}"] = "ok"

    ct_dir = shared_path("ct_bone_phantom_ge_ctpace", "dicom")
    for p in sorted(ct_dir.glob("*.ct"))[:2]:  # raw data sets, no Part 10 header
        _copy(p, root / "ct" / "raw" / p.name)
        expected[f"ct/raw/{p.name}"] = "ok"

    dixon = sorted(shared_path("dixon_philips15T_chaos_set1", "dicom").rglob("*.dcm"))[:6]
    for p in dixon:
        _copy(p, root / "mr" / "dixon" / "a" / "b" / p.name)
        expected[f"mr/dixon/a/b/{p.name}"] = "ok"

    adc = next(shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "11_DWI_dir80_PA").iterdir())
    _copy(adc, root / "mr" / "enhanced" / "adc.dcm")
    expected["mr/enhanced/adc.dcm"] = "ok"

    ts_dir = shared_path("ts_siemens_trio_mr_9syntaxes", "dicom")
    _copy(ts_dir / "3.dcm", root / "ts" / "big_endian.dcm")
    expected["ts/big_endian.dcm"] = "ok"
    _copy(ts_dir / "9.dcm", root / "ts" / "j2k.dcm")
    expected["ts/j2k.dcm"] = "ok"
    j2k = (ts_dir / "9.dcm").read_bytes()
    (root / "ts" / "j2k_cut.dcm").write_bytes(j2k[: len(j2k) // 2])
    expected["ts/j2k_cut.dcm"] = "truncated"

    emri = shared_path("compressed_nema_pydicom", "dicom", "emri_small.dcm")
    _copy(emri, root / "mr" / "emri_small.dcm")  # enhanced MR stripped of its groups
    expected["mr/emri_small.dcm"] = "missing_attribute"

    junk = root / "junk"
    junk.mkdir()
    (junk / "empty").write_bytes(b"")
    expected["junk/empty"] = "not_dicom"
    ge_bytes = ge_files[0].read_bytes()
    (junk / "half.dcm").write_bytes(ge_bytes[: len(ge_bytes) // 2])
    expected["junk/half.dcm"] = "truncated"
    (junk / "header_cut").write_bytes(ge_bytes[:700])
    expected["junk/header_cut"] = "truncated"
    (junk / "README.txt").write_text("Export of 2026-11-20.\nStudies: 3\n")
    expected["junk/README.txt"] = "not_dicom"
    from PIL import Image

    Image.new("L", (8, 8), 128).save(junk / "snapshot.png")
    expected["junk/snapshot.png"] = "not_dicom"
    rng = np.random.default_rng(7)
    (junk / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + rng.bytes(2000))
    expected["junk/garbage.dcm"] = "error"

    ident = _read_quiet(ge_files[4])
    ident.SOPInstanceUID = generate_uid()
    ident.PatientID = PATIENT_ID
    ident.PatientName = PATIENT_NAME
    ident.save_as(root / "ge" / "identified.dcm")
    expected["ge/identified.dcm"] = "ok"

    ds = _read_quiet(ge_files[1])
    del ds.ImagePositionPatient
    ds.save_as(junk / "no_position.dcm")
    expected["junk/no_position.dcm"] = "missing_attribute"

    implicit = _read_quiet(ge_files[2])
    implicit.SOPInstanceUID = generate_uid()
    del implicit.file_meta
    implicit.preamble = None
    pydicom.dcmwrite(junk / "implicit_raw", implicit, implicit_vr=True, little_endian=True)
    expected["junk/implicit_raw"] = "ok"

    deflated = _read_quiet(ge_files[5])
    deflated.SOPInstanceUID = generate_uid()
    deflated.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    deflated.save_as(root / "ts" / "deflated.dcm")
    expected["ts/deflated.dcm"] = "ok"
    data = (root / "ts" / "deflated.dcm").read_bytes()
    (root / "ts" / "deflated_cut.dcm").write_bytes(data[: len(data) // 2])
    expected["ts/deflated_cut.dcm"] = "truncated"

    (root / "sr").mkdir()
    _write_sr(root / "sr" / "report.dcm")
    expected["sr/report.dcm"] = "unsupported_sop_class"

    media = root / "media"
    _write_dicomdir(media, ge_files[3])
    for p in media.rglob("*"):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            expected[rel] = "dicomdir" if p.name == "DICOMDIR" else "ok"

    os.symlink("..", root / "ge" / "dwi" / "loop")  # a folder-link loop
    expected["ge/dwi/loop"] = "error"
    os.symlink("nowhere", junk / "dangling")
    expected["junk/dangling"] = "error"
    return {"root": root, "expected": expected, "ge_files": ge_files}


@pytest.fixture(scope="module")
def indexed(export: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The export indexed once, in process (workers=1)."""
    db = tmp_path_factory.mktemp("db") / "catalogue.sqlite"
    summary = index_export(export["root"], db, workers=1)
    return {**export, "db": db, "summary": summary}


def _records(db: Path) -> dict[str, ix.FileRecord]:
    with Catalogue(db) as cat:
        return {r.path: r for r in cat.files(status=None)}


# ------------------------------------------------------------------ statuses and reasons


def test_every_entry_recorded_with_expected_status(indexed: dict[str, Any]) -> None:
    recs = _records(indexed["db"])
    found = {path: rec.status for path, rec in recs.items()}
    assert found == indexed["expected"]
    assert indexed["summary"].files_read == sum(
        1 for s in indexed["expected"].values()) - 2  # the two link entries are not read


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("junk/empty", r"empty \(0 bytes\)"),
        ("junk/half.dcm", r"pixel data needs \d+ bytes from byte \d+ but the file ends"),
        ("junk/header_cut", r"header ends early"),
        ("junk/README.txt", r"looks like a text file"),
        ("junk/snapshot.png", r"looks like a PNG image"),
        ("junk/garbage.dcm", r"'DICM' prefix is present but .* not a File Meta"),
        ("junk/no_position.dcm", r"without ImagePositionPatient \(0020,0032\)"),
        ("mr/emri_small.dcm", r"PerFrameFunctionalGroupsSequence \(5200,9230\)"),
        ("sr/report.dcm", r"SOP class Basic Text SR Storage .* not used"),
        ("ts/j2k_cut.dcm", r"encapsulated pixel data item \d+ needs bytes up to"),
        ("ts/deflated_cut.dcm", r"cannot be inflated .*truncated stream"),
        ("ge/dwi/loop", r"leads to a folder already indexed"),
        ("junk/dangling", r"Broken symbolic link to nowhere"),
    ],
)
def test_reasons_name_what_was_found(indexed: dict[str, Any], path: str, pattern: str) -> None:
    rec = _records(indexed["db"])[path]
    assert re.search(pattern, rec.reason), rec.reason


def test_dicomdir_recorded_as_such(indexed: dict[str, Any]) -> None:
    recs = _records(indexed["db"])
    dicomdir = recs["media/DICOMDIR"]
    assert dicomdir.sop_class_name == "Media Storage Directory Storage"
    assert "directory records" in dicomdir.reason
    assert dicomdir.series_instance_uid is None  # not catalogued as an image


def test_good_files_match_pydicom(indexed: dict[str, Any]) -> None:
    """UIDs and geometry of every ok file equal pydicom's own reading of the file."""
    root: Path = indexed["root"]
    recs = _records(indexed["db"])
    n_checked = 0
    for path, rec in recs.items():
        if rec.status != "ok":
            continue
        ds = _read_quiet(root / path, stop_before_pixels=True, force=True)
        assert rec.sop_instance_uid == ds.SOPInstanceUID
        assert rec.study_instance_uid == ds.StudyInstanceUID
        assert rec.series_instance_uid == ds.SeriesInstanceUID
        assert rec.sop_class_uid == ds.SOPClassUID
        assert rec.modality == ds.Modality
        assert rec.rows == ds.Rows and rec.columns == ds.Columns
        assert rec.number_of_frames == (int(ds.NumberOfFrames) if "NumberOfFrames" in ds
                                        else None)
        if "ImagePositionPatient" in ds:
            np.testing.assert_allclose(rec.image_position_lps_mm,
                                       [float(v) for v in ds.ImagePositionPatient],
                                       atol=ATOL_POSITION_MM)
            np.testing.assert_allclose(rec.image_orientation_lps,
                                       [float(v) for v in ds.ImageOrientationPatient],
                                       atol=ATOL_POSITION_MM)
        if "SeriesDescription" in ds:
            assert rec.series_description == (ds.SeriesDescription.strip() or None)
        if "EchoTime" in ds:
            assert rec.echo_time_ms == pytest.approx(float(ds.EchoTime))
        if "PixelSpacing" in ds:
            assert rec.pixel_spacing_mm == pytest.approx([float(v) for v in ds.PixelSpacing])
        if "ImageType" in ds:
            assert rec.image_type == "\\".join(ds.ImageType)
        assert rec.manufacturer == (str(ds.get("Manufacturer", "")).strip() or None)
        assert rec.series_number == (int(ds.SeriesNumber) if ds.get("SeriesNumber") is not None
                                     else None)
        assert rec.instance_number == (int(ds.InstanceNumber)
                                       if ds.get("InstanceNumber") is not None else None)
        ts = ds.file_meta.get("TransferSyntaxUID") if "TransferSyntaxUID" in ds.file_meta \
            else None
        if ts is not None:
            assert rec.transfer_syntax_uid == ts
        assert rec.has_file_meta == (ds.preamble is not None)
        n_checked += 1
    assert n_checked == sum(1 for s in indexed["expected"].values() if s == "ok")


def test_raw_data_sets_detected_and_encoding_recorded(indexed: dict[str, Any]) -> None:
    recs = _records(indexed["db"])
    ct = [r for p, r in recs.items() if p.startswith("ct/raw/")]
    assert len(ct) == 2
    for rec in ct:
        assert rec.has_file_meta is False
        # The phantom's bytes: tag (0008,0008) then a 4-byte length 22 = len
        # "ORIGINAL\\PRIMARY\\AXIAL" and no VR letters: implicit VR little endian.
        head = (indexed["root"] / rec.path).read_bytes()[:8]
        assert head[4:8] == (22).to_bytes(4, "little")
        assert rec.transfer_syntax_uid == "1.2.840.10008.1.2"
        assert rec.sop_class_name == "CT Image Storage"
    implicit = recs["junk/implicit_raw"]
    assert implicit.has_file_meta is False
    assert implicit.transfer_syntax_uid == "1.2.840.10008.1.2"


def test_pixel_offset_points_at_the_pixel_bytes(indexed: dict[str, Any]) -> None:
    """Offset and length recorded for native pixel data give back pydicom's PixelData."""
    root: Path = indexed["root"]
    recs = _records(indexed["db"])
    for path in ("ge/dwi/" + indexed["ge_files"][0].name, "ts/big_endian.dcm",
                 sorted(p for p in recs if p.startswith("ct/raw/"))[0]):
        rec = recs[path]
        assert rec.pixel_encapsulated is False
        raw = (root / path).read_bytes()
        assert rec.pixel_data_offset is not None and rec.pixel_data_bytes is not None
        chunk = raw[rec.pixel_data_offset: rec.pixel_data_offset + rec.pixel_data_bytes]
        assert chunk == _read_quiet(root / path, force=True).PixelData
    assert recs["ts/j2k.dcm"].pixel_encapsulated is True


def test_b_values_match_dcm2niix_reference(indexed: dict[str, Any]) -> None:
    bval = shared_path("dwi_ge_signa_pioneer", "reference", "Ax_DWI_TENSOR_R2_1.bval")
    reference = sorted({float(v) for v in bval.read_text().split()})
    recs = [r for p, r in _records(indexed["db"]).items()
            if p.startswith("ge/dwi/") and r.status == "ok"]
    found = sorted({r.b_value_s_per_mm2 for r in recs if r.b_value_s_per_mm2 is not None})
    np.testing.assert_allclose(found, reference, atol=ATOL_B_S_PER_MM2)


def test_enhanced_multiframe_frames_and_stack(indexed: dict[str, Any]) -> None:
    import nibabel as nib

    nii = shared_path("dwi_siemens_xa30_enhanced_pa", "reference", "11_DWI_dir80_PA.nii")
    n_slices = nib.load(nii).shape[2]
    rec = _records(indexed["db"])["mr/enhanced/adc.dcm"]
    assert rec.number_of_frames == n_slices
    assert len(rec.stack_keys) == 1
    assert rec.stack_n_frames == (n_slices,)
    with Catalogue(indexed["db"]) as cat:
        (stack,) = cat.stacks(rec.series_instance_uid or "")
    assert stack.n_frames == n_slices and stack.paths == ("mr/enhanced/adc.dcm",)


def test_dixon_echoes_are_separate_stacks(indexed: dict[str, Any]) -> None:
    root: Path = indexed["root"]
    files = sorted((root / "mr" / "dixon").rglob("*.dcm"))
    by_echo: dict[float, set[str]] = {}
    for p in files:
        ds = _read_quiet(p, stop_before_pixels=True)
        by_echo.setdefault(float(ds.EchoTime), set()).add(p.relative_to(root).as_posix())
        series_uid = ds.SeriesInstanceUID
    with Catalogue(indexed["db"]) as cat:
        stacks = cat.stacks(series_uid)
        (series,) = [s for s in cat.series() if s.series_instance_uid == series_uid]
    assert sorted(set(s.paths) for s in stacks) == sorted(by_echo.values())
    assert series.n_files == len(files) and series.n_stacks == len(by_echo)


def test_catalogue_queries(indexed: dict[str, Any]) -> None:
    recs = _records(indexed["db"])
    ok = [r for r in recs.values() if r.status == "ok"]
    with Catalogue(indexed["db"]) as cat:
        studies = cat.studies()
        assert {s.study_instance_uid for s in studies} == {r.study_instance_uid for r in ok}
        assert sum(s.n_files for s in studies) == len(ok)
        series = cat.series()
        assert {s.series_instance_uid for s in series} == {r.series_instance_uid for r in ok}
        study = studies[0]
        assert {s.series_instance_uid for s in cat.series(study.study_instance_uid)} == {
            r.series_instance_uid for r in ok
            if r.study_instance_uid == study.study_instance_uid}
        one = series[0].series_instance_uid
        assert [f.path for f in cat.files(one)] == sorted(
            r.path for r in ok if r.series_instance_uid == one)
        problems = {r.path for r in cat.problems()}
        assert problems == {p for p, s in indexed["expected"].items()
                            if s not in ("ok", "dicomdir", "unsupported_sop_class")}
        assert cat.status_counts() == indexed["summary"].status_counts


def test_no_patient_identifier_stored(indexed: dict[str, Any]) -> None:
    blob = indexed["db"].read_bytes()
    for text in (PATIENT_ID, PATIENT_NAME, "Jane"):
        assert text.encode() not in blob
    assert all(r.patient_key is None for r in _records(indexed["db"]).values())


# ------------------------------------------------------------------------- re-indexing


def test_patient_key_is_keyed_hash(export: dict[str, Any], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """HMAC-SHA256 of PatientID; a new key re-reads every file, even across a stop."""
    db = tmp_path / "keyed.sqlite"
    first = index_export(export["root"], db, workers=1, patient_key_secret=PATIENT_SECRET)
    expected = hmac.new(PATIENT_SECRET, PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    rec = _records(db)["ge/identified.dcm"]
    assert rec.patient_key is not None and len(rec.patient_key) == 32
    assert expected.startswith(rec.patient_key)
    assert PATIENT_ID.encode() not in db.read_bytes()

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ix, "_CHUNK_FILES", 5)
    with pytest.raises(KeyboardInterrupt):  # a new key, stopped after the first chunk
        index_export(export["root"], db, workers=1, patient_key_secret=b"another key",
                     progress=interrupt)
    again = index_export(export["root"], db, workers=1, patient_key_secret=b"another key")
    assert (again.files_unchanged, again.files_read) == (5, first.files_read - 5)
    con = sqlite3.connect(db)
    try:
        stamps = con.execute("SELECT DISTINCT read_with FROM files").fetchall()
    finally:
        con.close()
    assert len(stamps) == 1  # every row now read with the new key
    assert index_export(export["root"], db, workers=1,
                        patient_key_secret=b"another key").files_read == 0


def test_reindex_skips_unchanged_and_rereads_changed(export: dict[str, Any],
                                                      tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(export["root"], root, symlinks=True)
    db = tmp_path / "re.sqlite"
    first = index_export(root, db, workers=1)
    n_files = first.files_read
    second = index_export(root, db, workers=1)
    assert (second.files_read, second.files_unchanged, second.files_removed) == (0, n_files, 0)

    touched = root / "ge" / "dwi" / export["ge_files"][0].name
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    (root / "junk" / "README.txt").unlink()
    cut = root / "ge" / "dwi" / export["ge_files"][1].name
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - 100])
    third = index_export(root, db, workers=1)
    assert (third.files_read, third.files_removed) == (2, 1)
    assert third.files_unchanged == n_files - 3
    recs = _records(db)
    assert "junk/README.txt" not in recs
    assert recs[cut.relative_to(root).as_posix()].status == "truncated"
    assert recs[touched.relative_to(root).as_posix()].mtime_ns == touched.stat().st_mtime_ns


def test_parallel_and_serial_catalogues_identical(indexed: dict[str, Any],
                                                  tmp_path: Path) -> None:
    db = tmp_path / "parallel.sqlite"
    ix_chunk, ix_pool_min = ix._CHUNK_FILES, ix._POOL_MIN_FILES
    try:
        ix._CHUNK_FILES = 7  # several chunks so that both workers take part
        ix._POOL_MIN_FILES = 0  # a small export is otherwise read in this process
        summary = index_export(indexed["root"], db, workers=2)
    finally:
        ix._CHUNK_FILES, ix._POOL_MIN_FILES = ix_chunk, ix_pool_min
    assert summary.workers == 2

    def dump(path: Path) -> tuple[list[Any], list[Any]]:
        con = sqlite3.connect(path)
        try:
            files = con.execute("SELECT * FROM files ORDER BY path").fetchall()
            stacks = con.execute("SELECT * FROM file_stacks ORDER BY path, stack_key").fetchall()
        finally:
            con.close()
        return files, stacks

    assert dump(db) == dump(indexed["db"])


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupt_leaves_consistent_catalogue_and_resumes(export: dict[str, Any],
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           workers: int) -> None:
    """Ctrl-C after two chunks: two complete chunks stored, the next run reads the rest."""
    db = tmp_path / "interrupted.sqlite"
    monkeypatch.setattr(ix, "_CHUNK_FILES", 5)
    monkeypatch.setattr(ix, "_POOL_MIN_FILES", 0)  # workers=2: the pool, even for few files
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_export(export["root"], db, workers=workers, progress=progress)
    con = sqlite3.connect(db)
    try:
        n_read = con.execute("SELECT count(*) FROM files WHERE status != 'error' "
                             "OR reason NOT LIKE '%link%'").fetchone()[0]
        orphans = con.execute("SELECT count(*) FROM file_stacks WHERE path NOT IN "
                              "(SELECT path FROM files)").fetchone()[0]
    finally:
        con.close()
    assert orphans == 0
    assert n_read == 10  # two complete chunks of 5
    resumed = index_export(export["root"], db, workers=1)
    assert resumed.files_unchanged == 10
    assert {p: r.status for p, r in _records(db).items()} == export["expected"]


def test_progress_reports_every_chunk(export: dict[str, Any], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ix, "_CHUNK_FILES", 10)
    calls: list[tuple[int, int]] = []
    summary = index_export(export["root"], tmp_path / "p.sqlite", workers=1,
                           progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (summary.files_read, summary.files_read)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_database_inside_the_export_is_not_indexed(export: dict[str, Any],
                                                   tmp_path: Path) -> None:
    root = tmp_path / "small"
    _copy(export["ge_files"][0], root / "a")
    summary = index_export(root, root / "cat.sqlite", workers=1)
    assert summary.files_seen == 1
    assert set(_records(root / "cat.sqlite")) == {"a"}


# ------------------------------------------------------------------------------ errors


def test_read_file_record_never_raises(tmp_path: Path) -> None:
    rec = read_file_record(tmp_path, "does-not-exist")
    assert rec.status == FileStatus.ERROR.value
    assert "Potential fix" in rec.reason


def test_unreadable_file_is_an_error_entry(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of permissions")
    path = tmp_path / "locked.dcm"
    path.write_bytes(b"\0" * 200)
    path.chmod(0)
    rec = read_file_record(tmp_path, "locked.dcm")
    assert rec.status == "error"
    assert "cannot be opened" in rec.reason


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not found or not a folder.*Potential fix"):
        index_export(tmp_path / "nope", tmp_path / "c.sqlite")


def test_bad_workers_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"workers: must be ≥ 1, found 0"):
        index_export(tmp_path, tmp_path / "c.sqlite", workers=0)


def test_catalogue_of_another_export_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    db = tmp_path / "c.sqlite"
    index_export(tmp_path / "a", db, workers=1)
    with pytest.raises(InputError, match=r"catalogues the export .*a, not .*b.*--db"):
        index_export(tmp_path / "b", db, workers=1)


def test_non_sqlite_db_refused(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database, just some text that is long enough" * 20)
    with pytest.raises(InputError, match=r"cannot be opened as an SQLite database"):
        index_export(tmp_path, db, workers=1)


def test_foreign_sqlite_db_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE patients (id TEXT)")
    con.commit()
    con.close()
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match=r"no `meta` table"):
        index_export(tmp_path / "x", db, workers=1)
    with pytest.raises(InputError, match=r"not a bonelesion catalogue"):
        Catalogue(db)


def test_catalogue_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"file not found.*bonelesion index"):
        Catalogue(tmp_path / "absent.sqlite")


def test_catalogue_old_schema_refused_and_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    _copy(shared_path(*GE_DWI).iterdir().__next__(), tmp_path / "x" / "f")
    db = tmp_path / "c.sqlite"
    index_export(tmp_path / "x", db, workers=1)
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match=r"schema version 0, expected"):
        Catalogue(db)
    summary = index_export(tmp_path / "x", db, workers=1)  # rebuilt, every file read
    assert summary.files_read == 1
    with Catalogue(db) as cat:
        assert cat.status_counts() == {"ok": 1}


def test_unlistable_folder_keeps_earlier_entries(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "r"
    _copy(next(shared_path(*GE_DWI).iterdir()), root / "sub" / "f")
    _copy(next(shared_path(*GE_DWI).iterdir()), root / "g")
    db = tmp_path / "c.sqlite"
    index_export(root, db, workers=1)
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(discovery.os, "scandir", scandir)
    (root / "g").unlink()
    summary = index_export(root, db, workers=1)
    recs = _records(db)
    assert summary.files_removed == 1 and "g" not in recs  # removed where the walk saw
    assert "sub/f" in recs  # kept where it could not look
    assert recs["sub"].status == "error"
    assert re.search(r"Folder cannot be listed: Permission denied.*Potential fix",
                     recs["sub"].reason)


def test_special_files_and_folder_links(tmp_path: Path) -> None:
    root = tmp_path / "r"
    ge = sorted(shared_path(*GE_DWI).iterdir())
    _copy(ge[0], root / "b" / "real")
    (root / "a").mkdir()
    os.symlink("../b", root / "a" / "to_b")  # reached before b in walk order
    os.symlink("../b/real", root / "a" / "file_link")  # a second path to one file
    os.mkfifo(root / "pipe")
    db = tmp_path / "c.sqlite"
    index_export(root, db, workers=1)
    recs = _records(db)
    assert recs["b/real"].status == "ok"  # real path wins over the folder link
    assert recs["a/to_b"].status == "error"
    assert "second path to the same folder" in recs["a/to_b"].reason
    assert recs["pipe"].status == "not_dicom" and "Not a regular file" in recs["pipe"].reason
    assert recs["a/file_link"].status == "ok"
    with Catalogue(db) as cat:
        dup = cat.duplicates()
    assert dup == {recs["b/real"].sop_instance_uid: ("a/file_link", "b/real")}


def test_folder_path_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    rec = read_file_record(tmp_path, "d")
    assert rec.status == "error"
    assert re.search(r"cannot be opened: Is a directory.*Potential fix", rec.reason)


def test_plausible_raw_dataset_heuristic() -> None:
    ct = next(shared_path("ct_bone_phantom_ge_ctpace", "dicom").glob("*.ct"))
    head = ct.read_bytes()[:256]
    assert catalogue_read._plausible_raw_dataset(head, ct.stat().st_size)
    assert not catalogue_read._plausible_raw_dataset(b"Export of 2026-11-20\n" * 10, 210)
    assert not catalogue_read._plausible_raw_dataset(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, 108)
    assert not catalogue_read._plausible_raw_dataset(b"\x08\x00", 2)


# --------------------------------------------------------------------------------- CLI


def test_cli_index(indexed: dict[str, Any], tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.sqlite"
    assert main(["-q", "index", str(indexed["root"]), "--db", str(db), "--workers", "1"]) \
        == EXIT_OK
    out = capsys.readouterr().out
    n_ok = sum(1 for s in indexed["expected"].values() if s == "ok")
    n_truncated = sum(1 for s in indexed["expected"].values() if s == "truncated")
    assert f"ok: {n_ok}" in out and f"truncated: {n_truncated}" in out
    assert main(["-q", "index", str(indexed["root"]), "--db", str(db), "--strict"]) \
        == EXIT_PARTIAL
    captured = capsys.readouterr()
    assert "0 read" in captured.out
    assert main(["-q", "index", str(indexed["root"]), "--db", str(db), "--problems"]) \
        == EXIT_OK
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "\t" in ln]
    assert "junk/empty\tnot_dicom\tThe file is empty (0 bytes)" in "\n".join(lines)
    assert len(lines) == sum(1 for s in indexed["expected"].values()
                             if s not in ("ok", "dicomdir", "unsupported_sop_class"))
    n_failed = sum(1 for s in indexed["expected"].values()
                   if s in ("truncated", "error", "missing_attribute"))
    assert f"{n_failed} files are truncated, corrupt or lack attributes" in captured.err
    clean = tmp_path / "clean"
    _copy(indexed["ge_files"][0], clean / "a")
    (clean / "README.txt").write_text("not DICOM, not a failure\n")
    assert main(["-q", "index", str(clean), "--db", str(tmp_path / "clean.sqlite"),
                 "--strict"]) == EXIT_OK


def test_cli_default_db_in_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "export"
    _copy(next(shared_path(*GE_DWI).iterdir()), root / "f")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["-q", "index", str(root)]) == EXIT_OK
    assert (work / ix.DEFAULT_DB_NAME).is_file()
    assert not any(p.suffix == ".sqlite" for p in root.iterdir())
    other = tmp_path / "other"
    other.mkdir()
    assert main(["-q", "index", str(other)]) == EXIT_INPUT
    assert "catalogues the export" in capsys.readouterr().err


@pytest.mark.slow
def test_every_shared_dicom_file_catalogued(tmp_path: Path) -> None:
    """All real scanner files of ../shared/data: ok, except objects pydicom shows lacking
    what a volume needs (pydicom's emri_small test objects carry no geometry at all)."""
    data = shared_path()
    summary = index_export(data, tmp_path / "all.sqlite", workers=2)
    recs = _records(tmp_path / "all.sqlite")
    dicom = {p: r for p, r in recs.items() if "/dicom/" in p and not p.endswith(".txt")}
    assert len(dicom) >= 800
    for path, rec in dicom.items():
        ds = _read_quiet(data / path, stop_before_pixels=True, force=True)
        geometry = ("ImagePositionPatient" in ds
                    or "PerFrameFunctionalGroupsSequence" in ds
                    or (0x0065, 0x1051) in ds)  # UIH mosaic: per-tile positions
        assert rec.status == ("ok" if geometry else "missing_attribute"), (path, rec.reason)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hashed (invalid) UIDs in anonymised files
            # anonymised without SOPInstanceUID: the file meta's copy (PS3.10 §7.1)
            assert rec.sop_instance_uid == (ds.SOPInstanceUID
                                            or ds.file_meta.MediaStorageSOPInstanceUID)
            own_uid = str(ds.get("SeriesInstanceUID", "") or "")
        if own_uid:
            assert rec.series_instance_uid == own_uid, path
            assert SERIES_UID_SUBSTITUTE_NOTE not in rec.notes, path
        else:  # anonymised without SeriesInstanceUID (the Biograph CT): a stated substitute
            assert rec.status == "ok", (path, rec.reason)
            assert rec.series_instance_uid.startswith("2.25."), path
            assert SERIES_UID_SUBSTITUTE_NOTE in rec.notes, path
    substituted = {r.series_instance_uid for r in dicom.values()
                   if SERIES_UID_SUBSTITUTE_NOTE in r.notes}
    assert len(substituted) == 1  # the 20 Biograph slices: one series, one substitute
    biograph = {p for p, r in dicom.items() if r.series_instance_uid in substituted}
    assert len(biograph) == 20 and all("ct_siemens_biograph" in p for p in biograph)
    others = {p: r.status for p, r in recs.items() if p not in dicom}
    assert set(others.values()) == {"not_dicom"}  # licences, JSON, bval, NIfTI, README
    assert summary.files_read == len(recs)


def test_enhanced_dwi_b_values_and_stacks_in_read_only_export(tmp_path: Path) -> None:
    """Siemens XA30 enhanced DWI indexed in place (read-only data): one b-value per file
    from the MR Diffusion functional group, equal to dcm2niix's .bval; one stack per volume."""
    folder = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "10_DWI_dir80_PA")
    bval = shared_path("dwi_siemens_xa30_enhanced_pa", "reference", "10_DWI_dir80_PA.bval")
    reference = sorted(float(v) for v in bval.read_text().split())
    db = tmp_path / "xa30.sqlite"
    index_export(folder, db, workers=1)
    recs = [r for r in _records(db).values() if r.status == "ok"]
    assert len(recs) == len(reference)
    np.testing.assert_allclose(sorted(r.b_value_s_per_mm2 or 0.0 for r in recs), reference,
                               atol=ATOL_B_S_PER_MM2)
    assert all(r.b_value_s_per_mm2 is not None for r in recs)
    with Catalogue(db) as cat:
        (series,) = cat.series()
        stacks = cat.stacks(series.series_instance_uid)
    assert len(stacks) == len(reference)  # b0 + 20 gradient directions
    frames = {r.number_of_frames for r in recs}
    assert {s.n_frames for s in stacks} == frames and len(frames) == 1


def test_cli_patient_key_from_environment(indexed: dict[str, Any], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """BONELESION_PATIENT_KEY turns on the keyed hash; the identifier stays out."""
    monkeypatch.setenv("BONELESION_PATIENT_KEY", PATIENT_SECRET.decode())
    db = tmp_path / "keyed.sqlite"
    assert main(["-q", "index", str(indexed["root"]), "--db", str(db), "--workers", "1"]) \
        == EXIT_OK
    expected = hmac.new(PATIENT_SECRET, PATIENT_ID.encode(), hashlib.sha256).hexdigest()
    assert _records(db)["ge/identified.dcm"].patient_key == expected[:32]
    assert PATIENT_ID.encode() not in db.read_bytes()


def _exit_in_worker(root: str, items: Any, secret: Any, keep_headers: bool = False) -> Any:
    """Stand-in for ix._read_chunk that kills a worker process (as an OOM kill would)."""
    if os.getpid() != _PARENT_PID[0]:
        os._exit(1)
    return _REAL_READ_CHUNK(root, items, secret, keep_headers)


_PARENT_PID = [os.getpid()]
_REAL_READ_CHUNK = ix._read_chunk


def test_broken_worker_pool_falls_back_to_in_process(export: dict[str, Any], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A killed worker does not stop the index: the remaining chunks are read here."""
    import multiprocessing

    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
        pytest.skip("the stand-in reaches workers only when they are forked")
    _PARENT_PID[0] = os.getpid()
    monkeypatch.setattr(ix, "_read_chunk", _exit_in_worker)
    monkeypatch.setattr(ix, "_CHUNK_FILES", 6)
    monkeypatch.setattr(ix, "_POOL_MIN_FILES", 0)
    db = tmp_path / "broken.sqlite"
    with caplog.at_level("WARNING", logger="bonelesion.dicom.index"):
        summary = index_export(export["root"], db, workers=2)
    assert "Worker pool broke" in caplog.text
    assert summary.files_read == len(export["expected"]) - 2
    assert {p: r.status for p, r in _records(db).items()} == export["expected"]


def test_orientation_jitter_does_not_split_stacks(tmp_path: Path) -> None:
    """Two slices whose cosines differ by 1e-6 around zero share one stack key."""
    ge = sorted(shared_path(*GE_DWI).iterdir())
    root = tmp_path / "r"
    root.mkdir()
    for i, delta in enumerate((1e-6, -1e-6)):
        ds = _read_quiet(ge[0])
        ds.SOPInstanceUID = generate_uid()
        iop = [float(v) for v in ds.ImageOrientationPatient]
        iop = [v + delta if abs(v) < 0.5 else v for v in iop]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.save_as(root / f"s{i}.dcm")
    index_export(root, tmp_path / "c.sqlite", workers=1)
    keys = {r.stack_keys for r in _records(tmp_path / "c.sqlite").values()}
    assert len(keys) == 1


def test_missing_series_uid_substituted_alike_by_reader_and_catalogue(tmp_path: Path) -> None:
    """The Biograph CT has no SeriesInstanceUID (as dcm2niix, we still read it): the reader
    and the catalogue derive the same 2.25 substitute and both say so."""
    folder = shared_path("ct_siemens_biograph_j2k_spine", "dicom")
    index_export(folder, tmp_path / "bio.sqlite", workers=1)
    with Catalogue(tmp_path / "bio.sqlite") as cat:
        (series,) = cat.series()
    stacks = load_series(folder, decode=False)
    assert len(stacks) == 1 and stacks[0].usable
    assert stacks[0].info.series_instance_uid == series.series_instance_uid
    assert series.series_instance_uid.startswith("2.25.") and len(series.series_instance_uid) <= 64
    assert any(SERIES_UID_SUBSTITUTE_NOTE in w for w in stacks[0].warnings)
    assert any(SERIES_UID_SUBSTITUTE_NOTE in n for n in stacks[0].info.notes)
    assert stacks[0].shape == (20, 512, 512)


def test_record_json_arrays_are_written_as_json_dumps_writes_them() -> None:
    """The catalogue's fast JSON writer gives json.dumps's text, byte for byte."""
    import json

    from bonelesion.dicom.catalogue.records import _json_array

    cases = [("ORIGINAL", "PRIMARY", "AXIAL"), (0.1, -2.5e-07, 1e22, 3.0), (1, None, "é\n\"x"),
             ((0.5, -1.25, 3.0), (1e-320, 2.0, 0.0)), (), (True, float("nan")),
             ("1.2.840.10008.5.1.4.1.1.2", None)]
    for value in cases:
        assert _json_array(value) == json.dumps(list(value))
        assert json.loads(_json_array(value)) == json.loads(json.dumps(list(value))) or \
            any(v != v for v in value if isinstance(v, float))


def test_fast_record_constructor_and_stack_rows_equal_the_plain_ones(
        indexed: dict[str, Any]) -> None:
    """`_new_record` builds what ``FileRecord(**fields)`` builds (and refuses what it
    refuses); `_to_entry`'s stack rows are the row's JSON arrays, parsed back."""
    import dataclasses
    import json

    from bonelesion.dicom.catalogue.records import _FIELD_NAMES, _new_record, _to_entry

    recs = list(_records(indexed["db"]).values())
    assert sum(len(r.stack_keys) for r in recs) > len(recs) / 2
    for rec in recs:
        fields = {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}
        fast = _new_record(dict(fields))
        assert fast == ix.FileRecord(**fields)
        assert vars(fast) == vars(ix.FileRecord(**fields))
        row, stacks = _to_entry(rec)
        parsed = [json.loads(row[_FIELD_NAMES.index(n)]) for n in (
            "stack_keys", "stack_n_frames", "stack_b_values_s_per_mm2", "stack_roles",
            "stack_role_reasons")]
        assert stacks == [(row[0], k, rec.series_instance_uid, n, b, r, why)
                          for k, n, b, r, why in zip(*parsed, strict=True)]
    with pytest.raises(TypeError, match="unexpected keyword"):
        _new_record({"path": "a", "size_bytes": 0, "mtime_ns": 0, "status": "ok", "x": 1})
    with pytest.raises(TypeError, match="status"):
        _new_record({"path": "a", "size_bytes": 0, "mtime_ns": 0})
