"""Batch throughput: studies per minute with 1 and 2 workers on generated phantom studies.

Usage::

    python bench/bench_batch.py [--studies N] [--executor process|dask] [--workdir DIR]

Writes N digital-phantom studies (CT + Dixon + DWI/ADC, real DICOM) once, then runs the
``combined`` pipeline over them with 1 worker (local executor) and with 2 workers, each into
a fresh output folder, and prints studies per minute and the speed-up. Indexing is timed
separately (it runs before the studies and is shared by all executors). Target: ≥ 1.7× from
one to two workers on an otherwise idle 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bonelesion.batch import Progress, run_batch  # noqa: E402
from bonelesion.batch.runner import STORE_NAME, BatchOptions  # noqa: E402
from bonelesion.batch.store import ResultsStore  # noqa: E402
from bonelesion.phantom import write_study  # noqa: E402
from bonelesion.pipeline.definition import load_pipeline  # noqa: E402
from bonelesion.pipeline.inventory import build_inventory  # noqa: E402

VENDORS = ("siemens", "ge", "philips")


def make_export(root: Path, n: int) -> tuple[Path, Path]:
    """Write ``n`` phantom studies under root/export and their ROIs to root/rois.csv."""
    export = root / "export"
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for i in range(n):
        folder = export / f"study{i:03d}"
        write_study(folder, vendor=VENDORS[i % len(VENDORS)], seed=1000 + i)
        with open(folder / "rois.csv", newline="") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows.extend(reader)
        for name in ("rois.csv", "truth.json"):
            (folder / name).unlink()
    rois = root / "rois.csv"
    with open(rois, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return export, rois


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--executor", choices=("process", "dask"), default="process")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_batch_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()}")
    t0 = time.perf_counter()
    export, rois = make_export(root, args.studies)
    print(f"wrote {args.studies} phantom studies in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    inventory = build_inventory(export, root / "catalogue.sqlite", workers=1)
    print(
        f"indexed {sum(len(c.files) for s in inventory.studies for c in s.candidates)} files "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    definition = load_pipeline("combined")
    rates: dict[int, float] = {}
    for workers, executor in ((1, "local"), (2, args.executor)):
        out = root / f"out_{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        summary = run_batch(
            definition,
            inventory,
            BatchOptions(out_dir=out, rois_path=rois, workers=workers, executor=executor),
            progress=Progress(0, stream=io.StringIO(), tty=False),
        )
        elapsed = time.perf_counter() - t0
        assert summary.studies_ok == args.studies, summary.failures
        rates[workers] = summary.studies_ok / elapsed * 60.0
        with ResultsStore(out / STORE_NAME) as store:
            per_study = [s.duration_s for s in store.studies()]
        print(
            f"{workers} worker(s), {executor}: {summary.studies_ok} studies in {elapsed:.1f} s "
            f"= {rates[workers]:.1f} studies/min (mean {sum(per_study) / len(per_study):.2f} s "
            "per study inside a worker; it grows when the cores are shared with other load)"
        )
    same = (root / "out_1" / "lesions.csv").read_bytes() == (
        root / "out_2" / "lesions.csv"
    ).read_bytes()
    print(
        f"speed-up 1 → 2 workers: {rates[2] / rates[1]:.2f}x (target ≥ 1.7x); "
        f"identical lesions.csv: {same}"
    )
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
