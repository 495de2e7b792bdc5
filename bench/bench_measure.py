"""Benchmark: `bonelesion measure` with 1, 10, 40 and 200 sphere ROIs on a 512×512×300 CT.

Whole processes, side by side in one run: the command measured is exactly
``bonelesion measure CT --rois R --out O --no-dicom --no-qc`` (exit 0, one row per ROI),
alternated with the reference ``import bonelesion; load_volume(CT)`` (import + load), over
several rounds; the median of each is printed with the ratio to import + load, and the peak
resident memory of each measure process (``ru_maxrss`` of the child) as a multiple of the
float32 volume. Targets (issue "per-lesion work on the lesion"): 40 lesions ≤ 1.5× and
200 lesions ≤ 2.5× import + load; peak memory ≤ 1.5× the float32 volume.

Lesions are spheres of radius 3–12 mm spread through the whole volume (bone and soft tissue
alike), deterministic (seeded).

Usage::

    python bench/bench_measure.py [--slices 300] [--rounds 3] [--counts 1 10 40 200] [--src DIR]

``--src`` measures another source tree of bonelesion (default: this checkout's ``src``),
e.g. an earlier commit unpacked with ``git archive <commit> src | tar -x -C /tmp/before``,
for a before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

LOAD = "import sys, bonelesion; v = bonelesion.load_volume(sys.argv[1]); print(v.shape)"


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one child process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:  # a pipe could fill up and block the child
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} … exited {code}:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def _rois(path: Path, n: int, ct: Path, seed: int = 0) -> None:
    from bonelesion.dicom.series import load_series

    (stack,) = load_series(ct, decode=False)
    shape = np.asarray(stack.shape)
    rng = np.random.default_rng(seed)
    idx = rng.uniform([10, 30, 30], shape - [10, 30, 30], size=(n, 3))
    origin = np.asarray(stack.origin_lps_mm)
    direction = np.asarray(stack.direction_lps)
    spacing = np.asarray(stack.spacing_mm)
    centres = origin + (idx * spacing) @ direction.T
    radii = rng.uniform(3.0, 12.0, size=n)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["lesion_id", "center_l_mm", "center_p_mm", "center_s_mm", "radius_mm"])
        for i, (c, r) in enumerate(zip(centres, radii, strict=True)):
            w.writerow([f"L{i:03d}", *(f"{v:.3f}" for v in c), f"{r:.2f}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 40, 200])
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="bonelesion source tree the processes run (default: this one)")
    args = parser.parse_args()
    from bonelesion.phantom import write_ct_series

    env = dict(os.environ)
    env["PYTHONPATH"] = str(args.src.resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        root = Path(tmp)
        ct = write_ct_series(root / "ct", shape=(args.slices, 512, 512), seed=1)
        volume_mib = args.slices * 512 * 512 * 4 / 2**20
        rois = {}
        for n in args.counts:
            rois[n] = root / f"rois_{n}.csv"
            _rois(rois[n], n, ct)
        print(f"CT {args.slices}×512×512 (float32 {volume_mib:.0f} MiB); "
              f"load average {os.getloadavg()[0]:.2f}; bonelesion from {args.src}")
        load_times: list[float] = []
        results: dict[int, list[tuple[float, float]]] = {n: [] for n in args.counts}
        for r in range(args.rounds):
            load_times.append(_run([sys.executable, "-c", LOAD, str(ct)], env)[0])
            for n in args.counts:
                out = root / f"out_{n}_{r}"
                wall, peak = _run([sys.executable, "-m", "bonelesion", "-q", "measure", str(ct),
                                   "--rois", str(rois[n]), "--out", str(out), "--no-dicom",
                                   "--no-qc"], env)
                with (out / "lesions.csv").open(newline="") as fh:
                    rows = list(csv.DictReader(fh))
                if len(rows) != n:
                    raise SystemExit(f"{n} ROIs gave {len(rows)} rows")
                results[n].append((wall, peak))
        load = statistics.median(load_times)
        print(f"{'import + load_volume':28s} {load:7.2f} s   (median of {args.rounds})")
        for n in args.counts:
            wall = statistics.median(w for w, _ in results[n])
            peak = max(p for _, p in results[n])
            print(f"{f'measure, {n} lesions':28s} {wall:7.2f} s   {wall / load:5.2f}× load   "
                  f"peak RSS {peak:6.0f} MiB = {peak / volume_mib:4.2f}× float32 volume")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
