"""Benchmark the phantom writers (plain script, not a test).

Usage::

    python bench/bench_phantom_write.py [--shape 300 512 512] [--compressed]

Prints the wall time of `write_ct_series` (the loader benchmark's input) and of one
`write_study`, and the time SimpleITK's ImageSeriesReader needs to read the CT back.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

from bonelesion.phantom import write_ct_series, write_study


def main() -> None:
    """Run the benchmark and print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512))
    parser.add_argument("--compressed", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ct"
        t0 = time.perf_counter()
        write_ct_series(out, shape=tuple(args.shape), compressed=args.compressed)
        t_write = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in out.iterdir()) / 1e6
        print(f"write_ct_series {tuple(args.shape)} compressed={args.compressed}: "
              f"{t_write:.1f} s, {size_mb:.0f} MB, {args.shape[0] / t_write:.0f} slices/s")
        t0 = time.perf_counter()
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(out)))
        img = reader.Execute()
        print(f"SimpleITK ImageSeriesReader: {time.perf_counter() - t0:.1f} s, "
              f"size {img.GetSize()}")
        t0 = time.perf_counter()
        write_study(Path(tmp) / "study", compressed=args.compressed)
        print(f"write_study (noisy, compressed={args.compressed}): "
              f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
