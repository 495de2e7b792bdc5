"""Benchmark and accuracy sweep of CT detection (vertebra labelling, lesion candidates).

Modes (all print their figures; nothing is asserted):

``labelling``
    Vertebra labelling of a 512×512×~410 spine-phantom CT (1 mm slices every 0.8 mm), timed
    in this process with numpy/BLAS limited to 2 threads, median of ``--rounds``; peak memory
    of the labelling (tracemalloc: numpy buffers are traced) as a multiple of the float32
    volume. Targets (issue "vertebra levels"): ≤ 10 s, ≤ 3× the float32 volume.
``accuracy``
    Phantom sweep on two seed sets: the tuning seeds (0–5) and held-out seeds (100–111) never
    used while choosing the thresholds; every vendor style, noise 12–15 HU, with and without
    a lumbar rib, osteoporotic, (and sacralised L5 on the held-out set). Per study: vertebrae
    labelled correctly (truth vertebrae T10–S1 matched by body centroid), label confidence,
    trabecular HU error; printed per seed set and per vendor.

Usage::

    python bench/bench_detect.py labelling [--rounds 3]
    python bench/bench_detect.py accuracy [--sets tune heldout] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: Seed sets: (seed, vendor, phantom options, noise SD HU).
SEED_SETS: dict[str, list[tuple[int, str, dict[str, bool], float]]] = {
    "tune": [(0, "siemens", {}, 13.0), (1, "ge", {"lumbar_rib": True}, 12.0),
             (2, "philips", {"osteoporotic": True}, 15.0),
             (3, "siemens", {"sacralised_l5": True}, 14.0),
             (4, "ge", {"osteoporotic": True, "lumbar_rib": True}, 13.0),
             (5, "philips", {}, 15.0)],
    "heldout": [(100, "siemens", {}, 12.0), (101, "ge", {}, 15.0), (102, "philips", {}, 13.0),
                (103, "siemens", {"lumbar_rib": True}, 14.0),
                (104, "ge", {"lumbar_rib": True}, 12.0),
                (105, "philips", {"lumbar_rib": True}, 15.0),
                (106, "siemens", {"osteoporotic": True}, 15.0),
                (107, "ge", {"osteoporotic": True}, 13.0),
                (108, "philips", {"osteoporotic": True, "lumbar_rib": True}, 12.0),
                (109, "siemens", {"sacralised_l5": True}, 13.0),
                (110, "ge", {"osteoporotic": True}, 14.0),
                (111, "philips", {}, 14.0)],
}


def _write(out: Path, seed: int, vendor: str, options: dict[str, bool], noise: float,
           **protocol: Any) -> Path:
    from bonelesion.phantom.spine_study import write_spine_study_from_options

    if not (out / "truth.json").exists():
        write_spine_study_from_options(out, seed=seed, vendor=vendor, mr=False,
                                       noise_sd_hu=noise, **options, **protocol)
    return out


def _load_ct(folder: Path) -> Any:
    from bonelesion.dicom.series import load_series

    return load_series(sorted(glob.glob(str(folder / "DICOM" / "*" / "*.dcm"))))[0].volume


def labelling(args: argparse.Namespace) -> None:
    """Time and memory of the labeller on a 512×512×~410 CT."""
    from bonelesion.roi.vertebrae import AnchorCountingLabeller

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_detect_"))
    folder = _write(work / "ct410", 7, "siemens", {}, 13.0, slice_thickness_mm=1.0,
                    slice_spacing_mm=0.8)
    ct = _load_ct(folder)
    volume_mib = ct.array.size * 4 / 2**20
    times, peaks = [], []
    labeller = AnchorCountingLabeller()
    for _ in range(args.rounds):
        tracemalloc.start()
        t0 = time.perf_counter()
        lab = labeller.label(ct)
        times.append(time.perf_counter() - t0)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    print(f"CT {ct.shape} ({ct.array.dtype}), float32 volume {volume_mib:.0f} MiB, "
          f"{len(lab.vertebrae)} vertebrae: " + " ".join(v.label or "?" for v in lab.vertebrae))
    print(f"labelling: median {statistics.median(times):.2f} s over {args.rounds} rounds "
          f"(target <= 10 s on 2 cores); peak traced memory {max(peaks):.0f} MiB = "
          f"{max(peaks) / volume_mib:.2f} x the float32 volume (target <= 3 x)")


def _label_study(folder: Path) -> dict[str, Any]:
    from bonelesion.roi.vertebrae import AnchorCountingLabeller

    ct = _load_ct(folder)
    truth = json.loads((folder / "truth.json").read_text())["spine"]
    t0 = time.perf_counter()
    lab = AnchorCountingLabeller().label(ct)
    seconds = time.perf_counter() - t0
    rows = []
    for tv in truth["vertebrae"]:
        found = min(lab.vertebrae, key=lambda v: float(np.linalg.norm(
            np.subtract(v.centroid_lps_mm, tv["body_centroid_lps_mm"])))) if lab.vertebrae \
            else None
        distance = (float(np.linalg.norm(np.subtract(found.centroid_lps_mm,
                                                     tv["body_centroid_lps_mm"])))
                    if found is not None else float("inf"))
        ok = found is not None and distance <= 10.0 and found.label == tv["label"]
        error = (found.trabecular_mean_hu - tv["trabecular_mean_hu"]
                 if found is not None and found.trabecular_mean_hu is not None
                 and tv["trabecular_mean_hu"] is not None else None)
        rows.append({"label": tv["label"], "ok": ok,
                     "confidence": found.confidence if found is not None else 0.0,
                     "trabecular_error_hu": error, "centroid_mm": distance})
    return {"rows": rows, "seconds": seconds}


def accuracy(args: argparse.Namespace) -> None:
    """Labelling accuracy per seed set and vendor."""
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_detect_"))
    for name in args.sets:
        per_vendor: dict[str, list[dict[str, Any]]] = {}
        confident_wrong = 0
        for seed, vendor, options, noise in SEED_SETS[name]:
            tag = "+".join(k for k, v in options.items() if v) or "plain"
            folder = _write(work / f"{name}_{seed}_{vendor}_{tag}", seed, vendor, options, noise)
            result = _label_study(folder)
            rows = result["rows"]
            per_vendor.setdefault(vendor, []).extend(rows)
            wrong = [r for r in rows if not r["ok"]]
            confident_wrong += sum(r["confidence"] >= 0.8 for r in wrong)
            errors = [abs(r["trabecular_error_hu"]) for r in rows
                      if r["trabecular_error_hu"] is not None]
            print(f"  {name} seed {seed:3d} {vendor:8s} {tag:26s} noise {noise:4.1f} HU: "
                  f"{len(rows) - len(wrong)}/{len(rows)} labels right, confidence "
                  f"{min(r['confidence'] for r in rows):.2f}-"
                  f"{max(r['confidence'] for r in rows):.2f}, trabecular |error| max "
                  f"{max(errors):.1f} HU, {result['seconds']:.1f} s")
        all_rows = [r for rows in per_vendor.values() for r in rows]
        right = sum(r["ok"] for r in all_rows)
        print(f"{name}: {right}/{len(all_rows)} vertebrae labelled correctly "
              f"({100.0 * right / len(all_rows):.1f} %; target >= 95 %); wrong with "
              f"confidence >= 0.8: {confident_wrong}")
        for vendor, rows in sorted(per_vendor.items()):
            r_ok = sum(r["ok"] for r in rows)
            errs = [abs(r["trabecular_error_hu"]) for r in rows
                    if r["trabecular_error_hu"] is not None]
            print(f"    {vendor:8s}: {r_ok}/{len(rows)} ({100.0 * r_ok / len(rows):.1f} %), "
                  f"trabecular |error| median {statistics.median(errs):.1f} HU, "
                  f"max {max(errs):.1f} HU")


def main() -> None:
    """Parse the mode and run it."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="labelling",
                        choices=("labelling", "accuracy"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=["tune", "heldout"],
                        choices=sorted(SEED_SETS))
    parser.add_argument("--workdir", help="where phantoms are written (reused when present)")
    args = parser.parse_args()
    if args.mode == "labelling":
        labelling(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
