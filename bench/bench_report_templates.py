"""Benchmark: a process's first load of the report templates, compiled there vs ahead of time.

Each sample is a fresh interpreter (jinja2 imported beforehand, as the per-study run's
background thread does) timing ``prepare_study_template()`` (study.html.j2 and its base) and
then index.html.j2, as a ``measure``/``run`` process does once. "compile": Jinja2 compiles
every template in the process (before `bonelesion.report.precompile`, or with stale compiled
templates); "precompiled": the templates compiled ahead of time, as a wheel ships them (here
into a temporary folder; one untimed warm-up process per mode writes the bytecode). The two
are alternated over the rounds; medians and the ratio are printed.

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
import sys, time
from pathlib import Path
import jinja2
from bonelesion.report import html_report, precompile
precompile.COMPILED = Path(sys.argv[1])
start = time.perf_counter()
html_report.prepare_study_template()
study = time.perf_counter()
html_report._environment().get_template("index.html.j2")
end = time.perf_counter()
print((study - start) * 1000, (end - start) * 1000)
"""


def _sample(env: dict[str, str], compiled: Path) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(compiled)], env=env,
                          capture_output=True, text=True, check=True)
    study_ms, all_ms = done.stdout.split()
    return float(study_ms), float(all_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    from bonelesion.report.precompile import compile_templates

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        compile_templates(Path(tmp) / "compiled")
        modes = {"compile": Path(tmp) / "none", "precompiled": Path(tmp) / "compiled"}
        for folder in modes.values():
            _sample(env, folder)  # warm-up: bytecode of the modules
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in modes}
        for _ in range(args.rounds):
            for name, folder in modes.items():
                samples[name].append(_sample(env, folder))
    med = {name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v))
           for name, v in samples.items()}
    print(f"report templates, first load in a process ({args.rounds} rounds, medians)")
    print(f"{'':12s} {'study + base':>12s} {'+ index':>10s}")
    for name, (study_ms, all_ms) in med.items():
        print(f"{name:12s} {study_ms:9.1f} ms {all_ms:7.1f} ms")
    print(f"saved per process: {med['compile'][1] - med['precompiled'][1]:.1f} ms "
          f"(precompiled / compile = {med['precompiled'][1] / med['compile'][1]:.3f})")


if __name__ == "__main__":
    main()
