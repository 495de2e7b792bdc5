"""Clinical scenarios: the label a musculoskeletal radiologist would give, case by case.

Truth: issue 18's table (the "a radiologist" column) and further cases with their textbook
reading (osteoporotic fracture, Modic 1 endplate change, lytic metastasis, contradictory
CT/MR, CT-only and MR-only studies). Cases that live in the numbers are rows of a
``lesions.csv`` (measure's column names) re-called with ``bonelesion classify``; cases that
depend on the images (signal void, partial volume of a 3 mm bone island) are phantoms
measured with ``bonelesion measure``, whose truth is the phantom's own lesion list.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.report_series import study_documents

from bonelesion.cli import EXIT_OK, main
from bonelesion.phantom import SIGNAL_VOID_LESIONS, SMALL_BONE_ISLAND, write_study
from bonelesion.report.table import CALL_COLUMNS, COLUMN_NAMES

HEADER = [c for c in COLUMN_NAMES if c not in CALL_COLUMNS or c == "escc_grade"]
EPI = "0;800"
LOW_B = "100;250;400"


def ct(mean: float, **kw: Any) -> dict[str, Any]:
    """CT columns of a well-measured lesion (27 core voxels, SD 40 HU, 1 cm)."""
    return {"ct_attenuation_mean_hu": mean, "ct_core_voxels": 27, "ct_voxels": 125,
            "ct_volume_ml": 0.52, "ct_attenuation_sd_hu": 40.0,
            "ct_attenuation_p05_hu": mean - 65.0, "ct_attenuation_p95_hu": mean + 65.0,
            "ct_attenuation_max_hu": mean + 130.0, "ct_erosion_fell_back": "false",
            "ct_attenuation_central_slice_max_hu": mean + 100.0, **kw}


def csi(sir: float, **kw: Any) -> dict[str, Any]:
    """Chemical-shift columns (50 voxels, SNR 40)."""
    return {"mr_chemical_shift_ratio": sir, "mr_voxels": 50, "mr_snr_in_phase": 40.0, **kw}


def dwi(adc: float, b: str = EPI, **kw: Any) -> dict[str, Any]:
    """ADC columns (40 voxels)."""
    return {"adc_mean_mm2_per_s": adc, "adc_voxels": 40, "adc_b_values_s_per_mm2": b,
            "adc_source": "scanner", **kw}


VOID = {"mr_in_phase_relative_to_reference": 0.08, "adc_low_b_relative_to_reference": 0.3}
BRIGHT = {"mr_in_phase_relative_to_reference": 0.6, "adc_low_b_relative_to_reference": 2.2}

#: name → (row, expected label, text the statement must hold)
SCENARIOS: dict[str, tuple[dict[str, Any], str, str]] = {
    # ---- issue 18, row by row
    "bone island, MR only, signal void": (
        {**csi(1.0), **dwi(0.9e-3), **VOID}, "indeterminate", "recommend CT"),
    "3 mm bone island, partial volume": (
        {**ct(700.0, ct_core_voxels=5, ct_erosion_fell_back="true", ct_attenuation_sd_hu=230.0,
              ct_volume_ml=0.014, ct_attenuation_central_slice_max_hu=1230.0), "treated": "false"},
        "benign", "ct_attenuation_max_hu"),
    "treated metastasis, fatty marrow after radiotherapy, high ADC": (
        {**csi(0.6, mr_fat_fraction=0.8), **dwi(1.6e-3), **BRIGHT, "treated": "true"},
        "indeterminate", "consistent with response to treatment"),
    "sclerotic focus 1000 HU, treatment status not given": (
        ct(1000.0), "indeterminate", "treatment status not given"),
    "focal fat on in/opposed phase only, ADC 0.4e-3": (
        {**csi(0.84, mr_in_phase_relative_to_reference=1.3),
         **dwi(0.4e-3, adc_low_b_relative_to_reference=0.9)}, "benign", "macroscopic_fat"),
    "haemangioma, CT only, trabeculae give 320 HU": (
        ct(320.0, ct_attenuation_sd_hu=260.0, ct_attenuation_p05_hu=-60.0),
        "benign", "macroscopic_fat"),
    "red-marrow island, DWI only, ADC 0.5e-3": (
        dwi(0.5e-3, adc_low_b_relative_to_reference=1.6), "indeterminate",
        "red-marrow island"),
    "metastasis on a low-b DWI protocol, ADC 1.3e-3": (
        dwi(1.3e-3, b=LOW_B, adc_low_b_relative_to_reference=2.0), "indeterminate",
        "malignant range for protocol low_b_400_500"),
    "CT 946 HU, nothing else": (
        {**ct(946.0), "treated": "false"}, "indeterminate", "946 (LR 0.577)"),
    "2 cm blastic metastasis, mean 650 HU, 3-D core max 1123 HU": (
        {**ct(650.0, ct_attenuation_max_hu=1123.0, ct_attenuation_central_slice_max_hu=1010.0,
              ct_attenuation_sd_hu=140.0, ct_volume_ml=4.19), "treated": "false"},
        "malignant", "ct_attenuation_mean_hu 650"),
    # ---- further cases
    "osteoporotic fracture: oedema with retained fat, high ADC": (
        {**ct(180.0), **csi(0.6, mr_fat_fraction=0.2), **dwi(1.6e-3), **BRIGHT,
         "treated": "false"}, "benign", "chemical_shift_ratio"),
    "Modic 1 with endplate sclerosis": (
        {**ct(520.0), **csi(0.7, mr_fat_fraction=0.15), **dwi(1.5e-3), **BRIGHT,
         "treated": "false", "endplate_adjacent": "true"}, "benign", "chemical_shift_ratio"),
    "lytic metastasis": (
        {**ct(40.0), **csi(1.0, mr_fat_fraction=0.03), **dwi(0.85e-3), **BRIGHT,
         "treated": "false"}, "malignant", "chemical_shift_ratio"),
    "contradictory: CT enostosis, MR marrow replacement": (
        {**ct(1200.0), **csi(1.0, mr_fat_fraction=0.02), **dwi(0.8e-3), **BRIGHT,
         "treated": "false"}, "indeterminate", "conflicting evidence"),
    "CT only: clear bone island": (
        {**ct(1300.0), "treated": "false"}, "benign", "ct_attenuation_mean_hu 1300"),
    "CT only: clear blastic metastasis": (
        {**ct(600.0), "treated": "false"}, "malignant", "ct_attenuation_mean_hu 600"),
    "MR only: marrow replacement": (
        {**csi(1.0, mr_fat_fraction=0.03), **dwi(0.8e-3), **BRIGHT}, "malignant",
        "adc_mean_mm2_per_s"),
    "MR only: one MR feature is not enough": (
        {**dwi(0.75e-3), **BRIGHT}, "indeterminate", "malignant range for protocol epi"),
    "bone island on CT and MR, MR signal void": (
        {**ct(1250.0), **csi(1.0, mr_fat_fraction=0.3), **dwi(0.9e-3), **VOID,
         "treated": "false"}, "benign", "MR set aside, called on CT attenuation"),
    "blastic metastasis on CT and MR, MR signal void": (
        {**ct(650.0), **csi(1.0, mr_fat_fraction=0.3), **dwi(0.9e-3), **VOID,
         "treated": "false"}, "malignant", "MR set aside, called on CT attenuation"),
    "ADC map from identical volumes beside a clear CT": (
        {**ct(620.0), **dwi(0.0, adc_map_degenerate="true"), "treated": "false"},
        "malignant", "ct_attenuation_mean_hu 620"),
    "treated, viable tumour": (
        {**csi(1.0, mr_fat_fraction=0.03), **dwi(0.8e-3), **BRIGHT, "treated": "true"},
        "indeterminate", "viable tumour"),
    "SINS given as points": (
        {"sins_location": 3, "sins_pain": 3, "sins_lesion": 2, "sins_alignment": 0,
         "sins_collapse": 2, "sins_posterolateral": 1, "escc_grade": "1c"},
        "indeterminate", "no applicable evidence"),
}


def _write_table(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


@pytest.fixture(scope="module")
def called(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("scenarios")
    rows = [{"study_instance_uid": "1.2.3", "lesion_id": name, **row}
            for name, (row, _, _) in SCENARIOS.items()]
    table = _write_table(root / "lesions.csv", rows)
    assert main(["-q", "classify", str(table), "--out", str(root / "out")]) == EXIT_OK
    with (root / "out" / "lesions.csv").open(newline="", encoding="utf-8") as fh:
        return {r["lesion_id"]: r for r in csv.DictReader(fh)}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_radiologists_label(called: dict[str, dict[str, str]], name: str) -> None:
    _, label, text = SCENARIOS[name]
    row = called[name]
    reasons = json.loads(row["reasons"])
    assert row["label"] == label, reasons["decision"]
    assert text in reasons["statement"] + " ".join(reasons["decision"]), reasons["statement"]


def test_every_set_aside_feature_says_why(called: dict[str, dict[str, str]]) -> None:
    for name, row in called.items():
        reasons = json.loads(row["reasons"])
        aside = {a["feature"]: a["why"] for a in reasons["set_aside"]}
        for f in reasons["features"]:
            if f["status"] in ("unreliable", "out_of_scope"):
                assert aside.get(f["feature"]), (name, f["feature"])
    void = json.loads(called["bone island on CT and MR, MR signal void"]["reasons"])
    assert {a["feature"] for a in void["set_aside"]} == {"chemical_shift_ratio",
                                                         "adc_mean_mm2_per_s"}
    assert all("signal void" in a["why"] for a in void["set_aside"])
    treated = json.loads(called["treated metastasis, fatty marrow after radiotherapy, "
                                "high ADC"]["reasons"])
    assert all(f["log_odds"] == 0.0 for f in treated["features"])


def test_sins_and_escc_from_points(called: dict[str, dict[str, str]]) -> None:
    row = called["SINS given as points"]
    assert (row["sins_total_min_points"], row["sins_total_max_points"]) == ("11", "11")
    assert row["sins_band"] == "potentially_unstable"
    assert (row["escc_grade"], row["escc_high_grade"]) == ("1c", "false")


def test_prior_changes_what_is_definitive(tmp_path: Path) -> None:
    # CT 1100 HU untreated: benign at a neutral prior; in a patient with known cancer (prior
    # 0.9) the same LR (0.059) leaves P(malignant) ≈ 0.35 — indeterminate
    table = _write_table(tmp_path / "t.csv", [{"lesion_id": "L", **ct(1100.0),
                                               "treated": "false"}])
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "a")]) == EXIT_OK
    assert main(["-q", "classify", str(table), "--out", str(tmp_path / "b"),
                 "--prior", "0.9"]) == EXIT_OK
    a, b = ([*csv.DictReader((tmp_path / d / "lesions.csv").open())][0] for d in "ab")
    assert (a["label"], b["label"]) == ("benign", "indeterminate")
    assert float(b["probability_malignant"]) == pytest.approx(0.35, abs=0.02)
    assert json.loads(b["reasons"])["prior"]["source"].startswith("--prior 0.9")


# ----------------------------------------------------------------------------- phantoms
def _measure(study: Path, out: Path) -> dict[str, dict[str, str]]:
    assert main(["-q", "measure", str(study), "--rois", str(study / "rois.csv"), "--out",
                 str(out), "--no-dicom", "--no-qc"]) == EXIT_OK
    with (out / "lesions.csv").open(newline="", encoding="utf-8") as fh:
        return {r["lesion_id"]: r for r in csv.DictReader(fh)}


@pytest.mark.slow
@pytest.mark.parametrize("noise_free", [False, True], ids=["noisy", "noise-free"])
def test_sclerotic_lesions_dark_on_every_mr_image(tmp_path: Path, noise_free: bool) -> None:
    truth = write_study(tmp_path / "study", seed=11, lesions=SIGNAL_VOID_LESIONS,
                        noise_free=noise_free)
    rows = _measure(tmp_path / "study", tmp_path / "out")
    for t in truth.lesions:
        row = rows[t.lesion_id]
        reasons = json.loads(row["reasons"])
        assert row["label"] == t.expected_nature, reasons["statement"]
        dark = t.mr_signal_scale < 0.1
        # judged against reference marrow of the same vertebra, with or without noise
        assert (float(row["mr_in_phase_relative_to_reference"]) <= 0.35) is dark
        assert ("MR not evaluable: signal void" in reasons["statement"]) is dark
        if dark:
            assert {a["feature"] for a in reasons["set_aside"]} == {
                "chemical_shift_ratio", "adc_mean_mm2_per_s"}
    # the reference is the marrow of the same vertebra (phantom: full-scale in-phase signal)
    marrow = next(t for t in truth.tissues if t.name == "marrow")
    ref = float(rows["met_bright"]["mr_reference_signal_in_phase"])
    assert ref == pytest.approx(marrow.mr_signal_scale * truth.acquisition.dixon_full_scale,
                                rel=0.01)
    # the noise: estimated from the background where there is one, not invented where not
    snr = rows["met_bright"]["mr_snr_in_phase"]
    assert (snr == "") is noise_free


@pytest.mark.slow
def test_signal_void_without_ct_recommends_ct(tmp_path: Path) -> None:
    truth = write_study(tmp_path / "study", seed=12, lesions=SIGNAL_VOID_LESIONS)
    for series in truth.series:
        if series.role == "ct":
            shutil.rmtree(tmp_path / "study" / series.path)
    rows = _measure(tmp_path / "study", tmp_path / "out")
    for lesion_id in ("island_void", "blastic_void"):
        reasons = json.loads(rows[lesion_id]["reasons"])
        assert rows[lesion_id]["label"] == "indeterminate"
        assert reasons["statement"].startswith("MR not evaluable: signal void; recommend CT")
    assert rows["met_bright"]["label"] == "malignant"  # MR-only, not dark: MR decides


@pytest.mark.slow
def test_partial_volume_of_a_3_mm_bone_island(tmp_path: Path) -> None:
    truth = write_study(tmp_path / "study", seed=13, lesions=[SMALL_BONE_ISLAND],
                        min_lesion_radius_mm=SMALL_BONE_ISLAND.radius_mm)
    row = _measure(tmp_path / "study", tmp_path / "out")["island_3mm"]
    # the erosion fallback is reported with the lesion (results.json, `warnings` count)
    ((_, doc),) = study_documents(tmp_path / "out").values()
    (entry,) = doc["lesions"]
    assert any("left no voxel" in w for w in entry["warnings"])
    assert int(row["warnings"]) == len(entry["warnings"])
    (t,) = truth.lesions
    mean = float(row["ct_attenuation_mean_hu"])
    # the measured mean is partial-volume diluted into the metastasis range …
    assert mean < 885.0 < t.attenuation_mean_hu and row["ct_erosion_fell_back"] == "true"
    # … the brightest voxel of the central slice is not (its sub-samples all lie inside)
    assert float(row["ct_attenuation_central_slice_max_hu"]) == pytest.approx(
        t.attenuation_mean_hu, abs=4 * truth.noise.ct_sd_hu)
    reasons = json.loads(row["reasons"])
    assert row["label"] == t.expected_nature == "benign", reasons["decision"]
    mean_reason = next(f for f in reasons["features"] if f["feature"] == "ct_attenuation_mean_hu")
    assert mean_reason["status"] == "unreliable" and "partial volume" in mean_reason["note"]


@pytest.mark.slow
def test_sins_from_the_annotations_csv_through_measure_and_classify(tmp_path: Path) -> None:
    study = tmp_path / "study"
    write_study(study, seed=14)
    items = ("sins_location", "sins_pain", "sins_lesion", "sins_alignment", "sins_collapse",
             "sins_posterolateral", "escc_grade")
    given = {"les01": ("3", "3", "2", "0", "2", "1", "2"),  # points (issue 18): 11
             "les02": ("T12", "No (occasional pain but not mechanical)", "blastic", "normal",
                       "none", "none", "1b")}  # names: 3 + 1 + 0 + 0 + 0 + 0 = 4
    with (study / "rois.csv").open(newline="") as fh:
        rois = list(csv.DictReader(fh))
    with (study / "rois.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rois[0], *items])
        writer.writeheader()
        for row in rois:
            writer.writerow({**row, **dict(zip(items, given.get(row["lesion_id"], ("",) * 7),
                                              strict=True))})
    measured = _measure(study, tmp_path / "out")
    assert (measured["les01"]["sins_total_min_points"], measured["les01"]["sins_band"]) == (
        "11", "potentially_unstable")
    assert measured["les01"]["escc_high_grade"] == "true"
    assert (measured["les02"]["sins_total_min_points"], measured["les02"]["sins_band"]) == (
        "4", "stable")
    assert measured["les03"]["sins_band"] == ""
    # the table alone (no images) gives the same calls and scores
    assert main(["-q", "classify", str(tmp_path / "out" / "lesions.csv"), "--out",
                 str(tmp_path / "again")]) == EXIT_OK
    with (tmp_path / "again" / "lesions.csv").open(newline="") as fh:
        again = {r["lesion_id"]: r for r in csv.DictReader(fh)}
    for lesion_id, row in measured.items():
        for column in ("label", "sins_total_min_points", "sins_band", "escc_grade"):
            assert again[lesion_id][column] == row[column], (lesion_id, column)
        assert float(again[lesion_id]["probability_malignant"]) == pytest.approx(
            float(row["probability_malignant"]), abs=1e-6)
