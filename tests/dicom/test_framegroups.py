"""The fast functional-group reader equals pydicom's full parse, on every enhanced set.

`bonelesion.dicom.framegroups` walks the per-frame and shared functional groups over their
bytes instead of parsing them with pydicom. Its flat headers must be the ones of the
pydicom path: same elements in the same order with the same values, hence the same
geometry, b-values and gradient directions, rescale and frame order. The truth is
``pydicom.dcmread`` (every sequence parsed by pydicom) flattened by the pydicom path.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from support.testdata import shared_path

from bonelesion.dicom import multiframe, values
from bonelesion.dicom.framegroups import NotPlain, sequence_items
from bonelesion.dicom.header import frames_of, read_file_header
from bonelesion.dicom.vendors.diffusion import b_value_s_per_mm2, diffusion_direction_lps
from bonelesion.errors import InputError

#: Every enhanced multi-frame set of the shared data (uncompressed, Explicit VR LE).
ENHANCED_SETS = (
    ("dwi_siemens_xa30_enhanced_pa", "dicom"),
    ("enhanced_philips_siemens_small", "dicom"),
    ("multivendor_cases_dicom2nifti", "dicom", "philips_enhanced"),
)


def _multiframe_files(parts: tuple[str, ...]) -> list[Path]:
    root = shared_path(*parts)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in ("", ".dcm"))


def _plain(ds: Dataset, tag: int) -> object:
    """An element's value as pydicom converts it; sequences as lists of such dicts."""
    value = values.converted_value(ds, tag)
    if isinstance(value, Sequence):
        return [{int(t): _plain(item, t) for t in item._dict} for item in value]
    return value


def _assert_constructor_attributes(flat: Dataset) -> None:
    """A flat header has the instance attributes ``Dataset(elements)`` gives (own dicts)."""
    ref = Dataset(dict(flat._dict))
    ours = {k: v for k, v in vars(flat).items()
            if k not in ("_dict", "file_meta") and not k.startswith("_bonelesion")}
    assert ours == {k: v for k, v in vars(ref).items() if k != "_dict"}
    assert type(flat) is Dataset
    for name in ("_private_blocks", "_pixel_array_opts", "_pixel_id"):
        assert getattr(flat, name) is not getattr(ref, name)


def _assert_complete_raw_elements(ds: Dataset) -> None:
    """Every raw element is what pydicom's own constructor makes of its first 7 fields."""
    for elem in ds._dict.values():
        if isinstance(elem, pydicom.dataelem.RawDataElement):
            assert len(elem) == len(pydicom.dataelem.RawDataElement._fields)
            assert elem == pydicom.dataelem.RawDataElement(*elem[:7])
            assert (elem.is_raw, elem.is_buffered) == (True, False)


@pytest.mark.shared_data
@pytest.mark.parametrize("parts", ENHANCED_SETS, ids=lambda p: p[0])
def test_fast_flat_headers_equal_the_pydicom_parse(parts: tuple[str, ...]) -> None:
    n_frames = 0
    for path in _multiframe_files(parts):
        ds, _ = read_file_header(path, [])
        if not multiframe.is_multiframe(ds):
            continue
        # the fast path is the one taken for these files (raw Explicit VR LE sequences)
        assert multiframe._fast_group_items(ds) is not None, path
        fast = multiframe.flatten_frames(ds)
        full = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            full.get(keyword)  # parsed by pydicom now (a defined-length one stays raw)
        assert not isinstance(full._dict[multiframe._PER_FRAME], pydicom.dataelem.RawDataElement)
        slow = multiframe.flatten_frames(full, fast=False)
        assert len(fast) == len(slow) == int(full.NumberOfFrames)
        for index, (a, b) in enumerate(zip(fast, slow)):
            # frame order, and every element (in order) with the same value
            assert multiframe.frame_number(a) == multiframe.frame_number(b) == index + 1
            assert list(a._dict) == list(b._dict), path
            _assert_complete_raw_elements(a)
            _assert_constructor_attributes(a)
            for tag in a._dict:
                assert _plain(a, tag) == _plain(b, tag), (path.name, index, hex(tag))
            # what the reader takes from them: b-value and gradient direction
            assert b_value_s_per_mm2(a) == b_value_s_per_mm2(b)
            assert diffusion_direction_lps(a) == diffusion_direction_lps(b)
        n_frames += len(fast)
    assert n_frames > 0


@pytest.mark.shared_data
@pytest.mark.parametrize("parts", ENHANCED_SETS, ids=lambda p: p[0])
def test_fast_frames_equal_pydicom_frames(parts: tuple[str, ...]) -> None:
    """Typed frames (geometry, rescale, order) from both header paths are identical."""
    n_frames = 0
    for path in _multiframe_files(parts):
        typed = []
        for fast_path in (True, False):  # fast header + framegroups; pydicom throughout
            ds, location = read_file_header(path, [], fast_path=fast_path)
            typed.append(frames_of(path, ds, 2**34, location))
        fast, slow = typed
        assert len(fast) == len(slow)
        n_frames += len(fast)
        for a, b in zip(fast, slow):
            assert a.index == b.index
            assert a.sop_instance_uid == b.sop_instance_uid
            for got, want in ((a.ipp, b.ipp), (a.iop, b.iop),
                              (a.pixel_spacing, b.pixel_spacing)):
                if want is None:
                    assert got is None
                else:
                    np.testing.assert_array_equal(got, want)
            assert (a.rescale_slope, a.rescale_intercept) == \
                (b.rescale_slope, b.rescale_intercept)
            assert b_value_s_per_mm2(a.flat) == b_value_s_per_mm2(b.flat)
            assert diffusion_direction_lps(a.flat) == diffusion_direction_lps(b.flat)
    assert n_frames > len(_multiframe_files(parts))


def _encoded_sequence(items: list[Dataset]) -> bytes:
    """The value of a sequence of ``items`` as pydicom writes it (Explicit VR LE)."""
    holder = Dataset()
    holder.ReferencedImageSequence = Sequence(items)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, holder)
    data = fp.getvalue()
    return data[12:]  # tag (4) + VR and reserved (4) + length (4)


def _item(k: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    item.ReferencedSOPInstanceUID = f"1.2.3.{k}"
    inner = Dataset()
    inner.ImagePositionPatient = [1.5 * k, -2, 3]
    item.PlanePositionSequence = Sequence([inner])
    item.ReferencedFrameNumber = ""
    return item


def test_items_equal_pydicom_items_defined_lengths() -> None:
    data = _encoded_sequence([_item(k) for k in range(3)])
    walked = sequence_items(data)
    parsed = pydicom.values.convert_SQ(data, False, True)
    assert len(walked) == len(parsed) == 3
    for mine, theirs in zip(walked, parsed):
        assert list(mine) == list(theirs._dict)
        for tag, elem in mine.items():
            if elem.VR == "SQ":
                (inner,) = sequence_items(elem.value)
                assert [e.value for e in inner.values()] == \
                    [e.value for e in theirs[tag].value[0]._dict.values()]
            else:
                assert elem.value == theirs._dict[tag].value
    assert len(sequence_items(data, first_only=True)) == 1


def test_items_of_undefined_length_sequences_and_items() -> None:
    """Siemens XA writes undefined lengths everywhere: the same items come out."""
    path = _xa30_file()
    ds, _ = read_file_header(path, [])
    raw = ds._dict[multiframe._PER_FRAME]
    assert raw.VR == "SQ"
    walked = sequence_items(raw.value)
    full = pydicom.dcmread(path, stop_before_pixels=True).PerFrameFunctionalGroupsSequence
    assert len(walked) == len(full)
    assert [list(i) for i in walked] == [list(i._dict) for i in full]


def _xa30_file() -> Path:
    return sorted(shared_path("dwi_siemens_xa30_enhanced_pa", "dicom",
                              "10_DWI_dir80_PA").iterdir())[1]


def test_not_plain_bytes_are_declined_never_misread() -> None:
    """Implicit VR items, truncations and random damage: NotPlain, or the same items."""
    good = _encoded_sequence([_item(k) for k in range(2)])
    implicit = Dataset()
    implicit.ReferencedImageSequence = Sequence([_item(0)])
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, implicit)
    with pytest.raises(NotPlain):
        sequence_items(fp.getvalue()[8:])
    for cut in range(len(good)):
        try:
            items = sequence_items(good[:cut])
        except NotPlain:
            continue
        assert len(items) <= 2
    rng = random.Random(14)
    for _ in range(2000):
        damaged = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            sequence_items(bytes(damaged))
        except NotPlain:
            pass


def test_unchecked_raw_sequence_is_checked_before_the_walk() -> None:
    """A raw sequence nobody checked goes through the structure check first."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    data = _encoded_sequence([_item(0)])
    bad = data[:4] + b"\x00\x00\x00\x7f" + data[8:]  # the item runs past the sequence
    tag = multiframe._PER_FRAME
    ds._dict[tag] = pydicom.dataelem.RawDataElement(tag, "SQ", len(bad), bad, 0, False, True)
    with pytest.raises(InputError, match="runs past its container"):
        values.raw_sequence(ds, tag)


def _merged_frame_by_frame(ds: Dataset) -> list[dict]:  # type: ignore[type-arg]
    """Every frame's elements merged from scratch: top level < Philips private < shared <
    per-frame (the rule of `flatten_frames`, without its once-per-file shared merge)."""
    found = multiframe._fast_group_items(ds)
    assert found is not None
    shared_items, per_frame = found
    base = {k: e for k, e in ds._dict.items()
            if k not in multiframe.PIXEL_TAGS and k not in (multiframe._SHARED,
                                                             multiframe._PER_FRAME)}
    out = []
    for index in range(int(ds.NumberOfFrames)):
        tags = dict(base)
        frame_items = per_frame[index] if index < len(per_frame) else None
        for group in ([frame_items[0]] if frame_items else []) + [shared_items] + \
                ([frame_items[1]] if frame_items else []):
            for item, first_inner in group:
                multiframe._merge_item(tags, item, first_inner)
        out.append(tags)
    return out


@pytest.mark.shared_data
@pytest.mark.parametrize("parts", ENHANCED_SETS, ids=lambda p: p[0])
def test_flat_headers_equal_a_frame_by_frame_merge(parts: tuple[str, ...]) -> None:
    n_frames = 0
    for path in _multiframe_files(parts)[:4]:
        ds, _ = read_file_header(path, [])
        if not multiframe.is_multiframe(ds):
            continue
        flats = multiframe.flatten_frames(ds)
        for flat, want in zip(flats, _merged_frame_by_frame(ds), strict=True):
            got = {k: e for k, e in flat._dict.items()
                   if k not in (multiframe._FRAME_NUMBER_TAG,
                                multiframe._FRAME_NUMBER_CREATOR_TAG)}
            assert list(got) == list(want), path  # the same elements, in the same order
            assert all(got[k] == want[k] for k in want), path
            n_frames += 1
    assert n_frames > 0
