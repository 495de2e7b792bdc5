"""Benchmark: rule classifier per lesion, logistic training, and measure with/without views.

Plain script (not a test); prints wall-clock and CPU times. Run from the repository root:
``PYTHONPATH=src python bench/bench_classify_report.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.classify_factory import lesion  # noqa: E402

from bonelesion.classify import classify_lesion  # noqa: E402
from bonelesion.classify.model import fit_logistic_model  # noqa: E402


def timed(label: str, fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        out = fn()
    wall, cpu = (time.perf_counter() - t0) / repeat, (time.process_time() - c0) / repeat
    print(f"{label:55s} wall {wall * 1e3:9.2f} ms   cpu {cpu * 1e3:9.2f} ms")
    return out


def main() -> None:
    m = lesion(ct=(650.0, 800.0), sir=1.0, adc=0.8e-3, annotations={"sins_location": "T12"})
    timed("classify_lesion (CT + CSI + ADC + SINS), per lesion", lambda: classify_lesion(m), 2000)
    rng = np.random.default_rng(0)
    n = 10_000
    y = np.tile([0.0, 1.0], n // 2)
    raw = np.column_stack([np.where(y == 1, rng.normal(654, 176, n), rng.normal(1190, 239, n)),
                           np.where(y == 1, rng.normal(0.98, 0.11, n), rng.normal(0.75, 0.19, n))])
    raw[rng.random(raw.shape) < 0.2] = np.nan
    model = timed(f"fit_logistic_model, {n} lesions, 2 features, 5-fold CV",
                  lambda: fit_logistic_model(raw, y, ["ct_attenuation_mean_hu",
                                                      "chemical_shift_ratio"]))
    print(f"  CV AUC {model.cv['auc']:.3f}")

    from bonelesion.batch import measure_export
    from bonelesion.phantom import write_study
    from bonelesion.report.outputs import OutputOptions

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_study(root / "study", vendor="siemens", seed=1)
        for label, options in (("measure, no views", OutputOptions(qc=False, dicom=False)),
                               ("measure with QC PNG, SEG, SR, HTML", OutputOptions())):
            out = root / label.replace(" ", "_").replace(",", "")
            timed(f"{label}: 6 lesions, 7 series (index, load, measure, call, write)",
                  lambda out=out, options=options: measure_export(
                      root / "study", out, rois=root / "study" / "rois.csv", outputs=options))
        # bonelesion classify: re-call a cohort table of n rows (the phantom's rows repeated)
        from bonelesion.report.recall import recall_table

        table = root / "measure_no_views" / "lesions.csv"
        rows = table.read_text(encoding="utf-8").splitlines()
        n_rows = 5000
        body = [rows[1 + i % (len(rows) - 1)] for i in range(n_rows)]
        (root / "cohort.csv").write_text("\n".join([rows[0], *body]) + "\n", encoding="utf-8")
        timed(f"recall_table (bonelesion classify), {n_rows} rows",
              lambda: recall_table(root / "cohort.csv", root / "recall", force=True))


if __name__ == "__main__":
    main()
