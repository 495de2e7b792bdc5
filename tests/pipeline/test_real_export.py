"""`bonelesion run` on a real scanner export (Siemens XA30 enhanced DWI + scanner ADC map).

Truth: the dcm2niix conversion of the scanner's ADC map kept with the data
(reference/11_DWI_dir80_PA.nii, values in 1e-6 mm²/s), read with nibabel, and the series
numbers documented in ../shared/data/MANIFEST.md.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from support.testdata import shared_path

from bonelesion.batch import Progress, run_export

#: dcm2niix stores the map as the scanner's integers; the same voxels read through our reader
#: give the same integers, so only float32 accumulation differs (relative 1e-5).
RTOL_ADC_SAME_VOXELS = 1e-4
ADC_UNIT_MM2_PER_S = 1e-6  # one stored unit of the Siemens ADC map (MANIFEST.md)
SPHERE_RADIUS_MM = 12.0


@pytest.mark.shared_data
def test_real_xa30_export_plans_roles_and_measures_the_scanner_adc(tmp_path: Path) -> None:
    export = shared_path("dwi_siemens_xa30_enhanced_pa", "dicom")
    reference = shared_path("dwi_siemens_xa30_enhanced_pa", "reference", "11_DWI_dir80_PA.nii")
    img = nib.load(reference)
    data = np.asarray(img.dataobj, dtype=np.float64)
    ijk = np.indices(data.shape).reshape(3, -1).T
    ras = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    centre_ras = img.affine[:3, :3] @ ((np.asarray(data.shape) - 1) / 2.0) + img.affine[:3, 3]
    inside = np.linalg.norm(ras - centre_ras, axis=1) <= SPHERE_RADIUS_MM
    expected_adc = float(data.reshape(-1)[inside].mean()) * ADC_UNIT_MM2_PER_S
    study_uid = str(pydicom.dcmread(next((export / "11_DWI_dir80_PA").iterdir()),
                                    stop_before_pixels=True).StudyInstanceUID)
    centre_lps = (-centre_ras[0], -centre_ras[1], centre_ras[2])
    rois = tmp_path / "rois.csv"
    with open(rois, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["lesion_id", "center_l_mm", "center_p_mm", "center_s_mm", "radius_mm",
                    "study_instance_uid", "treated"])
        w.writerow(["centre", *(f"{v:.4f}" for v in centre_lps), SPHERE_RADIUS_MM, study_uid, "false"])

    # The shipped MR pipeline with one override through the pipeline's [config] table: no
    # erosion of the ROI, so the stage measures exactly the voxels of the sphere.
    pipeline = tmp_path / "mr_no_erosion.toml"
    shipped = (Path(__file__).resolve().parents[2] / "pipelines" / "mr_multiparametric.toml").read_text()
    pipeline.write_text(shipped.replace('name = "mr_multiparametric"', 'name = "mr_no_erosion"')
                        + "\n[config.stages.dwi_adc]\nerosion_margin_voxels = 0\n")
    out = tmp_path / "out"
    summary = run_export(pipeline, export, out, rois=rois,
                         progress=Progress(0, stream=io.StringIO(), tty=False))
    assert summary.exit_code == 0, summary.failures
    results = json.loads((out / "results.json").read_text())
    (study,) = results["studies"]
    roles = {r["role"]: r for r in study["plan"]["roles"]}
    # series 11 is the scanner ADC map; of the DWI fit sets (10 raw: b 0 + b 2500; 12 trace +
    # 16 tensor b0 on one grid: b 0 + 2500 too) the latest series wins the tie of b-values
    # and slice thickness (it gives the map's b-values and low-b signal)
    assert roles["adc"]["status"] == "single"
    assert roles["dwi"]["status"] == "preferred"
    assert "latest_series: SeriesNumber 12 over SeriesNumber 10" in roles["dwi"]["reason"]
    with open(out / "lesions.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["adc_source"] == "scanner"
    assert int(row["adc_voxels"]) == int(inside.sum())
    assert float(row["adc_mean_mm2_per_s"]) == pytest.approx(expected_adc, rel=RTOL_ADC_SAME_VOXELS)
    assert row["mr_chemical_shift_ratio"] == ""  # no Dixon in this export: recorded as missing
    assert "chemical_shift" in row["missing"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_whole_shared_corpus_as_one_messy_export_never_crashes(tmp_path: Path) -> None:
    """Every dataset of ../shared/data at once: 25 studies of every vendor, broken ones too.

    No ROI applies to these studies, so each readable study is loaded, measured (0 lesions)
    and reported; what cannot be used must be refused with a stage and a reason, never a
    crash or an "unexpected" (bug) failure.
    """
    corpus = shared_path()
    rois = tmp_path / "rois.csv"
    rois.write_text("lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm,study_instance_uid,treated\n"
                    "elsewhere,0,0,0,5,1.2.3.4.5.6.7.8.9,false\n")
    out = tmp_path / "out"
    summary = run_export("combined", corpus, out, rois=rois, workers=2,
                         progress=Progress(0, stream=io.StringIO(), tty=False))
    assert summary.exit_code == 4  # the corpus holds deliberately broken files and series
    results = json.loads((out / "results.json").read_text())
    assert len(results["studies"]) == summary.studies_total and not results["not_run"]
    assert summary.studies_ok > 0 and summary.lesions == 0
    for failure in summary.failures:
        assert failure["stage"] in {"plan", "load"}, failure
        assert "unexpected" not in failure["message"] and "Potential fix" in failure["message"]
    for bad in summary.bad_files:
        assert bad.reason and bad.status


@pytest.mark.shared_data
def test_tilted_ct_is_refused_by_default_and_measured_when_the_pipeline_resamples(
        tmp_path: Path) -> None:
    """The Siemens 14° gantry-tilt CT: refused at stage load, unless the pipeline says
    ``tilt = "resample"``; then measured on the orthogonal grid, and the resampling is said
    in the study document."""
    export = shared_path("multivendor_cases_dicom2nifti", "dicom", "failing", "gantrytilting",
                         "001")
    study_uid = str(pydicom.dcmread(next(p for p in sorted(export.iterdir()) if p.is_file()),
                                    stop_before_pixels=True).StudyInstanceUID)
    rois = tmp_path / "rois.csv"
    # a sphere in the middle of the field of view (the orthogonal grid's centre voxel)
    rois.write_text("lesion_id,center_l_mm,center_p_mm,center_s_mm,radius_mm,study_instance_uid\n"
                    f"centre,0.21,-152.27,-77.97,6,{study_uid}\n")
    refused = run_export("ct_sclerotic", export, tmp_path / "refused", rois=rois,
                         progress=Progress(0, stream=io.StringIO(), tty=False))
    ((failure,),) = [refused.failures]
    assert failure["stage"] == "load" and "gantry tilt" in failure["message"]
    assert "tilt='resample'" in failure["message"]
    pipeline = tmp_path / "ct_tilt.toml"
    shipped = (Path(__file__).resolve().parents[2] / "pipelines" / "ct_sclerotic.toml").read_text()
    pipeline.write_text(shipped.replace('name = "ct_sclerotic"', 'name = "ct_tilt"\ntilt = "resample"'))
    out = tmp_path / "resampled"
    summary = run_export(pipeline, export, out, rois=rois,
                         progress=Progress(0, stream=io.StringIO(), tty=False))
    assert summary.exit_code == 0 and summary.lesions == 1, summary.failures
    doc = json.loads((out / "results.json").read_text())
    (series,) = doc["studies"][0]["result"]["series"]
    assert any("gantry tilt 14.00°: resampled onto an orthogonal grid" in n for n in series["notes"])
    (row,) = _rows_of(out)
    assert row["ct_attenuation_mean_hu"] != ""


def _rows_of(out: Path) -> list[dict[str, str]]:
    with open(out / "lesions.csv", newline="") as fh:
        return list(csv.DictReader(fh))
