"""`run_export` and `measure_export`: the library side of ``bonelesion run`` and ``measure``.

Both are the same path (index → plan → run each study → tables); ``measure`` is ``run`` of
the ``combined`` pipeline (unless told otherwise) in this process, refusing to overwrite an
earlier result unless forced.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bonelesion.batch.executors import check_executor
from bonelesion.batch.names import Pseudonymiser
from bonelesion.batch.progress import Progress
from bonelesion.batch.runner import BatchOptions, BatchSummary, run_batch
from bonelesion.errors import InputError
from bonelesion.pipeline import side
from bonelesion.pipeline.definition import load_pipeline, with_overrides
from bonelesion.pipeline.inventory import build_inventory
from bonelesion.pipeline.per_study import (
    LABELLING_MODULES,
    StudyOutcome,
    StudyTask,
    import_study_modules,
    run_study,
)
from bonelesion.report.outputs import OutputOptions

__all__ = ["run_export", "measure_export", "CATALOGUE_NAME"]

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
    config: str | Path | None = None,
    classifier_config: str | Path | None = None,
    model: str | Path | None = None,
    outputs: OutputOptions | None = None,
    command: tuple[str, ...] = (),
    rois_cover_other_studies: bool = False,
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
    config, classifier_config : path, optional
        Measurement configuration (``[stages.*]``) and classifier thresholds laid over the
        pipeline's own (`with_overrides`).
    model : path, optional
        A trained model (``bonelesion train``) used instead of the rules.
    outputs : OutputOptions, optional
        Which per-study views to render (QC images, DICOM SEG/SR, report.html; all by
        default).
    command : tuple of str
        The command line, recorded in every results document.
    rois_cover_other_studies : bool
        The ROI file may name studies that are not in this export (``watch``: other passes);
        otherwise each such row is a warning (``warnings.csv``; the exit code is unchanged).

    Raises
    ------
    ConfigError
        Invalid pipeline, executor, or pseudonymisation without a key.
    InputError
        Missing export folder; a missing or invalid ROI file; ROI rows without a
        study_instance_uid when the export holds more than one study.
    RunInterrupted
        SIGINT or SIGTERM: what finished is stored; rerun to resume.
    """
    definition = with_overrides(load_pipeline(pipeline), config_path=config,
                                classifier_config_path=classifier_config)
    if model is not None:
        from bonelesion.classify.model import load_model

        load_model(model)  # a bad model fails before any study is read
    check_executor(executor, scheduler)
    pseudonymiser = Pseudonymiser.from_environment(pseudonym_key_file) if pseudonymise else None
    out = Path(out_dir)
    export = Path(export_dir)
    if rois is not None and not Path(rois).is_file():
        raise InputError(f"ROI file {rois} does not exist. Potential fix: check --rois.")
    lesions = None
    if rois is not None:
        from bonelesion.roi.sources import load_lesions

        lesions = load_lesions(rois)  # a bad ROI file fails before any study is read
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
    here = executor == "local" and workers == 1 and study_function is run_study
    with contextlib.ExitStack() as stack:
        # in this process: a helper process labels the CTs (started now, it imports while
        # the export is indexed), or, where none can be forked, a thread imports what the
        # studies need meanwhile (no pool is forked while it imports)
        if here and stack.enter_context(side.started(LABELLING_MODULES)) is None:
            import_study_modules(outputs or OutputOptions())
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
        logger.info("%d studies, %d bad files", len(inventory.studies),
                    len(inventory.bad_files))
        run_warnings = (roi_warnings(lesions, inventory, Path(rois), rois_cover_other_studies)
                        if lesions is not None and rois is not None else ())
        options = BatchOptions(
            out_dir=out,
            rois_path=Path(rois) if rois else None,
            workers=workers,
            executor=executor,
            scheduler=scheduler,
            force=force,
            retry_failed=retry_failed,
            pseudonymiser=pseudonymiser,
            outputs=outputs or OutputOptions(),
            model_path=Path(model) if model is not None else None,
            command=tuple(command),
            warnings=tuple(run_warnings),
            lesions=tuple(lesions) if lesions is not None else None,
        )
        return run_batch(definition, inventory, options, study_function=study_function,
                         progress=bar)


def roi_warnings(lesions: list[Any], inventory: Any, rois: Path, other_studies_ok: bool
                 ) -> list[dict[str, str]]:
    """Check an ROI file's rows against the studies of the export.

    A row without ``study_instance_uid`` applies to every study; it is accepted only when
    the export holds one study. A row naming a study that is not in the export becomes a
    warning (unless ``other_studies_ok``): listed, never silently dropped, never a failure.

    Raises
    ------
    InputError
        Rows without a study UID in an export of several studies, naming the rows.
    """
    studies = {s.study_instance_uid for s in inventory.studies}
    unnamed = [le for le in lesions if not le.study_instance_uid]
    if unnamed and len(studies) > 1:
        listed = ", ".join(f"{le.lesion_id!r} ({le.source})" for le in unnamed[:10])
        more = f" and {len(unnamed) - 10} more" if len(unnamed) > 10 else ""
        raise InputError(
            f"ROI file {rois}: {len(unnamed)} row(s) without study_instance_uid ({listed}{more}) "
            f"in an export of {len(studies)} studies: which study they belong to is unknown. "
            "Potential fix: fill the study_instance_uid column (bonelesion series lists each "
            "study's UID), or measure one study's export at a time."
        )
    if other_studies_ok:
        return []
    return [{"kind": "roi_study_not_in_export", "study_instance_uid": le.study_instance_uid,
             "lesion_id": le.lesion_id,
             "message": f"ROI row {le.lesion_id!r} ({le.source}) names study "
                        f"{le.study_instance_uid}, which is not in the export; not measured"}
            for le in lesions if le.study_instance_uid and le.study_instance_uid not in studies]


#: Files whose presence means an output folder already holds a result.
_RESULT_FILES = ("results.json", "lesions.csv")


def measure_export(
    export_dir: str | Path,
    out_dir: str | Path,
    *,
    rois: str | Path | None = None,
    pipeline: str | Path = "combined",
    force: bool = False,
    **options: Any,
) -> BatchSummary:
    """``bonelesion measure``: `run_export` of one pipeline, in this process, no resume.

    Parameters
    ----------
    export_dir, out_dir : path
        The DICOM export and the output folder (the same layout as ``run``).
    rois : path, optional
        ROI source.
    pipeline : str or Path
        Pipeline name or TOML (default ``combined``: every stage the studies allow).
    force : bool
        Replace an earlier result in ``out_dir``; without it an existing result is refused.
    **options
        Passed to `run_export` (``config``, ``classifier_config``, ``model``, ``outputs``,
        ``pseudonymise``, ``command`` …).

    Raises
    ------
    InputError
        ``out_dir`` already holds results (without ``force``), or any `run_export` error.
    """
    out = Path(out_dir)
    existing = [name for name in _RESULT_FILES if (out / name).exists()]
    if existing and not force:
        raise InputError(f"Output folder {out} already holds {', '.join(existing)}; refusing to "
                         "overwrite. Potential fix: pass --force or choose another --out.")
    return run_export(pipeline, export_dir, out, rois=rois, workers=1, executor="local",
                      force=force, **options)
