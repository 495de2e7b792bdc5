"""ROI sources: annotations CSV, NIfTI label map, DICOM SEG, DICOM RTSTRUCT."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.synthetic import FOR_UID, STUDY_UID, ct_datasets, make_volume, sphere_mask_truth

from bonelesion.errors import InputError, NotDicomError, UnsupportedInputError
from bonelesion.roi.sources import load_lesions, read_annotations_csv
from bonelesion.units import IntensityUnit

AXIAL = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
HEADER = "lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm"


def _write(tmp_path: Path, text: str, name: str = "rois.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- CSV
def test_csv_spheres_with_annotations(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\ufeff" + HEADER + ",study_instance_uid,treated,sins_location,"
        "sins_pain,escc_grade,note\n"
        "L1,10.5,-20,30,6,1.2.3,true,3,1,1b,T12 lesion\n"
        "L2, 1 , 2 , 3 , 4 ,,no,,,,\n",
    )
    l1, l2 = read_annotations_csv(path)
    assert l1.lesion_id == "L1" and l1.sphere is not None
    assert l1.sphere.centre_lps_mm == (10.5, -20.0, 30.0) and l1.sphere.radius_mm == 6.0
    assert l1.study_instance_uid == "1.2.3" and l1.treated is True
    assert l1.annotations == {
        "sins_location": 3,
        "sins_pain": 1,
        "escc_grade": "1b",
        "note": "T12 lesion",
    }
    assert l2.treated is False and l2.annotations["sins_location"] is None
    assert l2.source == "rois.csv:3"


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ("L1,1,2,3,-4", r"line 2, column 'radius_mm': expected a positive number"),
        ("L1,x,2,3,4", r"line 2, column 'center_l_mm': expected a finite number"),
        (",1,2,3,4", r"line 2, column 'lesion_id': expected a non-empty identifier"),
        ("L1,1,2,3,4\nL1,1,2,3,4", r"line 3: lesion_id 'L1' repeats line 2"),
        ("L1,1,2,3,4,5", r"line 2: 1 more value\(s\) than header columns"),
        ("L1,1,2,3,nan", r"radius_mm"),
    ],
)
def test_csv_bad_rows_have_line_numbers(tmp_path: Path, rows: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        read_annotations_csv(_write(tmp_path, HEADER + "\n" + rows + "\n"))


@pytest.mark.parametrize(
    ("extra", "value", "match"),
    [
        ("treated", "maybe", r"column 'treated': expected true or false, found 'maybe'"),
        ("sins_pain", "2", r"column 'sins_pain': expected one of \[0, 1, 3\]"),
        ("sins_alignment", "-2", r"column 'sins_alignment'"),
        ("escc_grade", "4", r"column 'escc_grade': expected one of 0, 1a, 1b, 1c, 2, 3"),
    ],
)
def test_csv_bad_annotation_values(tmp_path: Path, extra: str, value: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        read_annotations_csv(_write(tmp_path, f"{HEADER},{extra}\nL1,1,2,3,4,{value}\n"))


def test_csv_sins_category_names_pass_through(tmp_path: Path) -> None:
    # issue 18: SINS items as category names or points; names are checked by the scorer
    (lesion,) = read_annotations_csv(_write(
        tmp_path, f"{HEADER},sins_location,sins_pain\nL1,1,2,3,4,junctional,No (occasional)\n"))
    assert lesion.annotations["sins_location"] == "junctional"
    assert lesion.annotations["sins_pain"] == "No (occasional)"


def test_csv_missing_columns_and_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"line 1: missing column\(s\) radius_mm"):
        read_annotations_csv(_write(tmp_path, "lesion_id,center_l_mm,center_p_mm,center_s_mm\n"))
    with pytest.raises(InputError, match="no lesion rows"):
        read_annotations_csv(_write(tmp_path, HEADER + "\n\n"))


def test_csv_lists_many_errors_at_once(tmp_path: Path) -> None:
    rows = "\n".join(f"L{i},1,2,3,-1" for i in range(12))
    with pytest.raises(InputError, match=r"12 invalid value\(s\).*line 11.*\(and 2 more\)"):
        read_annotations_csv(_write(tmp_path, HEADER + "\n" + rows + "\n"))


# ---------------------------------------------------------------------------- NIfTI
def test_nifti_label_map_ras_to_lps(tmp_path: Path) -> None:
    labels = np.zeros((20, 22, 10), dtype=np.int16)
    labels[5:9, 6:10, 2:5] = 1
    labels[12:15, 12:16, 6:8] = 7
    affine_ras = np.array([[-0.8, 0, 0, 30.0], [0, 0.9, 0, -40.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(labels, affine_ras), tmp_path / "labels.nii.gz")
    lesions = load_lesions(tmp_path / "labels.nii.gz")
    assert [lesion.lesion_id for lesion in lesions] == ["1", "7"]
    # target: the same voxels described in LPS by hand (x, y negated), axes permuted
    affine_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    perm = [2, 1, 0]
    target = make_volume(
        np.zeros(tuple(labels.shape[p] for p in perm)),
        spacing_mm=tuple(np.linalg.norm(affine_lps[:3, p]) for p in perm),
        origin_lps_mm=affine_lps[:3, 3],
        direction_lps=affine_lps[:3, perm] / np.linalg.norm(affine_lps[:3, perm], axis=0),
    )
    for lesion, value in zip(lesions, (1, 7), strict=True):
        np.testing.assert_array_equal(
            lesion.mask_on(target).array, (labels == value).transpose(perm)
        )


def test_nifti_errors(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), tmp_path / "z.nii")
    with pytest.raises(InputError, match="every voxel is 0"):
        load_lesions(tmp_path / "z.nii")
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 0.5, np.float32), np.eye(4)), tmp_path / "f.nii")
    with pytest.raises(InputError, match="label values must be integers"):
        load_lesions(tmp_path / "f.nii")
    (tmp_path / "bad.nii").write_bytes(b"not nifti")
    with pytest.raises(InputError, match="cannot be read"):
        load_lesions(tmp_path / "bad.nii")


# ---------------------------------------------------------------------------- DICOM SEG
def _ct_grid() -> object:
    return make_volume(
        np.zeros((8, 32, 32)),
        spacing_mm=(3.0, 0.8, 0.8),
        direction_lps=AXIAL,
        origin_lps_mm=(-12.0, -12.0, 40.0),
        intensity_unit=IntensityUnit.HU,
        modality="CT",
        series_number=2,
    )


def test_dicom_seg_segments_become_lesions(tmp_path: Path) -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    grid = _ct_grid()
    sources = ct_datasets(grid)
    centre = grid.index_to_lps([[4, 15, 16]])[0]
    m1 = sphere_mask_truth(grid, centre, 5.0)
    m2 = np.zeros_like(m1)
    m2[1:3, 2:6, 20:30] = True
    descs = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=label,
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=codes.cid7166.ConnectiveTissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i, label in ((1, "T11"), (2, "L2"))
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.stack([m1, m2], axis=-1).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs,
        series_instance_uid=hd.UID(),
        series_number=100,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="bonelesion-tests",
        manufacturer_model_name="t",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(tmp_path / "seg.dcm")
    lesions = load_lesions(tmp_path / "seg.dcm")
    assert [lesion.lesion_id for lesion in lesions] == ["T11", "L2"]
    assert lesions[0].frame_of_reference_uid == FOR_UID
    assert lesions[0].study_instance_uid == STUDY_UID
    np.testing.assert_array_equal(lesions[0].mask_on(grid).array, m1)
    np.testing.assert_array_equal(lesions[1].mask_on(grid).array, m2)


# ---------------------------------------------------------------------------- RTSTRUCT
def _rtstruct(
    path: Path, contours: list[tuple[str, list[np.ndarray]]], geometric_type: str = "CLOSED_PLANAR"
) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = STUDY_UID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for number, (name, polys) in enumerate(contours, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = FOR_UID
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ContourSequence = Sequence()
        for poly in polys:
            c = Dataset()
            c.ContourGeometricType = geometric_type
            c.NumberOfContourPoints = len(poly)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(poly).ravel()]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_rtstruct_contours_rasterised_on_target(tmp_path: Path) -> None:
    grid = _ct_grid()  # slices at S = 40, 43, … ; L, P from −12 mm in 0.8 mm steps
    square = lambda z: np.array([[-4.2, -4.2, z], [4.2, -4.2, z], [4.2, 4.2, z], [-4.2, 4.2, z]])  # noqa: E731
    path = _rtstruct(tmp_path / "rt.dcm", [("lesion A", [square(43.0), square(46.0)])])
    (lesion,) = load_lesions(path)
    assert lesion.lesion_id == "lesion A" and lesion.frame_of_reference_uid == FOR_UID
    m = np.asarray(lesion.mask_on(grid).array)
    assert [bool(m[s].any()) for s in range(8)] == [
        False,
        True,
        True,
        False,
        False,
        False,
        False,
        False,
    ]
    # centres −12 + 0.8·k within [−4.2, 4.2]: k = 10..20 → 11 pixels per side
    assert m[1].sum() == 11 * 11


def test_rtstruct_errors(tmp_path: Path) -> None:
    pts = [np.array([[0, 0, 43.0], [1, 0, 43.0], [1, 1, 43.0]])]
    with pytest.raises(InputError, match="no ROI with CLOSED_PLANAR contours"):
        load_lesions(_rtstruct(tmp_path / "p.dcm", [("pt", pts)], geometric_type="POINT"))
    bad = [np.array([0.0, 1.0, 2.0, 3.0])]
    with pytest.raises(InputError, match=r"ContourData \(3006,0050\) holds 4 numbers"):
        load_lesions(_rtstruct(tmp_path / "b.dcm", [("bad", bad)]))


def test_load_lesions_dispatch_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_lesions(tmp_path / "missing.csv")
    (tmp_path / "x.dcm").write_bytes(b"garbage")
    with pytest.raises(NotDicomError, match="not CSV, NIfTI or a readable DICOM"):
        load_lesions(tmp_path / "x.dcm")
    ct = ct_datasets(_ct_grid())[0]
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    with pytest.raises(
        UnsupportedInputError, match=r"SOP Class 1\.2\.840\.10008\.5\.1\.4\.1\.1\.2 is not"
    ):
        load_lesions(tmp_path / "ct.dcm")


def test_more_source_errors(tmp_path: Path) -> None:
    from bonelesion.roi.sources import read_dicom_seg, read_rtstruct

    ct = ct_datasets(_ct_grid())[0]
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match=r"DICOM SEG .*ct\.dcm cannot be read"):
        read_dicom_seg(tmp_path / "ct.dcm")
    with pytest.raises(UnsupportedInputError, match="is not an RT Structure Set"):
        read_rtstruct(tmp_path / "ct.dcm")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.int16), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(InputError, match=r"expected a 3-D label image, found shape \(4, 4, 4, 2\)"):
        load_lesions(tmp_path / "4d.nii")
    (tmp_path / "latin1.csv").write_bytes(HEADER.encode() + b"\nL\xe9,1,2,3,4\n")
    with pytest.raises(InputError, match="cannot be read as UTF-8"):
        load_lesions(tmp_path / "latin1.csv")
