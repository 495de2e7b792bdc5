"""Stack roles of objects that are not volumes: localizers, screen captures, dose reports;
and each stack's own role in an enhanced object holding several contrasts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bonelesion.cli.main import main
from bonelesion.dicom.index import Catalogue, index_export
from bonelesion.dicom.series import load_series
from bonelesion.dicom.vendors import SeriesRole, classify_stack, stack_role

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def _header(**values: object) -> Dataset:
    ds = Dataset()
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize("values, role, reason", [
    ({"Modality": "CT", "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, "localizer", "ImageType LOCALIZER"),
    ({"Modality": "MR", "SeriesDescription": "3-Plane Loc"}, "localizer", "SeriesDescription"),
    ({"Modality": "CT", "SeriesDescription": "Topogram  0.6  T20s"}, "localizer", "SeriesDescription"),
    ({"Modality": "CT", "SOPClassUID": SECONDARY_CAPTURE, "ImageType": ["DERIVED", "SECONDARY", "AXIAL"]},
     "other", "Secondary Capture"),
    ({"Modality": "CT", "SeriesDescription": "Dose Report"}, "other", "dose report"),
    ({"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
      "ImageType": ["DERIVED", "SECONDARY", "AXIAL"]}, "ct", ""),  # a real reformatted CT
    ({"Modality": "CT", "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
      "SeriesDescription": "Bone 1.0 Location L3"}, "ct", ""),
])
def test_role_and_reason(values: dict[str, object], role: str, reason: str) -> None:
    call = classify_stack(_header(**values))
    assert call.role is SeriesRole(role) and stack_role(_header(**values)) is SeriesRole(role)
    assert (reason in call.reason) if reason else call.reason == ""


def _mark(description: str, sop_class: str | None = None, image_type: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    def per_slice(k: int, ds: Dataset) -> None:
        ds.SeriesDescription = description
        if image_type:
            ds.ImageType = list(image_type)
        if sop_class:
            ds.SOPClassUID = sop_class
            ds.file_meta.MediaStorageSOPClassUID = sop_class
    return per_slice


def test_non_volumes_are_listed_with_role_and_reason(tmp_path: Path, ct_writer, capsys) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    ct_writer(export / "ct", n=3, per_slice=_mark("Abdomen 1.0 Br64"))
    ct_writer(export / "scout", n=1, per_slice=_mark("Topogram", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")))
    ct_writer(export / "sc", n=1, per_slice=_mark("Screen Save", SECONDARY_CAPTURE, ("DERIVED", "SECONDARY", "AXIAL")))
    stacks = {s.info.series_description: s for s in load_series(export, decode=False)}
    assert {k: (s.info.role, bool(s.role_reason)) for k, s in stacks.items()} == {
        "Abdomen 1.0 Br64": ("ct", False), "Topogram": ("localizer", True),
        "Screen Save": ("other", True)}
    assert "Secondary Capture" in stacks["Screen Save"].role_reason
    assert main(["-q", "series", str(export)]) == 0
    listing = capsys.readouterr().out
    assert "localizer" in listing and "Secondary Capture" in listing
    index_export(export, tmp_path / "cat.sqlite", workers=1)
    with Catalogue(tmp_path / "cat.sqlite") as cat:
        roles = {s.series_description: [(st.role, st.role_reason) for st in cat.stacks(s.series_instance_uid)]
                 for s in cat.series()}
        sc = [r for r in cat.files(status=None) if r.path.startswith("sc/")]
    assert roles["Abdomen 1.0 Br64"] == [("ct", "")]
    assert roles["Topogram"][0][0] == "localizer" and "LOCALIZER" in roles["Topogram"][0][1]
    # Secondary Capture is not a supported SOP class of the catalogue: listed with its reason
    assert sc[0].status == "unsupported_sop_class" and sc[0].role == "other"
    assert "Secondary Capture" in sc[0].stack_role_reasons[0]


def _enhanced_dual_echo(path: Path) -> None:
    """An enhanced MR object holding in-phase and opposed-phase frames (2 slices each)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "MR", "SIEMENS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientID, ds.PatientName = "PID-ROLES-7", "Doe^Jane"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "MIXED", "NONE"]
    ds.Rows = ds.Columns = 4
    ds.NumberOfFrames = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [1.0, 1.0], 3.0
    plane = Dataset()
    plane.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k, (phase, te) in enumerate([("IN_PHASE", 4.6), ("IN_PHASE", 4.6),
                                      ("OUT_PHASE", 2.3), ("OUT_PHASE", 2.3)]):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, 3.0 * (k % 2)]
        item.PlanePositionSequence = Sequence([pos])
        frame_type = Dataset()
        frame_type.FrameType = ["ORIGINAL", "PRIMARY", phase, "NONE"]
        item.MRImageFrameTypeSequence = Sequence([frame_type])
        echo = Dataset()
        echo.EffectiveEchoTime = te
        item.MREchoSequence = Sequence([echo])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_each_stack_of_a_multi_contrast_object_has_its_own_role(tmp_path: Path) -> None:
    export = tmp_path / "export"
    _enhanced_dual_echo(export / "dixon" / "enh.dcm")
    reader = sorted(s.info.role for s in load_series(export, decode=False))
    assert reader == ["dixon_in_phase", "dixon_opposed_phase"]
    index_export(export, tmp_path / "cat.sqlite", workers=1)
    with Catalogue(tmp_path / "cat.sqlite") as cat:
        (series,) = cat.series()
        (study,) = cat.studies()
        catalogue = sorted(s.role for s in cat.stacks(series.series_instance_uid))
        identity = cat.patient_identity(study.study_instance_uid)
        unknown = cat.patient_identity("1.2.3.4.nowhere")
    assert catalogue == reader  # not the first frame's role for both
    assert identity == ("PID-ROLES-7", "Doe^Jane") and unknown == ("", "")
    assert b"PID-ROLES-7" not in (tmp_path / "cat.sqlite").read_bytes()
