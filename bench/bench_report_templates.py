"""Benchmark: a process's first load of the report templates, compiled vs from the user's cache.

Each sample is a fresh interpreter (jinja2 imported beforehand, as the per-study run's
background thread does) timing ``prepare_study_template()`` (study.html.j2 and its base) and
then index.html.j2, as a ``measure``/``run`` process does once. "compiled": the cache home is
unusable (``XDG_CACHE_HOME`` is a file), so Jinja2 compiles every template, as before the cache
existed; "cached": a cache filled by one untimed warm-up process. The two are alternated over
the rounds; medians and the ratio are printed.

Usage::

    python bench/bench_report_templates.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import time
import jinja2
from bonelesion.report import html_report
start = time.perf_counter()
html_report.prepare_study_template()
study = time.perf_counter()
html_report._environment().get_template("index.html.j2")
end = time.perf_counter()
print((study - start) * 1000, (end - start) * 1000)
"""


def _sample(env: dict[str, str]) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                          text=True, check=True)
    study_ms, all_ms = done.stdout.split()
    return float(study_ms), float(all_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        unusable = Path(tmp) / "not-a-directory"
        unusable.write_text("")
        envs = {"compiled": {**base, "XDG_CACHE_HOME": str(unusable)},
                "cached": {**base, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}}
        _sample(envs["cached"])  # warm-up: bytecode of the modules, and the cache filled
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in envs}
        for _ in range(args.rounds):
            for name, env in envs.items():
                samples[name].append(_sample(env))
    med = {name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v))
           for name, v in samples.items()}
    print(f"report templates, first load in a process ({args.rounds} rounds, medians)")
    print(f"{'':10s} {'study + base':>14s} {'+ index':>10s}")
    for name, (study_ms, all_ms) in med.items():
        print(f"{name:10s} {study_ms:11.1f} ms {all_ms:7.1f} ms")
    print(f"saved per process: {med['compiled'][1] - med['cached'][1]:.1f} ms "
          f"(cached / compiled = {med['cached'][1] / med['compiled'][1]:.3f})")


if __name__ == "__main__":
    main()
