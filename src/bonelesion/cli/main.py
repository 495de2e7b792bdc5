"""The ``bonelesion`` command: the parser, logging set-up and exit-code mapping."""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from bonelesion import __version__
from bonelesion.cli import classify, detect, measure, pacs, phantom, qa, reader
from bonelesion.cli._common import EXIT_CONFIG, EXIT_ERROR, EXIT_INPUT, Handler
from bonelesion.errors import ConfigError, InputError, PipelineError

__all__ = ["build_parser", "main", "run"]

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


def run() -> NoReturn:
    """Run `main` as the ``bonelesion`` program (and ``python -m bonelesion``) in its own process.

    Three things only a program that owns its process may do, around `main`:

    - Before numpy is imported, numpy's huge-page advice for large arrays is turned off,
      unless ``NUMPY_MADVISE_HUGEPAGE`` is set already (numpy's documented switch). Where
      the kernel's transparent-huge-page defrag policy is ``madvise`` (a common default),
      the first touch of an advised fresh array waits for the kernel to compact memory
      into huge pages, and after days of uptime that wait dominates: one 150 MB CT read
      took 0.45 s instead of 0.21 s in a measured run (numpy issue #31590). Every
      ``bonelesion`` run touches a fresh volume once, so the advice costs it more than
      the fewer TLB misses earn back (about 4 % in the labelling's steady state).
    - The garbage collector runs less often (see the comment below).
    - After `main` returns, the process ends without the interpreter's teardown of every
      module (≈ 0.1 s with numpy, scipy and pydicom loaded): the standard streams are
      flushed, the log closed and the ``atexit`` callbacks run (temporary folders are
      removed there), then ``os._exit``. A thread still running, or an interpreter without
      the ``atexit`` runner, takes the ordinary exit instead.
    """
    if "numpy" not in sys.modules:
        os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    # The cyclic garbage collector ran ≈ 290 times in a 200-lesion `measure` (0.12-0.17 s,
    # mostly traversing the imported modules' objects); collecting every 20,000 new objects
    # instead of every 700 leaves 9 runs (0.04-0.05 s). Memory is not affected noticeably:
    # what the collector frees here are small reference cycles, not image arrays.
    gc.set_threshold(20_000, 20, 20)
    code = main()
    _exit_process(code)


def _exit_process(code: int) -> NoReturn:
    """End the process with ``code``, skipping the interpreter's teardown when safe."""
    run_exit_callbacks = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_callbacks is None or threading.active_count() > 1:
        sys.exit(code)
    run_exit_callbacks()  # logging.shutdown (flushes and closes --log-file) is one of them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said on it
            pass
    os._exit(code & 0xFF)


def _report(exc: Exception, args: argparse.Namespace) -> None:
    print(f"bonelesion: error: {exc}", file=sys.stderr)
    if args.verbose:
        logger.exception("traceback")

