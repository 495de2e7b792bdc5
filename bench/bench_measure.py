"""Benchmark: `bonelesion measure` with 1, 10, 40 and 200 sphere ROIs on a 512×512×300 CT.

Whole processes, side by side in one run: the command measured is exactly
``bonelesion measure CT --rois R --out O --no-dicom --no-qc`` (exit 0, one row per ROI),
alternated with the reference ``import bonelesion; load_volume(CT)`` (import + load), over
several rounds after one untimed warm-up run (bytecode cached, as in an installed package;
``PYTHONDONTWRITEBYTECODE`` is dropped for the children); the median of each is printed
with the ratio to import + load, and the peak
resident memory of each measure process (``ru_maxrss`` of the child: the larger of it and its
labelling helper process) as a multiple of the float32 volume; on Linux also the peak of the
summed proportional set size of the command and its helper, sampled in one more run per
count (memory they share counts once). Targets (issue "per-lesion work on the lesion"): 40 lesions ≤ 1.5× and
200 lesions ≤ 2.5× import + load; peak memory ≤ 1.5× the float32 volume.

Lesions are spheres of radius 3–12 mm spread through the whole volume (bone and soft tissue
alike), deterministic (seeded).

Usage::

    python bench/bench_measure.py [--slices 300] [--rounds 3] [--counts 1 10 40 200] [--src DIR]

``--peer-python PY`` also times, once (in the first round), the route a researcher would script
instead (PEERS.md): ``dcm2niix`` to NIfTI, a NIfTI label map of the same spheres, and
pyradiomics first-order features per label, run by interpreter ``PY`` (one with pyradiomics
installed; pyradiomics is not a dependency of bonelesion) on ``--peer-lesions`` lesions.

``--src`` measures another source tree of bonelesion (default: this checkout's ``src``),
e.g. an earlier commit unpacked with ``git archive <commit> src | tar -x -C /tmp/before``,
for a before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
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


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return out


def _pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _peak_tree_pss(cmd: list[str], env: dict[str, str]) -> float:
    """Peak of the summed proportional set size of a command and its child processes (MiB).

    Memory shared between them (the CT the labelling helper maps) counts once, split
    between them; sampled every 5 ms, in a run of its own (the sampling costs time).
    """
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, sum(_pss_mib(p) for p in _tree(proc.pid)))
            time.sleep(0.005)
        if proc.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(cmd[:4])} … exited {proc.returncode}:\n"
                             f"{stderr.read().decode(errors='replace')[-2000:]}")
    return peak


#: The peer route's Python part: a label map of the ROI spheres on the NIfTI grid (each
#: sphere over its own bounding box), then pyradiomics first-order features per label.
PEER = r"""
import csv, sys
import numpy as np, nibabel as nib, SimpleITK as sitk
from radiomics import featureextractor
nii, rois, labels_path = sys.argv[1:4]
img = nib.load(nii)
affine, shape = img.affine, img.shape[:3]
inverse = np.linalg.inv(affine)
labels = np.zeros(shape, np.uint16)
rows = list(csv.DictReader(open(rois)))
for k, row in enumerate(rows, 1):
    ras = np.array([-float(row["center_l_mm"]), -float(row["center_p_mm"]),
                    float(row["center_s_mm"])])
    r = float(row["radius_mm"])
    centre = inverse[:3, :3] @ ras + inverse[:3, 3]
    half = r / np.linalg.norm(affine[:3, :3], axis=0) + 1
    lo = np.clip(np.floor(centre - half).astype(int), 0, shape)
    hi = np.clip(np.ceil(centre + half).astype(int) + 1, 0, shape)
    idx = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij"), -1)
    inside = np.linalg.norm(idx @ affine[:3, :3].T + affine[:3, 3] - ras, axis=-1) <= r
    box = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    box[inside] = k
nib.save(nib.Nifti1Image(labels, affine), labels_path)
extractor = featureextractor.RadiomicsFeatureExtractor()
extractor.disableAllFeatures()
extractor.enableFeatureClassByName("firstorder")
image, mask = sitk.ReadImage(nii), sitk.ReadImage(labels_path)
for k in range(1, len(rows) + 1):
    if (labels == k).any():
        extractor.execute(image, mask, label=k)
"""


def _peer(python: str, ct: Path, rois: Path, work: Path) -> float:
    """Wall seconds of dcm2niix + label map + pyradiomics first order (whole processes)."""
    work.mkdir()
    wall, _ = _run(["dcm2niix", "-z", "n", "-f", "ct", "-o", str(work), str(ct)], dict(os.environ))
    python_wall, _ = _run([python, "-c", PEER, str(work / "ct.nii"), str(rois),
                           str(work / "labels.nii")], dict(os.environ))
    return wall + python_wall


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
    parser.add_argument("--peer-python", metavar="PY",
                        help="also time dcm2niix + pyradiomics with this interpreter")
    parser.add_argument("--peer-lesions", type=int, default=6)
    args = parser.parse_args()
    from bonelesion.phantom import write_ct_series

    peer_times: list[float] = []
    if args.peer_python and shutil.which("dcm2niix") is None:
        raise SystemExit("--peer-python needs dcm2niix on PATH (Debian package dcm2niix)")

    env = dict(os.environ)
    env["PYTHONPATH"] = str(args.src.resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    # as installed (pip compiles the bytecode): without cached bytecode every process would
    # compile bonelesion's modules from source (about 0.15 s), which no user pays
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="bench-measure-") as tmp:
        root = Path(tmp)
        ct = write_ct_series(root / "ct", shape=(args.slices, 512, 512), seed=1)
        volume_mib = args.slices * 512 * 512 * 4 / 2**20
        rois = {}
        for n in {*args.counts, *([args.peer_lesions] if args.peer_python else [])}:
            rois[n] = root / f"rois_{n}.csv"
            _rois(rois[n], n, ct)
        print(f"CT {args.slices}×512×512 (float32 {volume_mib:.0f} MiB); "
              f"load average {os.getloadavg()[0]:.2f}; bonelesion from {args.src}")
        load_times: list[float] = []
        results: dict[int, list[tuple[float, float]]] = {n: [] for n in args.counts}
        _run([sys.executable, "-m", "bonelesion", "-q", "measure", str(ct), "--rois",  # warm-up
              str(rois[min(args.counts)]), "--out", str(root / "warm_up"), "--no-dicom",
              "--no-qc"], env)
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
            if args.peer_python and r == 0:  # minutes per run: once
                peer_times.append(_peer(args.peer_python, ct, rois[args.peer_lesions],
                                        root / f"peer_{r}"))
        tree_pss = {}
        if Path("/proc/self/smaps_rollup").exists():
            for n in args.counts:
                tree_pss[n] = _peak_tree_pss(
                    [sys.executable, "-m", "bonelesion", "-q", "measure", str(ct), "--rois",
                     str(rois[n]), "--out", str(root / f"out_{n}_pss"), "--no-dicom",
                     "--no-qc"], env)
        load = statistics.median(load_times)
        print(f"{'import + load_volume':28s} {load:7.2f} s   (median of {args.rounds})")
        for n in args.counts:
            wall = statistics.median(w for w, _ in results[n])
            peak = max(p for _, p in results[n])
            pss = (f"; all processes {tree_pss[n]:6.0f} MiB = "
                   f"{tree_pss[n] / volume_mib:4.2f}×" if n in tree_pss else "")
            print(f"{f'measure, {n} lesions':28s} {wall:7.2f} s   {wall / load:5.2f}× load   "
                  f"peak RSS {peak:6.0f} MiB = {peak / volume_mib:4.2f}× float32 volume{pss}")
        if peer_times:
            peer = peer_times[0]
            print(f"{f'peer route, {args.peer_lesions} lesions':28s} {peer:7.2f} s   "
                  f"{peer / load:5.2f}× load   (dcm2niix + NIfTI label map + pyradiomics "
                  "first order per label)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
