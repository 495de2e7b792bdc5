"""SEG and QC views drawn from lesions on their bounding boxes (no full-volume masks).

Truth: each lesion's whole-grid mask (`Lesion.mask_on`, itself pinned to brute force in
tests/roi), the source files' own headers, highdicom's reading of the SEG and dciodvfy.
Lesions given as `Lesion`s (spheres) must give the same SEG segments and the same QC PNG as
their full-grid mask volumes; overlapping lesions (measured each on its own) keep their own
segments.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from support.classify_factory import lesion
from support.dciodvfy import dciodvfy_errors
from support.report_series import write_ct_series

from bonelesion.model.volume import Volume
from bonelesion.report import dicom_seg
from bonelesion.report.dicom_out import write_study_dicom
from bonelesion.report.dicom_seg import write_segmentation
from bonelesion.report.result import study_result
from bonelesion.roi.lesion import Lesion, Sphere


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    return write_ct_series(tmp_path_factory.mktemp("ct_boxes") / "series")


def _sphere(ct: Volume, lid: str, idx: tuple[float, float, float], radius_mm: float) -> Lesion:
    centre = ct.index_to_lps([idx])[0]
    return Lesion(lesion_id=lid, sphere=Sphere(tuple(float(v) for v in centre), radius_mm),
                  frame_of_reference_uid=ct.series.frame_of_reference_uid)


def _segments(seg_path: Path, ct: Volume, n: int) -> np.ndarray:
    seg = hd.seg.segread(seg_path)
    assert seg.get_segment_numbers() == list(range(1, n + 1))
    return np.asarray(seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(ct.series.sop_instance_uids),
        segment_numbers=list(range(1, n + 1)), ignore_spatial_locations=False)).astype(bool)


@pytest.mark.parametrize("overlap", [False, True], ids=["label_map", "overlapping"])
def test_seg_of_lesions_equals_their_whole_masks(ct: Volume, tmp_path: Path,
                                                 overlap: bool) -> None:
    lesions = [_sphere(ct, "A", (2.0, 10.0, 12.0), 3.5), _sphere(ct, "B", (5.0, 28.0, 35.0), 4.0),
               _sphere(ct, "C", (6.6, 30.0, 8.0), 2.0)]
    if overlap:  # D shares voxels with B; E lies wholly inside B
        lesions += [_sphere(ct, "D", (5.0, 30.5, 37.0), 3.0),
                    _sphere(ct, "E", (5.0, 27.5, 35.0), 1.5)]
    truth = {le.lesion_id: np.asarray(le.mask_on(ct).array) for le in lesions}
    shared = sum(m.astype(int) for m in truth.values()) > 1
    assert shared.any() == overlap
    seg_path = tmp_path / "seg.dcm"
    _, numbers = write_segmentation(ct, {le.lesion_id: le for le in lesions}, seg_path)
    assert list(numbers) == [le.lesion_id for le in lesions]
    pixels = _segments(seg_path, ct, len(lesions))
    for k, le in enumerate(lesions):
        np.testing.assert_array_equal(pixels[..., k], truth[le.lesion_id])
    ds = pydicom.dcmread(seg_path)
    assert ds.SegmentsOverlap == ("YES" if overlap else "NO")
    touched = {s for m in truth.values() for s in np.flatnonzero(m.any(axis=(1, 2)))}
    referenced = {item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for item in ds.PerFrameFunctionalGroupsSequence}
    assert referenced == {ct.series.sop_instance_uids[s] for s in touched}
    assert dciodvfy_errors(seg_path) == []
    if overlap:
        # the frames and pixels highdicom makes from one binary array per lesion
        dense = tmp_path / "seg_dense.dcm"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dicom_seg, "_label_map", lambda shape, boxed: (
                _real_label_map(shape, boxed)[0], None, True))
            write_segmentation(ct, {le.lesion_id: le for le in lesions}, dense)
        ref = pydicom.dcmread(dense)
        assert ds.NumberOfFrames == ref.NumberOfFrames and ds.PixelData == ref.PixelData
        assert _frames(ds) == _frames(ref)
    # the same SEG from the full-grid mask volumes
    full = tmp_path / "seg_full.dcm"
    write_segmentation(ct, {lid: ct.with_array(m) for lid, m in truth.items()}, full)
    np.testing.assert_array_equal(_segments(full, ct, len(lesions)), pixels)


_real_label_map = dicom_seg._label_map


def _frames(ds: pydicom.Dataset) -> list[tuple[int, tuple[float, ...], tuple[int, ...]]]:
    return [(int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
             tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient),
             tuple(int(v) for v in f.FrameContentSequence[0].DimensionIndexValues))
            for f in ds.PerFrameFunctionalGroupsSequence]


def test_seg_of_lesions_sharing_their_only_pixel(ct: Volume, tmp_path: Path) -> None:
    # two lesions of the same single voxel: no label map can hold both (binary planes)
    twins = [_sphere(ct, "T1", (3.0, 20.0, 20.0), 0.2), _sphere(ct, "T2", (3.0, 20.0, 20.0), 0.3)]
    seg_path = tmp_path / "twins.dcm"
    write_segmentation(ct, {le.lesion_id: le for le in twins}, seg_path)
    pixels = _segments(seg_path, ct, 2)
    for k, le in enumerate(twins):
        truth = np.asarray(le.mask_on(ct).array)
        assert truth.sum() == 1
        np.testing.assert_array_equal(pixels[..., k], truth)
    assert pydicom.dcmread(seg_path).SegmentsOverlap == "YES"
    assert dciodvfy_errors(seg_path) == []


def test_study_dicom_from_lesions(ct: Volume, tmp_path: Path) -> None:
    uid = ct.series.study_instance_uid
    shapes = {"L1": _sphere(ct, "L1", (3.0, 14.0, 14.0), 4.0),
              "L2": _sphere(ct, "L2", (4.0, 26.0, 32.0), 4.5)}
    measurements = [lesion(ct=(700.0, 820.0), lesion_id=lid, study=uid) for lid in shapes]
    written = write_study_dicom(study_result(measurements, volumes={"ct": ct}, masks=shapes),
                                tmp_path / "dicom")
    assert written.source_role == "ct" and written.segment_numbers == {"L1": 1, "L2": 2}
    pixels = _segments(written.seg_path, ct, 2)
    for k, le in enumerate(shapes.values()):
        np.testing.assert_array_equal(pixels[..., k], np.asarray(le.mask_on(ct).array))
    assert dciodvfy_errors(written.seg_path) == [] and dciodvfy_errors(written.sr_path) == []


