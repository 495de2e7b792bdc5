"""Batch runs over whole exports: plan, run (local, process pool, Dask), store, resume.

Public API
----------
run_export(pipeline, export_dir, out_dir, ...) -> BatchSummary
    Index an export, plan and run every study not yet current, rebuild the tables.
measure_export(export_dir, out_dir, ...) -> BatchSummary
    The same in this process with the ``combined`` pipeline, refusing to overwrite.
run_batch(definition, inventory, options, ...) -> BatchSummary
    The same over an already built `Inventory`.
ResultsStore
    The SQLite results store (resume key: study, input instances, pipeline hash).
"""

from __future__ import annotations

from bonelesion.batch.api import measure_export, run_export
from bonelesion.batch.names import Pseudonymiser, safe_component
from bonelesion.batch.progress import Progress
from bonelesion.batch.runner import BatchOptions, BatchSummary, run_batch
from bonelesion.batch.store import ResultsStore

__all__ = [
    "run_export",
    "measure_export",
    "run_batch",
    "BatchOptions",
    "BatchSummary",
    "ResultsStore",
    "Pseudonymiser",
    "safe_component",
    "Progress",
]
