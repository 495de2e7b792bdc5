"""Command-line interface: argparse only; each command calls one library function.

Exit codes
----------
0  success
1  unexpected error (a bug: please report it with the -v traceback)
2  configuration error (bad TOML, unknown key, out-of-range value)
3  input error (unreadable or refused DICOM, bad ROI file …)
4  completed with failures (a batch finished, but some studies or files failed)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bonelesion import __version__
from bonelesion.errors import ConfigError, InputError, PipelineError

__all__ = [
    "build_parser", "main", "EXIT_OK", "EXIT_ERROR", "EXIT_CONFIG", "EXIT_INPUT", "EXIT_PARTIAL",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_INPUT = 3
EXIT_PARTIAL = 4

logger = logging.getLogger("bonelesion.cli")

Handler = Callable[[argparse.Namespace], int]


def _existing_path(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value}: no such file or folder")
    return path


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse ``type=`` function accepting integers ≥ ``minimum``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from exc
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{value!r} must be ≥ {minimum}")
        return n

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


# ---------------------------------------------------------------------------- commands
# Each _add_* registers one subcommand and sets `handler`; handlers import lazily so that
# `bonelesion --help` stays fast.


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``bonelesion`` command."""
    parser = argparse.ArgumentParser(
        prog="bonelesion",
        description="Quantitative bone-lesion imaging from CT and MR DICOM series.",
    )
    parser.add_argument("--version", action="version", version=f"bonelesion {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--log-file", type=Path, help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []  # type: ignore[type-arg]


def _own_or_warning(record: logging.LogRecord) -> bool:
    """Pass bonelesion records at any level, other libraries' only from WARNING up."""
    return (record.levelno >= logging.WARNING or record.name == "bonelesion"
            or record.name.startswith("bonelesion."))


def _configure_logging(args: argparse.Namespace) -> None:
    """Send the log to stderr (and ``--log-file``).

    Only the ``bonelesion`` loggers follow ``-v``/``-q``; third-party libraries (highdicom logs
    every module it copies at INFO, pydicom, SimpleITK …) stay at WARNING: the root logger is
    set to WARNING and each handler drops other libraries' records below WARNING, even from
    a library that lowers its own logger's level.
    """
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file))
    for handler in handlers:
        handler.addFilter(_own_or_warning)
    logging.basicConfig(level=logging.WARNING, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bonelesion").setLevel(level)
    logging.captureWarnings(True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        _report(exc, args)
        return EXIT_CONFIG
    except InputError as exc:
        _report(exc, args)
        return EXIT_INPUT
    except PipelineError as exc:
        _report(exc, args)
        return EXIT_ERROR


def _report(exc: Exception, args: argparse.Namespace) -> None:
    print(f"bonelesion: error: {exc}", file=sys.stderr)
    if args.verbose:
        logger.exception("traceback")


# ---- batch commands (run, qa, regress) ----


def _add_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="run a pipeline over a whole export (resumable, isolated per study)",
        description=(
            "Index EXPORT_DIR, choose the series of each role per study, measure, classify and "
            "report every study, store results in OUT_DIR/results.sqlite and rebuild "
            "OUT_DIR/lesions.csv, results.json, failures.csv, bad_files.csv and summary.txt. "
            "A rerun does only what is missing or changed. Exit 4 when some study or file failed."
        ),
    )
    p.add_argument("pipeline", help="shipped pipeline name (ct_sclerotic, mr_multiparametric, "
                   "combined) or a pipeline TOML path")
    p.add_argument("export_dir", type=_existing_path, help="folder holding the DICOM export")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--rois", type=_existing_path, help="ROI source (annotations CSV, SEG, "
                   "RTSTRUCT, NIfTI labels)")
    p.add_argument("--workers", type=_positive_int, default=1, help="parallel studies (default 1)")
    p.add_argument("--executor", choices=("local", "process", "dask"), default=None,
                   help="where studies run (default: local for 1 worker, else process)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address (with --executor dask); "
                   "default: a LocalCluster of --workers processes")
    p.add_argument("--force", action="store_true", help="redo every study")
    p.add_argument("--retry-failed", action="store_true",
                   help="redo studies whose stored result is a failure")
    p.add_argument("--pseudonymise", action="store_true",
                   help="replace PatientID in outputs by a keyed hash (key: "
                   "$BONELESION_PSEUDONYM_KEY or --pseudonym-key-file)")
    p.add_argument("--pseudonym-key-file", type=_existing_path, help="file holding the key")
    p.add_argument("--catalogue", type=Path, help="index catalogue file (default "
                   "OUT/catalogue.sqlite; it holds export paths: keep it outside a "
                   "pseudonymised OUT you share)")
    p.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                   help="progress display (default: bar on a terminal, lines otherwise)")
    p.set_defaults(handler=_run_handler)


def _run_handler(args: argparse.Namespace) -> int:
    from bonelesion.batch import Progress, run_export

    executor = args.executor or (
        "dask" if args.scheduler else "local" if args.workers == 1 else "process"
    )
    tty = None if args.progress == "auto" else args.progress == "bar"
    summary = run_export(
        args.pipeline, args.export_dir, args.out, rois=args.rois, workers=args.workers,
        executor=executor, scheduler=args.scheduler, force=args.force,
        retry_failed=args.retry_failed, pseudonymise=args.pseudonymise,
        pseudonym_key_file=args.pseudonym_key_file, catalogue=args.catalogue,
        progress=Progress(0, tty=tty),
    )
    print(f"{summary.studies_total} studies: {summary.studies_ok} measured, "
          f"{summary.studies_failed} failed ({summary.studies_run} run now, "
          f"{summary.studies_skipped} already done); {summary.lesions} lesions; "
          f"{len(summary.bad_files)} files not used. Tables in {summary.out_dir}/")
    for f in summary.failures:
        print(f"FAILED study {f['study_instance_uid']} at {f.get('stage', '')} "
              f"(series {f.get('series_instance_uid', '') or '-'}): {f.get('message', '')}",
              file=sys.stderr)
    damaged = sum(b.is_failure for b in summary.bad_files)
    if summary.bad_files:  # paths may hold patient names: listed in the output file only
        print(f"{len(summary.bad_files)} files not used ({damaged} damaged or unusable DICOM): "
              f"see {summary.out_dir / 'bad_files.csv'}", file=sys.stderr)
    return summary.exit_code


_COMMANDS.append(_add_run)


def _add_qa(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "qa",
        help="measure a phantom scan against a QA spec (exit 1 on any failed check)",
        description="Measure each region of SPEC (sphere in LPS mm, or a mask) on the phantom "
        "scan in SCAN_DIR; print a pass/fail table; optionally write JUnit XML. Exit 0 when every "
        "check passes, 1 when any fails.",
    )
    p.add_argument("spec", type=_existing_path, help="QA spec TOML (e.g. configs/qa/*.toml)")
    p.add_argument("scan_dir", type=_existing_path, help="folder holding the phantom scan")
    p.add_argument("--junit", type=Path, help="write JUnit XML here")
    p.set_defaults(handler=_qa_handler)


def _qa_handler(args: argparse.Namespace) -> int:
    from bonelesion.phantom.qa import format_table, load_qa_spec, run_qa, write_junit

    report = run_qa(load_qa_spec(args.spec), args.scan_dir)
    print(format_table(report), end="")
    if args.junit:
        write_junit(report, args.junit)
    return EXIT_OK if report.passed else EXIT_ERROR


def _add_regress(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "regress",
        help="compare two runs lesion by lesion (exit 1 on drift beyond tolerance)",
        description="Compare RESULTS_DIR/lesions.csv with BASELINE_DIR/lesions.csv, matching "
        "lesions by study UID and lesion id; list every value that moved beyond tolerance and "
        "every missing or extra lesion. Exit 1 on any difference.",
    )
    p.add_argument("baseline_dir", type=_existing_path, help="baseline run folder (or lesions.csv)")
    p.add_argument("results_dir", type=_existing_path, help="new run folder (or lesions.csv)")
    p.add_argument("--tolerances", type=_existing_path, help="tolerances TOML")
    p.set_defaults(handler=_regress_handler)


def _regress_handler(args: argparse.Namespace) -> int:
    from bonelesion.phantom.regress import compare_runs, load_tolerances

    report = compare_runs(args.baseline_dir, args.results_dir, load_tolerances(args.tolerances))
    print(report.format(), end="")
    return EXIT_OK if report.passed else EXIT_ERROR


_COMMANDS.extend([_add_qa, _add_regress])


# ---- reader commands (series, convert) ----
def _series_record(stack: object) -> dict[str, object]:
    from bonelesion.dicom.series import Stack

    assert isinstance(stack, Stack)
    info = stack.info
    return {
        "series_instance_uid": info.series_instance_uid,
        "modality": info.modality,
        "manufacturer": info.manufacturer,
        "role": info.role,
        "shape": list(stack.shape) if stack.shape is not None and stack.usable else None,
        "n_volumes": 1 if stack.usable else None,
        "spacing_mm": list(stack.spacing_mm) if stack.spacing_mm is not None else None,
        "origin_lps_mm": list(stack.origin_lps_mm) if stack.origin_lps_mm is not None else None,
        "direction_lps": [list(r) for r in stack.direction_lps]
        if stack.direction_lps is not None
        else None,
        "b_values_s_per_mm2": [info.b_value_s_per_mm2]
        if info.b_value_s_per_mm2 is not None
        else [],
        "echo_time_ms": info.echo_time_ms,
        "files": list(stack.files),
        "problems": list(stack.problems),
    }


def _add_series(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "series",
        help="list the stacks of a DICOM export (headers only) with geometry and problems",
    )
    p.add_argument("export_dir", type=_existing_path, metavar="EXPORT_DIR")
    p.add_argument("--json", action="store_true", help="print a JSON array, one object per stack")
    p.set_defaults(handler=_run_series)


def _run_series(args: argparse.Namespace) -> int:
    import json

    from bonelesion.dicom.series import load_series

    stacks = load_series(args.export_dir, decode=False)
    records = [_series_record(s) for s in stacks]
    if args.json:
        print(json.dumps(records, indent=2))
        return EXIT_OK
    header = f"{'#':>3}  {'modality':8} {'role':20} {'shape':16} {'b':>6} {'TE ms':>7}  status"
    print(header)
    print("-" * len(header))
    for i, stack in enumerate(stacks, start=1):
        shape = "×".join(str(n) for n in stack.shape) if stack.shape and stack.usable else "-"
        b = stack.info.b_value_s_per_mm2
        te = stack.info.echo_time_ms
        status = "ok" if stack.usable else "REFUSED: " + " ".join(stack.problems)
        print(f"{i:>3}  {stack.info.modality:8} {stack.info.role:20} {shape:16} "
              f"{'' if b is None else f'{b:g}':>6} {'' if te is None else f'{te:.2f}':>7}  "
              f"{status}")
        print(f"     {stack.key}  ({len(stack.files)} file(s))")
    return EXIT_OK


def _add_convert(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "convert", help="write every stack of a DICOM export as NIfTI + JSON (+ bval/bvec)"
    )
    p.add_argument("export_dir", type=_existing_path, metavar="EXPORT_DIR")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from bonelesion.dicom.convert import convert_export

    try:
        summary = convert_export(args.export_dir, args.out_dir, force=args.force)
    except FileExistsError as exc:
        print(f"bonelesion: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    n_files = sum(1 for p in summary.written if p.name.endswith(".nii.gz"))
    print(f"wrote {n_files} NIfTI file(s) to {args.out_dir}; {summary.n_refused} stack(s) refused")
    for refused in summary.refused:
        print(f"  REFUSED {refused['stack']}: {' '.join(refused['problems'])}")
    return EXIT_PARTIAL if summary.n_refused else EXIT_OK


_COMMANDS.append(_add_series)
_COMMANDS.append(_add_convert)


# ---- index commands ----
# `bonelesion index EXPORT_DIR [--db FILE] [--workers N] [--strict]`: catalogue an export.
# The catalogue defaults to ./bonelesion-index.sqlite in the current folder (never inside the
# export, which is often read-only); one catalogue file per export (a catalogue of another
# export is refused with exit code 3).


def _add_index(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "index",
        help="catalogue every file of an export folder into SQLite",
        description=(
            "Walk EXPORT_DIR (any layout), read DICOM headers only, and record every file "
            "with a status and reason in an SQLite catalogue. Re-running reads only new or "
            "changed files and drops removed ones. A keyed hash of PatientID is stored only "
            "when the environment variable BONELESION_PATIENT_KEY holds a secret."
        ),
    )
    p.add_argument("export_dir", type=_existing_path, metavar="EXPORT_DIR",
                   help="folder holding the exported files")
    p.add_argument("--db", type=Path, default=Path("bonelesion-index.sqlite"),
                   help="catalogue file (default: ./bonelesion-index.sqlite in the current "
                        "folder)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes reading headers (default: every CPU)")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 4 when any file is truncated, corrupt or lacks "
                        "attributes")
    p.add_argument("--problems", action="store_true",
                   help="list every problem entry (path, status, reason) after the summary")
    p.set_defaults(handler=_run_index)


def _run_index(args: argparse.Namespace) -> int:
    import os
    import time

    from bonelesion.dicom.index import Catalogue, index_export

    secret_text = os.environ.get("BONELESION_PATIENT_KEY")
    secret = secret_text.encode("utf-8") if secret_text else None
    last_log_s = [time.monotonic()]

    def progress(done: int, total: int) -> None:  # an INFO line every 5 s on big exports
        now = time.monotonic()
        if now - last_log_s[0] >= 5.0:
            last_log_s[0] = now
            logger.info("index: %d of %d files read", done, total)

    summary = index_export(args.export_dir, args.db, workers=args.workers,
                           progress=progress, patient_key_secret=secret)
    print(f"catalogue: {summary.db_path}")
    print(f"files: {summary.files_seen} found, {summary.files_read} read, "
          f"{summary.files_unchanged} unchanged, {summary.files_removed} removed "
          f"in {summary.duration_s:.2f} s ({summary.files_read_per_s:.0f} files/s, "
          f"{summary.workers} workers)")
    for status, count in sorted(summary.status_counts.items()):
        print(f"  {status}: {count}")
    if args.problems:
        with Catalogue(summary.db_path) as catalogue:
            for rec in catalogue.problems():
                print(f"{rec.path}\t{rec.status}\t{rec.reason}")
    failed = sum(summary.status_counts.get(s, 0)
                 for s in ("truncated", "error", "missing_attribute"))
    if args.strict and failed:
        print(f"bonelesion: {failed} files are truncated, corrupt or lack attributes "
              f"(see Catalogue({str(summary.db_path)!r}).problems())", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


_COMMANDS.append(_add_index)


# ---- stages commands ----
def _add_measure(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("measure", help="measure each lesion (CT HU, chemical shift, ADC)",
                       description="Load an export, put each lesion of --rois on each series "
                       "and write OUT_DIR/lesions.csv and OUT_DIR/results.json.")
    p.add_argument("export_dir", type=_existing_path, metavar="EXPORT_DIR")
    p.add_argument("--rois", type=_existing_path, required=True, metavar="FILE",
                   help="annotations CSV, NIfTI label map, DICOM SEG or RTSTRUCT")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR")
    p.add_argument("--config", type=_existing_path, metavar="FILE", help="TOML configuration")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=_cmd_measure)


def _cmd_measure(args: argparse.Namespace) -> int:
    from bonelesion.stages.commands import measure_export

    # on_study: set by the classify/report block to render each study's views while its
    # stacks are loaded (the export is read once)
    summary = measure_export(args.export_dir, args.rois, args.out, config_path=args.config,
                             force=args.force, on_study=getattr(args, "on_study", None))
    print(f"{len(summary.measurements)} lesion row(s) → {summary.lesions_csv}, "
          f"{summary.results_json}")
    return EXIT_OK


def _add_adc(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("adc", help="fit ADC maps (mm²/s, NIfTI) from the DWI series",
                       description="Fit a voxel-wise ADC map of each DWI series of an export "
                       "(scanner ADC maps are ignored) and write it as NIfTI in mm²/s.")
    p.add_argument("export_dir", type=_existing_path, metavar="EXPORT_DIR")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--config", type=_existing_path, metavar="FILE", help="TOML configuration")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=_cmd_adc)


def _cmd_adc(args: argparse.Namespace) -> int:
    from bonelesion.stages.commands import fit_export_adc
    from bonelesion.stages.config import load_config

    summary = fit_export_adc(args.export_dir, args.out_dir, config=load_config(args.config),
                             force=args.force)
    for path in summary.written:
        print(path)
    for failure in summary.failures:
        print(f"bonelesion: not fitted: {failure}", file=sys.stderr)
    return EXIT_PARTIAL if summary.failures else EXIT_OK


_COMMANDS.append(_add_measure)
_COMMANDS.append(_add_adc)


# ---- classify / report commands ----
def _add_train(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="fit the logistic lesion classifier on lesions.csv + labels",
        description=(
            "Fit an L2-regularised logistic model on the measured features of LESIONS_CSV "
            "(missing values: training-mean imputation plus indicator), report k-fold "
            "cross-validated AUC and calibration, and save it as JSON for `measure --model`."
        ),
    )
    p.add_argument("lesions_csv", type=_existing_path, metavar="LESIONS_CSV")
    p.add_argument("--labels", type=_existing_path, required=True, metavar="LABELS_CSV",
                   help="CSV with lesion_id (and study_instance_uid) and label=malignant|benign")
    p.add_argument("--out", type=Path, required=True, metavar="MODEL.json")
    p.add_argument("--folds", type=_positive_int, default=5, help="k of k-fold CV (default 5)")
    p.add_argument("--l2", type=float, default=1.0, help="ridge penalty λ (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="fold assignment seed (default 0)")
    p.add_argument("--config", type=_existing_path,
                   help="classifier TOML (decision bounds; default configs/classifier.toml values)")
    p.add_argument("--force", action="store_true", help="overwrite MODEL.json")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from bonelesion.classify.config import load_classifier_config
    from bonelesion.classify.model import train_model_from_csv

    if args.out.exists() and not args.force:
        raise InputError(
            f"train: output {args.out} already exists. Potential fix: pass --force to "
            "overwrite it or choose another --out."
        )
    if not args.l2 >= 0:
        raise ConfigError(f"train --l2: must be ≥ 0, found {args.l2}. Potential fix: 1.0.")
    model = train_model_from_csv(
        args.lesions_csv, args.labels, l2_penalty=args.l2, folds=args.folds, seed=args.seed,
        config=load_classifier_config(args.config),
    )
    model.to_json(args.out)
    cv = model.cv
    print(
        f"trained on {model.training['n_lesions']} lesions ({model.training['n_malignant']} "
        f"malignant, {model.training['n_benign']} benign); {cv['folds']}-fold CV AUC "
        f"{cv['auc']:.3f}, calibration slope {cv['calibration_slope']:.2f}, intercept "
        f"{cv['calibration_intercept']:+.2f}; model written to {args.out}"
    )
    for note in model.training.get("notes", []):
        logger.info("train: %s", note)
    return EXIT_OK


_COMMANDS.append(_add_train)


def _extend_measure(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the classifier and report options to the stages' ``measure`` command.

    Must run after ``_add_measure`` (this block sits after the stages block); when
    ``measure`` is not registered it does nothing.
    """
    p = sub.choices.get("measure")
    if p is None:
        logger.debug("no measure command to extend with classifier/report options")
        return
    p.add_argument("--model", type=_existing_path, metavar="MODEL.json",
                   help="trained model (bonelesion train) to use instead of the literature rules")
    p.add_argument("--classifier-config", type=_existing_path, metavar="FILE",
                   help="classifier thresholds TOML (default: configs/classifier.toml values)")
    p.add_argument("--no-classify", action="store_true",
                   help="only measure: no calls, no report views")
    p.add_argument("--no-dicom", action="store_true", help="do not write DICOM SEG + SR")
    p.add_argument("--no-qc", action="store_true", help="do not write QC images")
    p.set_defaults(handler=_measure_then_report, measure_handler=p.get_default("handler"))


def _measure_then_report(args: argparse.Namespace) -> int:
    from bonelesion.classify.config import load_classifier_config

    # load config and model first: a bad file must fail before the (long) measurement
    config = load_classifier_config(args.classifier_config)
    model = None
    if args.model is not None:
        from bonelesion.classify.model import load_model

        model = load_model(args.model)
    from bonelesion.report.measure_hook import StudyViewCollector, add_calls_and_reports

    collector = None
    if not args.no_classify:
        # renders each study's QC images and DICOM SEG/SR from the stacks measure has loaded
        collector = StudyViewCollector(args.out, config=config, model=model,
                                       qc=not args.no_qc, dicom=not args.no_dicom)
    args.on_study = collector
    code: int = args.measure_handler(args)
    if code != EXIT_OK or collector is None:
        return code
    files = add_calls_and_reports(
        args.out, config=config, model=model, html=True, views=collector.views,
        command=["bonelesion", *(f"{k}={v}" for k, v in sorted(vars(args).items())
                                 if k not in ("handler", "measure_handler", "on_study"))],
    )
    labels = [c["call"]["label"] for c in files.document["lesions"]]
    print(f"calls: {labels.count('malignant')} malignant, {labels.count('benign')} benign, "
          f"{labels.count('indeterminate')} indeterminate → {files.html or files.results_json}")
    for problem in files.problems:
        logger.warning("%s", problem)
    return EXIT_OK


_COMMANDS.append(_extend_measure)


# ---- phantom commands ----
def _add_phantom(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "phantom",
        help="write a digital phantom study (CT, Dixon, DWI/ADC) as DICOM with truth.json",
        description="Write a lumbar-spine phantom study with known lesion values: DICOM "
        "series under OUT_DIR/DICOM, truth.json and rois.csv next to them.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="new or empty folder")
    p.add_argument("--vendor", choices=("siemens", "ge", "philips"), default="siemens",
                   help="header style (default: siemens)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seeds the noise and every UID (default: 0)")
    p.add_argument("--enhanced", action="store_true",
                   help="Enhanced CT/MR multi-frame objects, one per stack")
    p.add_argument("--compressed", action="store_true",
                   help="lossless JPEG-LS / RLE / JPEG 2000 pixel data")
    p.add_argument("--noise-free", action="store_true", help="no Gaussian noise")
    p.set_defaults(handler=_run_phantom)


def _run_phantom(args: argparse.Namespace) -> int:
    from bonelesion.phantom import write_study

    truth = write_study(args.out_dir, vendor=args.vendor, seed=args.seed,
                        enhanced=args.enhanced, compressed=args.compressed,
                        noise_free=args.noise_free)
    print(f"{args.out_dir}: {len(truth.series)} series, {len(truth.lesions)} lesions, "
          f"study {truth.study_instance_uid}")
    return EXIT_OK


_COMMANDS.append(_add_phantom)
