"""Batch commands: ``run``, ``qa``, ``regress``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bonelesion.cli._common import (
    EXIT_ERROR,
    EXIT_OK,
    SubParsers,
    existing_path,
    positive_int,
)

logger = logging.getLogger("bonelesion.cli")


# ---- batch commands (run, qa, regress) ----


def _add_run(sub: SubParsers) -> None:
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
    p.add_argument("export_dir", type=existing_path, help="folder holding the DICOM export")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--rois", type=existing_path, help="ROI source (annotations CSV, SEG, "
                   "RTSTRUCT, NIfTI labels)")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel studies (default 1)")
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
    p.add_argument("--pseudonym-key-file", type=existing_path, help="file holding the key")
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




def _add_qa(sub: SubParsers) -> None:
    p = sub.add_parser(
        "qa",
        help="measure a phantom scan against a QA spec (exit 1 on any failed check)",
        description="Measure each region of SPEC (sphere in LPS mm, or a mask) on the phantom "
        "scan in SCAN_DIR; print a pass/fail table; optionally write JUnit XML. Exit 0 when every "
        "check passes, 1 when any fails.",
    )
    p.add_argument("spec", type=existing_path, help="QA spec TOML (e.g. configs/qa/*.toml)")
    p.add_argument("scan_dir", type=existing_path, help="folder holding the phantom scan")
    p.add_argument("--junit", type=Path, help="write JUnit XML here")
    p.set_defaults(handler=_qa_handler)


def _qa_handler(args: argparse.Namespace) -> int:
    from bonelesion.phantom.qa import format_table, load_qa_spec, run_qa, write_junit

    report = run_qa(load_qa_spec(args.spec), args.scan_dir)
    print(format_table(report), end="")
    if args.junit:
        write_junit(report, args.junit)
    return EXIT_OK if report.passed else EXIT_ERROR


def _add_regress(sub: SubParsers) -> None:
    p = sub.add_parser(
        "regress",
        help="compare two runs lesion by lesion (exit 1 on drift beyond tolerance)",
        description="Compare RESULTS_DIR/lesions.csv with BASELINE_DIR/lesions.csv, matching "
        "lesions by study UID and lesion id; list every value that moved beyond tolerance and "
        "every missing or extra lesion. Exit 1 on any difference.",
    )
    p.add_argument("baseline_dir", type=existing_path, help="baseline run folder (or lesions.csv)")
    p.add_argument("results_dir", type=existing_path, help="new run folder (or lesions.csv)")
    p.add_argument("--tolerances", type=existing_path, help="tolerances TOML")
    p.set_defaults(handler=_regress_handler)


def _regress_handler(args: argparse.Namespace) -> int:
    from bonelesion.phantom.regress import compare_runs, load_tolerances

    report = compare_runs(args.baseline_dir, args.results_dir, load_tolerances(args.tolerances))
    print(report.format(), end="")
    return EXIT_OK if report.passed else EXIT_ERROR


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_run(sub)
    _add_qa(sub)
    _add_regress(sub)
