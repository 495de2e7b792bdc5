"""Measuring commands: ``measure`` and ``run`` (one path, shared options), ``adc``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bonelesion.cli._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    SubParsers,
    existing_path,
    positive_int,
)

ROI_HELP = (
    "ROI source: an annotations CSV, a NIfTI label map, a DICOM SEG or an RTSTRUCT. The CSV has "
    "one sphere per row: lesion_id, center_l_mm, center_p_mm, center_s_mm (LPS, mm), "
    "radius_mm (> 0); optional study_instance_uid (required when the export holds several "
    "studies), series_instance_uid, treated (true/false, empty = unknown), SINS items "
    "(sins_location, sins_pain, sins_lesion, sins_alignment, sins_collapse, "
    "sins_posterolateral: points of Fisher 2010) and escc_grade (0, 1a, 1b, 1c, 2, 3); other "
    "columns are kept as annotations. See the README, 'ROI files'."
)


def _add_measuring_options(p: argparse.ArgumentParser) -> None:
    """Options ``measure`` and ``run`` share (they run the same per-study path)."""
    p.add_argument("--out", required=True, type=Path, metavar="OUT_DIR", help="output folder")
    p.add_argument("--rois", type=Path, metavar="FILE", help=ROI_HELP)
    p.add_argument("--config", type=existing_path, metavar="FILE",
                   help="measurement configuration TOML laid over the pipeline's "
                   "([stages.*] tables; see configs/default.toml)")
    p.add_argument("--classifier-config", type=existing_path, metavar="FILE",
                   help="classifier thresholds TOML (default: configs/classifier.toml values)")
    p.add_argument("--model", type=existing_path, metavar="MODEL.json",
                   help="trained model (bonelesion train) to use instead of the literature rules")
    p.add_argument("--no-dicom", action="store_true", help="do not write DICOM SEG + SR")
    p.add_argument("--no-qc", action="store_true",
                   help="no images: report.html without key images or overview, no qc/*.png")
    p.add_argument("--pseudonymise", action="store_true",
                   help="replace PatientID in outputs by a keyed hash (key: "
                   "$BONELESION_PSEUDONYM_KEY or --pseudonym-key-file)")
    p.add_argument("--pseudonym-key-file", type=existing_path, help="file holding the key")
    p.add_argument("--catalogue", type=Path, help="index catalogue file (default "
                   "OUT/catalogue.sqlite; it holds export paths: keep it outside a "
                   "pseudonymised OUT you share)")
    p.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                   help="progress display (default: bar on a terminal, lines otherwise)")


def _measuring_options(args: argparse.Namespace) -> dict[str, Any]:
    from bonelesion.batch import Progress
    from bonelesion.report.outputs import OutputOptions

    tty = None if args.progress == "auto" else args.progress == "bar"
    return {
        "rois": args.rois,
        "config": args.config,
        "classifier_config": args.classifier_config,
        "model": args.model,
        "outputs": OutputOptions(qc=not args.no_qc, dicom=not args.no_dicom),
        "pseudonymise": args.pseudonymise,
        "pseudonym_key_file": args.pseudonym_key_file,
        "catalogue": args.catalogue,
        "progress": Progress(0, tty=tty),
        "command": tuple(args.command_line),
    }


def _print_summary(summary: Any) -> int:
    print(f"{summary.studies_total} studies: {summary.studies_ok} measured, "
          f"{summary.studies_failed} failed ({summary.studies_run} run now, "
          f"{summary.studies_skipped} already done); {summary.lesions} lesions; "
          f"{len(summary.bad_files)} files not used. Tables in {summary.out_dir}/")
    for f in summary.failures:
        print(f"FAILED study {f['study_instance_uid']} at {f.get('stage', '')} "
              f"(series {f.get('series_instance_uid', '') or '-'}): {f.get('message', '')}",
              file=sys.stderr)
    for w in summary.warnings:
        print(f"warning: {w['message']}", file=sys.stderr)
    damaged = sum(b.is_failure for b in summary.bad_files)
    if summary.bad_files:  # paths may hold patient names: listed in the output file only
        print(f"{len(summary.bad_files)} files not used ({damaged} damaged or unusable DICOM): "
              f"see {summary.out_dir / 'bad_files.csv'}", file=sys.stderr)
    code: int = summary.exit_code
    return code


def _add_measure(sub: SubParsers) -> None:
    p = sub.add_parser(
        "measure",
        help="measure and call each lesion of an export (CT HU, chemical shift, ADC)",
        description=(
            "Measure every lesion of --rois in every study of EXPORT_DIR, call it, and write "
            "the same outputs as `run` (OUT_DIR/lesions.csv, results.json, index.html, and per "
            "study results.json, lesions.csv, report.html, qc/, dicom/): `measure` is `run` of "
            "the combined pipeline in this process. An existing result is refused unless "
            "--force. Exit 4 when some study or file failed."
        ),
    )
    p.add_argument("export_dir", type=existing_path, metavar="EXPORT_DIR")
    p.add_argument("--pipeline", default="combined",
                   help="shipped pipeline name or TOML path (default: combined)")
    p.add_argument("--force", action="store_true", help="replace an earlier result in OUT_DIR")
    _add_measuring_options(p)
    p.set_defaults(handler=_cmd_measure)


def _cmd_measure(args: argparse.Namespace) -> int:
    from bonelesion.batch import measure_export

    summary = measure_export(args.export_dir, args.out, pipeline=args.pipeline,
                             force=args.force, **_measuring_options(args))
    return _print_summary(summary)


def _add_run(sub: SubParsers) -> None:
    p = sub.add_parser(
        "run",
        help="run a pipeline over a whole export (resumable, isolated per study)",
        description=(
            "Index EXPORT_DIR, choose the series of each role per study, measure, classify and "
            "report every study, store results in OUT_DIR/results.sqlite and rebuild "
            "OUT_DIR/lesions.csv, results.json, failures.csv, bad_files.csv, summary.txt and "
            "index.html. A rerun does only what is missing or changed. Exit 4 when some study "
            "or file failed."
        ),
    )
    p.add_argument("pipeline", help="shipped pipeline name (ct_sclerotic, mr_multiparametric, "
                   "combined) or a pipeline TOML path")
    p.add_argument("export_dir", type=existing_path, help="folder holding the DICOM export")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel studies (default 1)")
    p.add_argument("--executor", choices=("local", "process", "dask"), default=None,
                   help="where studies run (default: local for 1 worker, else process)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address (with --executor dask); "
                   "default: a LocalCluster of --workers processes")
    p.add_argument("--force", action="store_true", help="redo every study")
    p.add_argument("--retry-failed", action="store_true",
                   help="redo studies whose stored result is a failure")
    _add_measuring_options(p)
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from bonelesion.batch import run_export

    executor = args.executor or (
        "dask" if args.scheduler else "local" if args.workers == 1 else "process"
    )
    summary = run_export(
        args.pipeline, args.export_dir, args.out, workers=args.workers, executor=executor,
        scheduler=args.scheduler, force=args.force, retry_failed=args.retry_failed,
        **_measuring_options(args),
    )
    return _print_summary(summary)


def _add_adc(sub: SubParsers) -> None:
    p = sub.add_parser("adc", help="fit ADC maps (mm²/s, NIfTI) from the DWI series",
                       description="Fit a voxel-wise ADC map of each DWI series of an export "
                       "(scanner ADC maps are ignored) and write it as NIfTI in mm²/s.")
    p.add_argument("export_dir", type=existing_path, metavar="EXPORT_DIR")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--config", type=existing_path, metavar="FILE", help="TOML configuration")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(handler=_cmd_adc)


def _cmd_adc(args: argparse.Namespace) -> int:
    from bonelesion.pipeline.adc_maps import fit_export_adc

    summary = fit_export_adc(args.export_dir, args.out_dir, config_path=args.config,
                             force=args.force)
    for path in summary.written:
        print(path)
    for failure in summary.failures:
        print(f"bonelesion: not fitted: {failure}", file=sys.stderr)
    return EXIT_PARTIAL if summary.failures else EXIT_OK


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_measure(sub)
    _add_run(sub)
    _add_adc(sub)
