"""Benchmark the spine phantom writer (plain script, not a test).

Usage::

    python bench/bench_phantom.py [--vendor siemens] [--matrix 512] [--no-mr] [--repeat 1]

Writes one thoracolumbar-pelvic spine study (default: 512², the vendor's slices over
T10–S4, about 250 slices, plus the sagittal MR series) and prints its wall and CPU time,
slices, size on disk, and the time of the lumbar `write_study` measured in the same run as
a reference (ratio = spine / lumbar). The brief's budget is 30 s for the 512² study.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bonelesion.phantom import CtProtocol, MrProtocol, write_spine_study, write_study


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Run the benchmark and print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vendor", default="siemens", choices=("siemens", "ge", "philips"))
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--no-mr", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    mr = MrProtocol(dixon_slices=0) if args.no_mr else MrProtocol()
    with tempfile.TemporaryDirectory() as tmp:
        _, ref_wall, ref_cpu = _timed(write_study, Path(tmp) / "lumbar")
        print(f"reference write_study (lumbar, 42 slices of 128² + MR): {ref_wall:.1f} s wall, "
              f"{ref_cpu:.1f} s CPU")
        for i in range(args.repeat):
            out = Path(tmp) / f"spine{i}"
            truth, wall, cpu = _timed(write_spine_study, out, vendor=args.vendor,
                                      ct=CtProtocol(matrix=args.matrix), mr=mr)
            assert truth.spine is not None
            ct = truth.spine.ct
            size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
            print(f"write_spine_study {args.vendor} {ct.rows}x{ct.columns}x{ct.slices} "
                  f"({ct.slice_thickness_mm:g}/{ct.slice_spacing_mm:g} mm) + "
                  f"{len(truth.series) - 1} MR series: {wall:.1f} s wall, {cpu:.1f} s CPU, "
                  f"{size_mb:.0f} MB, {ct.slices / wall:.0f} CT slices/s; ratio to the "
                  f"lumbar reference {wall / ref_wall:.1f}x (budget 30 s: "
                  f"{'met' if wall <= 30.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
