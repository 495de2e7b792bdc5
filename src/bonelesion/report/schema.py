"""The JSON Schema of every results.json (schema "2.0"), and validation against it.

The schema ships as package data (``bonelesion/report/results.schema.json``); `build_schema`
is how that file is made. Its measurement sections follow the stage result records
(`bonelesion.model.results`) field by field, so adding a field to a record fails validation
until the file is regenerated on purpose::

    python -m bonelesion.report.schema > src/bonelesion/report/results.schema.json

Every object has ``additionalProperties: false`` except free-form ones (per-lesion
annotations, the resolved configuration, model and plan details kept verbatim).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
import typing
from collections.abc import Mapping
from importlib import resources
from typing import Any

from bonelesion.errors import PipelineError

__all__ = ["SCHEMA_VERSION", "build_schema", "load_schema", "validate_results", "SchemaError"]

#: Version of the results.json layout (all results documents); bump on incompatible change.
SCHEMA_VERSION = "2.0"

SCHEMA_RESOURCE = "results.schema.json"


class SchemaError(PipelineError):
    """A results document does not match the shipped schema (a bug of ours)."""


_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}
_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}
_ANY_OBJECT = {"type": "object"}


def _nullable(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"anyOf": [dict(schema), {"type": "null"}]}


def _obj(properties: Mapping[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": [k for k in properties if k not in optional],
        "additionalProperties": False,
    }


def _of_type(tp: Any) -> dict[str, Any]:
    """JSON Schema of a dataclass field type (as `to_jsonable` writes it)."""
    from bonelesion.model.results import Provenance

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        base = _of_type(inner[0]) if len(inner) == 1 else {}
        return _nullable(base) if type(None) in args else base
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return dict(_INTEGER)
    if tp is float:
        return _nullable(_NUMBER)  # NaN and infinities are written as null
    if tp is str:
        return dict(_STRING)
    if origin is tuple:
        return {"type": "array", "items": _of_type(args[0])}
    if tp is Provenance:
        return {"$ref": "#/$defs/stage_provenance"}
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return dict(_ANY_OBJECT)
    raise TypeError(f"no JSON Schema for field type {tp!r}")


def _record(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return _obj({f.name: _of_type(hints[f.name]) for f in dataclasses.fields(cls)})


def _defs() -> dict[str, Any]:
    from bonelesion.model.results import AdcResult, ChemicalShiftResult, CtAttenuationResult

    file_entry = _obj({"path": _STRING, "sha256": _STRING, "sop_instance_uid": _STRING},
                      optional=("sop_instance_uid",))
    feature = _obj({
        "feature": _STRING, "status": _STRING, "value": _nullable(_NUMBER), "unit": _STRING,
        "threshold": _nullable(_NUMBER), "direction": _STRING,
        "favours": _nullable(_STRING), "weight": _NUMBER,
        "likelihood_ratio": _nullable(_NUMBER), "log_odds": _NUMBER, "citation": _STRING,
        "note": _STRING, "unreliable": {"type": "boolean"},
    })
    sins = _obj({
        "items": _ANY_OBJECT, "points": _ANY_OBJECT, "missing_items": _STRINGS,
        "total_min_points": _INTEGER, "total_max_points": _INTEGER, "band": _STRING,
        "flags": _STRINGS,
    })
    escc = _obj({"grade": _STRING, "high_grade": {"type": "boolean"},
                 "borderline": {"type": "boolean"}})
    call = _obj({
        "study_instance_uid": _STRING, "lesion_id": _STRING,
        "label": {"enum": ["malignant", "benign", "indeterminate"]},
        "probability_malignant": {"type": "number", "minimum": 0, "maximum": 1},
        "method": _STRING,
        "statement": _STRING,
        "prior": _obj({"probability_malignant": {"type": "number", "minimum": 0, "maximum": 1},
                       "source": _STRING}),
        "decision": _STRINGS,
        "set_aside": {"type": "array",
                      "items": _obj({"feature": _STRING, "status": _STRING, "why": _STRING})},
        "features": {"type": "array", "items": {"$ref": "#/$defs/feature"}},
        "sins": _nullable({"$ref": "#/$defs/sins"}),
        "escc": _nullable({"$ref": "#/$defs/escc"}),
        "spine_problems": _STRINGS, "extra": _ANY_OBJECT,
    }, optional=("extra", "statement", "prior"))
    detection = _obj({
        "kind": _STRING, "score": _NUMBER, "volume_ml": _NUMBER, "radius_mm": _NUMBER,
        "attenuation_mean_hu": _nullable(_NUMBER), "attenuation_max_hu": _nullable(_NUMBER),
        "background_hu": _nullable(_NUMBER), "contrast_hu": _nullable(_NUMBER),
        "depth_mm": _nullable(_NUMBER), "part": _STRING, "experimental": {"type": "boolean"},
        "reasons": _STRINGS,
    })
    lesion = _obj({
        "lesion_id": _STRING,
        "source": _STRING,
        "vertebra": _STRING,
        "vertebra_confidence": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
        "center_lps_mm": _nullable({"type": "array", "items": _NUMBER, "minItems": 3,
                                    "maxItems": 3}),
        "detected": {"type": "boolean"},
        "detection_score": _nullable({"type": "number", "minimum": 0, "maximum": 1}),
        "detection": _nullable({"$ref": "#/$defs/detection"}),
        "measurements": _obj({
            "ct": _nullable({"$ref": "#/$defs/ct"}),
            "chemical_shift": _nullable({"$ref": "#/$defs/chemical_shift"}),
            "adc": _nullable({"$ref": "#/$defs/adc"}),
        }),
        "missing": {"type": "object", "additionalProperties": _STRING},
        "annotations": _ANY_OBJECT,
        "call": {"$ref": "#/$defs/call"},
        "warnings": _STRINGS,
    })
    vertebra = _obj({
        "label": _STRING, "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasons": _STRINGS,
        "center_lps_mm": {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3},
        "trabecular_mean_hu": _nullable(_NUMBER), "trabecular_sd_hu": _nullable(_NUMBER),
        "trabecular_voxels": _INTEGER, "body_volume_ml": _NUMBER, "height_mm": _NUMBER,
        "region": _STRING, "rib_sides": _STRINGS, "fused_to_ilium": {"type": "boolean"},
        "partial": {"type": "boolean"}, "sins_location": _STRING,
        "osteoporosis_category": {"enum": ["", "likely", "indeterminate", "unlikely"]},
    })
    spine = _obj({
        "labeller": _STRING, "series_instance_uid": _STRING,
        "vertebrae": {"type": "array", "items": {"$ref": "#/$defs/vertebra"}},
        "anchors": _STRINGS, "notes": _STRINGS,
        "bone_density": _obj({
            "level": _STRING, "highly_specific_hu": _NUMBER, "sensitive_hu": _NUMBER,
            "citation": _STRING, "trabecular_mean_hu": _nullable(_NUMBER),
            "category": {"enum": ["", "likely", "indeterminate", "unlikely"]}, "note": _STRING,
        }),
    })
    series = _obj({
        "role": _STRING, "series_instance_uid": _STRING, "series_number": _nullable(_INTEGER),
        "series_description": _STRING, "modality": _STRING, "manufacturer": _STRING,
        "frame_of_reference_uid": _STRING,
        "files": {"type": "array", "items": file_entry}, "notes": _STRINGS,
    })
    plan_role = _obj({
        "role": _STRING, "status": _STRING, "series_instance_uids": _STRINGS,
        "stack_keys": _STRINGS, "candidates": _STRINGS,
        "excluded": {"type": "array", "items": _obj({"candidate": _STRING, "reason": _STRING})},
        "reason": _STRING,
    })
    plan = _obj({
        "study_instance_uid": _STRING,
        "roles": {"type": "array", "items": plan_role},
        "stages": _STRINGS,
        "skipped_stages": {"type": "object", "additionalProperties": _STRING},
        "refusal": _STRING,
    })
    provenance = _obj({
        "package": _obj({"name": _STRING, "version": _STRING}),
        "dependencies": {"type": "object", "additionalProperties": _STRING},
        "python": _STRING, "platform": _STRING,
    })
    run = _obj({"command": _nullable(_STRINGS), "generated_utc": _STRING})
    pipeline = _obj({"name": _STRING, "description": _STRING, "hash": _STRING})
    failure = _obj({"stage": _STRING, "series_instance_uid": _STRING, "error_type": _STRING,
                    "message": _STRING})
    study_content = {
        "study": _obj({"study_instance_uid": _STRING, "patient": _STRING,
                       "study_date": _STRING, "study_description": _STRING},
                      optional=("study_date", "study_description")),
        "pipeline": {"$ref": "#/$defs/pipeline"},
        "plan": {"$ref": "#/$defs/plan"},
        "series": {"type": "array", "items": {"$ref": "#/$defs/series"}},
        "rois": _obj({"kind": {"enum": ["file", "detection", "none"]},
                      "path": _nullable(_STRING), "sha256": _nullable(_STRING)}),
        "spine": _nullable({"$ref": "#/$defs/spine"}),
        "lesions": {"type": "array", "items": {"$ref": "#/$defs/lesion"}},
        "config": _obj({"stages": _ANY_OBJECT, "classifier": _ANY_OBJECT}),
        "classifier": _obj({"method": {"enum": ["rules", "trained_logistic_model"]},
                            "model": _nullable(_ANY_OBJECT)}),
        "outputs": _obj({
            "results_json": _STRING, "lesions_csv": _STRING,
            "report_html": _nullable(_STRING),
            "qc_images": {"type": "object",
                          "additionalProperties": {"type": "object",
                                                   "additionalProperties": _STRING}},
            "dicom": _STRINGS,
            "overview_image": _nullable(_STRING),
        }, optional=("overview_image",)),
        "warnings": _STRINGS,
    }
    study_document = _obj({
        "schema_version": {"const": SCHEMA_VERSION},
        "document": {"const": "study"},
        **study_content,
        "provenance": {"$ref": "#/$defs/provenance"},
        "run": {"$ref": "#/$defs/run"},
    })
    batch_study = _obj({
        "study_instance_uid": _STRING, "patient": _STRING,
        "status": {"enum": ["ok", "failed"]}, "output_dir": _STRING,
        "failure": _nullable({"$ref": "#/$defs/failure"}),
        "warnings": _STRINGS,
        "plan": _nullable({"$ref": "#/$defs/plan"}),
        "result": _nullable({"$ref": "#/$defs/study_result"}),
    })
    bad_file = _obj({"path": _STRING, "status": _STRING, "reason": _STRING,
                     "study_instance_uid": _STRING, "series_instance_uid": _STRING})
    batch_document = _obj({
        "schema_version": {"const": SCHEMA_VERSION},
        "document": {"const": "batch"},
        "pipeline": {"$ref": "#/$defs/pipeline"},
        "studies": {"type": "array", "items": batch_study},
        "bad_files": {"type": "array", "items": bad_file},
        "not_run": _STRINGS,
        "warnings": _STRINGS,
        "provenance": {"$ref": "#/$defs/provenance"},
        "run": {"$ref": "#/$defs/run"},
    })
    return {
        "stage_provenance": _obj({"stage": _STRING, "series_instance_uids": _STRINGS,
                                  "parameters": _ANY_OBJECT}),
        "provenance": provenance,
        "ct": _record(CtAttenuationResult),
        "chemical_shift": _record(ChemicalShiftResult),
        "adc": _record(AdcResult),
        "feature": feature, "sins": sins, "escc": escc, "call": call, "lesion": lesion,
        "detection": detection, "vertebra": vertebra, "spine": spine,
        "series": series, "plan": plan, "pipeline": pipeline, "run": run, "failure": failure,
        "study_result": _obj(study_content),
        "study_document": study_document, "batch_document": batch_document,
    }


def build_schema() -> dict[str, Any]:
    """Return the results.json JSON Schema (draft 2020-12) as a mapping."""
    defs = _defs()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://bonelesion.invalid/schema/results-2.0.json",
        "title": "bonelesion results.json, schema 2.0",
        "description": "One document per study (document = study) or per batch run "
                       "(document = batch, aggregating the study documents).",
        "oneOf": [{"$ref": "#/$defs/study_document"}, {"$ref": "#/$defs/batch_document"}],
        "$defs": defs,
    }


@functools.cache
def load_schema() -> dict[str, Any]:
    """Return the shipped schema (package data)."""
    text = resources.files("bonelesion.report").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(kind: str, study_results_checked: bool) -> Any:
    """Return a validator of one document kind (no ``oneOf`` trial of the other kind)."""
    import jsonschema

    schema = dict(load_schema())
    schema.pop("oneOf")
    schema["$ref"] = f"#/$defs/{kind}_document"
    if study_results_checked:
        schema["$defs"] = {**schema["$defs"], "study_result": {"type": "object"}}
    return jsonschema.Draft202012Validator(schema)


def validate_results(document: Mapping[str, Any], *, study_results_checked: bool = False
                     ) -> None:
    """Check a results document against the shipped schema.

    Parameters
    ----------
    document : mapping
        A study or batch document.
    study_results_checked : bool
        For a batch document assembled from study documents that were validated when they
        were written: check the batch's own fields and take each study's ``result`` as
        checked (validation costs about 2 ms per lesion; a batch re-checking every study
        on every table rebuild would pay it again for the whole run).

    Raises
    ------
    SchemaError
        Naming the first offending path and what was wrong (a bug: please report it).
    """
    import jsonschema

    kind = document.get("document")
    if kind not in ("study", "batch"):
        validator = jsonschema.Draft202012Validator(load_schema())
    else:
        validator = _validator(str(kind), study_results_checked and kind == "batch")
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        where = "/".join(str(p) for p in best.absolute_path) or "(top level)"
        raise SchemaError(
            f"results document ({document.get('document', '?')}) does not match schema "
            f"{SCHEMA_VERSION} at {where}: {best.message}. Potential fix: this is a bug; "
            "please report it with the document."
        )


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped file on purpose
    json.dump(build_schema(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
