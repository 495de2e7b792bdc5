"""Helpers of the DICOM reader tests."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import Dataset


# ---------------------------------------------------------------------------- helpers
def reference_on_grid(volume, nifti_path, volume_index=None, *, atol_mm=1e-3):  # type: ignore[no-untyped-def]
    """Values of a reference NIfTI at our voxel centres, after checking the geometry.

    Maps our (slice, row, column) voxel centres through our RAS affine into the reference
    image's voxel space; asserts they land on reference voxel centres (to ``atol_mm``) and
    returns the reference values there (scaled by scl_slope/scl_inter) in our array order.
    """
    import nibabel as nib

    img = nib.load(str(nifti_path))
    ref_affine = img.affine
    m = np.linalg.inv(ref_affine) @ volume.affine_ras
    idx = np.indices(volume.shape).reshape(3, -1).astype(np.float64)
    cont = m[:3, :3] @ idx + m[:3, 3:4]
    nearest = np.round(cont)
    world_ours = (volume.affine_ras[:3, :3] @ idx + volume.affine_ras[:3, 3:4])
    world_ref = ref_affine[:3, :3] @ nearest + ref_affine[:3, 3:4]
    err_mm = float(np.max(np.linalg.norm(world_ours - world_ref, axis=0)))
    assert err_mm <= atol_mm, f"voxel centres differ from the reference by {err_mm} mm"
    data = np.asanyarray(img.dataobj).astype(np.float64)
    slope = img.dataobj.slope if np.isfinite(img.dataobj.slope) else 1.0
    inter = img.dataobj.inter if np.isfinite(img.dataobj.inter) else 0.0
    data = data * slope + inter
    if data.ndim == 4:
        data = data[..., 0 if volume_index is None else volume_index]
    n = nearest.astype(int)
    assert np.all((n >= 0) & (n < np.array(data.shape)[:, None])), "grid outside reference"
    return data[n[0], n[1], n[2]].reshape(volume.shape)


@pytest.fixture
def ref_on_grid():  # type: ignore[no-untyped-def]
    """The `reference_on_grid` helper."""
    return reference_on_grid


def write_ct_slices(folder, n=4, *, spacing_mm=2.0, positions=None, iop=(1, 0, 0, 0, 1, 0),  # type: ignore[no-untyped-def]
                    rows=8, cols=6, pixel_spacing=(0.5, 0.7), series_uid=None, for_uids=None,
                    per_slice=None, rng=None, intercept=-1024, slope=1):
    """Write a tiny classic CT series with known geometry and values; return (files, stored)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    for_uid = generate_uid()
    rng = rng or np.random.default_rng(0)
    row = np.array(iop[:3], float)
    col = np.array(iop[3:], float)
    normal = np.cross(row, col)
    if positions is None:
        positions = [tuple(np.array([-10.0, -20.0, 30.0]) + k * spacing_mm * normal) for k in range(n)]
    files, stored = [], []
    for k, pos in enumerate(positions):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.Manufacturer = "TEST"
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = "1.2.3"
        ds.FrameOfReferenceUID = for_uids[k] if for_uids else for_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.PixelSpacing = [str(v) for v in pixel_spacing]
        ds.SliceThickness = "9.9"  # deliberately wrong: never used for spacing
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = str(intercept)
        ds.RescaleSlope = str(slope)
        if per_slice:
            per_slice(k, ds)
        values = rng.integers(0, 3000, size=(int(ds.Rows), int(ds.Columns)), dtype=np.uint16)
        ds.PixelData = values.tobytes()
        path = folder / f"slice{(k * 7919) % 1000:03d}"  # scrambled names, no extension
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        stored.append(values)
    return files, stored


@pytest.fixture
def ct_writer():  # type: ignore[no-untyped-def]
    """The `write_ct_slices` helper."""
    return write_ct_slices
