"""Flattening of enhanced multi-frame objects and the stack signature, on real data."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from support.testdata import shared_path

from bonelesion.dicom.multiframe import (
    StackKey,
    flatten_frames,
    frame_number,
    is_multiframe,
    stack_key,
)

pytestmark = pytest.mark.shared_data

#: DS values are copied, not recomputed: exact equality of decimal strings is expected.
ATOL_MM = 1e-9


def _xa30_files(series: str = "10_DWI_dir80_PA") -> list:
    return sorted(shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", series).iterdir())


def test_classic_single_frame_is_returned_as_is() -> None:
    path = shared_path("multivendor_cases_dicom2nifti", "dicom", "hitachi", "anatomical", "001",
                       "001.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    flats = flatten_frames(ds)
    assert flats == [ds]
    assert flats[0] is ds
    assert frame_number(ds) is None
    assert not is_multiframe(ds)


def test_xa30_enhanced_frames_carry_per_frame_geometry_and_diffusion() -> None:
    path = _xa30_files()[1]
    ds = pydicom.dcmread(path)
    flats = flatten_frames(ds)
    assert len(flats) == int(ds.NumberOfFrames) == 39
    shared = ds.SharedFunctionalGroupsSequence[0]
    for i, (flat, item) in enumerate(zip(flats, ds.PerFrameFunctionalGroupsSequence)):
        assert frame_number(flat) == i + 1
        np.testing.assert_allclose(
            [float(v) for v in flat.ImagePositionPatient],
            [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient], atol=ATOL_MM)
        assert "PixelData" not in flat
        assert "PerFrameFunctionalGroupsSequence" not in flat
        assert "SharedFunctionalGroupsSequence" not in flat
        # FrameType → ImageType; EffectiveEchoTime → EchoTime
        assert list(flat.ImageType) == list(item.MRImageFrameTypeSequence[0].FrameType)
        echo = (item.get("MREchoSequence") or shared.MREchoSequence)[0].EffectiveEchoTime
        assert float(flat.EchoTime) == pytest.approx(float(echo))
        diffusion = item.MRDiffusionSequence[0]
        assert float(flat.DiffusionBValue) == pytest.approx(float(diffusion.DiffusionBValue))
        assert flat.DiffusionDirectionality == diffusion.DiffusionDirectionality
    # PixelMeasures come from the shared group (or per-frame) and land at top level
    assert len(flats[0].PixelSpacing) == 2
    assert float(flats[0].SpacingBetweenSlices) > 0
    # b = 2500 direction hoisted out of DiffusionGradientDirectionSequence
    assert float(flats[0].DiffusionBValue) == pytest.approx(2500.0)
    assert len(flats[0].DiffusionGradientOrientation) == 3
    # the source data set is not modified
    assert "PixelData" in ds


def test_flatten_819_frames_of_xa30_series() -> None:
    n = 0
    for path in _xa30_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        n += len(flatten_frames(ds))
    assert n == 819


def test_philips_private_per_frame_values_lose_to_standard_groups() -> None:
    path = shared_path("enhanced_philips_siemens_small", "dicom", "Philips", "IM_0027_fMAP.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    flats = flatten_frames(ds)
    assert len(flats) == 64
    item = ds.PerFrameFunctionalGroupsSequence[0]
    private = item[0x2005, 0x140F].value[0]
    standard_ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
    private_ipp = [float(v) for v in private.ImagePositionPatient]
    assert standard_ipp != private_ipp  # the data really differ: the test can fail
    assert [float(v) for v in flats[0].ImagePositionPatient] == standard_ipp
    # Philips private per-frame values that have no standard counterpart are present
    assert (0x2005, 0x100E) in flats[0]
    types = {tuple(f.ImageType) for f in flats}
    assert any("FIELD_MAP" in t for t in types) and any("M" in t for t in types)
    assert float(flats[0].RescaleSlope) == pytest.approx(
        float(item.PixelValueTransformationSequence[0].RescaleSlope))


def _synthetic_enhanced(creator_top: str, creator_item: str) -> Dataset:
    ds = Dataset()
    ds.SeriesInstanceUID = "1.2.3"
    ds.Rows, ds.Columns = 4, 4
    ds.NumberOfFrames = 2
    ds.add_new((0x0011, 0x0010), "LO", creator_top)
    ds.add_new((0x0011, 0x1001), "LO", "top-level private")
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = ["1", "1"]
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(2):
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = ["0", "0", str(k)]
        item.PlanePositionSequence = Sequence([pp])
        vendor = Dataset()
        vendor.add_new((0x0011, 0x0010), "LO", creator_item)
        vendor.add_new((0x0011, 0x1001), "LO", f"frame {k}")
        item.add_new((0x0011, 0x1002), "SQ", Sequence([vendor]))
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    return ds


def test_private_creator_clash_keeps_the_top_level_block() -> None:
    flats = flatten_frames(_synthetic_enhanced("VENDOR A", "VENDOR B"))
    assert [f[0x0011, 0x1001].value for f in flats] == ["top-level private"] * 2
    assert [float(f.ImagePositionPatient[2]) for f in flats] == [0.0, 1.0]
    assert [frame_number(f) for f in flats] == [1, 2]


def test_stack_key_separates_dixon_echoes() -> None:
    folder = shared_path("dixon_philips15T_chaos_set1", "dicom", "801_T1DUAL")
    keys = {stack_key(pydicom.dcmread(p, stop_before_pixels=True)) for p in folder.iterdir()}
    assert len(keys) == 2
    assert sorted(k.echo_number for k in keys) == [1, 2]
    assert sorted(k.echo_time_ms for k in keys) == pytest.approx([2.30, 4.63], abs=0.01)


def test_stack_key_separates_field_map_frames_and_b_values() -> None:
    path = shared_path("enhanced_philips_siemens_small", "dicom", "Philips", "IM_0027_fMAP.dcm")
    flats = flatten_frames(pydicom.dcmread(path, stop_before_pixels=True))
    assert len({stack_key(f) for f in flats}) == 2
    keys = set()
    for p in _xa30_files():
        keys |= {stack_key(f) for f in flatten_frames(pydicom.dcmread(p, stop_before_pixels=True))}
    assert len(keys) == 21  # b0 + 20 directions
    assert sorted({k.b_value_s_per_mm2 for k in keys}) == [0.0, 2500.0]


def test_stack_key_is_hashable_and_readable() -> None:
    path = _xa30_files()[1]
    key = stack_key(flatten_frames(pydicom.dcmread(path, stop_before_pixels=True))[0])
    assert isinstance(key, StackKey)
    assert hash(key) == hash(StackKey(**key.__dict__))
    text = str(key)
    assert "b 2500" in text and "72x72" in text and key.series_instance_uid in text


@pytest.mark.parametrize("parts", [
    ("dwi_siemens_xa30_enhanced_pa", "dicom"),
    ("dwi_ge_signa_pioneer", "dicom"),
    ("dwi_canon_galan_v60_classic", "dicom"),
    ("multivendor_cases_dicom2nifti", "dicom", "philips_enhanced"),
    ("dixon_philips15T_chaos_set1", "dicom"),
    ("ct_bone_phantom_ge_ctpace", "dicom"),
])
def test_stack_key_b_value_and_direction_are_the_vendor_rules(parts) -> None:  # type: ignore[no-untyped-def]
    """The key asks for a b-value / direction only when the image is diffusion (directional).

    Against the vendor rules called directly on every frame: the same b-value and
    direction (rounded as the key rounds them).
    """
    from bonelesion.dicom import stack_key as sk
    from bonelesion.dicom import vendors
    from bonelesion.dicom.header import read_file_header
    from bonelesion.errors import InputError

    n = 0
    for path in sorted(p for p in shared_path(*parts).rglob("*") if p.is_file())[:60]:
        try:
            ds, _ = read_file_header(path, [])
        except InputError:
            continue  # not DICOM (a licence, a reference file)
        for flat in flatten_frames(ds):
            if "Rows" not in flat:
                continue
            key = stack_key(flat)
            b_value = vendors.b_value_s_per_mm2(flat)
            direction = vendors.diffusion_direction_lps(flat)
            assert key.b_value_s_per_mm2 == sk._round_or_none(b_value,
                                                              sk._KEY_B_VALUE_DECIMALS)
            if direction is None:
                assert key.diffusion_direction is None
            else:
                assert key.diffusion_direction == tuple(
                    sk._round_or_none(v, sk._KEY_DIRECTION_DECIMALS) or 0.0 for v in direction)
            n += 1
    assert n > 0
