"""Phantom commands: ``phantom``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bonelesion.cli._common import (
    EXIT_OK,
    SubParsers,
    non_negative_int,
)

logger = logging.getLogger("bonelesion.cli")


# ---- phantom commands ----
def _add_phantom(sub: SubParsers) -> None:
    p = sub.add_parser(
        "phantom",
        help="write a digital phantom study (CT, Dixon, DWI/ADC) as DICOM with truth.json",
        description="Write a lumbar-spine phantom study with known lesion values: DICOM "
        "series under OUT_DIR/DICOM, truth.json and rois.csv next to them.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="new or empty folder")
    p.add_argument("--vendor", choices=("siemens", "ge", "philips"), default="siemens",
                   help="header style (default: siemens)")
    p.add_argument("--seed", type=non_negative_int, default=0,
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


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_phantom(sub)
