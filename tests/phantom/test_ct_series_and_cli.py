"""The plain large-CT writer and the ``bonelesion phantom`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from bonelesion.cli import EXIT_INPUT, EXIT_OK, main
from bonelesion.errors import InputError
from bonelesion.phantom import load_truth, write_ct_series

#: Voxel centres sampled directly (no supersampling): a centre inside a lesion is exact.
EXACT_ATOL_HU = 1e-9
GEOMETRY_ATOL_MM = 1e-4


@pytest.mark.parametrize("compressed", [False, True])
def test_write_ct_series_reads_back(tmp_path: Path, compressed: bool) -> None:
    out = write_ct_series(tmp_path / "ct", shape=(12, 96, 80), spacing_mm=(2.0, 1.0, 1.25),
                          noise_free=True, compressed=compressed, vendor="ge", seed=4)
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 12
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(out)))
    img = reader.Execute()
    assert img.GetSize() == (80, 96, 12)
    np.testing.assert_allclose(img.GetSpacing(), (1.25, 1.0, 2.0), atol=GEOMETRY_ATOL_MM)
    # grid centred at (0, 5, 0) LPS
    centre = img.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in img.GetSize()])
    np.testing.assert_allclose(centre, (0.0, 5.0, 0.0), atol=GEOMETRY_ATOL_MM)
    arr = sitk.GetArrayFromImage(img)
    # voxel at the centre of lesion les03 (11, 0, 0), 720 HU: nearest voxel is inside
    i, j, k = img.TransformPhysicalPointToIndex((11.0, 0.0, 0.0))
    assert arr[k, j, i] == pytest.approx(720.0, abs=EXACT_ATOL_HU)
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert ds.Manufacturer == "GE MEDICAL SYSTEMS"
    assert ds.file_meta.TransferSyntaxUID == (
        "1.2.840.10008.1.2.4.80" if compressed else "1.2.840.10008.1.2.1")


def test_write_ct_series_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="shape must be three positive integers"):
        write_ct_series(tmp_path / "x", shape=(0, 10, 10))
    with pytest.raises(InputError, match="vendor 'toshiba' is not supported"):
        write_ct_series(tmp_path / "x", vendor="toshiba")


def test_cli_phantom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    assert main(["-q", "phantom", str(out), "--vendor", "philips", "--seed", "7",
                 "--noise-free", "--enhanced"]) == EXIT_OK
    truth = load_truth(out)
    assert (truth.vendor, truth.seed, truth.noise_free, truth.enhanced, truth.compressed) == (
        "philips", 7, True, True, False)
    assert "7 series, 6 lesions" in capsys.readouterr().out
    # a second run into the same (now non-empty) folder is an input error, exit code 3
    assert main(["-q", "phantom", str(out)]) == EXIT_INPUT
    assert "is not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["phantom", str(tmp_path / "y"), "--seed", "-3"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["phantom", str(tmp_path / "y"), "--seed", "abc"])
    with pytest.raises(SystemExit):
        main(["phantom", str(tmp_path / "y"), "--vendor", "canon"])
