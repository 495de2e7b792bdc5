"""DICOM out on real scanner data: GE CT/e bone phantom (1998, headerless raw data sets).

Truth: the bone block's mask is a connected-component threshold (> 1000 HU) of the loaded
volume; the SEG must give it back voxel for voxel on the scanner's own SOP instances, and
neither SEG nor SR may add a dciodvfy error (the source files have their own).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from scipy import ndimage
from support.classify_factory import lesion
from support.dciodvfy import dciodvfy_errors
from support.testdata import shared_path

import bonelesion
from bonelesion.errors import DataQualityWarning
from bonelesion.report.dicom_out import StudyDicom, write_study_dicom
from bonelesion.report.result import study_result
from bonelesion.units import IntensityUnit

BONE_FLOOR_HU = 1000.0  # MANIFEST: bone blocks reach +1300 to +1430 HU, tissue far below


def _load(folder: Path) -> bonelesion.Volume:
    """The series of ``folder`` (its DataQualityWarnings, expected for these files, muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return bonelesion.load_volume(folder)


def _write_one_lesion(ct: bonelesion.Volume, mask: np.ndarray, lesion_id: str,
                      out: Path) -> StudyDicom:
    """SEG and SR of a study with one lesion, ``mask`` on ``ct``, measured on ``ct``."""
    arr = np.asarray(ct.array)
    study = study_result(
        [lesion(ct=(float(arr[mask].mean()), float(arr[mask].max())), lesion_id=lesion_id,
                study=ct.series.study_instance_uid)],
        volumes={"ct": ct},
        masks={lesion_id: ct.with_array(mask, intensity_unit=IntensityUnit.MASK)})
    return write_study_dicom(study, out)


@pytest.mark.shared_data
def test_seg_sr_on_ge_ctpace_bone_phantom(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                          ) -> None:
    ct = _load(shared_path("ct_bone_phantom_ge_ctpace", "dicom"))  # headerless files
    arr = np.asarray(ct.array)
    labels, n = ndimage.label(arr > BONE_FLOOR_HU)
    sizes = ndimage.sum(np.ones_like(arr), labels, range(1, n + 1))
    mask = labels == int(np.argmax(sizes)) + 1
    written = _write_one_lesion(ct, mask, "block", tmp_path)
    # highdicom warns about the source's single-component PatientName: logged, value withheld
    assert "value withheld" in caplog.text
    assert "BAREX" not in caplog.text.upper()
    seg = hd.seg.segread(written.seg_path)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(ct.series.sop_instance_uids), segment_numbers=[1])
    np.testing.assert_array_equal(pixels[..., 0].astype(bool), mask)
    sr = hd.sr.srread(written.sr_path)
    (group,) = hd.sr.MeasurementReport.from_sequence([sr]).get_volumetric_roi_measurement_groups()
    assert group.referenced_segment.referenced_segment_numbers == [1]
    mean = {(x.name.meaning, x.derivation.meaning if x.derivation else None): x.value
            for x in group.get_measurements()}[("Attenuation Coefficient", "Mean")]
    assert mean == pytest.approx(float(arr[mask].mean()), abs=1e-6)
    assert 1300.0 - 100.0 < mean < 1430.0  # MANIFEST range, less the block's edge voxels
    for path in (written.seg_path, written.sr_path):
        assert dciodvfy_errors(path) == []


@pytest.mark.shared_data
def test_seg_sr_on_a_source_whose_anonymiser_blanked_its_uids(tmp_path: Path) -> None:
    """Siemens Biograph PET/CT CT (TotalSegmentator's tests): SOPClassUID, SOPInstanceUID,
    SeriesInstanceUID and StudyInstanceUID are blank in every file. highdicom failed on it
    (KeyError ''); the SEG/SR now reference each file by its file meta SOP instance, in the
    reader's substituted series and study, and add no dciodvfy error."""
    import pydicom

    ct = _load(shared_path("ct_siemens_biograph_j2k_spine", "dicom"))
    metas = {}
    for path in ct.series.source_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert not ds.get("SOPInstanceUID") and not ds.get("SeriesInstanceUID")
        metas[str(ds.file_meta.MediaStorageSOPInstanceUID)] = ds.ImagePositionPatient
    mask = np.zeros(ct.shape, dtype=bool)
    mask[8:12, 240:260, 240:260] = True
    written = _write_one_lesion(ct, mask, "box", tmp_path)
    seg = hd.seg.segread(written.seg_path)
    assert seg.StudyInstanceUID == ct.series.study_instance_uid
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == ct.series.series_instance_uid
    referenced = {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence}
    assert referenced and referenced <= set(metas)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=list(ct.series.sop_instance_uids), segment_numbers=[1])
    np.testing.assert_array_equal(pixels[..., 0].astype(bool), mask)
    for path in (written.seg_path, written.sr_path):
        assert dciodvfy_errors(path) == []
