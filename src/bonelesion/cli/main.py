"""The ``bonelesion`` command: the parser, logging set-up and exit-code mapping."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bonelesion import __version__
from bonelesion.cli import classify, detect, measure, pacs, phantom, qa, reader
from bonelesion.cli._common import EXIT_CONFIG, EXIT_ERROR, EXIT_INPUT, Handler
from bonelesion.errors import ConfigError, InputError, PipelineError

__all__ = ["build_parser", "main"]

logger = logging.getLogger("bonelesion.cli")

#: Command groups, in the order ``--help`` lists them; each module has ``register(sub)``.
COMMAND_GROUPS = (reader, measure, detect, classify, qa, pacs, phantom)


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
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = ["bonelesion", *argv]
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
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM during a run
        signum = int(getattr(exc, "signum", signal.SIGINT))
        stored = getattr(exc, "stored", None)
        done = ("" if stored is None else
                f": {stored} studies stored in this run, {exc.remaining} not run; run the "  # type: ignore[attr-defined]
                "same command again to resume")
        print(f"bonelesion: stopped by {signal.Signals(signum).name}{done}", file=sys.stderr)
        return 128 + signum


def _report(exc: Exception, args: argparse.Namespace) -> None:
    print(f"bonelesion: error: {exc}", file=sys.stderr)
    if args.verbose:
        logger.exception("traceback")

