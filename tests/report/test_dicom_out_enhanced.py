"""DICOM SEG + TID 1500 SR on enhanced (multi-frame) sources.

Sources: the Siemens syngo MR XA30 scanner ADC map (one Enhanced MR object, 39 frames, Pixel
Measures and Plane Orientation repeated per frame instead of shared), and the phantom's
enhanced CT / MR objects of every vendor style, as written (shared groups) and rewritten with
the per-frame layout of XA30.

Truth: the masks are spheres drawn here (phantom: the lesion centres and radii of truth.json);
the source frames are mapped to volume slices with pydicom from each frame's own
PlanePositionSequence; highdicom's ``segread`` gives the SEG back; dciodvfy (dicom3tools)
judges the objects.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from support.classify_factory import lesion
from support.dciodvfy import dciodvfy_errors
from support.report_series import write_study_views
from support.testdata import shared_path

import bonelesion
from bonelesion.errors import (
    DataQualityWarning,
    MissingAttributeError,
    UnsupportedInputError,
)
from bonelesion.model.volume import Volume
from bonelesion.phantom.study import write_study
from bonelesion.report.dicom_out import write_study_dicom
from bonelesion.report.dicom_seg import write_segmentation
from bonelesion.report.dicom_sources import read_source
from bonelesion.report.dicom_sr import write_measurement_report
from bonelesion.report.result import study_result
from bonelesion.units import IntensityUnit

#: Lesion radius on the XA30 ADC map: 3 voxels of 3 mm, well inside the 72 x 72 x 39 head.
XA30_LESION_RADIUS_MM = 9.0
#: A frame's ImagePositionPatient lies on a slice centre of the loaded volume to within this
#: (voxels): the loader and the file describe the same grid; float DS rounding only.
ATOL_SLICE_INDEX_VOXELS = 1e-3
#: SR numeric values are rounded to 6 decimals before encoding.
ATOL_SR_VALUE = 1e-6
#: DCM 121233 "Source image for segmentation" (PS3.16 TID 1411 row 9).
SOURCE_IMAGE_FOR_SEGMENTATION = "121233"
VENDORS = ("siemens", "ge", "philips")


# ----------------------------------------------------------------------------- helpers
def _load(folder: Path) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # scanner quirks: reported
        return bonelesion.load_volume(folder)


def _sphere(volume: Volume, center_lps_mm: Any, radius_mm: float) -> Volume:
    idx = np.indices(volume.shape).reshape(3, -1).T
    lps = volume.index_to_lps(idx)
    inside = np.linalg.norm(lps - np.asarray(center_lps_mm, dtype=float), axis=1) <= radius_mm
    return volume.with_array(inside.reshape(volume.shape), intensity_unit=IntensityUnit.MASK)


def _frame_slices(path: str, volume: Volume) -> list[int]:
    """Volume slice of every frame of a multi-frame file, from its own per-frame positions."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ipp = [[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
           for f in ds.PerFrameFunctionalGroupsSequence]
    idx = volume.lps_to_index(np.asarray(ipp))
    np.testing.assert_allclose(idx[:, 0], np.rint(idx[:, 0]), atol=ATOL_SLICE_INDEX_VOXELS)
    np.testing.assert_allclose(idx[:, 1:], 0.0, atol=ATOL_SLICE_INDEX_VOXELS)
    return [int(v) for v in np.rint(idx[:, 0])]


def _sr_source_references(sr: Dataset) -> list[tuple[str, list[int]]]:
    """(SOPInstanceUID, frame numbers) of every "Source image for segmentation" item."""
    found: list[tuple[str, list[int]]] = []

    def walk(items: Any) -> None:
        for item in items:
            name = item.get("ConceptNameCodeSequence")
            if (name and name[0].CodeValue == SOURCE_IMAGE_FOR_SEGMENTATION
                    and item.ValueType == "IMAGE"):
                ref = item.ReferencedSOPSequence[0]
                frames = ref.get("ReferencedFrameNumber")
                frame_list = [] if frames is None else [int(f) for f in (
                    frames if ref["ReferencedFrameNumber"].VM > 1 else [frames])]
                found.append((str(ref.ReferencedSOPInstanceUID), frame_list))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return found


def _check_seg_and_sr(volume: Volume, masks: dict[str, Volume], seg_path: Path,
                      sr_path: Path) -> None:
    """SEG gives every mask back on the source frames; SR references the right frames."""
    (path,) = volume.series.source_files
    (sop,) = volume.series.sop_instance_uids
    slices = _frame_slices(path, volume)
    n_frames = len(slices)
    seg = hd.seg.segread(seg_path)
    ids = list(masks)
    got = seg.get_pixels_by_source_frame(
        source_sop_instance_uid=sop, source_frame_numbers=list(range(1, n_frames + 1)),
        segment_numbers=list(range(1, len(ids) + 1)), assert_missing_frames_are_empty=True)
    sr = pydicom.dcmread(sr_path)
    refs = _sr_source_references(sr)
    assert {uid for uid, _ in refs} == {sop}
    referenced = sorted({f for _, frames in refs for f in frames})
    expected_frames: set[int] = set()
    for k, lid in enumerate(ids):
        want = np.asarray(masks[lid].array)[slices]  # source-frame order
        assert want.any()
        np.testing.assert_array_equal(got[..., k].astype(bool), want)
        expected_frames |= {f + 1 for f in range(n_frames) if want[f].any()}
    # the SR points at exactly the source frames that hold a lesion voxel
    assert referenced == sorted(expected_frames)
    evidence = {inst.ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for inst in series.ReferencedSOPSequence}
    assert evidence == {sop, seg.SOPInstanceUID}
    source = pydicom.dcmread(path, stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID


def _per_frame_layout(src: str, dst: Path, *, edit: Any = None) -> str:
    """Rewrite an enhanced object with Pixel Measures and Plane Orientation per frame only.

    This is how Siemens syngo MR XA and Philips write them; ``edit(ds)`` may break it more.
    """
    ds = pydicom.dcmread(src)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if keyword in shared:
            value = shared[keyword].value
            for frame in ds.PerFrameFunctionalGroupsSequence:
                setattr(frame, keyword, copy.deepcopy(value))
            delattr(shared, keyword)
    if edit is not None:
        edit(ds)
    ds.save_as(dst, enforce_file_format=True)
    return str(dst)


def _study(volume: Volume, masks: dict[str, Volume], role: str) -> Any:
    uid = volume.series.study_instance_uid
    lesions = [lesion(ct=(700.0, 820.0), adc=0.8e-3, lesion_id=lid, study=uid) for lid in masks]
    return study_result(lesions, volumes={role: volume}, masks=masks)


# ----------------------------------------------------------------------------- XA30 (real)
@pytest.fixture(scope="module")
def xa30(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Volume, dict[str, Volume],
                                                                     Any, Any]]:
    folder = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom", "11_DWI_dir80_PA")
    adc = _load(folder)
    head = np.asarray(adc.array) > 0
    center = adc.index_to_lps(np.argwhere(head).mean(axis=0, keepdims=True))[0]
    masks = {"A1": _sphere(adc, center, XA30_LESION_RADIUS_MM)}
    study = _study(adc, masks, "adc")
    out = tmp_path_factory.mktemp("xa30")
    yield adc, masks, study, write_study_dicom(study, out)


@pytest.mark.shared_data
def test_xa30_adc_map_seg_round_trip(xa30: Any) -> None:
    adc, masks, _, written = xa30
    assert adc.shape == (39, 72, 72)
    sphere = np.asarray(masks["A1"].array)
    assert sphere.sum() > 100  # 4/3·π·3³ ≈ 113 voxels
    assert (np.asarray(adc.array)[sphere] > 0).all()  # inside the head
    assert written.source_role == "adc" and written.skipped == ()
    _check_seg_and_sr(adc, masks, written.seg_path, written.sr_path)


@pytest.mark.shared_data
def test_xa30_seg_geometry_is_the_sources(xa30: Any) -> None:
    """The SEG carries the source's per-frame pixel spacing and orientation, shared."""
    adc, _, _, written = xa30
    source = pydicom.dcmread(adc.series.source_files[0], stop_before_pixels=True)
    frame = source.PerFrameFunctionalGroupsSequence[0]
    assert "PixelMeasuresSequence" not in source.SharedFunctionalGroupsSequence[0]
    seg = pydicom.dcmread(written.seg_path)
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == [
        float(v) for v in frame.PixelMeasuresSequence[0].PixelSpacing]
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [
        float(v) for v in frame.PlaneOrientationSequence[0].ImageOrientationPatient]


@pytest.mark.shared_data
def test_xa30_source_datasets_are_not_modified(xa30: Any, tmp_path: Path) -> None:
    adc, masks, _, _ = xa30
    datasets, slices = read_source(adc)
    write_segmentation(adc, masks, tmp_path / "seg.dcm", source_datasets=datasets,
                       frame_slices=slices)
    assert "PixelMeasuresSequence" not in datasets[0].SharedFunctionalGroupsSequence[0]
    assert "PlaneOrientationSequence" not in datasets[0].SharedFunctionalGroupsSequence[0]


@pytest.mark.shared_data
def test_xa30_sr_numbers(xa30: Any) -> None:
    _, _, study, written = xa30
    sr = hd.sr.srread(written.sr_path)
    (group,) = hd.sr.MeasurementReport.from_sequence([sr]).get_volumetric_roi_measurement_groups()
    ref = group.referenced_segment
    assert ref is not None and ref.referenced_segment_numbers == [1]
    values = {(x.name.meaning, x.derivation.meaning if x.derivation else None): x.value
              for x in group.get_measurements()}
    assert values[("Apparent Diffusion Coefficient", "Mean")] == pytest.approx(
        study.lesions[0].adc.adc_mean_mm2_per_s * 1e6, abs=ATOL_SR_VALUE)


@pytest.mark.shared_data
@pytest.mark.parametrize("which", ["seg_path", "sr_path"])
def test_xa30_dciodvfy_reports_no_errors(xa30: Any, which: str) -> None:
    assert dciodvfy_errors(getattr(xa30[3], which)) == []


# ----------------------------------------------------------------------------- phantom
@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    cache: dict[str, tuple[Path, Any]] = {}
    for vendor in VENDORS:
        root = tmp_path_factory.mktemp(f"phantom_{vendor}")
        truth = write_study(root / "study", vendor=vendor, enhanced=True, noise_free=True, seed=7)
        cache[vendor] = (root / "study", truth)
    return cache


def _phantom_volume(phantoms: dict[str, tuple[Path, Any]], vendor: str, role: str
                    ) -> tuple[Volume, dict[str, Volume]]:
    root, truth = phantoms[vendor]
    (series,) = [s for s in truth.series if s.role == role]
    volume = _load(root / series.path)
    assert len(volume.series.source_files) == 1  # one enhanced object
    masks = {les.lesion_id: _sphere(volume, les.center_lps_mm, les.radius_mm)
             for les in truth.lesions}
    return volume, {k: v for k, v in masks.items() if np.asarray(v.array).any()}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(("role", "layout"), [("ct", "shared"), ("adc", "shared"),
                                              ("adc", "per_frame"), ("ct", "per_frame")])
def test_phantom_enhanced_seg_sr(phantoms: dict[str, tuple[Path, Any]], vendor: str, role: str,
                                 layout: str, tmp_path: Path) -> None:
    volume, masks = _phantom_volume(phantoms, vendor, role)
    assert len(masks) >= 2  # several lesions: several segments
    if layout == "per_frame":
        path = _per_frame_layout(volume.series.source_files[0], tmp_path / "per_frame.dcm")
        volume = volume.with_array(volume.array, series=volume.series.replace(
            source_files=(path,)))
        shared = pydicom.dcmread(path, stop_before_pixels=True).SharedFunctionalGroupsSequence[0]
        assert "PixelMeasuresSequence" not in shared
    written = write_study_dicom(_study(volume, masks, role), tmp_path / "out")
    _check_seg_and_sr(volume, masks, written.seg_path, written.sr_path)
    assert dciodvfy_errors(written.seg_path) == []
    assert dciodvfy_errors(written.sr_path) == []


# ----------------------------------------------------------------------------- errors
@pytest.fixture
def siemens_adc(phantoms: dict[str, tuple[Path, Any]]) -> tuple[Volume, dict[str, Volume]]:
    return _phantom_volume(phantoms, "siemens", "adc")


def _broken(volume: Volume, tmp_path: Path, edit: Any) -> Volume:
    path = _per_frame_layout(volume.series.source_files[0], tmp_path / "broken.dcm", edit=edit)
    return volume.with_array(volume.array, series=volume.series.replace(source_files=(path,)))


def _frame(ds: Dataset, k: int) -> Dataset:
    return ds.PerFrameFunctionalGroupsSequence[k - 1]


def test_per_frame_spacing_must_agree(siemens_adc: Any, tmp_path: Path) -> None:
    volume, masks = siemens_adc

    def edit(ds: Dataset) -> None:
        _frame(ds, 2).PixelMeasuresSequence[0].PixelSpacing = [9.0, 9.0]

    with pytest.raises(UnsupportedInputError, match=r"series [\d.]+ \(file .*broken\.dcm\): "
                       r"PixelSpacing of frame 2 is \[9\.0, 9\.0\], expected the value of "
                       r"frame 1 .*Potential fix"):
        write_segmentation(_broken(volume, tmp_path, edit), masks, tmp_path / "seg.dcm")


def test_per_frame_orientation_must_agree(siemens_adc: Any, tmp_path: Path) -> None:
    volume, masks = siemens_adc

    def edit(ds: Dataset) -> None:
        _frame(ds, 3).PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

    with pytest.raises(UnsupportedInputError, match=r"ImageOrientationPatient of frame 3 is"):
        write_segmentation(_broken(volume, tmp_path, edit), masks, tmp_path / "seg.dcm")


def test_geometry_missing_in_shared_and_per_frame(siemens_adc: Any, tmp_path: Path) -> None:
    volume, masks = siemens_adc

    def edit(ds: Dataset) -> None:
        del _frame(ds, 3).PlaneOrientationSequence

    with pytest.raises(MissingAttributeError, match=r"frame 3, has no PlaneOrientationSequence "
                       r"in the shared or the per-frame functional groups"):
        write_segmentation(_broken(volume, tmp_path, edit), masks, tmp_path / "seg.dcm")


def test_pixel_measures_without_spacing(siemens_adc: Any, tmp_path: Path) -> None:
    volume, masks = siemens_adc

    def edit(ds: Dataset) -> None:
        del _frame(ds, 1).PixelMeasuresSequence[0].PixelSpacing

    with pytest.raises(MissingAttributeError, match=r"frame 1, PixelMeasuresSequence has no "
                       r"PixelSpacing"):
        write_segmentation(_broken(volume, tmp_path, edit), masks, tmp_path / "seg.dcm")


def test_highdicom_failure_names_the_series(siemens_adc: Any, tmp_path: Path) -> None:
    """A source highdicom cannot build on: our error, naming series and file, not a bare one."""
    volume, masks = siemens_adc

    def edit(ds: Dataset) -> None:
        # an orientation shared *and* inconsistent with the frames' positions is fine for
        # highdicom; a shared orientation that is not a pair of unit vectors is not
        ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = copy.deepcopy(
            _frame(ds, 1).PlaneOrientationSequence)
        ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[
            0].ImageOrientationPatient = [0, 0, 0, 0, 0, 0]

    uid = volume.series.series_instance_uid
    with pytest.raises(UnsupportedInputError, match=(
            rf"DICOM SEG on series {uid} \(file .*broken\.dcm\): highdicom [\d.]+ cannot build "
            r"a Segmentation on this source \((ValueError|AttributeError|TypeError|KeyError|"
            r"IndexError): .*\); expected .*Potential fix")):
        write_segmentation(_broken(volume, tmp_path, edit), masks, tmp_path / "seg.dcm")


def test_sr_failure_names_the_series(siemens_adc: Any, tmp_path: Path) -> None:
    volume, masks = siemens_adc
    datasets, slices = read_source(volume)
    seg, numbers = write_segmentation(volume, masks, tmp_path / "seg.dcm",
                                      source_datasets=datasets, frame_slices=slices)
    broken = copy.deepcopy(datasets[0])
    del broken.SOPClassUID  # evidence needs each source's SOP class
    with pytest.raises(UnsupportedInputError, match=(
            rf"DICOM SR of study [\d.]+ on series {volume.series.series_instance_uid} "
            r"\(file .*\): highdicom [\d.]+ cannot build the Comprehensive 3D SR "
            r"\(AttributeError: .*SOPClassUID.*\).*Potential fix")):
        write_measurement_report(_study(volume, masks, "adc"), seg, numbers, [broken],
                                 tmp_path / "sr.dcm")


def _ct_and_adc_study(phantoms: dict[str, tuple[Path, Any]], tmp_path: Path, *,
                      break_adc: bool) -> tuple[Any, Volume, Volume]:
    ct, masks = _phantom_volume(phantoms, "siemens", "ct")

    def spacing(ds: Dataset) -> None:
        _frame(ds, 2).PixelMeasuresSequence[0].PixelSpacing = [9.0, 9.0]

    bad_ct = _broken(ct, tmp_path, spacing)
    adc, _ = _phantom_volume(phantoms, "siemens", "adc")
    if break_adc:
        adc_dir = tmp_path / "adc"
        adc_dir.mkdir()
        adc = _broken(adc, adc_dir, spacing)
    uid = ct.series.study_instance_uid
    lesions = [lesion(ct=(700.0, 820.0), lesion_id=lid, study=uid) for lid in masks]
    study = study_result(lesions, volumes={"ct": bad_ct, "adc": adc}, masks=masks)
    return study, bad_ct, adc


def test_falls_back_to_the_next_series(phantoms: dict[str, tuple[Path, Any]],
                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    study, bad_ct, adc = _ct_and_adc_study(phantoms, tmp_path, break_adc=False)
    written = write_study_dicom(study, tmp_path / "out")
    assert written.source_role == "adc"
    (reason,) = written.skipped
    assert reason.startswith(f"ct series {bad_ct.series.series_instance_uid}: ")
    assert "PixelSpacing of frame 2" in reason
    assert f"not written on ct series {bad_ct.series.series_instance_uid}" in caplog.text
    seg = hd.seg.segread(written.seg_path)
    assert {s.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence[0]
            .ReferencedInstanceSequence} == set(adc.series.sop_instance_uids)
    # masks drawn on the CT grid, resampled onto the ADC grid: every lesion has a segment
    assert seg.get_segment_numbers() == list(range(1, len(study.masks) + 1))


def test_no_series_can_carry_it(phantoms: dict[str, tuple[Path, Any]], tmp_path: Path) -> None:
    study, bad_ct, adc = _ct_and_adc_study(phantoms, tmp_path, break_adc=True)
    with pytest.raises(UnsupportedInputError, match=(
            rf"no series can carry the SEG/SR; tried 2: ct series "
            rf"{bad_ct.series.series_instance_uid}: .* \| adc series "
            rf"{adc.series.series_instance_uid}: .*Potential fix")):
        write_study_dicom(study, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.dcm"))  # nothing half-written


def test_study_without_masks(siemens_adc: Any, tmp_path: Path) -> None:
    volume, masks = siemens_adc
    study = _study(volume, masks, "adc")
    bare = study_result(study.lesions, calls=study.calls, volumes=study.volumes, masks={})
    with pytest.raises(ValueError, match=r"no lesion has a mask\. Potential fix"):
        write_study_dicom(bare, tmp_path)


def test_report_writer_keeps_the_other_outputs(siemens_adc: Any, tmp_path: Path) -> None:
    """One study's SEG/SR fails: a message naming its series; JSON, CSV and HTML written."""
    volume, masks = siemens_adc

    def spacing(ds: Dataset) -> None:
        _frame(ds, 2).PixelMeasuresSequence[0].PixelSpacing = [9.0, 9.0]

    bad = _broken(volume, tmp_path, spacing)
    out = tmp_path / "report"
    write_study_views(out, _study(bad, masks, "adc"), qc=False)
    assert (out / "results.json").exists()
    assert (out / "lesions.csv").exists()
    assert (out / "report.html").exists()
    assert not list(out.rglob("*.dcm"))
    import json

    document = json.loads((out / "results.json").read_text())
    text = " ".join(str(w) for w in document["warnings"])
    assert f"series {bad.series.series_instance_uid}" in text
    assert "PixelSpacing of frame 2" in text
    assert "AttributeError" not in text


# ----------------------------------------------------------------------------- multi-stack
def _load_stacks(folder: Path) -> list[Volume]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return [s.volume for s in bonelesion.load_series(folder) if s.volume is not None]


@pytest.mark.shared_data
@pytest.mark.parametrize("frame_type", ["M", "FIELD_MAP"])
def test_philips_field_map_one_stack_of_two(frame_type: str, tmp_path: Path) -> None:
    """One Philips object, magnitude and field-map frames at the same 32 positions.

    The SEG of one stack references exactly that stack's frames.
    """
    folder = shared_path("enhanced_philips_siemens_small", "dicom", "Philips")
    (volume,) = [v for v in _load_stacks(folder) if v.series.image_type[-1] == frame_type]
    (path,) = volume.series.source_files
    (sop,) = volume.series.sop_instance_uids
    source = pydicom.dcmread(path, stop_before_pixels=True)
    own = [k + 1 for k, f in enumerate(source.PerFrameFunctionalGroupsSequence)
           if f.MRImageFrameTypeSequence[0].FrameType[3] == frame_type]
    assert len(own) == volume.shape[0] == source.NumberOfFrames // 2
    ipp = np.asarray([[float(v) for v in source.PerFrameFunctionalGroupsSequence[k - 1]
                       .PlanePositionSequence[0].ImagePositionPatient] for k in own])
    slice_of_frame = dict(zip(own, np.rint(volume.lps_to_index(ipp)[:, 0]).astype(int),
                              strict=True))
    center = volume.index_to_lps(np.asarray([[16.0, 32.0, 32.0]]))[0]
    masks = {"F1": _sphere(volume, center, 12.0)}
    written = write_study_dicom(_study(volume, masks, "other"), tmp_path)
    seg = hd.seg.segread(written.seg_path)
    got = seg.get_pixels_by_source_frame(source_sop_instance_uid=sop, source_frame_numbers=own,
                                         segment_numbers=[1], assert_missing_frames_are_empty=True)
    want = np.asarray(masks["F1"].array)[[slice_of_frame[k] for k in own]]
    np.testing.assert_array_equal(got[..., 0].astype(bool), want)
    referenced = {int(src.ReferencedFrameNumber)
                  for item in pydicom.dcmread(written.seg_path).PerFrameFunctionalGroupsSequence
                  for der in item.DerivationImageSequence for src in der.SourceImageSequence}
    expected = {k for k in own if want[own.index(k)].any()}
    assert referenced == expected  # no frame of the other stack
    refs = _sr_source_references(pydicom.dcmread(written.sr_path))
    assert {u for u, _ in refs} == {sop}
    assert sorted({f for _, frames in refs for f in frames}) == sorted(expected)
    assert dciodvfy_errors(written.seg_path) == []
    assert dciodvfy_errors(written.sr_path) == []


def test_multi_stack_object_without_a_matching_stack(siemens_adc: Any) -> None:
    """An object with more frames than slices, none of whose stacks is the volume's."""
    volume, _ = siemens_adc
    src = pydicom.dcmread(volume.series.source_files[0], stop_before_pixels=True)
    n = volume.shape[0]
    half = Volume(array=np.asarray(volume.array)[: n // 2], spacing_mm=volume.spacing_mm,
                  origin_lps_mm=volume.origin_lps_mm, direction_lps=volume.direction_lps,
                  intensity_unit=volume.intensity_unit, series=volume.series)  # < frames
    with pytest.raises(UnsupportedInputError, match=(
            rf"holds {src.NumberOfFrames} frames in 1 stacks; expected exactly one stack of "
            rf"{n // 2} frames with the volume's image type, echo time, b-value and direction, "
            r"found 0\. Potential fix")):
        read_source(half)


@pytest.mark.shared_data
def test_source_without_frame_of_reference_named(tmp_path: Path) -> None:
    """A stripped Philips enhanced DTI (no FrameOfReferenceUID): refused, series named."""
    folder = shared_path("multivendor_cases_dicom2nifti", "dicom", "philips_enhanced")
    volume = _load_stacks(folder)[0]
    masks = {"D1": _sphere(volume, volume.index_to_lps(
        np.asarray([[4.0, 64.0, 64.0]]))[0], 10.0)}
    # the stack is found among the object's four (b = 0 and three directions)
    _, slices = read_source(volume)
    assert sum(s >= 0 for s in slices) == volume.shape[0] < len(slices)
    with pytest.raises(UnsupportedInputError, match=(
            rf"DICOM SEG on series {volume.series.series_instance_uid} \(file .*\): highdicom "
            r"[\d.]+ cannot build a Segmentation on this source \(ValueError: Source images "
            r"have no Frame Of Reference UID")):
        write_study_dicom(_study(volume, masks, "dwi"), tmp_path)
    assert not list(tmp_path.glob("*.dcm"))


# ----------------------------------------------------------------------------- batch
@pytest.mark.shared_data
def test_batch_run_on_xa30_writes_seg_and_sr(tmp_path: Path) -> None:
    """The batch runner on the XA30 export: SEG and SR written, no "not written" note."""
    import csv
    import io
    import json

    from bonelesion.batch import Progress, run_export

    export = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom")
    adc = _load(export / "11_DWI_dir80_PA")
    head = np.asarray(adc.array) > 0
    centre = adc.index_to_lps(np.argwhere(head).mean(axis=0, keepdims=True))[0]
    rois = tmp_path / "rois.csv"
    with open(rois, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["lesion_id", "center_l_mm", "center_p_mm", "center_s_mm", "radius_mm",
                    "study_instance_uid", "treated"])
        w.writerow(["centre", *(f"{v:.4f}" for v in centre), XA30_LESION_RADIUS_MM,
                    adc.series.study_instance_uid, "false"])
    out = tmp_path / "out"
    summary = run_export("mr_multiparametric", export, out, rois=rois,
                         progress=Progress(0, stream=io.StringIO(), tty=False))
    assert summary.exit_code == 0, summary.failures
    (seg_path,) = out.rglob("seg_*.dcm")
    (sr_path,) = out.rglob("sr_*.dcm")
    text = json.dumps(json.loads((out / "results.json").read_text()))
    assert "SEG/SR" not in text and "PixelMeasuresSequence" not in text
    seg = hd.seg.segread(seg_path)
    (series,) = seg.ReferencedSeriesSequence
    export_series = {str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID)
                     for f in export.rglob("*.dcm")}
    assert series.SeriesInstanceUID in export_series
    assert seg.get_segment_numbers() == [1]
    refs = _sr_source_references(pydicom.dcmread(sr_path))
    assert {u for u, _ in refs} <= {str(i.ReferencedSOPInstanceUID)
                                    for i in series.ReferencedInstanceSequence}
