"""`run_export`: the library side of ``bonelesion run`` (the CLI only parses arguments)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from bonelesion.batch.executors import check_executor
from bonelesion.batch.inventory import build_inventory
from bonelesion.batch.names import Pseudonymiser
from bonelesion.batch.progress import Progress
from bonelesion.batch.runner import BatchOptions, BatchSummary, run_batch
from bonelesion.errors import InputError
from bonelesion.pipeline.definition import load_pipeline
from bonelesion.pipeline.study import StudyOutcome, StudyTask, run_study

__all__ = ["run_export", "CATALOGUE_NAME"]

logger = logging.getLogger(__name__)

CATALOGUE_NAME = "catalogue.sqlite"


def run_export(
    pipeline: str | Path,
    export_dir: str | Path,
    out_dir: str | Path,
    *,
    rois: str | Path | None = None,
    workers: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    force: bool = False,
    retry_failed: bool = False,
    pseudonymise: bool = False,
    pseudonym_key_file: str | Path | None = None,
    catalogue: str | Path | None = None,
    progress: Progress | None = None,
    study_function: Callable[[StudyTask], StudyOutcome] = run_study,
) -> BatchSummary:
    """Index ``export_dir``, plan every study for ``pipeline``, run what is not current.

    Parameters
    ----------
    pipeline : str or Path
        Name of a shipped pipeline (``combined``) or path to a pipeline TOML.
    export_dir, out_dir : path
        The DICOM export (read-only) and the output folder (created; holds the catalogue,
        the results store, per-study folders and the tables).
    rois : path, optional
        ROI source (annotations CSV, SEG, RTSTRUCT, NIfTI labels).
    workers, executor, scheduler
        Where studies run (see `bonelesion.batch.executors.execute`); the index uses
        ``workers`` processes too.
    force : bool
        Redo every study, even those current in the store.
    retry_failed : bool
        Redo studies whose stored result is a failure with unchanged inputs.
    pseudonymise : bool
        Replace PatientID in every output by its keyed hash (see `Pseudonymiser`).
    catalogue : path, optional
        Where the index catalogue lives (default ``OUT_DIR/catalogue.sqlite``). It holds the
        export's file paths: keep it outside a pseudonymised output folder you share.

    Raises
    ------
    ConfigError
        Invalid pipeline, executor, or pseudonymisation without a key.
    InputError
        Missing export folder or unreadable ROI file.
    """
    definition = load_pipeline(pipeline)
    check_executor(executor, scheduler)
    pseudonymiser = Pseudonymiser.from_environment(pseudonym_key_file) if pseudonymise else None
    out = Path(out_dir)
    export = Path(export_dir)
    if rois is not None and not Path(rois).is_file():
        raise InputError(f"ROI file {rois} does not exist. Potential fix: check --rois.")
    try:
        out.resolve().relative_to(export.resolve())
        inside = True
    except ValueError:
        inside = False
    if inside:
        raise InputError(
            f"Output folder {out} is inside the export {export}; the next run would index its "
            "own outputs. Potential fix: choose --out outside the export."
        )
    out.mkdir(parents=True, exist_ok=True)
    logger.info("indexing export %s", export)
    bar = progress if progress is not None else Progress(0)
    catalogue_path = Path(catalogue) if catalogue else out / CATALOGUE_NAME
    catalogue_path.parent.mkdir(parents=True, exist_ok=True)
    inventory = build_inventory(
        export,
        catalogue_path,
        workers=workers,
        progress=bar.indexing,
    )
    logger.info("%d studies, %d bad files", len(inventory.studies), len(inventory.bad_files))
    options = BatchOptions(
        out_dir=out,
        rois_path=Path(rois) if rois else None,
        workers=workers,
        executor=executor,
        scheduler=scheduler,
        force=force,
        retry_failed=retry_failed,
        pseudonymiser=pseudonymiser,
    )
    return run_batch(definition, inventory, options, study_function=study_function, progress=bar)
