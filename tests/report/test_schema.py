"""The results.json schema: the shipped file, what it accepts and what it refuses."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import pytest
from support.classify_factory import lesion
from support.report_series import write_ct_series, write_study_views

from bonelesion.report.document import STUDY_CONTENT_KEYS, batch_document
from bonelesion.report.result import study_result
from bonelesion.report.schema import (
    SCHEMA_VERSION,
    SchemaError,
    build_schema,
    validate_results,
)


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """A study document written by the one writer, and the batch document holding it."""
    root = tmp_path_factory.mktemp("schema")
    ct = write_ct_series(root / "ct")
    uid = ct.series.study_instance_uid
    lesions = [
        lesion(ct=(700.0, 820.0), lesion_id="L1", study=uid),
        lesion(ct=(1200.0, 1310.0), lesion_id="L2", study=uid, missing={"adc": "no DWI"}),
    ]
    study = study_result(lesions, volumes={"ct": ct})
    write_study_views(root / "out", study, qc=False, dicom=False, html=False)
    doc = json.loads((root / "out" / "results.json").read_text(encoding="utf-8"))
    batch = batch_document(
        pipeline=doc["pipeline"],
        studies=[{"study_instance_uid": uid, "patient": "PHANTOM01", "status": "ok",
                  "output_dir": "studies/x", "failure": None, "warnings": [],
                  "plan": doc["plan"], "document": doc}],
        bad_files=[], not_run=[])
    return doc, batch


def test_shipped_schema_is_the_built_one_and_a_valid_2020_12_schema() -> None:
    text = resources.files("bonelesion.report").joinpath("results.schema.json").read_text("utf-8")
    shipped = json.loads(text)
    assert shipped == json.loads(json.dumps(build_schema())), (
        "results.schema.json is stale: regenerate it with "
        "`python -m bonelesion.report.schema > src/bonelesion/report/results.schema.json`")
    jsonschema.Draft202012Validator.check_schema(shipped)
    assert SCHEMA_VERSION in shipped["$id"]


def test_written_documents_validate(documents: tuple[dict, dict]) -> None:
    doc, batch = documents
    validate_results(doc)
    validate_results(batch)
    validate_results(batch, study_results_checked=True)
    # the JSON Schema alone (no bonelesion code) accepts them too
    validator = jsonschema.Draft202012Validator(build_schema())
    assert not list(validator.iter_errors(doc)) and not list(validator.iter_errors(batch))
    assert set(batch["studies"][0]["result"]) == set(STUDY_CONTENT_KEYS)


def _set(document: dict, path: tuple[Any, ...], value: object) -> dict:
    broken = copy.deepcopy(document)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return broken


@pytest.mark.parametrize(("path", "value", "where"), [
    (("lesions", 1, "measurements", "ct", "attenuation_mean_hu"), "high",
     "lesions/1/measurements/ct/attenuation_mean_hu"),
    (("lesions", 0, "call", "label"), "probably fine", "lesions/0/call/label"),
    (("schema_version",), "1.0", "schema_version"),
    (("study", "unexpected"), 1, "at study:"),
])
def test_a_broken_study_document_is_refused_naming_the_path(
        documents: tuple[dict, dict], path: tuple[Any, ...], value: object, where: str) -> None:
    doc, _ = documents
    with pytest.raises(SchemaError) as err:
        validate_results(_set(doc, path, value))
    assert "(study)" in str(err.value) and "Potential fix" in str(err.value)
    assert where in str(err.value)


def test_batch_checks_its_own_fields_and_the_study_results_unless_checked_already(
        documents: tuple[dict, dict]) -> None:
    _, batch = documents
    broken_result = _set(batch, ("studies", 0, "result", "lesions", 0, "lesion_id"), 3)
    with pytest.raises(SchemaError, match="studies/0/result/lesions/0/lesion_id"):
        validate_results(broken_result)
    # a batch assembled from study documents validated when written: its own fields only
    validate_results(broken_result, study_results_checked=True)
    broken_batch = _set(batch, ("studies", 0, "status"), "maybe")
    with pytest.raises(SchemaError, match="studies/0/status"):
        validate_results(broken_batch, study_results_checked=True)
    with pytest.raises(SchemaError, match="studies/0/result"):
        validate_results(_set(batch, ("studies", 0, "result"), []), study_results_checked=True)


def test_unknown_document_kind_is_refused(documents: tuple[dict, dict]) -> None:
    doc, _ = documents
    with pytest.raises(SchemaError):
        validate_results(_set(doc, ("document",), "cohort"))


def test_schema_module_prints_the_built_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "bonelesion.report.schema"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == build_schema()


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path of a document, container paths included."""
    found = [path] if path else []
    items: Any = (node.items() if isinstance(node, dict)
                  else enumerate(node) if isinstance(node, list) else ())
    for key, item in items:
        found.extend(_paths(item, (*path, key)))
    return found


_REPLACEMENTS: tuple[object, ...] = (None, "x", "", 3, -2, 1.5, 2.0, True, False, [], {},
                                     ["x"], [1.0, 2.0, 3.0], {"zz": 1}, 1e9, -1e9, "benign")


def _mutations(document: dict, rng: np.random.Generator, count: int) -> list[dict]:
    paths = _paths(document)
    out = []
    for _ in range(count):
        path = paths[rng.integers(len(paths))]
        broken = copy.deepcopy(document)
        parent = broken
        for key in path[:-1]:
            parent = parent[key]
        action = rng.integers(4)
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent[path[-1]], dict):
            parent[path[-1]]["zz_unexpected"] = 1
        elif action == 2 and isinstance(parent[path[-1]], list):
            parent[path[-1]].append(parent[path[-1]][0] if parent[path[-1]] else "x")
        else:
            parent[path[-1]] = copy.deepcopy(_REPLACEMENTS[rng.integers(len(_REPLACEMENTS))])
        out.append(broken)
    return out


def test_the_fast_check_agrees_with_jsonschema_on_mutated_documents(
        documents: tuple[dict, dict]) -> None:
    """validate_results answers with its own compiled check, jsonschema being the reference:
    the two must give the same verdict on every mutation of a written study and batch."""
    doc, batch = documents
    rng = np.random.default_rng(20261207)
    reference = jsonschema.Draft202012Validator(build_schema())
    refused = accepted = 0
    for document in [doc, batch, *_mutations(doc, rng, 200), *_mutations(batch, rng, 80)]:
        valid = not any(True for _ in reference.iter_errors(document))
        try:
            validate_results(document)
        except SchemaError:
            assert not valid, "the fast check refused a document jsonschema accepts"
            refused += 1
        else:
            assert valid, "the fast check accepted a document jsonschema refuses"
            accepted += 1
    assert refused > 150 and accepted > 25  # both verdicts exercised


def test_nan_and_infinity_are_refused_naming_the_path(documents: tuple[dict, dict]) -> None:
    doc, _ = documents
    for value in (float("nan"), float("inf")):
        broken = _set(doc, ("lesions", 0, "measurements", "ct", "attenuation_max_hu"), value)
        with pytest.raises(SchemaError, match="lesions/0/measurements/ct/attenuation_max_hu: "
                                              "NaN or infinity"):
            validate_results(broken)


def test_the_fast_check_refuses_a_keyword_it_does_not_know() -> None:
    from bonelesion.report.schema import _FastSchema

    with pytest.raises(ValueError, match="unsupported keywords.*pattern"):
        _FastSchema({"type": "string", "pattern": "^L"})
