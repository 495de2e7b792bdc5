"""Phantom QA and regression commands: ``qa``, ``regress``."""

from __future__ import annotations

import argparse
from pathlib import Path

from bonelesion.cli._common import EXIT_ERROR, EXIT_OK, SubParsers, existing_path


def _add_qa(sub: SubParsers) -> None:
    p = sub.add_parser(
        "qa",
        help="measure a phantom scan against a QA spec (exit 1 on any failed check)",
        description="Measure each region of SPEC (sphere in LPS mm, or a mask) on the phantom "
        "scan in SCAN_DIR; print a pass/fail table; optionally write JUnit XML. Exit 0 when every "
        "check passes, 1 when any fails.",
    )
    p.add_argument("spec", help="QA spec: a TOML path, or the name of a shipped spec "
                   "(digital_phantom, ct_water_acr, ice_water_adc)")
    p.add_argument("scan_dir", type=existing_path, help="folder holding the phantom scan")
    p.add_argument("--junit", type=Path, help="write JUnit XML here")
    p.set_defaults(handler=_qa_handler)


def _qa_handler(args: argparse.Namespace) -> int:
    from bonelesion.config import shipped_config
    from bonelesion.phantom.qa import format_table, load_qa_spec, run_qa, write_junit

    report = run_qa(load_qa_spec(shipped_config(args.spec, folder="qa")), args.scan_dir)
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
    p.add_argument("--tolerances", help="tolerances: a TOML path, or the name of a shipped one "
                   "(regress_tolerances)")
    p.set_defaults(handler=_regress_handler)


def _regress_handler(args: argparse.Namespace) -> int:
    from bonelesion.config import shipped_config
    from bonelesion.phantom.regress import compare_runs, load_tolerances

    tolerances = (shipped_config(args.tolerances, folder="qa") if args.tolerances is not None
                  else None)
    report = compare_runs(args.baseline_dir, args.results_dir, load_tolerances(tolerances))
    print(report.format(), end="")
    return EXIT_OK if report.passed else EXIT_ERROR


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_qa(sub)
    _add_regress(sub)
