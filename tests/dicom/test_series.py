"""Series → stacks → Volume on every real dataset in ../shared/data, against references.

Truth comes from outside our code: dcm2niix / dicom2nifti reference conversions (NIfTI,
.bval), SimpleITK's ImageSeriesReader, the datasets' documented values (MANIFEST.md), the
Siemens protocol (ASCCONV) slice positions, and identical pixels across transfer syntaxes.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support.testdata import shared_path

from bonelesion import load_series as top_load_series
from bonelesion import load_volume as top_load_volume
from bonelesion.dicom.series import load_series, load_volume
from bonelesion.errors import (
    MissingAttributeError,
    SeriesGeometryError,
)
from bonelesion.units import IntensityUnit

pytestmark = pytest.mark.shared_data

#: Reference converters write the same stored values; float32 rescale adds ≤ 1 ulp.
RTOL_VALUES = 1e-6
#: Voxel-centre agreement with reference conversions (brief: 1e-3 mm).
ATOL_GEOMETRY_MM = 1e-3
#: ADC reference maps are in 1e-6 mm²/s; ours are mm²/s (float32 rounding).
ATOL_ADC_MM2_PER_S = 1e-9
#: b-values are integers in every reference .bval.
ATOL_B_VALUE = 0.5
#: Siemens ASCCONV slice positions are protocol values (µm precision, printed to 1e-9):
#: along the normal they match reconstructed slices to DS rounding.
ATOL_PROTOCOL_POSITION_MM = 0.01


@pytest.fixture(scope="module")
def xa30_stacks():  # type: ignore[no-untyped-def]
    """The 21 stacks of the XA30 enhanced DWI series (loaded once)."""
    return load_series(shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "10_DWI_dir80_PA"))


def _usable(stacks):  # type: ignore[no-untyped-def]
    return [s for s in stacks if s.usable]


def _bvals(path: Path) -> list[float]:
    return [float(v) for v in path.read_text().split()]


# ---------------------------------------------------------------------------- every dataset
# dataset folder → (usable stacks, refused stacks, regex every refusal must match)
EXPECTED = {
    ("dixon_philips15T_chaos_set1",): (2, 0, None),
    ("dwi_siemens_xa30_enhanced_pa", "dicom", "11_DWI_dir80_PA"): (1, 0, None),
    ("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2"): (7, 0, None),
    ("dwi_ge_signa_pioneer", "dicom", "04_Ax_DWI_TENSOR_R2MB2"): (7, 0, None),
    ("dwi_canon_galan_v60_classic",): (13, 0, None),
    ("multivendor_cases_dicom2nifti", "dicom", "philips", "dti", "002"): (4, 0, None),
    ("multivendor_cases_dicom2nifti", "dicom", "philips_enhanced"): (4, 0, None),
    ("multivendor_cases_dicom2nifti", "dicom", "siemens", "dti"): (2, 0, None),
    ("multivendor_cases_dicom2nifti", "dicom", "hitachi"): (1, 0, None),
    ("multivendor_cases_dicom2nifti", "dicom", "failing", "gantrytilting"): (0, 1, r"gantry tilt"),
    ("multivendor_cases_dicom2nifti", "dicom", "failing", "notavolume"): (0, 1, r"duplicate positions"),
    ("multivendor_cases_dicom2nifti", "dicom", "failing", "sliceincrement", "001"):
        (0, 1, r"irregular slice spacing.*missing slice"),
    ("multivendor_cases_dicom2nifti", "dicom", "failing", "sliceincrement", "002"):
        (0, 1, r"irregular slice spacing"),
    ("ct_ge_hispeed_head",): (0, 2, r"gantry tilt: .*18\.50°"),
    ("ct_bone_phantom_ge_ctpace",): (1, 0, None),
    ("enhanced_philips_siemens_small", "dicom", "Philips"): (2, 0, None),
    ("enhanced_philips_siemens_small", "dicom", "Siemens"): (4, 0, None),
}


@pytest.mark.parametrize("parts", list(EXPECTED), ids=["/".join(p) for p in EXPECTED])
def test_every_dataset_loads_or_is_refused_as_manifest_predicts(parts: tuple[str, ...]) -> None:
    n_ok, n_refused, pattern = EXPECTED[parts]
    stacks = load_series(shared_path(*parts))
    usable = _usable(stacks)
    refused = [s for s in stacks if not s.usable]
    assert (len(usable), len(refused)) == (n_ok, n_refused), [s.problems for s in refused]
    for s in usable:
        assert s.volume is not None and s.volume.shape == s.shape
        assert np.all(np.isfinite(s.volume.array))
    for s in refused:
        assert s.volume is None and s.shape is None
        assert re.search(pattern, " ".join(s.problems)), s.problems
        assert "Potential fix" in " ".join(s.problems)
        assert s.info.series_instance_uid in str(s.error())
        with pytest.raises(SeriesGeometryError, match=pattern):
            s.raise_if_refused()


def test_gantry_tilt_reports_the_angle_in_degrees() -> None:
    stack = load_series(shared_path("multivendor_cases_dicom2nifti", "dicom", "failing",
                                    "gantrytilting"))[0]
    ds = pydicom.dcmread(stack.files[0], stop_before_pixels=True)
    # tilt from the orientation alone: angle between the column cosine and the y axis
    expected_deg = np.degrees(np.arccos(float(ds.ImageOrientationPatient[4])))
    found = float(re.search(r"([0-9.]+)° from the slice normal", stack.problems[0]).group(1))
    assert found == pytest.approx(expected_deg, abs=0.01)
    with pytest.raises(SeriesGeometryError, match=r"gantry tilt"):
        load_volume(stack.files)


# ---------------------------------------------------------------------------- references
REFERENCE_CASES = [
    # (dicom parts, reference parts, stack index → 4-D volume index)
    (("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2"),
     ("dwi_ge_signa_pioneer", "reference", "Ax_DWI_TENSOR_R2_1.nii")),
    (("dwi_siemens_xa30_enhanced_pa", "dicom", "12_DWI_dir80_PA"),
     ("dwi_siemens_xa30_enhanced_pa", "reference", "12_DWI_dir80_PA.nii")),
    (("dwi_siemens_xa30_enhanced_pa", "dicom", "16_DWI_dir80_PA"),
     ("dwi_siemens_xa30_enhanced_pa", "reference", "16_DWI_dir80_PA.nii")),
    (("enhanced_philips_siemens_small", "dicom", "Siemens"),
     ("enhanced_philips_siemens_small", "reference", "Siemens_REST1_w_SMS_PF7-8_6.nii")),
    (("ts_siemens_trio_mr_9syntaxes", "dicom", "1.dcm"),
     ("ts_siemens_trio_mr_9syntaxes", "reference", "1.nii")),
    (("multivendor_cases_dicom2nifti", "dicom", "hitachi"),
     ("multivendor_cases_dicom2nifti", "reference", "hitachi", "anatomical",
      "001_ground_truth.nii.gz")),
    (("multivendor_cases_dicom2nifti", "dicom", "ge"),
     ("multivendor_cases_dicom2nifti", "reference", "ge", "dti", "001_ground_truth.nii.gz")),
    (("multivendor_cases_dicom2nifti", "dicom", "philips", "dti", "001"),
     ("multivendor_cases_dicom2nifti", "reference", "philips", "dti", "001_ground_truth.nii.gz")),
    (("multivendor_cases_dicom2nifti", "dicom", "philips", "dti", "002"),
     ("multivendor_cases_dicom2nifti", "reference", "philips", "dti", "002_ground_truth.nii.gz")),
    (("multivendor_cases_dicom2nifti", "dicom", "siemens", "dti_classic"),
     ("multivendor_cases_dicom2nifti", "reference", "siemens", "dti_classic",
      "001_ground_truth.nii.gz")),
]


@pytest.mark.parametrize("dicom_parts,ref_parts", REFERENCE_CASES,
                         ids=[c[1][-1] for c in REFERENCE_CASES])
def test_voxels_and_geometry_match_reference_conversion(dicom_parts, ref_parts, ref_on_grid) -> None:  # type: ignore[no-untyped-def]
    stacks = _usable(load_series(shared_path(*dicom_parts)))
    ref = shared_path(*ref_parts)
    assert stacks
    for t, stack in enumerate(stacks):  # acquisition order == reference 4-D order
        expected = ref_on_grid(stack.volume, ref, t, atol_mm=ATOL_GEOMETRY_MM)
        np.testing.assert_allclose(stack.volume.array, expected, rtol=RTOL_VALUES, atol=0)
    bval = ref.parent / ref.name.replace(".nii.gz", ".bval").replace(".nii", ".bval")
    if bval.exists():
        np.testing.assert_allclose([s.info.b_value_s_per_mm2 for s in stacks], _bvals(bval),
                                   atol=ATOL_B_VALUE)


def test_scanner_adc_map_is_converted_to_mm2_per_s(ref_on_grid) -> None:  # type: ignore[no-untyped-def]
    vol = load_volume(shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "11_DWI_dir80_PA"))
    assert vol.intensity_unit == IntensityUnit.MM2_PER_S
    assert vol.series.role == "adc"
    ref = ref_on_grid(vol, shared_path("dwi_siemens_xa30_enhanced_pa", "reference",
                                       "11_DWI_dir80_PA.nii"))
    np.testing.assert_allclose(vol.array, ref * 1e-6, atol=ATOL_ADC_MM2_PER_S, rtol=RTOL_VALUES)


def test_xa30_b_values_match_reference_bval(xa30_stacks) -> None:  # type: ignore[no-untyped-def]
    assert all(s.usable for s in xa30_stacks)
    np.testing.assert_allclose(
        [s.info.b_value_s_per_mm2 for s in xa30_stacks],
        _bvals(shared_path("dwi_siemens_xa30_enhanced_pa", "reference", "10_DWI_dir80_PA.bval")),
        atol=ATOL_B_VALUE)


@pytest.mark.parametrize("parts,bval", [
    (("dwi_ge_signa_pioneer", "dicom", "04_Ax_DWI_TENSOR_R2MB2"),
     ("dwi_ge_signa_pioneer", "reference", "Ax_DWI_TENSOR_R2MB2_4.bval")),
    (("dwi_canon_galan_v60_classic",),
     ("dwi_canon_galan_v60_classic", "reference", "DTI_PA-ortho_9000.bval")),
    (("multivendor_cases_dicom2nifti", "dicom", "philips_enhanced"),
     ("multivendor_cases_dicom2nifti", "reference", "philips_enhanced", "dti",
      "001_ground_truth.bval")),
])
def test_b_values_in_acquisition_order_match_reference_bval(parts, bval) -> None:  # type: ignore[no-untyped-def]
    stacks = _usable(load_series(shared_path(*parts), decode=False))
    np.testing.assert_allclose([s.info.b_value_s_per_mm2 for s in stacks],
                               _bvals(shared_path(*bval)), atol=ATOL_B_VALUE)


def test_enhanced_xa30_819_frames_become_21_stacks_on_one_grid(xa30_stacks) -> None:  # type: ignore[no-untyped-def]
    stacks = xa30_stacks
    assert len(stacks) == 21
    assert sum(s.shape[0] for s in stacks) == 819
    first = stacks[0].volume
    assert all(first.geometry_equal(s.volume) for s in stacks)
    # slice spacing from positions equals the header's SpacingBetweenSlices (not thickness)
    from bonelesion.dicom.multiframe import flatten_frames

    flat = flatten_frames(pydicom.dcmread(stacks[0].files[0], stop_before_pixels=True))[0]
    sbs = float(flat.SpacingBetweenSlices)
    assert first.spacing_mm[0] == pytest.approx(sbs, abs=1e-3)


def test_philips_field_map_magnitude_and_phase_are_proportional_to_reference(ref_on_grid) -> None:  # type: ignore[no-untyped-def]
    """dcm2niix writes Philips values with its own scaling; the shape of the data must agree."""
    stacks = _usable(load_series(shared_path("enhanced_philips_siemens_small", "dicom", "Philips")))
    by_type = {"FIELD_MAP" in s.info.image_type: s for s in stacks}
    for is_map, name in ((False, "Philips_WIP_B0_NS_801_e1.nii"),
                         (True, "Philips_WIP_B0_NS_801_e2_fieldmaphz.nii")):
        vol = by_type[is_map].volume
        ref = ref_on_grid(vol, shared_path("enhanced_philips_siemens_small", "reference", name))
        corr = np.corrcoef(vol.array.ravel(), ref.ravel())[0, 1]
        assert abs(corr) > 0.999, (name, corr)


# ---------------------------------------------------------------------------- codecs
def test_nine_transfer_syntaxes_decode_identically() -> None:
    folder = shared_path("ts_siemens_trio_mr_9syntaxes", "dicom")
    volumes = [load_volume([folder / f"{k}.dcm"]) for k in range(1, 10)]
    syntaxes = {str(pydicom.dcmread(folder / f"{k}.dcm", stop_before_pixels=True)
                    .file_meta.TransferSyntaxUID) for k in range(1, 10)}
    assert len(syntaxes) == 7  # explicit/implicit/big endian, RLE, JPEG LL, JPEG-LS, J2K
    for vol in volumes[1:]:
        np.testing.assert_array_equal(vol.array, volumes[0].array)
        assert vol.geometry_equal(volumes[0])
    assert volumes[0].shape == (35, 64, 64)


@pytest.mark.parametrize("compressed,uncompressed", [
    ("693_J2KR.dcm", "693_UNCR.dcm"),
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
    ("bad_sequence.dcm", None),
    ("explicit_VR-UN.dcm", None),
])
def test_compressed_nema_files_decode_like_their_uncompressed_twins(compressed, uncompressed) -> None:  # type: ignore[no-untyped-def]
    folder = shared_path("compressed_nema_pydicom", "dicom")
    stacks = _usable(load_series([folder / compressed]))
    assert stacks, load_series([folder / compressed])[0].problems
    if uncompressed is None:
        vol = stacks[0].volume
        assert vol.intensity_unit == IntensityUnit.HU
        ds = pydicom.dcmread(folder / compressed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.array[0], hu)
        return
    twins = _usable(load_series([folder / uncompressed]))
    assert len(stacks) == len(twins)
    for a, b in zip(stacks, twins):
        np.testing.assert_array_equal(a.volume.array, b.volume.array)
        assert a.volume.geometry_equal(b.volume)


@pytest.mark.parametrize("variant", ["emri_small_jpeg_2k_lossless.dcm",
                                     "emri_small_jpeg_ls_lossless.dcm", "emri_small_RLE.dcm",
                                     "emri_small_big_endian.dcm"])
def test_emri_small_variants_decode_identically_but_are_refused_without_geometry(variant) -> None:  # type: ignore[no-untyped-def]
    from bonelesion.dicom.decode import decode_file as _decode_file

    folder = shared_path("compressed_nema_pydicom", "dicom")
    np.testing.assert_array_equal(_decode_file(folder / variant), _decode_file(folder / "emri_small.dcm"))
    (stack,) = load_series([folder / variant])
    assert not stack.usable
    with pytest.raises(MissingAttributeError, match=r"lack ImagePositionPatient"):
        load_volume([folder / variant])


def test_ct_is_int16_hounsfield_units_and_equals_modality_lut() -> None:
    path = shared_path("compressed_nema_pydicom", "dicom", "693_UNCR.dcm")
    vol = load_volume([path])
    assert vol.array.dtype == np.int16
    ds = pydicom.dcmread(path)
    expected = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(vol.array[0], expected)


# ---------------------------------------------------------------------------- mosaic
def _ascconv_positions(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    text = ds[0x0029, 0x1020].value.decode("latin-1")
    n = int(re.search(r"sSliceArray\.lSize\s*=\s*(\d+)", text).group(1))

    def get(i: int, axis: str) -> float:
        m = re.search(rf"sSliceArray\.asSlice\[{i}\]\.sPosition\.d{axis}\s*=\s*(\S+)", text)
        return float(m.group(1)) if m else 0.0

    return np.array([[get(i, a) for a in ("Sag", "Cor", "Tra")] for i in range(n)])


@pytest.mark.parametrize("parts", [
    ("ts_siemens_trio_mr_9syntaxes", "dicom", "1.dcm"),
    ("multivendor_cases_dicom2nifti", "dicom", "siemens", "dti", "001", "IM-0001-0001.dcm"),
])
def test_mosaic_slices_sit_at_the_protocol_slice_positions(parts) -> None:  # type: ignore[no-untyped-def]
    path = shared_path(*parts)
    vol = load_volume([path])
    protocol = _ascconv_positions(path)
    assert vol.shape[0] == len(protocol)
    centres = vol.index_to_lps(
        [[k, (vol.shape[1] - 1) / 2, (vol.shape[2] - 1) / 2] for k in range(vol.shape[0])])
    # along the slice normal, every protocol slice has one of our slices at its position
    # (in-plane, ASCCONV positions may be shifted by a constant FOV offset)
    normal = vol.slice_normal_lps
    ours = np.sort(centres @ normal)
    theirs = np.sort(protocol @ normal)
    np.testing.assert_allclose(ours, theirs, atol=ATOL_PROTOCOL_POSITION_MM)
    inplane = (centres[np.argsort(centres @ normal)] - protocol[np.argsort(protocol @ normal)])
    inplane -= np.outer(inplane @ normal, normal)
    assert np.ptp(inplane, axis=0).max() < ATOL_PROTOCOL_POSITION_MM  # a constant shift only


def test_descending_mosaic_agrees_with_dicom2nifti_at_the_ipp_slice(ref_on_grid) -> None:  # type: ignore[no-untyped-def]
    """dicom2nifti's truth places the tile described by IPP at IPP (its other slices extend
    away from the protocol range, so only that slice is comparable)."""
    import nibabel as nib

    path = shared_path("multivendor_cases_dicom2nifti", "dicom", "siemens", "dti", "001",
                       "IM-0001-0001.dcm")
    vol = load_volume([path])
    ref = nib.load(shared_path("multivendor_cases_dicom2nifti", "reference", "siemens", "dti",
                               "001_ground_truth.nii.gz"))
    ref_slice0 = np.asanyarray(ref.dataobj)[:, :, 0, 0].astype(np.float64)
    origin_ref_lps = np.diag([-1, -1, 1]) @ ref.affine[:3, 3]
    s = int(np.argmin([np.linalg.norm(vol.index_to_lps([[k, 0, 0]])[0] - origin_ref_lps)
                       for k in range(vol.shape[0])]))
    assert np.linalg.norm(vol.index_to_lps([[s, 0, 0]])[0] - origin_ref_lps) < ATOL_GEOMETRY_MM
    np.testing.assert_array_equal(vol.array[s].T, ref_slice0)


# ---------------------------------------------------------------------------- layouts
def test_headerless_ct_files_load_in_position_order_with_bone_hu() -> None:
    folder = shared_path("ct_bone_phantom_ge_ctpace")
    stacks = load_series(folder)
    assert len(stacks) == 1
    vol = stacks[0].volume
    assert vol.intensity_unit == IntensityUnit.HU and vol.shape == (10, 512, 512)
    names = [Path(n).name for n in (folder / "reference" / "slice_names.txt").read_text().split()]
    assert [Path(f).name for f in stacks[0].files] == names  # increasing z
    assert 1300 <= float(vol.array.max()) <= 1500  # bone blocks reach ~+1300 to +1430 HU
    assert vol.spacing_mm[0] == pytest.approx(5.0, abs=1e-3)


def test_dixon_series_splits_into_two_echoes() -> None:
    stacks = load_series(shared_path("dixon_philips15T_chaos_set1"))
    assert [s.shape for s in stacks] == [(35, 256, 256)] * 2
    assert [s.info.echo_time_ms for s in stacks] == pytest.approx([2.302, 4.635], abs=1e-3)
    assert stacks[0].volume.spacing_mm[0] == pytest.approx(5.5, abs=1e-2)
    assert len({s.info.series_instance_uid for s in stacks}) == 1
    # one-stack API with a filter
    vol = load_volume(shared_path("dixon_philips15T_chaos_set1"), echo_number=2)
    assert vol.series.echo_time_ms == pytest.approx(4.635, abs=1e-3)
    assert top_load_volume(shared_path("dixon_philips15T_chaos_set1"), echo_number=1).shape == vol.shape
    assert len(top_load_series(shared_path("dixon_philips15T_chaos_set1"), decode=False)) == 2


def test_ge_files_without_extension_and_hitachi_implicit_vr() -> None:
    folder = shared_path("dwi_ge_signa_pioneer", "dicom", "01_Ax_DWI_TENSOR_R2")
    assert all(p.suffix.lstrip(".").isdigit() for p in folder.iterdir())  # iNN.MRDC.N
    assert len(_usable(load_series(folder))) == 7
    hitachi = shared_path("multivendor_cases_dicom2nifti", "dicom", "hitachi")
    ts = pydicom.dcmread(next(hitachi.rglob("*.dcm")), stop_before_pixels=True).file_meta
    assert ts.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert load_volume(hitachi).shape == (4, 64, 64)


# ---------------------------------------------------------------------------- SimpleITK
@pytest.mark.parametrize("parts", [
    ("ct_bone_phantom_ge_ctpace", "dicom"),
    ("multivendor_cases_dicom2nifti", "dicom", "hitachi", "anatomical", "001"),
    ("multivendor_cases_dicom2nifti", "dicom", "failing", "sliceincrement", "001"),
])
def test_matches_simpleitk_image_series_reader(parts) -> None:  # type: ignore[no-untyped-def]
    import SimpleITK as sitk

    from bonelesion.model.sitk_bridge import volume_from_sitk

    folder = shared_path(*parts)
    reader = sitk.ImageSeriesReader()
    (uid,) = reader.GetGDCMSeriesIDs(str(folder))
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), uid))
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    reference = volume_from_sitk(reader.Execute())
    stacks = load_series(folder)
    if "sliceincrement" in parts:
        # SimpleITK squeezes the missing slice away (PEERS.md §4); we refuse instead.
        assert reference.shape[0] == 4 and not stacks[0].usable
        return
    vol = stacks[0].volume
    np.testing.assert_array_equal(vol.array, reference.array)
    assert vol.geometry_equal(reference, atol_mm=ATOL_GEOMETRY_MM)


PHANTOM_VARIANTS = [  # (vendor, enhanced, compressed): every vendor, each flag both ways
    ("siemens", False, False),
    ("ge", True, True),
    ("philips", True, False),
    ("philips", False, True),  # classic Philips b0: only a private b = 0 (series context)
]


@pytest.mark.slow
@pytest.mark.parametrize("vendor,enhanced,compressed", PHANTOM_VARIANTS)
def test_phantom_variants_match_truth_and_simpleitk(tmp_path, vendor, enhanced, compressed) -> None:  # type: ignore[no-untyped-def]
    import SimpleITK as sitk

    import bonelesion.phantom as phantom
    from bonelesion.model.sitk_bridge import volume_from_sitk

    truth = phantom.write_study(tmp_path, vendor=vendor, seed=3, enhanced=enhanced,
                                compressed=compressed, noise_free=False)
    stacks = load_series(tmp_path)
    assert stacks and all(s.usable for s in stacks), [s.problems for s in stacks]
    by_uid = {t.series_instance_uid: t for t in truth.series}
    assert {s.info.series_instance_uid for s in stacks} == set(by_uid)
    for stack in stacks:
        t = by_uid[stack.info.series_instance_uid]
        vol = stack.volume
        assert vol.shape == tuple(t.shape)
        np.testing.assert_allclose(vol.spacing_mm, t.spacing_mm, atol=ATOL_GEOMETRY_MM)
        np.testing.assert_allclose(vol.origin_lps_mm, t.origin_lps_mm, atol=ATOL_GEOMETRY_MM)
        np.testing.assert_allclose(vol.direction_lps, np.array(t.direction_lps), atol=1e-6)
        if t.b_values_s_per_mm2:
            # every stack of a DWI series, b = 0 included, is a DWI stack with its b-value
            # (the series context fills a b0 whose only clue is a vendor b = 0)
            assert stack.info.role == "dwi", stack.key
            b_found = stack.info.b_value_s_per_mm2
            assert b_found is not None, stack.key
            assert any(abs(b_found - b) <= ATOL_B_VALUE for b in t.b_values_s_per_mm2)
        if t.modality == "CT":
            assert vol.intensity_unit == IntensityUnit.HU
        if len(stack.files) == vol.shape[0]:  # one file per slice: SimpleITK can read it
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(list(stack.files))
            ref = volume_from_sitk(reader.Execute())
            expected = ref.array * 1e-6 if stack.info.role == "adc" else ref.array  # µm²/s
            np.testing.assert_allclose(vol.array, expected, rtol=1e-6, atol=ATOL_ADC_MM2_PER_S
                                       if stack.info.role == "adc" else 1e-3)
            assert vol.geometry_equal(ref, atol_mm=ATOL_GEOMETRY_MM)


def test_philips_classic_b0_stack_is_dwi_with_b_0(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A Philips classic b0 whose only clue is (2001,1003) = 0 becomes role dwi, b 0."""
    import bonelesion.phantom as phantom
    truth = phantom.write_study(tmp_path, vendor="philips", seed=1)
    dwi_truth = next(t for t in truth.series if t.role == "dwi")
    stacks = [s for s in load_series(tmp_path, decode=False)
              if s.info.series_instance_uid == dwi_truth.series_instance_uid]
    assert [s.info.role for s in stacks] == ["dwi"] * len(dwi_truth.b_values_s_per_mm2)
    found = sorted(s.info.b_value_s_per_mm2 for s in stacks)  # type: ignore[type-var]
    np.testing.assert_allclose(found, sorted(dwi_truth.b_values_s_per_mm2), atol=ATOL_B_VALUE)
    b0 = next(s for s in stacks if s.info.b_value_s_per_mm2 == pytest.approx(0.0, abs=ATOL_B_VALUE))
    assert b0.key.b_value_s_per_mm2 == pytest.approx(0.0, abs=ATOL_B_VALUE)
    assert b0.key.acquisition_kind == "b0"
    assert any("vendor b-value element" in n for n in b0.info.notes)
