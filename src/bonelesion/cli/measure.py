"""Measuring commands: ``measure``, ``adc``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bonelesion.cli._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    SubParsers,
    existing_path,
)

logger = logging.getLogger("bonelesion.cli")


def _add_measure(sub: SubParsers) -> None:
    p = sub.add_parser("measure", help="measure each lesion (CT HU, chemical shift, ADC)",
                       description="Load an export, put each lesion of --rois on each series "
                       "and write OUT_DIR/lesions.csv and OUT_DIR/results.json.")
    p.add_argument("export_dir", type=existing_path, metavar="EXPORT_DIR")
    p.add_argument("--rois", type=existing_path, required=True, metavar="FILE",
                   help="annotations CSV, NIfTI label map, DICOM SEG or RTSTRUCT")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR")
    p.add_argument("--config", type=existing_path, metavar="FILE", help="TOML configuration")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--model", type=existing_path, metavar="MODEL.json",
                   help="trained model (bonelesion train) to use instead of the literature rules")
    p.add_argument("--classifier-config", type=existing_path, metavar="FILE",
                   help="classifier thresholds TOML (default: configs/classifier.toml values)")
    p.add_argument("--no-classify", action="store_true",
                   help="only measure: no calls, no report views")
    p.add_argument("--no-dicom", action="store_true", help="do not write DICOM SEG + SR")
    p.add_argument("--no-qc", action="store_true", help="do not write QC images")
    p.set_defaults(handler=_cmd_measure)


def _cmd_measure(args: argparse.Namespace) -> int:
    from bonelesion.classify.config import load_classifier_config
    from bonelesion.stages.commands import measure_export

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
    summary = measure_export(args.export_dir, args.rois, args.out, config_path=args.config,
                             force=args.force, on_study=collector)
    print(f"{len(summary.measurements)} lesion row(s) → {summary.lesions_csv}, "
          f"{summary.results_json}")
    if collector is None:
        return EXIT_OK
    files = add_calls_and_reports(
        args.out, config=config, model=model, html=True, views=collector.views,
        command=["bonelesion", *(f"{k}={v}" for k, v in sorted(vars(args).items())
                                 if k != "handler")],
    )
    labels = [c["call"]["label"] for c in files.document["lesions"]]
    print(f"calls: {labels.count('malignant')} malignant, {labels.count('benign')} benign, "
          f"{labels.count('indeterminate')} indeterminate → {files.html or files.results_json}")
    for problem in files.problems:
        logger.warning("%s", problem)
    return EXIT_OK

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
    from bonelesion.stages.commands import fit_export_adc
    from bonelesion.stages.config import load_config

    summary = fit_export_adc(args.export_dir, args.out_dir, config=load_config(args.config),
                             force=args.force)
    for path in summary.written:
        print(path)
    for failure in summary.failures:
        print(f"bonelesion: not fitted: {failure}", file=sys.stderr)
    return EXIT_PARTIAL if summary.failures else EXIT_OK




def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_measure(sub)
    _add_adc(sub)
