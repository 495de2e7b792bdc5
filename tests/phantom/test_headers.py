"""DICOM conformance of the phantom's files, vendor tags, lossless coding, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from phantom._readers import StudyGetter
from pydicom.dataset import validate_file_meta
from pydicom.uid import UID

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
GE_OFFSET = 1_000_000_000  # dcm2niix: GE b-value offset in (0043,1039)

#: Type 1/2 attributes of the modules every image carries (PS3.3 A.3/A.4 module tables).
COMMON_REQUIRED = [
    # patient
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    # general study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber",
    # general series
    "Modality", "SeriesInstanceUID", "SeriesNumber",
    # frame of reference
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # general equipment
    "Manufacturer",
    # image pixel
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PixelData",
    # SOP common
    "SOPClassUID", "SOPInstanceUID",
    # general image
    "InstanceNumber",
]
CLASSIC_REQUIRED = ["ImageType", "ImagePositionPatient", "ImageOrientationPatient",
                    "PixelSpacing", "SliceThickness"]
CT_REQUIRED = ["RescaleIntercept", "RescaleSlope", "KVP", "AcquisitionNumber"]
MR_REQUIRED = ["ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
               "EchoTime", "RepetitionTime", "EchoTrainLength"]
ENHANCED_REQUIRED = ["NumberOfFrames", "SharedFunctionalGroupsSequence",
                     "PerFrameFunctionalGroupsSequence", "DimensionOrganizationSequence",
                     "DimensionIndexSequence", "ContentDate", "ContentTime", "ImageType"]


def _files(root: Path) -> list[Path]:
    return sorted((root / "DICOM").rglob("*.dcm"))


def _assert_present(ds: pydicom.Dataset, keywords: list[str], where: Path) -> None:
    missing = [k for k in keywords if k not in ds]
    assert not missing, f"{where}: missing {missing}"


def _check_file(path: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    validate_file_meta(ds.file_meta, enforce_standard=True)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    _assert_present(ds, COMMON_REQUIRED, path)
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                ds.FrameOfReferenceUID):
        assert UID(uid).is_valid, uid
    assert str(ds.PatientName) == "PHANTOM^SPINE"
    sop = ds.SOPClassUID
    if sop in (CT_STORAGE, MR_STORAGE):
        _assert_present(ds, CLASSIC_REQUIRED, path)
    else:
        _assert_present(ds, ENHANCED_REQUIRED, path)
        assert len(ds.PerFrameFunctionalGroupsSequence) == ds.NumberOfFrames
    if sop in (CT_STORAGE, ENHANCED_CT_STORAGE):
        _assert_present(ds, CT_REQUIRED, path)
    if sop == MR_STORAGE:
        _assert_present(ds, MR_REQUIRED, path)
    # Pixel data decodes (compressed syntaxes included) to the declared size.
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1))
    assert arr.shape == ((frames,) if frames > 1 else ()) + (ds.Rows, ds.Columns)
    return ds


@pytest.mark.parametrize("name", ["siemens-noise-free", "ge-enhanced-compressed",
                                  "philips-compressed"])
def test_required_attributes_and_file_meta(get_study: StudyGetter, name: str) -> None:
    root, truth = get_study(name)
    seen_sops = set()
    for s in truth.series:
        files = sorted((root / s.path).glob("*.dcm"))
        assert len(files) == s.n_files
        for f in files[:: max(1, len(files) // 3)]:
            ds = _check_file(f)
            seen_sops.add(ds.SOPClassUID)
            assert ds.SeriesInstanceUID == s.series_instance_uid
            assert ds.SOPClassUID == s.sop_class_uid
            assert ds.file_meta.TransferSyntaxUID == s.transfer_syntax_uid
            assert tuple(ds.ImageType) == s.image_type or s.role == "dwi"
    assert len(seen_sops) == 2  # one CT class, one MR class


def _b_files(root: Path, truth, role: str = "dwi") -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f, stop_before_pixels=True)
            for f in sorted((root / truth.series_for_role(role).path).glob("*.dcm"))]


def test_siemens_tags(get_study: StudyGetter) -> None:
    root, truth = get_study("siemens-noise-free")
    found_b = set()
    for ds in _b_files(root, truth):
        block = ds.private_block(0x0019, "SIEMENS MR HEADER")
        b = float(block[0x0C].value)
        assert float(ds.DiffusionBValue) == pytest.approx(b)
        assert ds.Manufacturer == "SIEMENS"
        assert ("TRACEW" in ds.ImageType) == (b > 0)
        found_b.add(b)
    assert found_b == set(truth.acquisition.dwi_b_values_s_per_mm2)
    adc = _b_files(root, truth, "adc")[0]
    assert list(adc.ImageType[:4]) == ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]
    assert (0x0019, 0x100C) not in adc and "DiffusionBValue" not in adc
    for role, token in (("dixon_in_phase", "IN_PHASE"), ("dixon_opposed_phase", "OUT_PHASE"),
                        ("dixon_water", "WATER"), ("dixon_fat", "FAT")):
        ds = _b_files(root, truth, role)[0]
        assert ds.ImageType[2] == "DIXON" and ds.ImageType[3] == token


def test_ge_tags(get_study: StudyGetter) -> None:
    root, truth = get_study("ge-classic")
    found_b = set()
    for ds in _b_files(root, truth):
        assert ds.Manufacturer == "GE MEDICAL SYSTEMS"
        assert "DiffusionBValue" not in ds  # GE: no standard b tag
        first = int(ds.private_block(0x0043, "GEMS_PARM_01")[0x39].value[0])
        assert first >= GE_OFFSET
        found_b.add(float(first - GE_OFFSET))
    assert found_b == set(truth.acquisition.dwi_b_values_s_per_mm2)
    assert truth.acquisition.magnetic_field_strength_t == pytest.approx(3.0)
    # 3 T: Δf = 3.4 ppm × 127.73 MHz = 434.3 Hz → OP 1.151 ms, IP 2.303 ms
    assert truth.acquisition.echo_time_opposed_phase_ms == pytest.approx(1.1513, abs=1e-3)
    assert truth.acquisition.echo_time_in_phase_ms == pytest.approx(2.3026, abs=1e-3)


def test_philips_tags(get_study: StudyGetter) -> None:
    root, truth = get_study("philips-compressed")
    found_b = set()
    for ds in _b_files(root, truth):
        b = float(ds.private_block(0x2001, "Philips Imaging DD 001")[0x03].value)
        assert float(ds.DiffusionBValue) == pytest.approx(b)
        assert ds.DiffusionDirectionality == ("ISOTROPIC" if b > 0 else "NONE")
        found_b.add(b)
    assert found_b == set(truth.acquisition.dwi_b_values_s_per_mm2)
    for role, token in (("dixon_in_phase", "IP"), ("dixon_opposed_phase", "OP"),
                        ("dixon_water", "W"), ("dixon_fat", "F")):
        ds = _b_files(root, truth, role)[0]
        assert f"_{token}_" in "_".join(ds.ImageType)  # dcm2niix's Philips Dixon test


def test_enhanced_functional_groups(get_study: StudyGetter) -> None:
    root, truth = get_study("siemens-enhanced")
    s = truth.series_for_role("dwi")
    direction = np.asarray(s.direction_lps)
    for ds in _b_files(root, truth):
        assert ds.SOPClassUID == ENHANCED_MR_STORAGE
        shared = ds.SharedFunctionalGroupsSequence[0]
        diff = shared.MRDiffusionSequence[0]
        b = float(diff.DiffusionBValue)
        assert diff.DiffusionDirectionality == ("ISOTROPIC" if b > 0 else "NONE")
        iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
        np.testing.assert_allclose(iop, [*direction[:, 2], *direction[:, 1]], atol=1e-6)
        assert float(shared.MREchoSequence[0].EffectiveEchoTime) == pytest.approx(s.echo_time_ms)
        for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
            expected = np.asarray(s.origin_lps_mm) + direction[:, 0] * s.spacing_mm[0] * k
            np.testing.assert_allclose(ipp, expected, atol=1e-6)
            assert frame.FrameContentSequence[0].InStackPositionNumber == k + 1
    adc = _b_files(root, truth, "adc")[0]
    diff = adc.SharedFunctionalGroupsSequence[0].MRDiffusionSequence[0]
    assert diff.DiffusionDirectionality == "ISOTROPIC" and "DiffusionBValue" not in diff
    ct = pydicom.dcmread(next((root / truth.series_for_role("ct").path).glob("*.dcm")),
                         stop_before_pixels=True)
    assert ct.SOPClassUID == ENHANCED_CT_STORAGE
    pvt = ct.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    assert float(pvt.RescaleIntercept) == -1024 and float(pvt.RescaleSlope) == 1


def _pixels_by_role(root: Path, truth) -> dict[str, np.ndarray]:
    """Return stored pixel arrays per role, stacked in file order (pydicom decoders)."""
    out = {}
    for s in truth.series:
        arrays = [pydicom.dcmread(f).pixel_array
                  for f in sorted((root / s.path).glob("*.dcm"))]
        out[s.role] = np.concatenate([a.reshape(-1, *a.shape[-2:]) for a in arrays])
    return out


@pytest.mark.slow
def test_lossless_and_seed_independent_noise_free_pixels(get_study: StudyGetter) -> None:
    """Compressed (other vendor, other seed) noise-free pixels equal the plain ones."""
    plain = _pixels_by_role(*get_study("siemens-noise-free"))
    packed = _pixels_by_role(*get_study("philips-compressed"))
    for role, arr in plain.items():
        np.testing.assert_array_equal(packed[role], arr, err_msg=role)
    root, truth = get_study("philips-compressed")
    syntaxes = {s.transfer_syntax_uid for s in truth.series}
    assert len(syntaxes) == 3  # JPEG-LS, RLE and JPEG 2000, each lossless


@pytest.mark.slow
def test_determinism_uids(get_study: StudyGetter) -> None:
    """Same seed → same UIDs (sample_data test compares bytes); other seed → other UIDs."""
    root0, t0 = get_study("siemens-noise-free")
    root1, t1 = get_study("siemens-noise-free-seed1")
    assert t0.study_instance_uid != t1.study_instance_uid
    assert t0.frame_of_reference_uid != t1.frame_of_reference_uid
    uids0 = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in _files(root0)}
    uids1 = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in _files(root1)}
    assert not uids0 & uids1
    assert {s.series_instance_uid for s in t0.series}.isdisjoint(
        {s.series_instance_uid for s in t1.series})
    # noise-free pixel data does not depend on the seed
    for f0, f1 in zip(_files(root0), _files(root1), strict=True):
        assert pydicom.dcmread(f0).PixelData == pydicom.dcmread(f1).PixelData
    # noisy: the seed changes the pixels
    rootn, _ = get_study("siemens-noisy")
    f0 = _files(root0)[20]
    fn = rootn / f0.relative_to(root0)
    assert pydicom.dcmread(f0).PixelData != pydicom.dcmread(fn).PixelData


def test_highdicom_reads_enhanced_volumes(get_study: StudyGetter) -> None:
    """highdicom (a third reader) builds each enhanced stack's volume; lesion centres agree."""
    import highdicom as hd

    root, truth = get_study("siemens-enhanced")
    checks = {"ct": lambda les: les.attenuation_mean_hu}
    for s in truth.series:
        f = next((root / s.path).glob("*.dcm"))
        volume = hd.imread(f).get_volume()  # any warning fails the test (filterwarnings)
        assert volume.spatial_shape == s.shape
        np.testing.assert_allclose(sorted(volume.spacing), sorted(s.spacing_mm), atol=1e-4)
        if s.role in checks:
            inverse = np.linalg.inv(volume.affine)
            for les in truth.lesions:
                idx = np.rint((inverse @ [*les.center_lps_mm, 1.0])[:3]).astype(int)
                assert volume.array[tuple(idx)] == pytest.approx(checks[s.role](les))
