"""Benchmark: voxel-wise ADC fit of a 256×256×40 volume at 4 b-values, one core.

Run:  python bench/bench_adc.py [--repeat N]
Target (issue 3): under 0.5 s. Threads are pinned to one before numpy is imported.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bonelesion.model.volume import SeriesInfo, Volume  # noqa: E402
from bonelesion.stages.config import DwiAdcConfig  # noqa: E402
from bonelesion.stages.dwi_adc import fit_adc  # noqa: E402

SHAPE = (40, 256, 256)
B_VALUES_S_PER_MM2 = (50.0, 300.0, 600.0, 1000.0)  # all four ≥ 50: all fitted


def build() -> list[Volume]:
    """Noisy DWI with ADC 0.5e-3…3e-3 mm²/s (seeded)."""
    rng = np.random.default_rng(0)
    adc = rng.uniform(0.5e-3, 3.0e-3, size=SHAPE)
    out = []
    for b in B_VALUES_S_PER_MM2:
        signal = 1000.0 * np.exp(-b * adc) + rng.normal(0.0, 5.0, size=SHAPE)
        out.append(Volume(array=signal.astype(np.float32), spacing_mm=(4.0, 1.0, 1.0),
                          origin_lps_mm=(0.0, 0.0, 0.0), direction_lps=np.eye(3),
                          series=SeriesInfo(series_instance_uid="1.2.3", role="dwi",
                                            b_value_s_per_mm2=b)))
    return out


def main() -> None:
    """Print the best-of-N wall time of `fit_adc`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    vols = build()
    config = DwiAdcConfig()
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        fit = fit_adc(vols, config=config)
        times.append(time.perf_counter() - start)
    print(f"fit_adc {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} x {len(B_VALUES_S_PER_MM2)} b-values "
          f"(fitted b {list(fit.b_values_s_per_mm2)}), one thread: best {min(times):.3f} s, "
          f"median {sorted(times)[len(times) // 2]:.3f} s over {args.repeat} runs "
          f"(target < 0.5 s)")


if __name__ == "__main__":
    main()
