"""DICOM SEG + TID 1500 SR: valid per dciodvfy, read back by highdicom with the same numbers.

Truth: the masks and HU values written by tests/support/report_series.py (analytic balls), and the
source files' own headers read with pydicom.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from support.classify_factory import lesion
from support.dciodvfy import dciodvfy_errors
from support.report_series import SHAPE, lesion_masks, write_ct_series

from bonelesion.errors import (
    GeometryMismatchError,
    InputError,
    MissingAttributeError,
    UnsupportedInputError,
)
from bonelesion.model.volume import Volume
from bonelesion.report.dicom_out import write_study_dicom
from bonelesion.report.dicom_seg import write_segmentation
from bonelesion.report.dicom_sources import read_source_datasets
from bonelesion.report.dicom_sr import CODES, PRIVATE_CONCEPTS, PRIVATE_SCHEME
from bonelesion.report.result import study_result

# SR numeric values are rounded to 6 decimals before encoding (DS has 16 characters).
ATOL_SR_VALUE = 1e-6


@pytest.fixture(scope="module")
def ct_study(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("ct")
    ct = write_ct_series(folder / "series")
    uid = ct.series.study_instance_uid
    lesions = [
        lesion(ct=(700.0, 820.0), sir=1.0, adc=0.8e-3, lesion_id="L1", study=uid,
               annotations={"sins_location": "L1", "sins_pain": "mechanical",
                            "sins_alignment": "normal", "sins_collapse": "none",
                            "sins_posterolateral": "none", "escc_grade": "2"}),
        lesion(ct=(1200.0, 1310.0), lesion_id="L2", study=uid,
               annotations={"escc_grade": "1c"}),
    ]
    study = study_result(lesions, volumes={"ct": ct}, masks=lesion_masks(ct))
    written = write_study_dicom(study, folder / "dicom")
    return ct, study, written


def test_seg_masks_round_trip(ct_study) -> None:  # type: ignore[no-untyped-def]
    ct, study, written = ct_study
    seg = hd.seg.segread(written.seg_path)
    assert seg.get_segment_numbers() == [1, 2]
    assert written.segment_numbers == {"L1": 1, "L2": 2}
    # source instances in the Volume's slice order (from the files' own headers)
    sops = list(ct.series.sop_instance_uids)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=sops, segment_numbers=[1, 2], ignore_spatial_locations=False)
    masks = lesion_masks(ct)
    for k, lid in enumerate(["L1", "L2"]):
        np.testing.assert_array_equal(pixels[..., k].astype(bool), np.asarray(masks[lid].array))
        desc = seg.get_segment_description(k + 1)
        assert desc.tracking_id == f"lesion {lid}"
    assert seg.SeriesInstanceUID != ct.series.series_instance_uid
    assert seg.FrameOfReferenceUID == ct.series.frame_of_reference_uid


def test_seg_slice_order_comes_from_geometry(ct_study) -> None:  # type: ignore[no-untyped-def]
    ct, _, _ = ct_study
    datasets = read_source_datasets(ct)
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert z == sorted(z)  # slice axis is +z (cross(col, row))
    inst = [int(ds.InstanceNumber) for ds in datasets]
    assert inst == sorted(inst, reverse=True)  # written reversed: not used for sorting
    assert [ds.SOPInstanceUID for ds in datasets] == list(ct.series.sop_instance_uids)


def test_sr_numbers_round_trip(ct_study) -> None:  # type: ignore[no-untyped-def]
    _, study, written = ct_study
    sr = hd.sr.srread(written.sr_path)
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups = report.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    seg = pydicom.dcmread(written.seg_path)
    by_id = {g.tracking_identifier: g for g in groups}
    for m, call in zip(study.lesions, study.calls, strict=True):
        g = by_id[f"lesion {m.lesion_id}"]
        ref = g.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert ref.referenced_segment_numbers == [written.segment_numbers[m.lesion_id]]
        values = {(x.name.meaning, x.derivation.meaning if x.derivation else None):
                  (x.value, x.unit.value) for x in g.get_measurements()}
        assert values[("Attenuation Coefficient", "Mean")][1] == "[hnsf'U]"
        assert values[("Attenuation Coefficient", "Mean")][0] == pytest.approx(
            m.ct.attenuation_mean_hu, abs=ATOL_SR_VALUE)
        assert values[("Attenuation Coefficient", "Maximum")][0] == pytest.approx(
            m.ct.attenuation_max_hu, abs=ATOL_SR_VALUE)
        assert values[("Probability of cancer", None)][0] == pytest.approx(
            call.probability_malignant, abs=ATOL_SR_VALUE)
        if m.adc is not None:
            v, unit = values[("Apparent Diffusion Coefficient", "Mean")]
            assert unit == "um2/s" and v == pytest.approx(m.adc.adc_mean_mm2_per_s * 1e6,
                                                          abs=ATOL_SR_VALUE)
            v, unit = values[("Chemical shift signal intensity ratio", None)]
            assert unit == "1" and v == pytest.approx(m.chemical_shift.chemical_shift_ratio,
                                                      abs=ATOL_SR_VALUE)
            assert values[("Chemical shift signal drop", None)][1] == "%"
        qual = {q.name.meaning: q.value for q in g.get_qualitative_evaluations()}
        assert qual[CODES["call"].meaning] == CODES[call.label.value]
        assert qual[CODES["call"].meaning].scheme_designator == "SCT"
        assert qual["Epidural spinal cord compression grade"].value == (
            "ESCC2" if m.lesion_id == "L1" else "ESCC1C")
    l1 = by_id["lesion L1"]
    sins = {x.name.meaning: x.value for x in l1.get_measurements()}
    # L1: junctional 3 + mechanical 3 + blastic (from CT) 0 + normal 0 + none 0 + none 0
    assert sins["Spinal Instability Neoplastic Score"] == pytest.approx(6.0, abs=ATOL_SR_VALUE)
    # evidence: the SR lists every source image and the SEG
    evidence = {inst.ReferencedSOPInstanceUID
                for study_item in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study_item.ReferencedSeriesSequence
                for inst in series.ReferencedSOPSequence}
    assert evidence == {*study.volumes["ct"].series.sop_instance_uids, seg.SOPInstanceUID}


@pytest.mark.parametrize("which", ["seg_path", "sr_path"])
def test_dciodvfy_reports_no_errors(ct_study, which: str) -> None:  # type: ignore[no-untyped-def]
    _, _, written = ct_study
    assert dciodvfy_errors(getattr(written, which)) == []


def test_dciodvfy_catches_a_broken_object(ct_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the check itself must be able to fail: drop a Type 1 attribute from our SEG
    _, _, written = ct_study
    ds = pydicom.dcmread(written.seg_path)
    del ds.SegmentSequence
    bad = tmp_path / "bad_seg.dcm"
    ds.save_as(bad)
    assert dciodvfy_errors(bad)


# ----------------------------------------------------------------------------- errors
def test_source_file_count_mismatch(ct_study) -> None:  # type: ignore[no-untyped-def]
    ct, _, _ = ct_study
    short = ct.with_array(ct.array, series=ct.series.replace(
        source_files=ct.series.source_files[:-1]))
    with pytest.raises(UnsupportedInputError, match=r"found 7 files for 8 slices"):
        read_source_datasets(short)


def test_source_file_position_mismatch(ct_study) -> None:  # type: ignore[no-untyped-def]
    ct, _, _ = ct_study
    shifted = Volume(array=ct.array, spacing_mm=ct.spacing_mm,
                     origin_lps_mm=tuple(np.asarray(ct.origin_lps_mm) + [0.0, 0.0, 1.0]),
                     direction_lps=ct.direction_lps, intensity_unit=ct.intensity_unit,
                     series=ct.series)
    with pytest.raises(GeometryMismatchError, match=r"matches no slice of the volume"):
        read_source_datasets(shifted)


def test_two_files_on_one_slice(ct_study) -> None:  # type: ignore[no-untyped-def]
    ct, _, _ = ct_study
    files = list(ct.series.source_files)
    files[1] = files[0]
    dup = ct.with_array(ct.array, series=ct.series.replace(source_files=tuple(files)))
    with pytest.raises(GeometryMismatchError, match=r"which another file already holds"):
        read_source_datasets(dup)


def test_source_without_position(ct_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ct, _, _ = ct_study
    files = []
    for i, f in enumerate(ct.series.source_files):
        ds = pydicom.dcmread(f)
        if i == 0:
            del ds.ImagePositionPatient
        out = tmp_path / f"{i}.dcm"
        ds.save_as(out)
        files.append(str(out))
    vol = ct.with_array(ct.array, series=ct.series.replace(source_files=tuple(files)))
    with pytest.raises(MissingAttributeError, match=r"no ImagePositionPatient \(0020,0032\)"):
        read_source_datasets(vol)


def test_empty_or_no_masks(ct_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ct, _, _ = ct_study
    with pytest.raises(InputError, match="no lesion masks"):
        write_segmentation(ct, {}, tmp_path / "s.dcm")
    empty = ct.with_array(np.zeros(SHAPE, dtype=bool))
    with pytest.raises(InputError, match="mask of lesion E holds no voxel"):
        write_segmentation(ct, {"E": empty}, tmp_path / "s.dcm")


def test_no_source_files_refused(ct_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ct, study, _ = ct_study
    bare = ct.with_array(ct.array, series=ct.series.replace(source_files=()))
    s = study_result(study.lesions, calls=study.calls, volumes={"ct": bare}, masks=study.masks)
    with pytest.raises(UnsupportedInputError, match="no series with its source files"):
        write_study_dicom(s, tmp_path)


def test_seg_on_a_multiframe_source(ct_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An enhanced (multi-frame) CT: frames are mapped to slices by their own positions."""
    ct, study, _ = ct_study
    # highdicom converts the classic files (given in shuffled file order) to one
    # Legacy Converted Enhanced CT object
    legacy = [pydicom.dcmread(f) for f in sorted(ct.series.source_files)]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=legacy, series_instance_uid=pydicom.uid.generate_uid(), series_number=3,
        sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1)
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    vol = ct.with_array(ct.array, series=ct.series.replace(
        source_files=(str(path),), sop_instance_uids=(enhanced.SOPInstanceUID,)))
    s = study_result(study.lesions, calls=study.calls, volumes={"ct": vol}, masks=study.masks)
    written = write_study_dicom(s, tmp_path / "out")
    seg = hd.seg.segread(written.seg_path)
    masks = lesion_masks(ct)
    for k, lid in enumerate(["L1", "L2"]):
        got = seg.get_volume(segment_numbers=[k + 1], combine_segments=True)
        # compare in patient space: every mask voxel centre of the SEG lies in our mask
        arr = np.asarray(got.array) != 0
        assert arr.sum() == int(np.asarray(masks[lid].array).sum())
        pts = got.map_indices_to_reference(np.argwhere(arr))
        idx = np.rint(ct.lps_to_index(pts)).astype(int)
        assert np.asarray(masks[lid].array)[tuple(idx.T)].all()
    assert dciodvfy_errors(written.seg_path) == []


def test_unreadable_or_foreign_source_files(ct_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from bonelesion.errors import NotDicomError

    ct, _, _ = ct_study
    files = [str(tmp_path / f"{i}.dcm") for i in range(ct.shape[0])]
    for src, dst in zip(ct.series.source_files, files, strict=True):
        shutil.copy(src, dst)
    vol = ct.with_array(ct.array, series=ct.series.replace(source_files=tuple(files)))
    Path(files[3]).unlink()
    with pytest.raises(NotDicomError, match=r"3\.dcm cannot be read"):
        read_source_datasets(vol)
    Path(files[3]).write_text("lesion_id,radius_mm\nL1,5\n")
    with pytest.raises(NotDicomError, match=r"3\.dcm (cannot be read as DICOM|has no "
                                            r"SOPInstanceUID or PixelData)"):
        read_source_datasets(vol)


def test_multiframe_frames_must_cover_every_slice(ct_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ct, _, _ = ct_study
    legacy = [pydicom.dcmread(f) for f in ct.series.source_files]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=legacy, series_instance_uid=pydicom.uid.generate_uid(), series_number=3,
        sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1)
    # move frame 2 onto frame 1's position: two frames on one slice, one slice without a frame
    first = enhanced.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
    second = enhanced.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
    second.ImagePositionPatient = list(first.ImagePositionPatient)
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path)
    vol = ct.with_array(ct.array, series=ct.series.replace(source_files=(str(path),)))
    with pytest.raises(GeometryMismatchError, match=r"expected each of 0–7 once"):
        read_source_datasets(vol)


def test_segment_without_source_reference_refused(ct_study) -> None:  # type: ignore[no-untyped-def]
    from bonelesion.report.dicom_sr import _referenced_segment

    _, _, written = ct_study
    seg = pydicom.dcmread(written.seg_path)
    for item in seg.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    with pytest.raises(InputError, match="references no source image"):
        _referenced_segment(seg, 1)


def test_study_result_refuses_misaligned_calls(ct_study) -> None:  # type: ignore[no-untyped-def]
    _, study, _ = ct_study
    with pytest.raises(InputError, match=r"1 calls for 2 lesions"):
        study_result(study.lesions, calls=study.calls[:1])


def test_sr_uses_standard_codes_where_they_exist() -> None:
    """Use PS3.16 codes with their standard meaning; private ones only where none exists.

    The truth is pydicom's copy of the PS3.16 tables.
    """
    from pydicom.sr._concepts_dict import concepts

    private = {k for k, c in CODES.items() if c.scheme_designator == PRIVATE_SCHEME}
    assert private == set(PRIVATE_CONCEPTS)
    for key, concept in CODES.items():
        if key in private or concept.scheme_designator == "UCUM":
            continue
        meanings = {code: meaning for by_code in concepts[concept.scheme_designator].values()
                    for code, (meaning, _) in by_code.items()}
        assert meanings.get(concept.value) == concept.meaning, (key, concept)
    # the call and its values: SNOMED CT qualifiers of PS3.16 CID 6063
    assert (CODES["malignant"].value, CODES["benign"].value,
            CODES["indeterminate"].value) == ("21594007", "30807003", "280416009")
    assert CODES["fat_fraction"].value == "129100" and CODES["probability"].value == "111047"
