"""`measure` and `run` are one path: same series, same rows, same study document.

The export holds, beside a phantom study's own series, a soft-kernel copy of its CT (the
phantom's CT is a bone kernel) with a finer pixel spacing, and a one-image CT "localizer" with
the finest voxel of all and the same description as the CT (nothing in its description says
scout). Truth: which series is which was written here; the measured values of the bone CT
come from the phantom's truth.json.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from support.report_series import study_documents

from bonelesion.cli import EXIT_OK, main
from bonelesion.phantom import write_study

pytestmark = pytest.mark.slow  # two full runs over one phantom study (~10 s)

#: Noise-free phantom, int16 storage: core mean within 1 HU of truth.
ATOL_HU = 1.0


def _copy_series(files: list[Path], dest: Path, **changes: object) -> str:
    """Copy a series under a new SeriesInstanceUID (new SOP UIDs); returns the series UID."""
    series_uid = generate_uid()
    dest.mkdir(parents=True)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        if "PixelSpacing" in changes:  # a different reconstruction: shifted values too
            arr = ds.pixel_array.astype(np.int32) + 30
            ds.PixelData = arr.astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(dest / path.name, enforce_file_format=True)
    return series_uid


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("single_path")
    study = root / "study"
    truth = write_study(study, vendor="siemens", seed=11, noise_free=True)
    rois = root / "rois.csv"
    (study / "rois.csv").rename(rois)
    (study / "truth.json").rename(root / "truth.json")
    ct_files = sorted((study / "DICOM").glob("*BONE*/*.dcm"))
    bone_uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).SeriesInstanceUID)
    description = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).SeriesDescription)
    soft_uid = _copy_series(ct_files, study / "DICOM" / "003_soft", ConvolutionKernel="B30f",
                            SeriesNumber=3, PixelSpacing=[1.5, 1.5])
    localizer_uid = _copy_series(ct_files[len(ct_files) // 2: len(ct_files) // 2 + 1],
                                 study / "DICOM" / "001_loc", SeriesNumber=1,
                                 SliceThickness=0.1, SeriesDescription=description)
    outs = {}
    for command in (["measure", str(study)], ["run", "combined", str(study)]):
        out = root / command[0]
        assert main(["-q", *command, "--rois", str(rois), "--out", str(out)]) == EXIT_OK
        outs[command[0]] = out
    return truth, outs, {"bone": bone_uid, "soft": soft_uid, "localizer": localizer_uid}


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_both_commands_measure_the_bone_kernel_ct_never_the_localizer(runs) -> None:  # type: ignore[no-untyped-def]
    truth, outs, uids = runs
    for out in outs.values():
        ((_, doc),) = study_documents(out).values()
        ct = next(r for r in doc["plan"]["roles"] if r["role"] == "ct")
        assert ct["series_instance_uids"] == [uids["bone"]]
        assert "bone_kernel: kernel Br64 over kernel B30f" in ct["reason"]
        (excluded,) = ct["excluded"]
        assert uids["localizer"] in excluded["candidate"]
        assert "single image" in excluded["reason"]
        expected = {t.lesion_id: t.attenuation_mean_hu for t in truth.lesions}
        for lesion in doc["lesions"]:
            measured = lesion["measurements"]["ct"]
            assert measured["series_instance_uid"] == uids["bone"]
            assert measured["attenuation_mean_hu"] == pytest.approx(
                expected[lesion["lesion_id"]], abs=ATOL_HU)


def test_identical_rows_and_study_documents(runs) -> None:  # type: ignore[no-untyped-def]
    _, outs, _ = runs
    header_m, rows_m = _rows(outs["measure"] / "lesions.csv")
    header_r, rows_r = _rows(outs["run"] / "lesions.csv")
    assert header_m == header_r and rows_m == rows_r and rows_m
    ((folder_m, doc_m),) = study_documents(outs["measure"]).values()
    ((folder_r, doc_r),) = study_documents(outs["run"]).values()
    assert doc_m["schema_version"] == doc_r["schema_version"] == "2.0"
    assert doc_m.pop("run")["command"][2] == "measure" and doc_r.pop("run")["command"][2] == "run"
    assert doc_m == doc_r
    assert (folder_m / "lesions.csv").read_bytes() == (folder_r / "lesions.csv").read_bytes()


def test_batch_document_has_native_types(runs) -> None:  # type: ignore[no-untyped-def]
    _, outs, _ = runs
    batch = json.loads((outs["run"] / "results.json").read_text())
    assert batch["schema_version"] == "2.0" and batch["document"] == "batch"
    (study,) = batch["studies"]
    lesion = study["result"]["lesions"][0]
    assert isinstance(lesion["measurements"]["ct"]["attenuation_mean_hu"], float)
    assert isinstance(lesion["call"]["probability_malignant"], float)
    assert isinstance(lesion["call"]["features"], list)


def test_measure_refuses_to_overwrite_without_force(runs, capsys) -> None:  # type: ignore[no-untyped-def]
    _, outs, _ = runs
    out = outs["measure"]
    study = Path(json.loads((out / "results.json").read_text())["studies"][0]["result"]
                 ["series"][0]["files"][0]["path"]).parents[2]
    assert main(["-q", "measure", str(study), "--out", str(out)]) == 3
    assert "refusing to overwrite" in capsys.readouterr().err
