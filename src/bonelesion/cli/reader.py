"""Reader commands: ``series``, ``convert``, ``index``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bonelesion.cli._common import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_PARTIAL,
    SubParsers,
    existing_path,
    positive_int,
)

logger = logging.getLogger("bonelesion.cli")


def _print(text: str) -> None:
    """Print a line to stdout; names that are not UTF-8 are shown escaped, never a crash."""
    print(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def printable(path: object) -> str:
    """Show a path as text any terminal or file accepts (non-UTF-8 bytes escaped)."""
    from bonelesion.dicom.values import printable as _printable

    return _printable(path) if isinstance(path, str | bytes | Path) else str(path)


# ---- reader commands (series, convert) ----
def _series_record(stack: object) -> dict[str, object]:
    from bonelesion.dicom.identity import patient_identity
    from bonelesion.dicom.series import Stack

    assert isinstance(stack, Stack)
    info = stack.info
    patient_id = patient_identity(stack.files[0])[0] if stack.files else ""
    return {
        "study_instance_uid": info.study_instance_uid,
        "patient_id": patient_id,
        "series_number": info.series_number,
        "series_description": info.series_description,
        "series_instance_uid": info.series_instance_uid,
        "modality": info.modality,
        "manufacturer": info.manufacturer,
        "role": info.role,
        "role_reason": stack.role_reason,
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


def _add_series(sub: SubParsers) -> None:
    p = sub.add_parser(
        "series",
        help="list the stacks of a DICOM export (headers only): series number and "
             "description, patient ID, study UID, geometry and problems",
    )
    p.add_argument("export_dir", type=existing_path, metavar="EXPORT_DIR")
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
    _print(header)
    _print("-" * len(header))
    for i, (stack, record) in enumerate(zip(stacks, records, strict=True), start=1):
        shape = "×".join(str(n) for n in stack.shape) if stack.shape and stack.usable else "-"
        b = stack.info.b_value_s_per_mm2
        te = stack.info.echo_time_ms
        status = "ok" if stack.usable else "REFUSED: " + " ".join(stack.problems)
        if stack.role_reason:
            status += f" ({stack.role_reason})"
        _print(f"{i:>3}  {stack.info.modality:8} {stack.info.role:20} {shape:16} "
              f"{'' if b is None else f'{b:g}':>6} {'' if te is None else f'{te:.2f}':>7}  "
              f"{status}")
        number = record["series_number"]
        _print(f"     series {'-' if number is None else number} "
               f"{record['series_description'] or '(no description)'}; "
               f"patient {record['patient_id'] or '-'}; study {record['study_instance_uid']}")
        _print(f"     {stack.key}  ({len(stack.files)} file(s))")
    return EXIT_OK


def _add_convert(sub: SubParsers) -> None:
    p = sub.add_parser(
        "convert", help="write every stack of a DICOM export as NIfTI + JSON (+ bval/bvec)"
    )
    p.add_argument("export_dir", type=existing_path, metavar="EXPORT_DIR")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--tilt", choices=("refuse", "resample"), default="refuse",
                   help="gantry-tilted CT: refuse it (default) or resample it onto an "
                        "orthogonal grid, written as *_Tilt (as dcm2niix)")
    p.set_defaults(handler=_run_convert)


def _run_convert(args: argparse.Namespace) -> int:
    from bonelesion.dicom.convert import convert_export

    try:
        summary = convert_export(args.export_dir, args.out_dir, force=args.force,
                                 tilt=args.tilt)
    except FileExistsError as exc:
        print(f"bonelesion: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    n_files = sum(1 for p in summary.written if p.name.endswith(".nii.gz"))
    _print(f"wrote {n_files} NIfTI file(s) to {printable(args.out_dir)}; "
          f"{summary.n_refused} stack(s) refused")
    for refused in summary.refused:
        _print(f"  REFUSED {refused['stack']}: {' '.join(refused['problems'])}")
    return EXIT_PARTIAL if summary.n_refused else EXIT_OK





# ---- index commands ----
# `bonelesion index EXPORT_DIR [--db FILE] [--workers N] [--strict]`: catalogue an export.
# The catalogue defaults to ./bonelesion-index.sqlite in the current folder (never inside the
# export, which is often read-only); one catalogue file per export (a catalogue of another
# export is refused with exit code 3).


def _add_index(sub: SubParsers) -> None:
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
    p.add_argument("export_dir", type=existing_path, metavar="EXPORT_DIR",
                   help="folder holding the exported files")
    p.add_argument("--db", type=Path, default=Path("bonelesion-index.sqlite"),
                   help="catalogue file (default: ./bonelesion-index.sqlite in the current "
                        "folder)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes reading headers (default: every CPU; fewer than "
                        "600 files to read are read in this process)")
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
    _print(f"catalogue: {printable(summary.db_path)}")
    _print(f"files: {summary.files_seen} found, {summary.files_read} read, "
          f"{summary.files_unchanged} unchanged, {summary.files_removed} removed "
          f"in {summary.duration_s:.2f} s ({summary.files_read_per_s:.0f} files/s, "
          f"{summary.workers} workers)")
    for status, count in sorted(summary.status_counts.items()):
        _print(f"  {status}: {count}")
    if args.problems:
        with Catalogue(summary.db_path) as catalogue:
            for rec in catalogue.problems():
                _print(f"{printable(rec.path)}\t{rec.status}\t{rec.reason}")
    failed = sum(summary.status_counts.get(s, 0)
                 for s in ("truncated", "error", "missing_attribute"))
    if args.strict and failed:
        print(f"bonelesion: {failed} files are truncated, corrupt or lack attributes "
              f"(see Catalogue({printable(summary.db_path)!r}).problems())", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_series(sub)
    _add_convert(sub)
    _add_index(sub)
