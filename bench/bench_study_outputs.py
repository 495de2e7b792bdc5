"""Benchmark: the per-lesion cost of writing a study's outputs and the batch tables.

Run:  python bench/bench_study_outputs.py [--lesions N] [--repeat R]

Writes a phantom study (CT and MR, `bonelesion.phantom.write_study`) with N sphere ROIs
(default 200) around its lesions, runs ``measure`` on it without QC images or DICOM out,
and prints the wall time of each output phase (median of R runs, default 3): the lesion
sizes for the report (`lesion_views`), the study document, report.html, results.json (with
its schema check), lesions.csv, the store commit and the batch tables. Then, side by side
with the reference each replaced, on that run's own documents and lesions (ratios
printed): `json_text` against ``json.dumps(indent=2)``, `rows_csv_text` against
``csv.writer``, and a lesion's crop and mask (`Volume.crop`, `Volume.with_array`) against
the same volumes built by the validating `Volume` constructor.
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

#: (module, function, label) of the phases timed; a function imported by name elsewhere is
#: patched there too.
PHASES = (
    ("bonelesion.report.outputs", "lesion_views", "lesion sizes (lesion_views)", ()),
    ("bonelesion.report.document", "study_document", "study document", ()),
    ("bonelesion.report.html_report", "render_study_html", "report.html", ()),
    ("bonelesion.report.document", "write_json", "results.json (with schema check)",
     ("bonelesion.report.outputs",)),
    ("bonelesion.report.outputs", "write_lesions_csv", "lesions.csv (study)", ()),
    ("bonelesion.batch.runner", "_commit", "store commit", ()),
    ("bonelesion.batch.runner", "rebuild_tables", "batch tables", ()),
)


def _timed_phases(times: dict[str, float]) -> None:
    for module_name, attr, label, also in PHASES:
        module = importlib.import_module(module_name)
        original = getattr(module, attr)

        @functools.wraps(original)
        def wrapper(*args: Any, _f: Callable[..., Any] = original, _label: str = label,
                    **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                times[_label] = times.get(_label, 0.0) + time.perf_counter() - start

        for name in (module_name, *also):
            setattr(importlib.import_module(name), attr, wrapper)


def _write_rois(study: Path, n: int, seed: int) -> Path:
    """N spheres around the phantom's lesions (its rois.csv), 3-9 mm radius."""
    rng = np.random.default_rng(seed)
    with (study / "rois.csv").open(newline="") as fh:
        given = list(csv.DictReader(fh))
    path = study / f"rois_{n}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(given[0]))
        writer.writeheader()
        for k in range(n):
            row = dict(given[k % len(given)])
            row["lesion_id"] = f"L{k:04d}"
            for axis in ("l", "p", "s"):
                key = f"center_{axis}_mm"
                row[key] = f"{float(row[key]) + rng.uniform(-4.0, 4.0):.2f}"
            row["radius_mm"] = f"{rng.uniform(3.0, 9.0):.2f}"
            writer.writerow(row)
    return path


def _best(fn: Callable[[], Any], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _side_by_side(label: str, ours: Callable[[], Any], reference: Callable[[], Any],
                  reference_name: str) -> None:
    t_ours, t_ref = _best(ours), _best(reference)
    print(f"  {label:44s} {t_ours * 1e3:8.2f} ms   {reference_name:26s} {t_ref * 1e3:8.2f} ms"
          f"   ratio {t_ours / t_ref:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from bonelesion.batch import measure_export
    from bonelesion.model.volume import IndexBox, Volume
    from bonelesion.phantom import write_study
    from bonelesion.report.document import json_text
    from bonelesion.report.outputs import OutputOptions
    from bonelesion.report.table import COLUMN_NAMES, csv_cell, rows_csv_text
    from bonelesion.units import IntensityUnit

    times: dict[str, float] = {}
    _timed_phases(times)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_study(root / "study", vendor="siemens", seed=1)
        rois = _write_rois(root / "study", args.lesions, seed=2)
        runs: list[dict[str, float]] = []
        for k in range(args.repeat):
            times.clear()
            start = time.perf_counter()
            measure_export(root / "study", root / f"out{k}", rois=rois,
                           outputs=OutputOptions(qc=False, dicom=False, html=True))
            runs.append({**times, "whole measure run": time.perf_counter() - start})
        print(f"measure, {args.lesions} lesions, no QC images or DICOM out "
              f"(median of {args.repeat} runs):")
        for label in (*(p[2] for p in PHASES), "whole measure run"):
            value = statistics.median(r.get(label, 0.0) for r in runs)
            print(f"  {label:44s} {value * 1e3:8.1f} ms   "
                  f"{value * 1e3 / max(args.lesions, 1):6.3f} ms per lesion")

        out = root / "out0"
        study_json = next(out.glob("studies/*/*/results.json"))
        document = json.loads(study_json.read_text(encoding="utf-8"))
        batch = json.loads((out / "results.json").read_text(encoding="utf-8"))
        with (out / "lesions.csv").open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        print("side by side, on this run's documents and rows:")
        _side_by_side("json_text (study results.json)", lambda: json_text(document),
                      lambda: json.dumps(document, indent=2, ensure_ascii=False,
                                         allow_nan=False), "json.dumps(indent=2)")
        _side_by_side("json_text (batch results.json)", lambda: json_text(batch),
                      lambda: json.dumps(batch, indent=2, ensure_ascii=False,
                                         allow_nan=False), "json.dumps(indent=2)")

        def with_writer() -> str:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(COLUMN_NAMES)
            for row in rows:
                writer.writerow([csv_cell(row.get(name)) for name in COLUMN_NAMES])
            return buf.getvalue()

        _side_by_side(f"rows_csv_text ({len(rows)} rows)",
                      lambda: rows_csv_text(COLUMN_NAMES, rows), with_writer, "csv.writer")

        grid = Volume(array=np.zeros((300, 512, 512), dtype=np.int16),
                      spacing_mm=(1.0, 0.7, 0.7), origin_lps_mm=(-180.0, -180.0, -150.0),
                      direction_lps=np.eye(3), intensity_unit=IntensityUnit.HU)
        rng = np.random.default_rng(3)
        boxes = [IndexBox(tuple(int(s) for s in start),  # type: ignore[arg-type]
                          tuple(int(s) + 25 for s in start))  # type: ignore[arg-type]
                 for start in rng.integers(0, 270, size=(args.lesions, 3))]
        masks = [np.ones(box.shape, dtype=bool) for box in boxes]

        def crops() -> None:
            for box, mask in zip(boxes, masks, strict=True):
                grid.crop(box).with_array(mask, intensity_unit=IntensityUnit.MASK)

        def validated() -> None:
            for box, mask in zip(boxes, masks, strict=True):
                crop = Volume(array=grid.array[box.slices], spacing_mm=grid.spacing_mm,
                              origin_lps_mm=tuple(grid.index_to_lps([box.start])[0]),
                              direction_lps=grid.direction_lps,
                              intensity_unit=grid.intensity_unit, series=grid.series)
                Volume(array=mask, spacing_mm=crop.spacing_mm,
                       origin_lps_mm=crop.origin_lps_mm, direction_lps=crop.direction_lps,
                       intensity_unit=IntensityUnit.MASK, series=crop.series)

        _side_by_side(f"{args.lesions} x crop + with_array", crops, validated,
                      "validating Volume(...)")


if __name__ == "__main__":
    main()
