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
import math
import numbers
import sys
import types
import typing
from collections.abc import Callable, Mapping
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
def _kind_schema(kind: str, study_results_checked: bool) -> dict[str, Any]:
    """Return the schema of one document kind (no ``oneOf`` trial of the other kind)."""
    schema = dict(load_schema())
    if kind not in ("study", "batch"):
        return schema
    schema.pop("oneOf")
    schema["$ref"] = f"#/$defs/{kind}_document"
    if study_results_checked:
        schema["$defs"] = {**schema["$defs"], "study_result": {"type": "object"}}
    return schema


# -- The fast check ------------------------------------------------------------------------
#
# jsonschema walks a document at about 1.4 ms per lesion (0.28 s for a study of 200 lesions,
# paid again for every document written). The fast check below compiles the shipped schema
# once into nested predicates and answers only "valid or not"; when it says "not", jsonschema
# (the reference) is asked for the error to report. It knows the keywords `build_schema`
# writes and refuses to compile any other, so a schema change cannot slip past it unchecked.
# tests/report/test_schema.py pins its verdict to jsonschema's on mutated documents.

_Check = Callable[[Any], bool]

#: Keywords that carry no constraint.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})


def _is_number(value: Any) -> bool:
    """Tell whether a value is a finite JSON number (JSON has no NaN or infinity)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, numbers.Number)


_TYPES: dict[str, _Check] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "number": _is_number,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


def _same(a: Any, b: Any) -> bool:
    """JSON equality (``enum``, ``const``): ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


class _FastSchema:
    """A schema compiled into predicates; `$ref` resolved within the document's ``$defs``."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._defs: Mapping[str, Any] = schema.get("$defs", {})
        self._refs: dict[str, _Check] = {}
        self.check = self._compile(schema)

    def _ref(self, ref: str) -> _Check:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix):] not in self._defs:
            raise ValueError(f"fast schema check: unsupported $ref {ref!r}")
        if ref not in self._refs:
            slot: list[_Check] = []
            self._refs[ref] = lambda v: slot[0](v)  # a forward: a definition may recurse
            slot.append(self._compile(self._defs[ref[len(prefix):]]))
        return self._refs[ref]

    def _compile(self, node: Mapping[str, Any]) -> _Check:  # noqa: C901 - one keyword a branch
        checks: list[_Check] = []
        unknown = set(node) - _ANNOTATIONS - {
            "type", "properties", "required", "additionalProperties", "items", "minItems",
            "maxItems", "minimum", "maximum", "enum", "const", "anyOf", "oneOf", "$ref"}
        if unknown:
            raise ValueError(f"fast schema check: unsupported keywords {sorted(unknown)}")
        if "$ref" in node:
            checks.append(self._ref(node["$ref"]))
        if "type" in node:
            names = [node["type"]] if isinstance(node["type"], str) else list(node["type"])
            kinds = tuple(_TYPES[n] for n in names)
            checks.append(kinds[0] if len(kinds) == 1 else _any_of(kinds))
        if "enum" in node:
            options = tuple(node["enum"])
            checks.append(lambda v: any(_same(v, o) for o in options))
        if "const" in node:
            const = node["const"]
            checks.append(lambda v: _same(v, const))
        if "minimum" in node or "maximum" in node:
            low, high = node.get("minimum", -math.inf), node.get("maximum", math.inf)
            checks.append(lambda v: not _is_number(v) or low <= v <= high)
        if any(k in node for k in ("properties", "required", "additionalProperties")):
            checks.append(self._object(node))
        if any(k in node for k in ("items", "minItems", "maxItems")):
            checks.append(self._array(node))
        if "anyOf" in node:
            checks.append(_any_of(tuple(self._compile(b) for b in node["anyOf"])))
        if "oneOf" in node:
            exclusive = tuple(self._compile(b) for b in node["oneOf"])
            checks.append(lambda v: sum(1 for b in exclusive if b(v)) == 1)
        return _all_of(tuple(checks))

    def _object(self, node: Mapping[str, Any]) -> _Check:
        props = {k: self._compile(v) for k, v in node.get("properties", {}).items()}
        required = frozenset(node.get("required", ()))
        extra = node.get("additionalProperties", True)
        extra_check: _Check | None = None
        if extra is False:
            extra_check = _never
        elif isinstance(extra, Mapping):
            extra_check = self._compile(extra)

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            if not required <= value.keys():
                return False
            for key, item in value.items():
                sub = props.get(key, extra_check)
                if sub is not None and not sub(item):
                    return False
            return True

        return check

    def _array(self, node: Mapping[str, Any]) -> _Check:
        item = self._compile(node["items"]) if "items" in node else None
        low, high = node.get("minItems", 0), node.get("maxItems", math.inf)

        def check(value: Any) -> bool:
            if not isinstance(value, list):
                return True
            if not low <= len(value) <= high:
                return False
            if item is not None:
                for v in value:
                    if not item(v):
                        return False
            return True

        return check


def _never(value: Any) -> bool:
    return False


def _any_of(checks: tuple[_Check, ...]) -> _Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:  # nearly every union: a type or null
        first, second = checks
        return lambda v: first(v) or second(v)
    return lambda v: any(c(v) for c in checks)


def _all_of(checks: tuple[_Check, ...]) -> _Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    return lambda v: all(c(v) for c in checks)


@functools.cache
def _fast_check(kind: str, study_results_checked: bool) -> _Check:
    return _FastSchema(_kind_schema(kind, study_results_checked)).check


def _non_finite_path(value: Any, path: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Path of the first NaN or infinity in a document, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items: Any = (value.items() if isinstance(value, dict)
                  else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = _non_finite_path(item, (*path, key))
        if found is not None:
            return found
    return None


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
        checked (a batch re-checking every study on every table rebuild would pay it again
        for the whole run).

    Raises
    ------
    SchemaError
        Naming the first offending path and what was wrong (a bug: please report it).
        NaN and infinities are refused too: JSON has no such numbers.
    """
    kind = str(document.get("document"))
    checked = study_results_checked and kind == "batch"
    if _fast_check(kind, checked)(document):
        return
    import jsonschema

    validator = jsonschema.Draft202012Validator(_kind_schema(kind, checked))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        where = "/".join(str(p) for p in best.absolute_path) or "(top level)"
        message = best.message
    else:
        found = _non_finite_path(document)
        if found is None:  # pragma: no cover - the tests pin the two checks to each other
            return
        where = "/".join(str(p) for p in found) or "(top level)"
        message = "NaN or infinity is not a JSON number"
    raise SchemaError(
        f"results document ({document.get('document', '?')}) does not match schema "
        f"{SCHEMA_VERSION} at {where}: {message}. Potential fix: this is a bug; "
        "please report it with the document."
    )


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped file on purpose
    json.dump(build_schema(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
