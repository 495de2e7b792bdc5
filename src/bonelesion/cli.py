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

__all__ = ["build_parser", "main", "EXIT_OK", "EXIT_ERROR", "EXIT_CONFIG", "EXIT_INPUT", "EXIT_PARTIAL"]

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


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from exc
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be ≥ 1")
    return n


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


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file))
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


def _non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from exc
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be ≥ 0")
    return n


def _run_phantom(args: argparse.Namespace) -> int:
    from bonelesion.phantom import write_study

    truth = write_study(args.out_dir, vendor=args.vendor, seed=args.seed,
                        enhanced=args.enhanced, compressed=args.compressed,
                        noise_free=args.noise_free)
    print(f"{args.out_dir}: {len(truth.series)} series, {len(truth.lesions)} lesions, "
          f"study {truth.study_instance_uid}")
    return EXIT_OK


_COMMANDS.append(_add_phantom)
