"""Subprocess driver of the kill/resume test: run_batch over a pickled inventory.

Usage: python run_engine.py INVENTORY.pickle OUT_DIR EXECUTOR WORKERS
(with ``src`` and ``tests`` on PYTHONPATH, as the test starts it)
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from support import batchkit

from bonelesion.batch.progress import Progress
from bonelesion.batch.runner import BatchOptions, run_batch
from bonelesion.pipeline.definition import load_pipeline


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
