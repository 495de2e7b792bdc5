"""Write small CT series as real DICOM files (pydicom) with analytically known geometry.

Used by the report tests for SEG/SR/QC; the Volume is built from the same known geometry,
not by the code under test. Files are written in shuffled order with reversed
InstanceNumbers so that anything sorting by file order or InstanceNumber fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.units import IntensityUnit

SHAPE = (8, 40, 48)  # slices, rows, columns
SPACING_MM = (2.5, 0.8, 0.7)  # slice, row, column
# non-identity direction: columns run right→left (L), rows anterior→posterior (P)
ROW_DIR = np.array([0.0, 1.0, 0.0])
COL_DIR = np.array([1.0, 0.0, 0.0])
SLICE_DIR = np.array([0.0, 0.0, 1.0])  # = cross(col, row): the reader's slice order
ORIGIN_LPS_MM = np.array([-20.0, -15.0, 100.0])
BACKGROUND_HU = 40.0
RESCALE_INTERCEPT = -1024.0


def ball(center: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of ``center`` (a voxel index)."""
    s, r, c = np.indices(SHAPE)
    d2 = (((s - center[0]) * SPACING_MM[0]) ** 2 + ((r - center[1]) * SPACING_MM[1]) ** 2
          + ((c - center[2]) * SPACING_MM[2]) ** 2)
    return d2 <= radius_mm**2


#: lesion id → (centre voxel index, radius in mm, HU)
LESIONS = {"L1": ((3.0, 14.0, 14.0), 4.0, 700.0), "L2": ((4.0, 26.0, 32.0), 4.5, 1200.0)}


def ct_array() -> np.ndarray:
    arr = np.full(SHAPE, BACKGROUND_HU)
    for center, radius, hu in LESIONS.values():
        arr[ball(center, radius)] = hu
    return arr


def write_ct_series(folder: Path, seed: int = 7) -> Volume:
    """Write the CT series into ``folder`` and return its Volume (known geometry)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = ct_array()
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    direction = np.column_stack([SLICE_DIR, ROW_DIR, COL_DIR])
    order = rng.permutation(SHAPE[0])
    paths = {}
    for k, s in enumerate(order):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"img_{k:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = "Phantom^Report", "PHANTOM01"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyDate, ds.StudyTime = "20260101", "120000"
        ds.SeriesDate, ds.SeriesTime = "20260101", "120000"
        ds.ContentDate, ds.ContentTime = "20260101", "120000"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "", "1", ""
        ds.Manufacturer = "bonelesion-test"
        ds.SeriesNumber = 2
        ds.InstanceNumber = int(SHAPE[0] - s)  # reversed on purpose
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        ds.PatientPosition, ds.Laterality, ds.AcquisitionNumber = "HFS", "", 1
        ds.PositionReferenceIndicator = ""
        ds.ImageOrientationPatient = [*map(float, COL_DIR), *map(float, ROW_DIR)]
        ipp = ORIGIN_LPS_MM + s * SPACING_MM[0] * SLICE_DIR
        ds.ImagePositionPatient = [float(v) for v in ipp]
        ds.SliceLocation = float(ipp[2])
        ds.PixelSpacing = [SPACING_MM[1], SPACING_MM[2]]
        ds.SliceThickness = SPACING_MM[0]
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = RESCALE_INTERCEPT, 1.0, "HU"
        ds.WindowCenter, ds.WindowWidth = 500, 2000
        ds.PixelData = (arr[s] - RESCALE_INTERCEPT).astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths[s] = (str(path), sop)
    files = [paths[s][0] for s in range(SHAPE[0])]
    sops = [paths[s][1] for s in range(SHAPE[0])]
    info = SeriesInfo(series_instance_uid=series_uid, frame_of_reference_uid=for_uid,
                      study_instance_uid=study_uid, modality="CT", manufacturer="bonelesion-test",
                      role="ct", sop_instance_uids=tuple(sops), source_files=tuple(files))
    return Volume(array=arr, spacing_mm=SPACING_MM, origin_lps_mm=tuple(ORIGIN_LPS_MM),
                  direction_lps=direction, intensity_unit=IntensityUnit.HU, series=info)


def lesion_masks(ct: Volume) -> dict[str, Volume]:
    """Boolean mask volumes of the two lesions on the CT grid."""
    return {lid: ct.with_array(ball(center, radius), intensity_unit=IntensityUnit.MASK)
            for lid, (center, radius, _) in LESIONS.items()}


def write_study_views(folder: Path, study: object, *, command: list[str] | None = None,
                      qc: bool = True, dicom: bool = True, html: bool = True
                      ) -> tuple[dict, list]:
    """Every view of one `StudyResult` through the one writer (document, then outputs)."""
    from bonelesion.classify import ClassifierConfig
    from bonelesion.config import config_to_dict
    from bonelesion.report.document import study_document
    from bonelesion.report.outputs import OutputOptions, write_study_outputs
    from bonelesion.report.result import StudyResult

    assert isinstance(study, StudyResult)
    plan = {"study_instance_uid": study.study_instance_uid, "roles": [], "stages": [],
            "skipped_stages": {}, "refusal": ""}
    document = study_document(
        study, patient="PHANTOM01", pipeline={"name": "test", "description": "", "hash": ""},
        plan=plan, config={"stages": {}, "classifier": config_to_dict(ClassifierConfig())},
        model=None, rois={"kind": "none", "path": None, "sha256": None}, command=command,
        warnings=list(study.warnings))
    return write_study_outputs(folder, study, document,
                               options=OutputOptions(qc=qc, dicom=dicom, html=html))


def study_documents(out: Path) -> dict[str, tuple[Path, dict]]:
    """Per study of a measure/run output folder: (its folder, its results.json document).

    Every document read (the batch one and each study's) is validated against the shipped
    JSON Schema.
    """
    import json

    from bonelesion.report.schema import validate_results

    batch = json.loads((out / "results.json").read_text(encoding="utf-8"))
    validate_results(batch)
    assert batch["document"] == "batch"
    docs = {}
    for entry in batch["studies"]:
        if entry["status"] != "ok":
            continue
        folder = out / entry["output_dir"]
        doc = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        validate_results(doc)
        docs[entry["study_instance_uid"]] = (folder, doc)
    return docs


def measurement_table(measurements: list, path: Path) -> Path:
    """Write the lesions.csv of these measurements (called by the rules) through the real
    document → table path; one document per study, rows in the given order per study."""
    from bonelesion.report.result import study_result
    from bonelesion.report.table import lesion_rows, write_lesions_csv

    by_study: dict[str, list] = {}
    for m in measurements:
        by_study.setdefault(m.study_instance_uid, []).append(m)
    rows: list = []
    for ms in by_study.values():
        folder = path.parent / f".views_{len(rows)}"
        document, _ = write_study_views(folder, study_result(ms), qc=False, dicom=False,
                                        html=False)
        rows.extend(lesion_rows(document))
    return write_lesions_csv(path, rows)
