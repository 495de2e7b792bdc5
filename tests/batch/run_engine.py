"""Subprocess driver of the kill/resume test: run_batch over a pickled inventory.

Usage: python run_engine.py INVENTORY.pickle OUT_DIR EXECUTOR WORKERS
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import batchkit  # noqa: E402

from bonelesion.batch.progress import Progress  # noqa: E402
from bonelesion.batch.runner import BatchOptions, run_batch  # noqa: E402
from bonelesion.pipeline.definition import load_pipeline  # noqa: E402


def main() -> int:
    inv_path, out, executor, workers = sys.argv[1:5]
    inventory = pickle.loads(Path(inv_path).read_bytes())
    summary = run_batch(
        load_pipeline("ct_sclerotic"), inventory,
        BatchOptions(out_dir=Path(out), executor=executor, workers=int(workers)),
        study_function=batchkit.checksum_study,
        progress=Progress(0, stream=sys.stderr, tty=False),
    )
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
