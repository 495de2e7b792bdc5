"""The reader's fast path gives exactly what the generic pydicom path gives.

Two fast pieces are checked against pydicom itself (the truth here):

* `bonelesion.dicom.fastheader.read_header` must build the same data set as
  ``pydicom.dcmread(stop_before_pixels=True)`` (every element, file meta, encoding), find
  the Pixel Data value where pydicom finds it, and decline what it does not handle;
* ``load_series(fast_path=True)`` (fast headers + pixels read straight from the file) must
  give voxel-identical volumes, the same geometry and the same stack metadata as
  ``load_series(fast_path=False)`` (``dcmread`` + ``pixel_array``), on classic CT and MR,
  uncompressed and compressed, little and big endian, and on enhanced multi-frame files.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from support.testdata import SHARED_DATA, shared_path

from bonelesion.dicom.fastheader import read_header
from bonelesion.dicom.series import Stack, load_series

#: Geometry of the two paths is computed by the same code from the same header values.
ATOL_GEOMETRY_MM = 1e-9
#: Files per folder checked against dcmread (all of them for the transfer-syntax sets).
FILES_PER_FOLDER = 3


def _dcmread_header(path: Path) -> pydicom.FileDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # real data warns on odd values
        return pydicom.dcmread(path, stop_before_pixels=True)


def _assert_same_header(path: Path, fast: pydicom.FileDataset, ref: pydicom.FileDataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fast == ref, path
        assert fast.file_meta == ref.file_meta, path
        # converts every element, sequences included; compares tags, VRs and values (not
        # pydicom's display names: a private sequence read lazily gets its creator's
        # name, "[Stack Sequence]", where one parsed while reading shows "Private tag data")
        assert _dump(fast) == _dump(ref), path
    assert fast.preamble == ref.preamble
    assert fast.original_encoding == ref.original_encoding
    assert [e.tag for e in fast] == [e.tag for e in ref]


def _dump(ds: pydicom.Dataset, depth: int = 0) -> list[str]:
    """Every element of ``ds`` (recursively) as "tag VR value" lines, values converted."""
    lines = []
    for elem in ds:
        if elem.VR == "SQ":
            lines.append(f"{depth} {elem.tag} SQ {len(elem.value)} items")
            for item in elem.value:
                lines.extend(_dump(item, depth + 1))
        else:
            lines.append(f"{depth} {elem.tag} {elem.VR} {elem.value!r}")
    return lines


def _real_files() -> Iterator[Path]:
    if not SHARED_DATA.exists():
        return
    for root, dirs, names in os.walk(SHARED_DATA):
        dirs.sort()
        if "dicom" not in Path(root).parts:
            continue
        files = sorted(n for n in names if not n.startswith("."))
        every = any(k in root for k in ("ts_siemens_trio", "compressed_nema"))
        for name in files if every else files[:FILES_PER_FOLDER]:
            yield Path(root) / name


@pytest.mark.slow
def test_fast_header_equals_dcmread_on_real_scanner_files() -> None:
    files = list(_real_files())
    if not files:
        pytest.skip("shared test data not found")
    compared = declined = 0
    for path in files:
        try:
            ref = _dcmread_header(path)
        except Exception:  # noqa: BLE001 - not DICOM for pydicom either
            assert read_header(path) is None or path.suffix.lower() not in (".dcm",)
            continue
        fast = read_header(path)
        if fast is None:
            declined += 1
            ts = ref.file_meta.get("TransferSyntaxUID", None)
            assert ts in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian) or \
                ref.preamble is None, f"{path}: declined a plain file ({ts})"
            continue
        _assert_same_header(path, fast.dataset, ref)
        if fast.pixel_data_tag is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full = pydicom.dcmread(path)
            with open(path, "rb") as fh:
                fh.seek(fast.pixel_data_offset)  # type: ignore[arg-type]
                head = fh.read(min(len(full.PixelData), 4096))
            assert full.PixelData[:len(head)] == head, path
            if fast.pixel_data_length != 0xFFFFFFFF:
                assert fast.pixel_data_length == len(full.PixelData)
        compared += 1
    assert compared >= 50 and declined >= 2  # the two big-endian files are declined


def _write(tmp_path: Path, name: str, *, implicit: bool = False, big: bool = False,
           sequence_undefined: bool = True, private_sq: bool = False,
           long_header_bytes: int = 0) -> Path:
    """Write a small MR file with nested undefined-length sequences (with pydicom)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import MRImageStorage, generate_uid

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.SeriesDescription = "Wirbelsäule ök"
    ds.Rows, ds.Columns = 3, 5
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    inner = Dataset()
    inner.CodeValue, inner.CodeMeaning = "T-11503", "Vertebral column"
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    item.AnatomicRegionSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    if private_sq:
        block = ds.private_block(0x0029, "BONELESION TEST", create=True)
        block.add_new(0x10, "SQ", Sequence([inner]))
    if long_header_bytes:
        ds.ImageComments = "x" * long_header_bytes
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = sequence_undefined
    for seq_item in ds.ReferencedImageSequence:
        seq_item.is_undefined_length_sequence_item = sequence_undefined
    arr = (np.arange(15, dtype=np.int16).reshape(3, 5) - 7)
    ds.PixelData = arr.astype(">i2" if big else "<i2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else (
        ExplicitVRBigEndian if big else ExplicitVRLittleEndian)
    ds.file_meta = meta
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("undefined", [False, True])
def test_fast_header_equals_dcmread_with_sequences(tmp_path, implicit, undefined) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, "a.dcm", implicit=implicit, sequence_undefined=undefined,
                  private_sq=True)
    fast = read_header(path)
    assert fast is not None
    ref = _dcmread_header(path)
    _assert_same_header(path, fast.dataset, ref)
    assert fast.dataset.SeriesDescription == "Wirbelsäule ök"  # UTF-8 charset applied
    assert fast.dataset.ReferencedImageSequence[0].AnatomicRegionSequence[0].CodeValue \
        == "T-11503"
    with open(path, "rb") as fh:
        fh.seek(fast.pixel_data_offset)  # type: ignore[arg-type]
        pixels = np.frombuffer(fh.read(fast.pixel_data_length), "<i2")  # type: ignore[arg-type]
    np.testing.assert_array_equal(pixels.reshape(3, 5), pydicom.dcmread(path).pixel_array)


@pytest.mark.parametrize("implicit", [False, True])
def test_fast_header_dataset_attributes_equal_pydicom_constructors(tmp_path, implicit) -> None:  # type: ignore[no-untyped-def]
    """The fast reader copies a prototype's attributes instead of running pydicom's
    constructors: every instance attribute equals what those constructors set."""
    from pydicom.charset import convert_encodings, default_encoding
    from pydicom.dataset import FileDataset, FileMetaDataset

    path = _write(tmp_path, "a.dcm", implicit=implicit, private_sq=True)
    fast = read_header(path)
    again = read_header(path)
    assert fast is not None and again is not None
    ds = fast.dataset
    dcm = _dcmread_header(path)
    meta = FileMetaDataset(dict(ds.file_meta._dict))
    meta.set_original_encoding(False, True, default_encoding)
    ref = FileDataset(str(path), dict(ds._dict), dcm.preamble, meta, implicit, True)
    ref.set_original_encoding(implicit, True, dcm.original_character_set)
    ours = {k: v for k, v in vars(ds).items() if k not in ("_dict", "file_meta")
            and not k.startswith("_bonelesion")}
    assert ours == {k: v for k, v in vars(ref).items() if k not in ("_dict", "file_meta")}
    assert {k: v for k, v in vars(ds.file_meta).items() if k != "_dict"} == \
        {k: v for k, v in vars(meta).items() if k != "_dict"}
    assert type(ds) is FileDataset and type(ds.file_meta) is FileMetaDataset
    for name in ("_private_blocks", "_pixel_array_opts", "_pixel_id"):  # never shared
        assert getattr(ds, name) is not getattr(again.dataset, name)
        assert getattr(ds.file_meta, name) is not getattr(again.dataset.file_meta, name)
    assert ds.original_character_set == dcm.original_character_set \
        == convert_encodings(["ISO_IR 192"])
    assert ds.timestamp == os.stat(path).st_mtime
    for elem in [*ds._dict.values(), *ds.file_meta._dict.values()]:  # all nine fields
        assert elem == pydicom.dataelem.RawDataElement(*elem[:7])
        assert len(elem) == len(pydicom.dataelem.RawDataElement._fields)


@pytest.mark.shared_data
def test_long_enhanced_header_is_read_in_two_passes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The second read goes up to where the pixel data should start (from the image size):
    a 414 KB XA30 header is parsed twice (16 KB, then all), not at every ×4 step."""
    import bonelesion.dicom.fastheader as fastheader

    folder = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "11_DWI_dir80_PA")
    (path,) = sorted(folder.iterdir())
    real = fastheader._parse
    sizes: list[int] = []

    def counting(buf, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(buf))
        return real(buf, *args, **kwargs)

    monkeypatch.setattr(fastheader, "_parse", counting)
    fast = read_header(path)
    assert fast is not None and fast.pixel_data_offset is not None
    assert fast.pixel_data_offset > 400_000
    assert sizes[0] == fastheader.HEADER_CHUNK_BYTES and len(sizes) == 2
    assert fast.pixel_data_offset < sizes[1] < fast.pixel_data_offset + 8192
    _assert_same_header(path, fast.dataset, _dcmread_header(path))


@pytest.mark.parametrize("chunk_bytes", [140, 200, 1000])
def test_fast_header_grows_its_buffer_for_long_headers(tmp_path, chunk_bytes) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, "long.dcm", long_header_bytes=5000)
    fast = read_header(path, chunk_bytes=chunk_bytes)
    assert fast is not None
    _assert_same_header(path, fast.dataset, _dcmread_header(path))


def test_fast_header_declines_what_it_does_not_handle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    big = _write(tmp_path, "big.dcm", big=True)
    assert read_header(big) is None  # big endian
    plain = _write(tmp_path, "plain.dcm")
    data = plain.read_bytes()
    no_preamble = tmp_path / "nopre.dcm"
    no_preamble.write_bytes(data[132:])
    assert read_header(no_preamble) is None
    truncated = tmp_path / "trunc.dcm"
    modality_at = data.index(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality, explicit VR
    # Cut one byte into its value (tag 4 + VR 2 + length 2 = 8 bytes of element header):
    # the file ends inside an element whatever the lengths of the random UIDs before it.
    truncated.write_bytes(data[: modality_at + 9])
    assert read_header(truncated) is None  # ends inside an element: pydicom reports it
    bad_vr = bytearray(data)
    at = data.index(b"\x08\x00\x60\x00CS")  # Modality
    bad_vr[at + 4:at + 6] = b"zz"
    (tmp_path / "badvr.dcm").write_bytes(bytes(bad_vr))
    assert read_header(tmp_path / "badvr.dcm") is None
    deflated = tmp_path / "deflated.dcm"
    ds = pydicom.dcmread(plain)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(deflated, enforce_file_format=True)
    assert read_header(deflated) is None
    with pytest.raises(OSError):
        read_header(tmp_path / "missing.dcm")


def test_fast_header_of_a_file_without_pixel_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, "nopix.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    fast = read_header(path)
    assert fast is not None and fast.pixel_data_tag is None
    _assert_same_header(path, fast.dataset, _dcmread_header(path))


# ------------------------------------------------------------------ load_series, both paths
def _assert_same_stacks(fast: list[Stack], generic: list[Stack]) -> None:
    assert [str(s.key) for s in fast] == [str(s.key) for s in generic]
    for a, b in zip(fast, generic, strict=True):
        assert a.problems == b.problems
        assert a.info == b.info
        if b.volume is None:
            assert a.volume is None
            continue
        assert a.volume is not None
        assert a.volume.array.dtype == b.volume.array.dtype
        np.testing.assert_array_equal(a.volume.array, b.volume.array)  # voxel-identical
        assert a.volume.intensity_unit == b.volume.intensity_unit
        assert a.volume.geometry_equal(b.volume, atol_mm=ATOL_GEOMETRY_MM)


def _both(path: Path | list[Path]) -> tuple[list[Stack], list[Stack]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_series(path), load_series(path, fast_path=False)


@pytest.mark.slow
@pytest.mark.parametrize("enhanced,compressed", [(False, False), (False, True), (True, False)])
def test_fast_path_equals_generic_path_on_phantom_study(tmp_path, enhanced, compressed) -> None:  # type: ignore[no-untyped-def]
    """Classic/enhanced CT and MR (Dixon, DWI, ADC), native and compressed (JPEG-LS, RLE, J2K)."""
    import bonelesion.phantom as phantom
    phantom.write_study(tmp_path, vendor="ge" if enhanced else "siemens", seed=5,
                        enhanced=enhanced, compressed=compressed)
    fast, generic = _both(tmp_path)
    assert len(fast) >= 6 and all(s.usable for s in fast)
    assert {s.info.modality for s in fast} == {"CT", "MR"}
    _assert_same_stacks(fast, generic)


def _big_endian_copy(src: Path, dst: Path) -> None:
    ds = pydicom.dcmread(src)
    arr = ds.pixel_array
    ds.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom: big endian is retired
        dcmwrite(dst, ds, implicit_vr=False, little_endian=False,
                 force_encoding=True)


@pytest.mark.parametrize("signed", [False, True])
def test_fast_path_equals_generic_path_on_ct_little_and_big_endian(  # type: ignore[no-untyped-def]
        tmp_path, signed, monkeypatch) -> None:
    """Classic CT, 12 of 16 bits with junk above BitsStored, little endian vs big endian."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, generate_uid

    rng = np.random.default_rng(7)
    series, frame = generate_uid(), generate_uid()
    little, big = tmp_path / "le", tmp_path / "be"
    little.mkdir()
    big.mkdir()
    for k in range(6):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.Modality, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "CT", series, frame
        ds.ImagePositionPatient = [-20.0, -30.0, 5.0 - 2.5 * k]  # reverse order on disk
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.75]
        ds.Rows, ds.Columns = 7, 9
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = 1, (0 if signed else -1024)
        stored = rng.integers(-2048 if signed else 0, 2048 if signed else 4096, (7, 9))
        raw = (stored & 0x0FFF) | (rng.integers(0, 16, (7, 9)) << 12)  # junk in bits 12–15
        ds.PixelData = raw.astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = \
            ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(little / f"{k}.dcm", enforce_file_format=True)
        _big_endian_copy(little / f"{k}.dcm", big / f"{k}.dcm")
    fast, generic = _both(little)
    _assert_same_stacks(fast, generic)
    # the little-endian files really take the fast path: pydicom's decoder is never called
    import bonelesion.dicom.decode as series_module

    def _no_pydicom(path: Path) -> None:
        raise AssertionError(f"generic decoder used for {path}")

    monkeypatch.setattr(series_module, "decode_file", _no_pydicom)
    assert all(read_header(p) is not None for p in little.iterdir())
    again = load_series(little)
    _assert_same_stacks(again, generic)
    monkeypatch.undo()
    fast_big, generic_big = _both(big)
    _assert_same_stacks(fast_big, generic_big)
    assert fast[0].volume is not None and fast_big[0].volume is not None
    np.testing.assert_array_equal(fast[0].volume.array, fast_big[0].volume.array)


@pytest.mark.parametrize("name", ["1.dcm", "2.dcm", "3.dcm", "4.dcm", "7.dcm", "9.dcm"])
def test_fast_path_equals_generic_path_on_siemens_mosaic_transfer_syntaxes(name) -> None:  # type: ignore[no-untyped-def]
    """Real MR: explicit/implicit little endian, big endian, RLE, JPEG-LS, JPEG 2000."""
    path = shared_path("ts_siemens_trio_mr_9syntaxes", "dicom", name)
    fast, generic = _both([path])
    assert fast and fast[0].usable
    _assert_same_stacks(fast, generic)


@pytest.mark.parametrize("parts", [
    ("ct_bone_phantom_ge_ctpace", "dicom"),
    ("dixon_philips15T_chaos_set1", "dicom"),
    ("dwi_ge_signa_pioneer", "dicom"),
    ("compressed_nema_pydicom", "dicom"),
    # MR: enhanced multi-frame (Siemens XA30, XA10, Philips), Siemens mosaic, Canon, GE, UIH
    ("dwi_siemens_xa30_enhanced_pa", "dicom"),
    ("enhanced_philips_siemens_small", "dicom"),
    ("multivendor_cases_dicom2nifti", "dicom", "philips_enhanced"),
    ("multivendor_cases_dicom2nifti", "dicom", "siemens"),
    ("dwi_canon_galan_v60_classic", "dicom"),
    ("dwi_ge_mr750_multib_mr0004", "dicom"),
    ("dwi_ge_pioneer_tensor_r2", "dicom"),
    ("dwi_uih_umr770_dti_132225", "dicom"),
])
def test_fast_path_equals_generic_path_on_real_series(parts, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Voxel for voxel; the fast path reads the uncompressed pixels itself (counted)."""
    import bonelesion.dicom.decode as decode

    native_reads = []
    original = decode._native_offset

    def counting(frame, n_frames=1):  # type: ignore[no-untyped-def]
        found = original(frame, n_frames)
        native_reads.append(found is not None)
        return found

    monkeypatch.setattr(decode, "_native_offset", counting)
    fast = load_series(shared_path(*parts))
    fast_native = any(native_reads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generic = load_series(shared_path(*parts), fast_path=False)
    assert any(s.usable for s in fast)
    _assert_same_stacks(fast, generic)
    if parts[0] != "compressed_nema_pydicom":
        assert fast_native  # uncompressed little endian: read straight from the file


def _small_ct_series(folder: Path, n_slices: int = 5) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, generate_uid

    rng = np.random.default_rng(11)
    series, frame = generate_uid(), generate_uid()
    folder.mkdir()
    for k in range(n_slices):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.Modality, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "CT", series, frame
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.Rows, ds.Columns = 4, 6
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = rng.integers(0, 4096, (4, 6)).astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = \
            ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)


def test_short_direct_read_leaves_the_file_out_by_name(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A file that shrinks between its header and its pixels: left out, named, never a crash."""
    import bonelesion.dicom.decode as series_module

    _small_ct_series(tmp_path / "ct")
    real = series_module._native_offset

    def _late(frame, n_frames=1):  # type: ignore[no-untyped-def]
        found = real(frame, n_frames)
        if found is None or frame.path.name != "4.dcm":
            return found
        return frame.path.stat().st_size - 10, found[1], found[2]  # 10 bytes left: short read

    monkeypatch.setattr(series_module, "_native_offset", _late)
    stacks = load_series(tmp_path / "ct")
    usable = [s for s in stacks if s.usable]
    refused = [s for s in stacks if not s.usable]
    assert len(usable) == 1 and usable[0].shape == (4, 4, 6)  # the end slice left out
    assert [Path(f).name for f in refused[0].files] == ["4.dcm"]
    assert re.search(r"File .*4\.dcm: 10 of 48 bytes of pixel data", refused[0].problems[0])
    assert any("4.dcm" in w and "left out" in w for w in usable[0].warnings)


@pytest.mark.parametrize("bits,stored,signed", [
    (8, 8, False), (16, 12, False), (16, 12, True), (16, 16, True), (32, 32, False),
    (32, 24, True),
])
@pytest.mark.parametrize("slope", ["0.5", "1"])
def test_fast_path_equals_generic_path_on_mr_bit_depths(tmp_path, bits, stored, signed,  # type: ignore[no-untyped-def]
                                                        slope) -> None:
    """Classic MR of every native integer depth: junk above BitsStored, a float rescale.

    Truth: the stored integers written here, masked or sign-extended to BitsStored, times
    RescaleSlope plus RescaleIntercept (in float64; the volume is float32).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import MRImageStorage, generate_uid

    rng = np.random.default_rng(bits * 100 + stored + signed)
    series, frame = generate_uid(), generate_uid()
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    info = np.iinfo(dtype)
    truth = []
    for k in range(4):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.Modality, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "MR", series, frame
        ds.ImagePositionPatient = [-10.0, 4.0, 3.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.5, 1.25]
        ds.Rows, ds.Columns = 5, 7
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored, stored - 1
        ds.PixelRepresentation = int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = slope, "-3"
        raw = rng.integers(info.min, info.max, (5, 7), dtype=dtype, endpoint=True)
        ds.PixelData = raw.tobytes()
        shift = bits - stored
        if signed:
            stored_values = (raw.astype(np.int64) << shift).astype(dtype) >> shift
        else:
            stored_values = raw.astype(np.int64) & ((1 << stored) - 1)
        truth.append(stored_values.astype(np.float64) * float(slope) - 3)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = \
            ds.SOPClassUID, ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(tmp_path / f"{k}.dcm", enforce_file_format=True)
    fast, generic = _both(tmp_path)
    _assert_same_stacks(fast, generic)
    (stack,) = fast
    assert stack.volume is not None
    # float32 output: the rescale rounds once per operation (32-bit values need ~1 ulp)
    np.testing.assert_allclose(stack.volume.array, np.stack(truth), rtol=2e-7, atol=0)
