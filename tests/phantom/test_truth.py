"""truth.json and rois.csv: content, strict loading, schema."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bonelesion.errors import InputError
from bonelesion.phantom import (
    ROIS_CSV_COLUMNS,
    TRUTH_JSON_SCHEMAS,
    StudyTruth,
    load_truth,
)

#: The 885 HU threshold of Ulano 2016 (CLINICAL_REFERENCE.md §A1), not the generator's.
ULANO_MEAN_THRESHOLD_HU = 885.0


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(data))
    return path


def test_lesion_set_covers_the_brief(study_noise_free: tuple[Path, StudyTruth]) -> None:
    _, truth = study_noise_free
    kinds = [les.kind for les in truth.lesions]
    assert kinds.count("metastasis") >= 2 and kinds.count("enostosis") >= 2
    for les in truth.lesions:
        assert les.radius_mm >= 5.0
        assert les.chemical_shift_ratio == pytest.approx(abs(1 - 2 * les.fat_fraction))
        if les.kind == "metastasis":
            assert 550 <= les.attenuation_mean_hu <= 800 and les.fat_fraction <= 0.1
            assert les.chemical_shift_ratio >= 0.8 and les.expected_nature == "malignant"
        elif les.kind == "enostosis":
            assert 1100 <= les.attenuation_mean_hu <= 1400 and les.expected_nature == "benign"
        else:
            assert abs(les.attenuation_mean_hu - ULANO_MEAN_THRESHOLD_HU) <= 10
            assert les.expected_nature == "indeterminate"
    marrow = truth.tissue("marrow")
    assert 0.6 <= marrow.fat_fraction <= 0.7 and 0.2 <= marrow.chemical_shift_ratio <= 0.4
    assert truth.tissue("fluid").adc_mm2_per_s == pytest.approx(3.0e-3)


def test_rois_csv_matches_truth(study_noise_free: tuple[Path, StudyTruth]) -> None:
    root, truth = study_noise_free
    with (root / "rois.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == ROIS_CSV_COLUMNS
    assert [r["lesion_id"] for r in rows] == [les.lesion_id for les in truth.lesions]
    for row, les in zip(rows, truth.lesions, strict=True):
        centre = (float(row["center_l_mm"]), float(row["center_p_mm"]), float(row["center_s_mm"]))
        assert centre == pytest.approx(les.center_lps_mm)
        assert float(row["radius_mm"]) == pytest.approx(les.radius_mm)
        assert row["study_instance_uid"] == truth.study_instance_uid
        assert row["treated"] == "false"


def test_round_trip_and_lookups(study_noise_free: tuple[Path, StudyTruth]) -> None:
    root, truth = study_noise_free
    loaded = load_truth(root / "truth.json")
    assert loaded == truth
    assert loaded.lesion("les04").expected_nature == "indeterminate"
    assert loaded.series_for_role("adc").modality == "MR"
    with pytest.raises(InputError, match="no lesion 'les99'"):
        loaded.lesion("les99")
    with pytest.raises(InputError, match="no tissue 'bone'"):
        loaded.tissue("bone")
    with pytest.raises(InputError, match="no series with role 'pet'"):
        loaded.series_for_role("pet")


def check_against_schema(schema: dict, value: object, where: str = "$") -> None:
    """Every key of ``value`` is described by ``schema`` and every described key is present."""
    if "const" in schema:
        assert value == schema["const"], where
        return
    if "anyOf" in schema:
        if value is None:
            assert {"type": "null"} in schema["anyOf"], where
            return
        schema = next(s for s in schema["anyOf"] if s != {"type": "null"})
    kind = schema["type"]
    if kind == "object":
        assert isinstance(value, dict)
        assert set(value) == set(schema["required"]) == set(schema["properties"]), where
        for k, v in value.items():
            check_against_schema(schema["properties"][k], v, f"{where}.{k}")
    elif kind == "array":
        assert isinstance(value, list), where
        if "prefixItems" in schema:
            assert len(value) == len(schema["prefixItems"]), where
            for i, (s, v) in enumerate(zip(schema["prefixItems"], value, strict=True)):
                check_against_schema(s, v, f"{where}[{i}]")
        else:
            for i, v in enumerate(value):
                check_against_schema(schema["items"], v, f"{where}[{i}]")
    else:
        expected = {"boolean": bool, "integer": int, "number": (int, float),
                    "string": str}[kind]
        assert isinstance(value, expected), where


def test_schema_describes_every_key(study_noise_free: tuple[Path, StudyTruth]) -> None:
    """The lumbar study still writes schema 1.0 (no anatomy/spine keys), as before."""
    root, _ = study_noise_free
    data = json.loads((root / "truth.json").read_text())
    assert data["schema_version"] == "1.0"
    check_against_schema(TRUTH_JSON_SCHEMAS["1.0"], data)
    with pytest.raises(AssertionError):
        check_against_schema(TRUTH_JSON_SCHEMAS["2.0"], data)


def test_load_errors(tmp_path: Path, study_noise_free: tuple[Path, StudyTruth]) -> None:
    root, _ = study_noise_free
    good = json.loads((root / "truth.json").read_text())
    with pytest.raises(InputError, match="file not found"):
        load_truth(tmp_path / "nothing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_truth(bad)
    with pytest.raises(InputError, match=r"schema_version expected one of \['1.0', '2.0'\], found '0.9'"):
        load_truth(_write(tmp_path, {**good, "schema_version": "0.9"}))
    with pytest.raises(InputError, match=r"unknown keys \['extra'\]"):
        load_truth(_write(tmp_path, {**good, "extra": 1}))
    with pytest.raises(InputError, match=r"schema 1.0 has no key\(s\) \['anatomy'\]"):
        load_truth(_write(tmp_path, {**good, "anatomy": "lumbar"}))
    with pytest.raises(InputError, match=r"missing keys \['anatomy', 'spine'\]"):
        load_truth(_write(tmp_path, {**good, "schema_version": "2.0"}))
    missing = dict(good)
    del missing["vendor"]
    with pytest.raises(InputError, match=r"missing keys \['vendor'\]"):
        load_truth(_write(tmp_path, missing))
    with pytest.raises(InputError, match="key 'seed' must be an integer"):
        load_truth(_write(tmp_path, {**good, "seed": "0"}))
    with pytest.raises(InputError, match="key 'noise_free' must be true/false"):
        load_truth(_write(tmp_path, {**good, "noise_free": 1}))
    with pytest.raises(InputError, match="key 'vendor' must be a string"):
        load_truth(_write(tmp_path, {**good, "vendor": 3}))
    les = [dict(good["lesions"][0], radius_mm="9")] + good["lesions"][1:]
    with pytest.raises(InputError, match=r"key 'lesions\[0\].radius_mm' must be a number"):
        load_truth(_write(tmp_path, {**good, "lesions": les}))
    les = [dict(good["lesions"][0], center_lps_mm=[1.0, 2.0])] + good["lesions"][1:]
    with pytest.raises(InputError, match="must be a list of 3"):
        load_truth(_write(tmp_path, {**good, "lesions": les}))
    with pytest.raises(InputError, match="key 'lesions' must be a list"):
        load_truth(_write(tmp_path, {**good, "lesions": {}}))
    with pytest.raises(InputError, match="must be an object"):
        load_truth(_write(tmp_path, {**good, "noise": []}))
