"""Every validation branch of the series reader, on small synthetic series with known truth."""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest

from bonelesion.dicom.series import discover_files, load_series, load_volume
from bonelesion.errors import (
    DamagedFileError,
    InputError,
    MissingAttributeError,
    SeriesGeometryError,
    SeriesSelectionError,
    UnsupportedInputError,
)
from bonelesion.units import IntensityUnit

#: Positions are written with 6 decimals.
ATOL_MM = 1e-5


def test_sorts_by_position_not_names_and_spacing_not_thickness(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # sagittal
    positions = [(10.0 - 3.0 * k, 0.0, 0.0) for k in (2, 0, 3, 1)]  # written out of order
    files, stored = ct_writer(tmp_path, positions=positions, iop=iop)
    vol = load_volume(tmp_path)
    normal = np.cross(iop[:3], iop[3:])
    proj = [np.dot(p, normal) for p in positions]
    order = np.argsort(proj)
    assert vol.shape == (4, 8, 6)
    assert vol.array.dtype == np.int16 and vol.intensity_unit == IntensityUnit.HU
    for s, i in enumerate(order):
        np.testing.assert_array_equal(vol.array[s], stored[i].astype(np.int32) - 1024)
    assert vol.spacing_mm == pytest.approx((3.0, 0.5, 0.7), abs=ATOL_MM)
    np.testing.assert_allclose(vol.origin_lps_mm, positions[order[0]], atol=ATOL_MM)
    np.testing.assert_allclose(vol.direction_lps[:, 2], iop[:3], atol=ATOL_MM)
    np.testing.assert_allclose(vol.direction_lps[:, 1], iop[3:], atol=ATOL_MM)
    # every voxel centre of slice s sits at its file's IPP + row/column offsets
    for s, i in enumerate(order):
        np.testing.assert_allclose(vol.index_to_lps([[s, 0, 0]])[0], positions[i], atol=ATOL_MM)
        expected = np.array(positions[i]) + 7 * 0.5 * np.array(iop[3:]) + 5 * 0.7 * np.array(iop[:3])
        np.testing.assert_allclose(vol.index_to_lps([[s, 7, 5]])[0], expected, atol=ATOL_MM)


def test_non_integer_rescale_gives_float32(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    _, stored = ct_writer(tmp_path, slope=0.5, intercept=-1000.25)
    vol = load_volume(tmp_path)
    assert vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.array[0], stored[0] * 0.5 - 1000.25, rtol=0, atol=1e-3)


def test_decode_false_reports_geometry_without_pixels(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path)
    (stack,) = load_series(tmp_path, decode=False)
    assert stack.volume is None and stack.usable
    assert stack.shape == (4, 8, 6)
    assert stack.spacing_mm == pytest.approx((2.0, 0.5, 0.7))


def test_mixed_orientation_is_refused(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    def tweak(k: int, ds: pydicom.Dataset) -> None:
        if k == 2:  # 0.2° off: same key bucket, beyond the orientation tolerance
            c, s = np.cos(np.radians(0.2)), np.sin(np.radians(0.2))
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in (c, s, 0, -s, c, 0)]

    ct_writer(tmp_path, per_slice=tweak)
    with pytest.raises(SeriesGeometryError, match=r"mixed orientation.*Potential fix"):
        load_volume(tmp_path)


def test_mixed_frame_of_reference_is_refused(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path, for_uids=["1.2.3.1", "1.2.3.1", "1.2.3.2", "1.2.3.1"])
    with pytest.raises(SeriesGeometryError, match=r"mixed frames of reference"):
        load_volume(tmp_path)


def test_inconsistent_pixel_spacing_is_refused(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    def tweak(k: int, ds: pydicom.Dataset) -> None:
        if k == 1:
            ds.PixelSpacing = ["0.6", "0.7"]

    ct_writer(tmp_path, per_slice=tweak)
    with pytest.raises(SeriesGeometryError, match=r"inconsistent PixelSpacing"):
        load_volume(tmp_path)


def test_missing_slice_is_refused_and_named(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path, positions=[(0, 0, z) for z in (0.0, 2.0, 6.0, 8.0)])
    with pytest.raises(SeriesGeometryError, match=r"irregular slice spacing: 2–4 mm.*1 missing"):
        load_volume(tmp_path)


def test_spacing_within_tolerance_is_accepted(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path, positions=[(0, 0, z) for z in (0.0, 2.0, 4.01, 6.0)])
    assert load_volume(tmp_path).spacing_mm[0] == pytest.approx(2.0, abs=0.01)


def test_duplicate_positions_are_refused(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path, positions=[(0, 0, z) for z in (0.0, 2.0, 2.0, 4.0)])
    with pytest.raises(SeriesGeometryError, match=r"duplicate positions"):
        load_volume(tmp_path)


def test_gantry_tilt_is_refused_with_its_angle(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    tilt = np.radians(12.0)
    iop = (1.0, 0.0, 0.0, 0.0, np.cos(tilt), -np.sin(tilt))
    positions = [(0.0, 0.0, 3.0 * k) for k in range(4)]  # table moves along z
    ct_writer(tmp_path, positions=positions, iop=iop)
    with pytest.raises(SeriesGeometryError, match=r"gantry tilt: .* 12\.00° from the slice normal"):
        load_volume(tmp_path)


def test_same_sop_instance_twice_is_read_once(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    files, _ = ct_writer(tmp_path / "a")
    copy = tmp_path / "a" / "copy_of_first"
    copy.write_bytes(files[0].read_bytes())
    (stack,) = load_series(tmp_path)
    assert stack.usable and stack.shape == (4, 8, 6)
    assert any("repeats SOP instance" in w for w in stack.warnings)


def test_absurd_size_is_refused_before_decoding(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path)
    (stack,) = load_series(tmp_path, max_bytes=500)  # a slice is 192 B, the stack 768 B
    assert stack.volume is None
    assert "absurd size" in stack.problems[0]
    with pytest.raises(UnsupportedInputError, match=r"refused before decoding"):
        load_volume(tmp_path, max_bytes=500)


def test_absurd_frame_count_in_one_file_is_refused_before_flattening(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    def tweak(k: int, ds: pydicom.Dataset) -> None:
        ds.NumberOfFrames = 2_000_000_000

    ct_writer(tmp_path, n=1, per_slice=tweak)
    with pytest.raises(UnsupportedInputError, match=r"frames would need .* GiB"):
        load_volume(tmp_path)


def test_missing_position_is_refused(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    def tweak(k: int, ds: pydicom.Dataset) -> None:
        del ds.ImagePositionPatient

    ct_writer(tmp_path, n=2, per_slice=tweak)
    with pytest.raises(MissingAttributeError, match=r"lack ImagePositionPatient"):
        load_volume(tmp_path)


def test_single_slice_uses_thickness_and_says_so(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path, n=1)
    (stack,) = load_series(tmp_path)
    assert stack.volume.spacing_mm[0] == pytest.approx(9.9)
    assert any("SliceThickness" in n for n in stack.info.notes)


def test_discovery_skips_junk_and_dicomdir_and_reports_them(tmp_path, ct_writer, caplog) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path / "nested" / "deeper")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    (tmp_path / "empty").write_bytes(b"")
    found = discover_files(tmp_path)
    assert len(found.files) == 4
    reasons = {p.split("/")[-1]: r for p, r in ((s.path, s.reason) for s in found.skipped)}
    assert set(reasons) == {"notes.txt", "DICOMDIR", "empty"}
    assert "DICOMDIR" in reasons["DICOMDIR"]
    with caplog.at_level(logging.WARNING, logger="bonelesion.dicom.series"):
        assert load_volume(tmp_path).shape == (4, 8, 6)
    assert "notes.txt" in caplog.text


def test_headerless_dataset_is_read(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    files, stored = ct_writer(tmp_path / "src", n=2)
    for f in files:  # strip preamble + file meta: a raw data set, like old GE .ct files
        data = f.read_bytes()
        assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00"
        meta_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL value
        raw = tmp_path / "raw" / f"{f.name}.ct"
        raw.parent.mkdir(exist_ok=True)
        raw.write_bytes(data[144 + meta_length:])
        assert raw.read_bytes()[:2] == b"\x08\x00"
    vol = load_volume(tmp_path / "raw")
    np.testing.assert_array_equal(vol.array[0], stored[0].astype(np.int32) - 1024)


def test_missing_path_raises(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=r"does not exist.*Potential fix"):
        load_series(tmp_path / "nope")


def test_selection_errors_list_what_was_found(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path / "a")
    ct_writer(tmp_path / "b")
    with pytest.raises(SeriesSelectionError, match=r"found 2 .*role=ct.*Potential fix"):
        load_volume(tmp_path)
    with pytest.raises(SeriesSelectionError, match=r"found 0"):
        load_volume(tmp_path, modality="MR")
    with pytest.raises(InputError, match=r"unknown filter"):
        load_volume(tmp_path, colour="red")
    uid = load_series(tmp_path / "a", decode=False)[0].info.series_instance_uid
    assert load_volume(tmp_path, series_instance_uid=uid).series.series_instance_uid == uid
    with pytest.raises(SeriesSelectionError, match=r"found 0"):
        load_volume(tmp_path, role="dwi")


def test_short_pixel_data_refuse_the_file_not_the_stack(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    files, _ = ct_writer(tmp_path, n=3)
    ds = pydicom.dcmread(files[0])
    ds.PixelData = ds.PixelData[:10]  # shorter than Rows × Columns × 2 bytes
    ds.save_as(files[0], enforce_file_format=True)
    stacks = load_series(tmp_path)
    (damaged,) = [s for s in stacks if not s.usable]
    (rest,) = [s for s in stacks if s.usable]
    assert damaged.files == (str(files[0]),) and rest.shape == (2, 8, 6)
    assert files[0].name in damaged.problems[0]
    with pytest.raises(DamagedFileError, match=r"pixel data hold 10 bytes.*Potential fix"):
        damaged.raise_if_refused()


def test_invalid_orientation_and_spacing_headers_are_refused(tmp_path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    ct_writer(tmp_path / "iop", iop=(0, 0, 0, 0, 1, 0), positions=[(0, 0, 0), (0, 0, 2)])
    with pytest.raises(SeriesGeometryError, match=r"invalid ImageOrientationPatient"):
        load_volume(tmp_path / "iop")
    ct_writer(tmp_path / "ps", pixel_spacing=(0.0, 0.5))
    with pytest.raises(SeriesGeometryError, match=r"expected positive values"):
        load_volume(tmp_path / "ps")


def test_several_mosaics_with_one_signature_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pydicom
    from pydicom.uid import generate_uid
    from support.testdata import shared_path

    src = shared_path("ts_siemens_trio_mr_9syntaxes", "dicom", "1.dcm")
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ImagePositionPatient = [float(v) + 2.0 for v in ds.ImagePositionPatient]
    ds.save_as(tmp_path / "moved.dcm", enforce_file_format=True)
    # two mosaics (not copies: another position) with one stack signature
    (stack,) = load_series([src, tmp_path / "moved.dcm"], decode=False)
    assert not stack.usable
    with pytest.raises(SeriesGeometryError, match=r"2 mosaic images share one stack signature"):
        stack.raise_if_refused()


def test_copies_of_one_mosaic_instance_load_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from support.testdata import shared_path

    src = shared_path("ts_siemens_trio_mr_9syntaxes", "dicom", "1.dcm")
    (tmp_path / "copy.dcm").write_bytes(src.read_bytes())
    (stack,) = load_series([src, tmp_path / "copy.dcm"])
    assert stack.usable and stack.shape == (35, 64, 64)
    assert any("repeats SOP instance" in w for w in stack.warnings)
