"""Benchmark: ``bonelesion convert`` against ``dcm2niix -z y`` on the enhanced multi-frame sets.

Both are run as whole processes (interpreter start-up and imports included, as a user
runs them), side by side: each repeat runs dcm2niix then bonelesion on the same folder,
each into a fresh output folder, so both see the same machine load. The median wall time
of each and their ratio (bonelesion / dcm2niix) are printed per set, with the 1-minute
load average before and after (the machine may be shared: compare ratios, not seconds).

The sets are the enhanced (multi-frame) objects of the shared test data (real scanner
files; see its MANIFEST.md): Siemens XA30 enhanced DWI (819 frames in 21 files + maps),
Philips and Siemens XA10 enhanced objects, and the Philips enhanced DTI of the
dicom2nifti cases. A set that is absent is skipped with a note.

Before timing, the package's bytecode is brought up to date (``python -m compileall``, as
``pip install`` does for an installed package), so that a development tree run with
``PYTHONDONTWRITEBYTECODE`` does not compile every module in every run. The import floor —
``python -c "import numpy, pydicom, nibabel"``, the libraries any conversion with them
loads — is timed in the same turns and printed beside each set.

Usage::

    python bench/bench_convert.py [--data ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (label, folder inside the shared data) of every enhanced multi-frame set.
ENHANCED_SETS = (
    ("siemens_xa30_dwi_819_frames", "dwi_siemens_xa30_enhanced_pa/dicom"),
    ("philips_siemens_xa10_small", "enhanced_philips_siemens_small/dicom"),
    ("philips_enhanced_dti", "multivendor_cases_dicom2nifti/dicom/philips_enhanced"),
)


def _run(command: list[str]) -> float:
    """Wall seconds of one process; fails loudly if it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace')[-500:]}")
    return wall


def main() -> None:
    """Time both converters on every enhanced set; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "BONELESION_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        raise SystemExit("dcm2niix not found on PATH (pip install dcm2niix)")
    version = subprocess.run([dcm2niix, "-v"], capture_output=True, text=True, check=False)
    print(f"dcm2niix: {(version.stdout or version.stderr).strip().splitlines()[-1]}")
    print(f"cpus available: {len(os.sched_getaffinity(0))}; load average (1 min) before: "
          f"{os.getloadavg()[0]:.2f}")
    package = ROOT / "src" / "bonelesion"
    if package.is_dir():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True,
                       stdout=subprocess.DEVNULL)
    bonelesion = [sys.executable, "-m", "bonelesion", "-q", "convert"]
    floor_command = [sys.executable, "-c", "import numpy, pydicom, nibabel"]
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, rel in ENHANCED_SETS:
            folder = args.data / rel
            if not folder.is_dir():
                print(f"{label}: {folder} not found, skipped")
                continue
            n_files = sum(1 for p in folder.rglob("*") if p.is_file())
            size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
            ours: list[float] = []
            theirs: list[float] = []
            floor: list[float] = []
            for run in range(args.repeats):
                out_ref = Path(tmp) / f"{label}-dcm2niix-{run}"
                out_ref.mkdir()
                theirs.append(_run([dcm2niix, "-z", "y", "-o", str(out_ref), str(folder)]))
                ours.append(_run([*bonelesion, str(folder), str(Path(tmp) / f"{label}-{run}")]))
                floor.append(_run(floor_command))
            ratio = statistics.median(ours) / statistics.median(theirs)
            ratios.append(ratio)
            print(f"{label} ({n_files} files, {size_mb:.1f} MB): bonelesion median "
                  f"{statistics.median(ours):.3f} s (min {min(ours):.3f}), dcm2niix -z y median "
                  f"{statistics.median(theirs):.3f} s (min {min(theirs):.3f}); ratio "
                  f"{ratio:.2f}x over {args.repeats} runs; import floor (numpy, pydicom, "
                  f"nibabel) median {statistics.median(floor):.3f} s = "
                  f"{statistics.median(floor) / statistics.median(theirs):.2f}x; load average "
                  f"(1 min) {os.getloadavg()[0]:.2f}")
    if ratios:
        print(f"worst ratio {max(ratios):.2f}x (target <= 2.5x)")


if __name__ == "__main__":
    main()
