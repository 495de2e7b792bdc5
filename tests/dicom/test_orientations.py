"""Geometry end to end: DICOM series written in all 48 axis orientations and an oblique one.

Truth is what was written: each voxel's value encodes the (slice, row, column) it was written
at, and each written slice's ImagePositionPatient/ImageOrientationPatient fixes where that voxel
is in LPS. Our reader must put every value at the LPS point it was written at, and agree with
SimpleITK's ImageSeriesReader (GDCM sorting) voxel for voxel and in geometry.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from bonelesion import load_volume
from bonelesion.model.sitk_bridge import volume_from_sitk

ATOL_MM = 1e-3  # DS values are written with ≤ 16 characters: sub-micrometre rounding
SHAPE = (5, 6, 7)  # slices, rows, columns — all different so a swapped axis cannot pass
SPACING_MM = (2.5, 0.8, 1.1)  # slice, row, column


def _signed_permutations() -> list[np.ndarray]:
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs)):
                m[row, col] = sign
            mats.append(m)
    return mats


def _oblique() -> np.ndarray:
    a, b, c = np.deg2rad([23.0, -14.0, 37.0])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


ORIENTATIONS = _signed_permutations() + [_oblique()]
assert len({m.tobytes() for m in ORIENTATIONS[:48]}) == 48


def _code(s: int, r: int, c: int) -> int:
    return 100 * s + 10 * r + c


def _write_series(folder: Path, direction: np.ndarray) -> np.ndarray:
    """Write SHAPE slices; slice k at origin + k·spacing·direction[:,0]. Returns the origin."""
    folder.mkdir()
    origin = np.array([-31.25, 17.5, 104.0])
    series_uid, study_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    row_dir, col_dir = direction[:, 2], direction[:, 1]  # IOP: along a row, down a column
    s_idx, r_idx, c_idx = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    codes = _code(s_idx, r_idx, c_idx).astype(np.uint16)
    order = np.random.default_rng(7).permutation(SHAPE[0])  # file names and numbers shuffled
    for file_no, k in enumerate(order):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.Manufacturer = "SIEMENS"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = (
            study_uid, series_uid, for_uid)
        ds.InstanceNumber = int(file_no + 1)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        position = origin + k * SPACING_MM[0] * direction[:, 0]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [SPACING_MM[1], SPACING_MM[2]]  # row spacing, column spacing
        ds.SliceThickness = 99.0  # deliberately wrong: spacing must come from positions
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = codes[k].tobytes()
        ds.save_as(folder / f"IMG{file_no:03d}", enforce_file_format=True)
    return origin


@pytest.mark.parametrize("direction", ORIENTATIONS, ids=[f"o{i:02d}" for i in range(49)])
def test_every_voxel_lands_where_it_was_written(direction: np.ndarray, tmp_path: Path) -> None:
    origin = _write_series(tmp_path / "s", direction)
    vol = load_volume(tmp_path / "s")
    assert vol.intensity_unit.value == "HU"
    codes = np.rint(vol.array + 1024).astype(int)
    s, r, c = codes // 100, (codes // 10) % 10, codes % 10
    written_lps = (
        origin
        + (s * SPACING_MM[0])[..., None] * direction[:, 0]
        + (r * SPACING_MM[1])[..., None] * direction[:, 1]
        + (c * SPACING_MM[2])[..., None] * direction[:, 2]
    )
    np.testing.assert_allclose(vol.voxel_centres_lps(), written_lps, atol=ATOL_MM)
    # Axis 0 runs along +normal (increasing projection), the in-plane axes as written.
    np.testing.assert_allclose(vol.direction_lps[:, 1:], direction[:, 1:], atol=1e-6)
    np.testing.assert_allclose(vol.spacing_mm, SPACING_MM, atol=ATOL_MM)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "s")))
    theirs = volume_from_sitk(reader.Execute())
    # GDCM may stack in the opposite slice order: compare in world space, not by index.
    if not np.allclose(theirs.direction_lps[:, 0], vol.direction_lps[:, 0], atol=1e-6):
        flipped = np.array(theirs.array[::-1])
        last = theirs.index_to_lps([[theirs.shape[0] - 1, 0, 0]])[0]
        d = theirs.direction_lps.copy()
        d[:, 0] = -d[:, 0]
        theirs = type(theirs)(array=flipped, spacing_mm=theirs.spacing_mm, origin_lps_mm=last,
                              direction_lps=d)
    assert theirs.geometry_equal(vol, atol_mm=ATOL_MM)
    np.testing.assert_array_equal(theirs.array, vol.array)
