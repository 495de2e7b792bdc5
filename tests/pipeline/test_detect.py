"""``bonelesion detect`` and the levels in ``measure``: outputs against phantom truth, refusals."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.testdata import SAMPLE_DATA, shared_path

from bonelesion.cli import main

STUDY = SAMPLE_DATA / "thoracolumbar_phantom"
#: Body centroid of the small sample CT (2 mm pixels, 3 mm slices).
CENTROID_ATOL_MM = 4.0


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detect") / "out"
    assert main(["-q", "detect", str(STUDY), "--out", str(out)]) == 0
    return out


def test_vertebrae_csv_matches_the_phantom(detected: Path) -> None:
    truth = json.loads((STUDY / "truth.json").read_text())["spine"]
    rows = _rows(detected / "vertebrae.csv")
    by_label = {r["label"]: r for r in rows}
    for tv in truth["vertebrae"]:
        row = by_label[tv["label"]]
        centre = [float(row[f"center_{a}_mm"]) for a in "lps"]
        assert np.linalg.norm(np.subtract(centre, tv["body_centroid_lps_mm"])) <= \
            CENTROID_ATOL_MM
        assert float(row["confidence"]) >= 0.9  # both anchors in view and agreeing
        assert float(row["trabecular_mean_hu"]) == pytest.approx(tv["trabecular_mean_hu"],
                                                                 abs=8.0)
    l1 = by_label["L1"]
    assert l1["sins_location"] == "junctional" and by_label["L3"]["sins_location"] == "mobile"
    assert l1["osteoporosis_level"] == "L1"
    assert float(l1["osteoporosis_highly_specific_hu"]) == 110.0
    assert float(l1["osteoporosis_sensitive_hu"]) == 160.0
    assert l1["osteoporosis_category"] == "unlikely"  # ~200 HU marrow
    assert by_label["L2"]["osteoporosis_category"] == ""  # screened at L1 only
    assert set(rows[0]) >= {"study_instance_uid", "label", "center_l_mm", "center_p_mm",
                            "center_s_mm", "trabecular_mean_hu", "confidence"}


def test_vertebra_seg_holds_each_body(detected: Path) -> None:
    import highdicom as hd

    truth = json.loads((STUDY / "truth.json").read_text())["spine"]
    summary = json.loads((detected / "detection.json").read_text())
    (study,) = summary["studies"]
    assert study["status"] == "ok"
    seg_path = next(detected / f for f in study["files"] if f.endswith("vertebrae_seg.dcm"))
    seg = hd.seg.segread(seg_path)
    labels = [str(d.SegmentLabel) for d in seg.SegmentSequence]
    assert "L3 vertebral body" in labels and "S1 vertebral body" in labels
    number = labels.index("L3 vertebral body") + 1
    volume = seg.get_volume(segment_numbers=[number], combine_segments=False)
    array = np.asarray(volume.array)[..., 0] if np.asarray(volume.array).ndim == 4 else \
        np.asarray(volume.array)
    l3 = next(v for v in truth["vertebrae"] if v["label"] == "L3")
    centre = np.append(np.asarray(l3["body_centroid_lps_mm"]), 1.0)
    idx = np.round((np.linalg.inv(volume.affine) @ centre)[:3]).astype(int)
    assert array[tuple(idx)] > 0  # the SEG's L3 holds the truth L3 body centroid
    assert str(seg.SeriesDescription) == "bonelesion vertebral bodies"


def test_overview_png_is_written(detected: Path) -> None:
    from PIL import Image

    summary = json.loads((detected / "detection.json").read_text())
    png = next(detected / f for f in summary["studies"][0]["files"] if f.endswith(".png"))
    with Image.open(png) as img:
        assert img.height >= 700 and img.width > img.height


def test_existing_result_is_refused_without_force(detected: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "detect", str(STUDY), "--out", str(detected)]) == 3
    assert "--force" in capsys.readouterr().err


def test_help_documents_the_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = capsys.readouterr().out
    for word in ("vertebrae.csv", "trabecular_mean_hu", "confidence", "Pickhardt", "candidates.csv",
                 "radius_mm", "--rois", "candidates_seg.dcm",
                 "vertebrae_seg.dcm", "overview.png", "T12", "S1"):
        assert word in text


def test_study_without_ct_is_refused_and_the_run_goes_on(tmp_path: Path) -> None:
    export = tmp_path / "export"
    for folder in (STUDY / "DICOM").iterdir():
        if "Br64" not in folder.name:  # every series but the CT
            shutil.copytree(folder, export / folder.name)
    out = tmp_path / "out"
    assert main(["-q", "detect", str(export), "--out", str(out)]) == 4
    (study,) = json.loads((out / "detection.json").read_text())["studies"]
    assert study["status"] == "failed" and study["stage"] == "plan"
    assert "required role 'ct'" in study["message"]
    assert _rows(out / "vertebrae.csv") == []


@pytest.mark.shared_data
def test_tilted_ct_is_refused_at_load(tmp_path: Path) -> None:
    folder = shared_path("multivendor_cases_dicom2nifti", "dicom", "failing", "gantrytilting")
    out = tmp_path / "out"
    assert main(["-q", "detect", str(folder), "--out", str(out)]) == 4
    (study,) = json.loads((out / "detection.json").read_text())["studies"]
    assert study["stage"] == "load" and "tilt" in study["message"].lower()


@pytest.mark.shared_data
def test_head_ct_gives_a_note_and_no_rows(tmp_path: Path) -> None:
    folder = shared_path("ct_ge_hispeed_head", "dicom")
    pipeline = tmp_path / "resample.toml"
    pipeline.write_text(
        'name = "ct_resample"\nstages = ["ct_attenuation"]\ntilt = "resample"\n'
        '[roles.ct]\nmodality = "CT"\nstack_roles = ["ct"]\nrequired = true\n')
    out = tmp_path / "out"
    assert main(["-q", "detect", str(folder), "--out", str(out), "--pipeline",
                 str(pipeline)]) == 0
    (study,) = json.loads((out / "detection.json").read_text())["studies"]
    assert study["status"] == "ok" and study["vertebrae"] == 0
    assert any("no spinal column in view" in n for n in study["notes"])
    assert _rows(out / "vertebrae.csv") == []


def test_measure_names_the_level_of_each_lesion(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["-q", "measure", str(STUDY), "--out", str(out), "--rois",
                 str(STUDY / "rois.csv"), "--no-dicom", "--no-qc"])
    assert code in (0, 4)  # 4: the export's README files are listed as not used
    truth = {les["lesion_id"]: les for les in
             json.loads((STUDY / "truth.json").read_text())["spine"]["lesions"]}
    rows = _rows(out / "lesions.csv")
    assert rows
    for row in rows:
        bone = truth[row["lesion_id"]]["bone"]
        if bone[:1] in "TL":
            assert row["vertebra"] == bone, row["lesion_id"]
            assert float(row["vertebra_confidence"]) >= 0.9
        assert row["detected"] == "false"
        centre = [float(row[f"center_{a}_mm"]) for a in "lps"]
        np.testing.assert_allclose(centre, truth[row["lesion_id"]]["centre_lps_mm"], atol=0.5)
    document = json.loads(next(out.glob("studies/*/*/results.json")).read_text())
    spine = document["spine"]
    assert [v["label"] for v in spine["vertebrae"]][-1] == "S1"
    assert spine["bone_density"]["category"] == "unlikely"
    lesion = next(le for le in document["lesions"] if le["vertebra"] == "L3")
    assert lesion["call"]["sins"]["items"]["sins_location"] == "mobile"
    assert "vertebra labelling" in lesion["annotations"]["sins_location_from"]


# ------------------------------------------------------------------ lesion candidates
def _truth_lesions(folder: Path) -> list[dict]:
    return json.loads((folder / "truth.json").read_text())["spine"]["lesions"]


def _nearest(row: dict[str, str], lesions: list[dict]) -> dict | None:
    centre = [float(row[f"center_{a}_mm"]) for a in "lps"]
    best = min(lesions, key=lambda les: float(np.linalg.norm(np.subtract(centre,
                                                                       les["centre_lps_mm"]))))
    d = float(np.linalg.norm(np.subtract(centre, best["centre_lps_mm"])))
    return best if d <= max(6.0, best["equivalent_radius_mm"] + 2.0) else None


@pytest.fixture(scope="module")
def crop_run(small_spine, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`run ct_sclerotic` without --rois on a thin-slice crop, unknown treatment taken as
    untreated (a site setting; see the README on `treated`)."""
    study = small_spine("siemens_crop")
    root = tmp_path_factory.mktemp("crop_run")
    untreated = root / "untreated.toml"
    untreated.write_text("[treatment]\nassume_untreated = true\n")
    out = root / "out"
    code = main(["-q", "run", "ct_sclerotic", str(study.folder), "--out", str(out),
                 "--classifier-config", str(untreated), "--no-dicom", "--no-qc"])
    assert code in (0, 4)
    return study.folder, out


def test_run_without_rois_detects_measures_and_calls(crop_run: tuple[Path, Path]) -> None:
    folder, out = crop_run
    lesions = _truth_lesions(folder)
    rows = _rows(out / "lesions.csv")
    assert rows
    for row in rows:
        assert row["detected"] == "true" and 0 < float(row["detection_score"]) <= 1
        truth = _nearest(row, lesions)
        assert truth is not None, row["lesion_id"]
        if truth["bone"][:1] in "TL":
            assert row["vertebra"] == truth["bone"]
        if truth["volume_ml"] >= 0.3:
            # measured on its own mask: the volume of the lesion, not of a sphere around it
            assert float(row["ct_volume_ml"]) == pytest.approx(truth["volume_ml"], rel=0.5)
        if truth["kind"] == "bone_island":
            assert row["label"] == "benign", row
        else:
            assert row["label"] != "benign", row
    document = json.loads(next(out.glob("studies/*/*/results.json")).read_text())
    assert document["rois"]["kind"] == "detection"
    entry = document["lesions"][0]
    assert entry["detected"] and entry["detection"]["kind"] == "sclerotic"
    assert entry["detection"]["reasons"]
    assert entry["annotations"]["treated"] is None  # detection cannot know the treatment


def test_unknown_treatment_keeps_detected_lesions_indeterminate(small_spine,
                                                                tmp_path: Path) -> None:
    study = small_spine("siemens_crop")
    out = tmp_path / "out"
    assert main(["-q", "run", "ct_sclerotic", str(study.folder), "--out", str(out),
                 "--no-dicom", "--no-qc"]) in (0, 4)
    rows = _rows(out / "lesions.csv")
    assert rows and all(r["label"] == "indeterminate" for r in rows)
    assert all("treatment status not given" in r["reasons"] for r in rows)


def test_candidates_csv_works_as_rois(small_spine, tmp_path: Path) -> None:
    study = small_spine("siemens_crop")
    det = tmp_path / "det"
    assert main(["-q", "detect", str(study.folder), "--out", str(det)]) == 0
    candidates = _rows(det / "candidates.csv")
    assert candidates
    assert list(candidates[0])[:5] == ["lesion_id", "center_l_mm", "center_p_mm", "center_s_mm",
                                       "radius_mm"]
    summary = json.loads((det / "detection.json").read_text())
    files = summary["studies"][0]["files"]
    assert any(f.endswith("candidates_seg.dcm") for f in files)
    out = tmp_path / "out"
    assert main(["-q", "measure", str(study.folder), "--out", str(out), "--rois",
                 str(det / "candidates.csv"), "--no-dicom", "--no-qc",
                 "--pipeline", "ct_sclerotic"]) in (0, 4)
    rows = _rows(out / "lesions.csv")
    assert [r["lesion_id"] for r in rows] == [c["lesion_id"] for c in candidates]
    assert all(r["detected"] == "true" for r in rows)
    assert [r["vertebra"] for r in rows] == [c["vertebra"] for c in candidates]


def test_mr_stages_measure_detected_lesions_through_lps(small_spine, tmp_path: Path) -> None:
    study = small_spine("ge_mr_crop")
    out = tmp_path / "out"
    assert main(["-q", "measure", str(study.folder), "--out", str(out), "--no-dicom",
                 "--no-qc"]) in (0, 4)
    rows = _rows(out / "lesions.csv")
    assert rows
    measured = [r for r in rows if r["mr_chemical_shift_ratio"]]
    assert measured, [r["missing"] for r in rows]
    # a sclerotic lesion is a signal void on the Dixon images: no fat signal drop
    assert all(r["detected"] == "true" for r in rows)


def test_pipeline_requiring_a_file_fails_at_roi(tmp_path: Path) -> None:
    pipeline = tmp_path / "file.toml"
    pipeline.write_text('name = "ct_file"\nstages = ["ct_attenuation"]\nrois = "file"\n'
                        '[roles.ct]\nmodality = "CT"\nstack_roles = ["ct"]\nrequired = true\n')
    out = tmp_path / "out"
    assert main(["-q", "run", str(pipeline), str(STUDY), "--out", str(out), "--no-dicom",
                 "--no-qc"]) == 4
    failures = _rows(out / "failures.csv")
    assert failures and failures[0]["stage"] == "roi"
    assert "rois = 'file'" in failures[0]["message"]


def test_coarse_ct_is_measured_with_zero_lesions_not_failed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["-q", "run", "combined", str(STUDY), "--out", str(out), "--no-dicom",
                 "--no-qc"])
    assert code in (0, 4)
    document = json.loads(next(out.glob("studies/*/*/results.json")).read_text())
    assert document["lesions"] == []
    assert any("coarser than the detector is validated for" in w
               for w in document["warnings"])
    assert document["spine"]["vertebrae"]  # the levels are still labelled
