"""The same image twice (exact copies, other encodings, new SOP Instance UIDs) is read once
and reported; two different images at one position are refused (dcm2niix: "duplicates
removed")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from support.testdata import shared_path

from bonelesion.dicom.series import load_series, load_volume
from bonelesion.errors import SeriesGeometryError


def test_same_image_under_another_uid_and_encoding_is_read_once(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    files, stored = ct_writer(tmp_path / "a")
    ds = pydicom.dcmread(files[1])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(tmp_path / "a" / "zz_resent", enforce_file_format=True)
    (stack,) = load_series(tmp_path)
    assert stack.usable and stack.shape == (4, 8, 6)
    assert [w for w in stack.warnings if "repeats the image of" in w and "zz_resent" in w]
    assert stack.volume is not None
    np.testing.assert_array_equal(np.asarray(stack.volume.array)[1], stored[1].astype(int) - 1024)


def test_two_different_images_at_one_position_are_refused(tmp_path: Path, ct_writer) -> None:  # type: ignore[no-untyped-def]
    files, _ = ct_writer(tmp_path / "a")
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = (np.frombuffer(ds.PixelData, dtype=np.uint16) + 1).tobytes()
    ds.save_as(tmp_path / "a" / "zz_other", enforce_file_format=True)
    with pytest.raises(SeriesGeometryError, match=r"two different images share the position"):
        load_volume(tmp_path)


def test_compressed_and_uncompressed_copies_of_one_ct_slice() -> None:
    """693_J2KR.dcm and 693_UNCR.dcm: one SOP instance in two encodings → one slice."""
    folder = shared_path("compressed_nema_pydicom", "dicom")
    stacks = load_series([folder / "693_J2KR.dcm", folder / "693_UNCR.dcm"])
    assert len(stacks) == 1 and stacks[0].usable and stacks[0].shape == (1, 512, 512)
    assert any("693_UNCR.dcm repeats SOP instance of 693_J2KR.dcm" in w
               for w in stacks[0].warnings)


def test_nine_encodings_of_one_mosaic(ref_on_grid) -> None:  # type: ignore[no-untyped-def]
    """The Siemens mosaic saved in nine transfer syntaxes (new UIDs): one volume, eight
    duplicates reported, equal to dcm2niix's conversion of 1.dcm."""
    folder = shared_path("ts_siemens_trio_mr_9syntaxes", "dicom")
    (stack,) = load_series(folder)
    assert stack.usable and stack.shape == (35, 64, 64)
    assert len([w for w in stack.warnings if "repeats the image of 1.dcm" in w]) == 8
    reference = sorted(shared_path("ts_siemens_trio_mr_9syntaxes", "reference").glob("*.nii*"))[0]
    assert stack.volume is not None
    np.testing.assert_array_equal(np.asarray(stack.volume.array),
                                  ref_on_grid(stack.volume, reference))
