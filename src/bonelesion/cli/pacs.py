"""PACS commands: ``watch``, ``pull``, ``push`` (DICOMweb or DIMSE).

Exit codes: 0 done (an idle pass too), 4 some study failed (reported; the others went on),
5 the PACS did not answer after the retries (rerun later; nothing is lost), 130 a second
signal abandoned the study in hand; 2 and 3 as for every command (configuration, input).
Credentials are read from the environment or a file, never from the command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bonelesion.cli._common import SubParsers, existing_path, int_at_least, positive_int

if TYPE_CHECKING:
    from bonelesion.pacs.sources import NetworkPolicy, Peer
    from bonelesion.pacs.watch import StudyProblem

EPILOG = (
    "SOURCE/DEST: http(s)://host:port/dicom-web (DICOMweb) or dimse://AET@host:port (DIMSE). "
    "DICOMweb credentials: $BONELESION_DICOMWEB_TOKEN, or $BONELESION_DICOMWEB_USER and "
    "$BONELESION_DICOMWEB_PASSWORD, or a JSON file ({\"token\": …} or {\"user\": …, "
    "\"password\": …}) named by --credentials or $BONELESION_DICOMWEB_CREDENTIALS. Exit codes: "
    "0 done, 4 some study failed, 5 PACS not answering, 130 abandoned."
)


def _seconds(value: str) -> float:
    try:
        s = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from exc
    if not s >= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be ≥ 0 seconds")
    return s


def _since(value: str) -> dt.date:
    from bonelesion.errors import ConfigError
    from bonelesion.pacs.sources import parse_since

    try:
        return parse_since(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_network(p: argparse.ArgumentParser, *, listener: bool) -> None:
    g = p.add_argument_group("network")
    g.add_argument("--ae-title", default="BONELESION",
                   help="DIMSE: our calling AE title, also the C-MOVE destination (default "
                   "BONELESION)")
    if listener:
        g.add_argument("--port", type=int_at_least(1),
                       help="DIMSE: port of our storage listener for C-MOVE (the PACS must know "
                       "our AE title at this host and port); without it, C-GET is used")
        g.add_argument("--listen-address",
                       help="DIMSE: interface of that listener (default: 127.0.0.1 when the "
                       "PACS is on loopback, else all)")
    g.add_argument("--credentials", type=existing_path,
                   help="DICOMweb: JSON credentials file (default "
                   "$BONELESION_DICOMWEB_CREDENTIALS)")
    g.add_argument("--timeout", type=_seconds, default=60.0,
                   help="seconds to wait for one answer (default 60)")
    g.add_argument("--retries", type=positive_int, default=3,
                   help="tries of each network call before the PACS counts as down (default 3)")


def _peer(args: argparse.Namespace) -> Peer:
    from bonelesion.pacs import parse_source

    return parse_source(
        args.source, ae_title=args.ae_title, port=getattr(args, "port", None),
        listen_address=getattr(args, "listen_address", None), credentials_file=args.credentials)


def _policy(args: argparse.Namespace) -> NetworkPolicy:
    from bonelesion.pacs import NetworkPolicy

    return NetworkPolicy(timeout_s=args.timeout, connect_timeout_s=min(10.0, args.timeout),
                         attempts=args.retries, backoff_s=min(2.0, args.timeout / 4))


def _print_problems(problems: Sequence[StudyProblem], unavailable: str) -> None:
    for p in problems:
        print(f"FAILED study {p.study_instance_uid} at {p.step}: {p.message}", file=sys.stderr)
    if unavailable:
        print(f"bonelesion: PACS not answering: {unavailable}", file=sys.stderr)


# ---- watch ----


def _add_watch(sub: SubParsers) -> None:
    p = sub.add_parser(
        "watch",
        help="find new or changed studies in a PACS, retrieve, measure, send SEG/SR back",
        description=(
            "Each pass lists the studies of SOURCE, retrieves every study that is new or "
            "changed since the last pass (into OUT/inbox/, complete or not at all), runs "
            "PIPELINE over it, and with --push sends its DICOM SEG and TID 1500 SR back. "
            "An unchanged study is neither retrieved, measured nor pushed again; the objects "
            "we pushed never count as a change. --once does one pass (cron, CI); otherwise "
            "the loop polls every --poll seconds, takes a study once its instance count has "
            "been steady for --settle seconds, and stops cleanly on SIGINT/SIGTERM."
        ),
        epilog=EPILOG,
    )
    p.add_argument("source", metavar="SOURCE", help="the PACS (see below)")
    p.add_argument("pipeline", help="shipped pipeline name or pipeline TOML")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--rois", default="auto",
                   help="ROI file (annotations CSV, SEG, RTSTRUCT, NIfTI labels), or 'auto' "
                   "(default) for the pipeline's automatic lesion detection")
    p.add_argument("--push", action="store_true", help="send each study's SEG and SR back")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--poll", type=_seconds, default=60.0,
                   help="seconds between passes (default 60)")
    p.add_argument("--settle", type=_seconds, default=60.0,
                   help="seconds a study's instance count must stay unchanged before the "
                   "polling loop takes it (default 60; --once takes studies as they are)")
    p.add_argument("--since", type=_since,
                   help="only studies with StudyDate on or after this date (YYYY-MM-DD, or Nd "
                   "for the last N days)")
    _add_network(p, listener=True)
    p.set_defaults(handler=_watch_handler)


def _watch_handler(args: argparse.Namespace) -> int:
    from bonelesion.pacs import PassSummary, WatchOptions, watch

    rois = None if args.rois == "auto" else Path(args.rois)
    options = WatchOptions(pipeline=args.pipeline, out_dir=args.out, rois=rois, push=args.push,
                           since=args.since, settle_s=args.settle, poll_s=max(args.poll, 0.1))

    def report(s: PassSummary) -> None:
        print(f"pass: {s.listed} studies listed, {len(s.retrieved)} retrieved "
              f"({s.instances_retrieved} instances), {len(s.measured)} measured, "
              f"{len(s.pushed)} pushed ({s.instances_pushed} instances), {s.unchanged} "
              f"unchanged, {s.settling} settling, "
              f"{len({p.study_instance_uid for p in s.problems})} failed "
              f"({s.duration_s:.1f} s)" + ("; stopped" if s.stopped else ""), flush=True)
        _print_problems(s.problems, s.unavailable)

    summary = watch(_peer(args), options, policy=_policy(args),
                    once=args.once, handle_signals=True, on_pass=report)
    if summary.stopped:
        print("stopped" + (" (the study in hand was abandoned)" if summary.abandoned else ""),
              flush=True)
    return summary.exit_code


# ---- pull, push ----


def _add_pull(sub: SubParsers) -> None:
    p = sub.add_parser(
        "pull",
        help="retrieve studies from a PACS into a folder (each complete or not at all)",
        description="Retrieve every study of SOURCE (or those given with --study, or since a "
        "date) into DEST/<study>/, one file per instance named by its SOP Instance UID. A "
        "study is written under a temporary name beside DEST and appears in DEST only when "
        "complete; a study already complete in DEST is skipped.",
        epilog=EPILOG,
    )
    p.add_argument("source", metavar="SOURCE", help="the PACS (see below)")
    p.add_argument("dest", type=Path, metavar="DEST", help="destination folder")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--study", action="append", default=[], metavar="UID",
                       help="StudyInstanceUID to retrieve (repeatable)")
    which.add_argument("--since", type=_since,
                       help="only studies with StudyDate on or after this date")
    _add_network(p, listener=True)
    p.set_defaults(handler=_pull_handler)


def _pull_handler(args: argparse.Namespace) -> int:
    from bonelesion.pacs import pull

    s = pull(_peer(args), args.dest, studies=args.study, since=args.since,
             policy=_policy(args))
    print(f"{s.listed} studies: {len(s.retrieved)} retrieved ({s.instances_retrieved} "
          f"instances), {s.present} already complete, {len(s.problems)} failed. In {args.dest}/")
    _print_problems(s.problems, s.unavailable)
    return s.exit_code


def _add_push(sub: SubParsers) -> None:
    p = sub.add_parser(
        "push",
        help="send a run's DICOM SEG and SR to a PACS (what it does not have yet)",
        description="Send every DICOM SEG and TID 1500 SR under RUN_OUT/studies/ to DEST "
        "(STOW-RS or C-STORE). Their SOP Instance UIDs are recorded in RUN_OUT/pacs.sqlite: a "
        "second push sends nothing, and `watch --out RUN_OUT` never takes them for new "
        "instances.",
        epilog=EPILOG,
    )
    p.add_argument("source", metavar="DEST", help="the PACS (see below)")
    p.add_argument("run_out", type=existing_path, metavar="RUN_OUT",
                   help="output folder of a run (holds studies/)")
    _add_network(p, listener=False)
    p.set_defaults(handler=_push_handler)


def _push_handler(args: argparse.Namespace) -> int:
    from bonelesion.pacs import push

    s = push(_peer(args), args.run_out, policy=_policy(args))
    print(f"{s.found} SEG/SR objects: {s.pushed} sent ({s.studies} studies), {s.already} sent "
          f"before, {len(s.problems)} studies failed")
    _print_problems(s.problems, s.unavailable)
    return s.exit_code


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_watch(sub)
    _add_pull(sub)
    _add_push(sub)
