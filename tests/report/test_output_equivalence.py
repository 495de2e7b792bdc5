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


def _reference_rows_csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """`rows_csv_text` as it was: `csv.writer` over `csv_cell` of every cell."""
    from bonelesion.report.table import csv_cell

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(name)) for name in columns])
    return buf.getvalue()


def test_structured_cells_are_json_dumps_text() -> None:
    from bonelesion.report.table import csv_cell

    for value in ({}, ["a", 1], {"ß": [1, None], "k": "v, \"x\""}, ({"x": 0.1},),
                  [True, 2], [1, "2"]):
        assert csv_cell(value) == json.dumps(value, ensure_ascii=False,
                                             separators=(",", ":"))
    assert csv_cell([1, 2.5, -0.0]) == "1;2.5;-0"  # numbers only: semicolon-joined
    assert csv_cell([]) == ""


@pytest.mark.parametrize("seed", range(3))
def test_rows_csv_text_equals_the_reference(seed: int) -> None:
    from bonelesion.report.table import rows_csv_text

    rng = np.random.default_rng(seed)
    cells: list[Any] = [None, "", "plain", "comma, \"quoted\"\nnew line", _Name("sub"),
                        _Colour.RED, True, False, 0, 12, _Level.HIGH, 0.1, -0.0, math.nan,
                        math.inf, 1e-300, np.float64(2.5), [1, 2.5, 1e-5], (0.0007, 800),
                        [True, 1], [], {"a": [1, "ü"], "b": None}, ("x", 1),
                        {"decision": ["prior 0.5", "indeterminate: no evidence"]},
                        "carriage\rreturn", "\r", "nul\x00", "\r\n,\"", " lead", "tab\t",
                        "'single'", "ü,é", "\u2028", '""', ","]
    for n_columns in (1, 2, 12):
        columns = [f"c{k}" for k in range(n_columns)]
        for _ in range(40):
            rows = [{c: cells[int(rng.integers(len(cells)))] for c in columns
                     if rng.random() < 0.8} for _ in range(int(rng.integers(0, 8)))]
            assert rows_csv_text(columns, rows) == _reference_rows_csv_text(columns, rows)
    assert rows_csv_text([], [{}]) == _reference_rows_csv_text([], [{}])
    assert rows_csv_text(["a,b", 'q"'], []) == _reference_rows_csv_text(["a,b", 'q"'], [])


def _reference_convex_hull(points: np.ndarray) -> np.ndarray:
    """`figures._convex_hull` (floating-point monotone chain), as the calipers used it."""

    def chain(pts: list[list[float]]) -> list[int]:
        out: list[int] = []
        for k, (x, y) in enumerate(pts):
            while len(out) >= 2:
                (ax, ay), (bx, by) = pts[out[-2]], pts[out[-1]]
                if (bx - ax) * (y - ay) - (by - ay) * (x - ax) > 0:
                    break
                out.pop()
            out.append(k)
        return out

    listed = points.tolist()
    lower = chain(listed)
    upper = chain(listed[::-1])
    n = len(points)
    return points[lower[:-1] + [n - 1 - k for k in upper[:-1]]]


def _reference_axes_on_slice(mask2d: np.ndarray, row_mm: float, col_mm: float
                             ) -> tuple[float, float]:
    """`figures._axes_on_slice` as it was: outline in mm, np.unique, float hull, calipers."""
    padded = np.pad(np.asarray(mask2d, dtype=bool), 1)
    rows, cols = np.nonzero(padded[1:, :] != padded[:-1, :])
    down = np.stack([rows + 0.5, cols.astype(np.float64)], axis=1)
    rows, cols = np.nonzero(padded[:, 1:] != padded[:, :-1])
    across = np.stack([rows.astype(np.float64), cols + 0.5], axis=1)
    pts = np.unique(np.concatenate([down, across]) * np.array([row_mm, col_mm]), axis=0)
    if len(pts) > 3:
        pts = _reference_convex_hull(pts)
    return _calipers(pts)


def _varied_masks(rng: np.random.Generator) -> list[np.ndarray]:
    """Discs and ellipses (any centre, radius, aspect, tilt), blobs, noise, lines, boxes."""
    from scipy import ndimage

    masks = [np.ones((1, 1), bool), np.ones((1, 6), bool), np.ones((6, 1), bool),
             np.ones((4, 9), bool), np.eye(7, dtype=bool), np.eye(7, dtype=bool)[::-1]]
    for _ in range(40):
        h, w = (int(n) for n in rng.integers(3, 45, size=2))
        rows, cols = np.mgrid[0:h, 0:w].astype(float)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a, b, t = rng.uniform(0.4, 25), rng.uniform(0.4, 25), rng.uniform(0, np.pi)
        u = (rows - cy) * np.cos(t) + (cols - cx) * np.sin(t)
        v = -(rows - cy) * np.sin(t) + (cols - cx) * np.cos(t)
        masks.append((u / a) ** 2 + (v / b) ** 2 <= 1.0)
        masks.append(ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 3)) > 0.5)
        masks.append(rng.random((h, w)) > rng.uniform(0.3, 0.95))
    return [m for m in masks if m.any()]


#: Row and column spacings of scanners (CT 512² of 35-50 cm, MR), and odd ones.
_SPACINGS = [(0.7, 0.7), (0.68359375, 0.68359375), (0.9765625, 0.9765625), (1.0, 1.0),
             (0.7, 1.3), (3.3, 0.83), (0.4296875, 0.4296875), (1.0 / 3.0, 0.1)]


def _calipers(pts: np.ndarray) -> tuple[float, float]:
    """The calipers of `figures._axes_on_slice` on hull vertices in mm, in hull order."""
    diff = pts[:, None, :] - pts[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    long_mm = float(dist[i, j])
    if long_mm == 0.0:
        return 0.0, 0.0
    axis = (pts[j] - pts[i]) / long_mm
    across = pts @ np.array([-axis[1], axis[0]])
    return long_mm, float(across.max() - across.min())


@pytest.mark.parametrize("seed", range(2))
def test_axes_on_slice_are_the_calipers_on_qhulls_hull(seed: int) -> None:
    """Independent reference: Qhull's hull of the marching-squares outline (scikit-image),
    counterclockwise from its lowest point; the calipers on it agree bit for bit."""
    from scipy.spatial import ConvexHull
    from skimage.measure import find_contours

    from bonelesion.report.figures import _axes_on_slice

    rng = np.random.default_rng(seed)
    for mask in _varied_masks(rng):
        outline = np.unique(np.concatenate(find_contours(np.pad(mask.astype(float), 1), 0.5)),
                            axis=0)
        if np.linalg.matrix_rank(outline - outline[0]) < 2:  # one row or column: no area
            hull = outline[[0, -1]]
        else:
            listed = outline[ConvexHull(outline).vertices].tolist()
            first = listed.index(min(listed))
            hull = np.array(listed[first:] + listed[:first])
        for row_mm, col_mm in _SPACINGS:
            assert _axes_on_slice(mask, row_mm, col_mm) == \
                _calipers(hull * np.array([row_mm, col_mm]))


@pytest.mark.parametrize("seed", range(2))
def test_axes_on_slice_equal_the_floating_point_hull_to_rounding(seed: int) -> None:
    """The earlier computation: the long axis bit for bit; the short axis to the last bits.

    The earlier hull ran in mm in floating point, and at odd spacings (3.3 × 0.83 mm,
    ⅓ × 0.1 mm) kept a point lying on an edge of the hull (about 1 slice in 400 here),
    which moved the short axis by a few units in the last place (1e-15 mm).
    """
    from bonelesion.report.figures import _axes_on_slice

    rng = np.random.default_rng(seed)
    for mask in _varied_masks(rng):
        for row_mm, col_mm in _SPACINGS:
            (long_mm, short_mm) = _axes_on_slice(mask, row_mm, col_mm)
            (ref_long, ref_short) = _reference_axes_on_slice(mask, row_mm, col_mm)
            assert long_mm == ref_long
            assert short_mm == pytest.approx(ref_short, rel=1e-13, abs=1e-13)
            if row_mm == col_mm:  # square pixels (nearly every scanner): bit for bit
                assert short_mm == ref_short


def test_lesion_geometry_equals_the_earlier_computation() -> None:
    """Centroid, box, plane and volume of 3-D masks (bool and integer) as before, and the
    axes of their largest cross-section."""
    from bonelesion.model import Volume
    from bonelesion.report.figures import (
        _axes_on_slice,
        lesion_geometry,
        mask_bounding_box,
        plane_name,
    )

    rng = np.random.default_rng(3)
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    for k in range(60):
        shape = tuple(int(n) for n in rng.integers(2, 25, size=3))
        centre = rng.uniform(0, shape)
        radii = rng.uniform(0.6, 12, size=3)
        grid = np.stack(np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]], axis=-1).astype(float)
        array = (((grid - centre) / radii) ** 2).sum(axis=-1) <= 1.0
        if not array.any():
            continue
        mask = Volume(array=array.astype(np.uint8) if k % 3 == 0 else array,
                      spacing_mm=tuple(rng.uniform(0.4, 3.0, size=3)),
                      origin_lps_mm=tuple(rng.uniform(-200, 200, size=3)),
                      direction_lps=direction if k % 2 else np.eye(3))
        got = lesion_geometry(f"L{k}", mask)
        box = mask_bounding_box(array)
        sub = array[box]
        idx = np.argwhere(sub).astype(np.float64) + [b.start for b in box]
        centroid = mask.index_to_lps(idx.mean(axis=0)[None, :])[0]
        counts = sub.reshape(sub.shape[0], -1).sum(axis=1)
        axes = _axes_on_slice(sub[int(np.argmax(counts))], mask.spacing_mm[1],
                              mask.spacing_mm[2])  # pinned above
        assert got.centroid_lps_mm == tuple(float(x) for x in centroid)
        assert got.box == box and (got.long_axis_mm, got.short_axis_mm) == axes
        assert got.plane == plane_name(mask)
        assert got.volume_ml == float(sub.sum()) * mask.voxel_volume_mm3 / 1000.0
