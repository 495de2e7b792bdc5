"""The faster output writers equal the computations they replaced, on varied inputs.

Truth: the earlier implementations, kept here verbatim as references (`json.dumps` itself
for the JSON text), run on the same inputs; the outputs must be identical, not close.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import math
import re
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from bonelesion.report.document import to_jsonable


def _reference_to_jsonable(obj: Any) -> Any:
    """`to_jsonable` as it was (one isinstance chain for every node)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _reference_to_jsonable(getattr(obj, f.name))
                for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): _reference_to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_reference_to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):
        return _reference_to_jsonable(obj.item())
    return str(obj)


class _Colour(str, enum.Enum):
    RED = "red"


class _Level(enum.IntEnum):
    HIGH = 3


class _Ratio(float, enum.Enum):
    HALF = 0.5


class _Name(str):
    pass


@dataclasses.dataclass(frozen=True)
class _Inner:
    value: float
    colour: _Colour = _Colour.RED
    hidden: dataclasses.InitVar[int] = 0

    def __post_init__(self, hidden: int) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class _Outer(Mapping[str, Any]):  # a dataclass that is also a Mapping: the fields win
    inner: _Inner
    items: tuple[Any, ...]

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def _varied_values(rng: np.random.Generator, depth: int = 0) -> Any:
    leaves = [None, True, False, 0, -7, 2**70, 1.5, -0.0, math.nan, math.inf, -math.inf,
              1e-300, "text", "", "ünïcødé", _Colour.RED, _Level.HIGH, _Ratio.HALF,
              _Name("sub"), np.float64(2.25), np.float32(np.nan), np.int64(9), np.bool_(True),
              _Inner(value=float(rng.normal())), _Inner(value=math.nan), _Inner, int, b"bytes",
              complex(1, 2)]
    if depth >= 3 or rng.random() < 0.3:
        return leaves[int(rng.integers(len(leaves)))]
    children = [_varied_values(rng, depth + 1) for _ in range(int(rng.integers(0, 5)))]
    keys: list[Any] = ["a", "b", 1, 2.5, None, True, _Colour.RED, _Name("k"), (1, 2)]
    kind = int(rng.integers(8))
    if kind == 0:
        return children
    if kind == 1:
        return tuple(children)
    if kind == 2:
        return {keys[i % len(keys)]: c for i, c in enumerate(children)}
    if kind == 3:
        return types.MappingProxyType({f"k{i}": c for i, c in enumerate(children)})
    if kind == 4:
        return frozenset(x for x in children if isinstance(x, (str, int)))
    if kind == 5:
        return _Outer(inner=_Inner(value=1.0), items=tuple(children))
    if kind == 6:
        return {"nested": {"deeper": children}}
    return [np.float64(x) for x in rng.normal(size=3)]


@pytest.mark.parametrize("seed", range(5))
def test_to_jsonable_equals_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        value = _varied_values(rng)
        got, want = to_jsonable(value), _reference_to_jsonable(value)
        assert repr(got) == repr(want)  # repr: NaN-free already, and types must match too


def _json_values(rng: np.random.Generator, depth: int = 0) -> Any:
    leaves = [None, True, False, 0, 1, -1, 2**64, -(2**70), 0.0, -0.0, 1.0, 0.1, 1e-05, 1e16,
              1.7976931348623157e308, 5e-324, -2.5e-7, 123456789.125, "", "a", "quote \" and \\",
              "tab\tnew\nline", "ünïcødé ×10⁻³ mm²/s", "\u2028\x00\x1f", "🦴"]
    if depth >= 4 or rng.random() < 0.35:
        return leaves[int(rng.integers(len(leaves)))]
    n = int(rng.integers(0, 5))
    children = [_json_values(rng, depth + 1) for _ in range(n)]
    kind = int(rng.integers(3))
    if kind == 0:
        return children
    if kind == 1:
        return tuple(children)
    return {str(leaves[int(rng.integers(len(leaves)))]) + str(i): c
            for i, c in enumerate(children)}


@pytest.mark.parametrize("seed", range(5))
def test_json_text_equals_json_dumps(seed: int) -> None:
    from bonelesion.report.document import json_text

    rng = np.random.default_rng(seed)
    for _ in range(300):
        value = _json_values(rng)
        assert json_text(value) == json.dumps(value, indent=2, ensure_ascii=False,
                                              allow_nan=False)


@pytest.mark.parametrize("value", [
    {"k": _Colour.RED}, {_Name("key"): _Name("value")}, {"n": _Level.HIGH}, {"r": _Ratio.HALF},
    {7: "int key", 2.5: "float key", None: "none key", True: "bool key"},
    [1.5, {"deep": [[], {}, [{}]]}], [np.float64(1.5)], [_Name("s")], (1, (2,)),
])
def test_json_text_hands_what_it_does_not_write_to_json_dumps(value: Any) -> None:
    from bonelesion.report.document import json_text

    assert json_text(value) == json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


@pytest.mark.parametrize("value", [[math.nan], {"x": {"y": math.inf}}, {"k": -math.inf},
                                   {"a": object()}, {(1, 2): "tuple key"}])
def test_json_text_refuses_what_json_dumps_refuses(value: Any) -> None:
    from bonelesion.report.document import json_text

    with pytest.raises((ValueError, TypeError)) as want:
        json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    with pytest.raises(type(want.value), match=re.escape(str(want.value))):
        json_text(value)


def test_json_text_refuses_a_cycle_as_json_dumps_does() -> None:
    from bonelesion.report.document import json_text

    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        json_text(cycle)


def _reference_csv_cell(value: Any) -> str:
    """`csv_cell` as it was."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return ";".join(f"{v:g}" for v in value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _reference_rows_csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """`rows_csv_text` as it was (`csv_cell` on every cell)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_reference_csv_cell(row.get(name)) for name in columns])
    return buf.getvalue()


@pytest.mark.parametrize("seed", range(3))
def test_rows_csv_text_equals_the_reference(seed: int) -> None:
    from bonelesion.report.table import rows_csv_text

    rng = np.random.default_rng(seed)
    cells: list[Any] = [None, "", "plain", "comma, \"quoted\"\nnew line", _Name("sub"),
                        _Colour.RED, True, False, 0, 12, _Level.HIGH, 0.1, -0.0, math.nan,
                        math.inf, 1e-300, np.float64(2.5), [1, 2.5, 1e-5], (0.0007, 800),
                        [True, 1], [], {"a": [1, "ü"], "b": None}, ("x", 1),
                        {"decision": ["prior 0.5", "indeterminate: no evidence"]}]
    columns = [f"c{k}" for k in range(12)]
    for _ in range(20):
        rows = [{c: cells[int(rng.integers(len(cells)))] for c in columns
                 if rng.random() < 0.8} for _ in range(int(rng.integers(0, 8)))]
        assert rows_csv_text(columns, rows) == _reference_rows_csv_text(columns, rows)
