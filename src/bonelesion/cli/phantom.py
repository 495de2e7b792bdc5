"""Phantom commands: ``phantom``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from bonelesion.cli._common import (
    EXIT_OK,
    SubParsers,
    non_negative_int,
)
from bonelesion.errors import ConfigError

logger = logging.getLogger("bonelesion.cli")

#: Options that only the spine anatomy understands (dest names).
_SPINE_ONLY = ("lumbar_rib", "sacralised_l5", "osteoporotic", "contrast", "lytic",
               "no_lesions", "no_look_alikes", "matrix", "fov_mm", "slice_thickness_mm",
               "slice_spacing_mm", "patient_position", "psf_fwhm_mm", "noise_sd_hu", "no_mr",
               "small", "s_range_mm", "crop")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a whole number, found {value!r}") \
                from exc
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"expected {lo} to {hi}, found {n}")
        return n

    return parse


def _float_in(lo: float, hi: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            x = float(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from exc
        if not lo <= x <= hi:
            raise argparse.ArgumentTypeError(f"{value!r} must be in [{lo:g}, {hi:g}]")
        return x

    return parse


# ---- phantom commands ----
def _add_phantom(sub: SubParsers) -> None:
    p = sub.add_parser(
        "phantom",
        help="write a digital phantom study (CT, Dixon, DWI/ADC) as DICOM with truth.json",
        description="Write a phantom study with known values: DICOM series under "
        "OUT_DIR/DICOM, truth.json and rois.csv next to them. --anatomy lumbar (default): "
        "three lumbar bodies with spherical lesions. --anatomy spine: a thoracolumbar-pelvic "
        "CT (T10–sacrum with ribs and iliac bones) with sclerotic metastases, bone islands "
        "and look-alikes, plus sagittal Dixon and DWI/ADC in the same frame of reference.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="new or empty folder")
    p.add_argument("--anatomy", choices=("lumbar", "spine"), default="lumbar",
                   help="phantom anatomy (default: lumbar)")
    p.add_argument("--vendor", choices=("siemens", "ge", "philips"), default="siemens",
                   help="header style (default: siemens)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seeds the noise and every UID (default: 0)")
    p.add_argument("--enhanced", action="store_true",
                   help="Enhanced CT/MR multi-frame objects, one per stack")
    p.add_argument("--compressed", action="store_true",
                   help="lossless JPEG-LS / RLE / JPEG 2000 pixel data")
    p.add_argument("--noise-free", action="store_true", help="no Gaussian noise")
    s = p.add_argument_group("spine anatomy (--anatomy spine)")
    s.add_argument("--lumbar-rib", action="store_true", help="short ribs on L1")
    s.add_argument("--sacralised-l5", action="store_true",
                   help="L5 transverse processes fused to the sacral alae, thin L5-S1 disc")
    s.add_argument("--osteoporotic", action="store_true",
                   help="trabecular bone 60-110 HU instead of 150-250 HU")
    s.add_argument("--contrast", action="store_true", help="arterial-phase contrast")
    s.add_argument("--lytic", action="store_true", help="add two lytic metastases")
    s.add_argument("--no-lesions", action="store_true",
                   help="no metastases or bone islands")
    s.add_argument("--no-look-alikes", action="store_true",
                   help="no endplate sclerosis, osteophytes or facet sclerosis")
    s.add_argument("--matrix", type=int, choices=(256, 384, 512, 768), default=None,
                   help="CT matrix (default 512)")
    s.add_argument("--fov-mm", type=_float_in(100.0, 700.0), default=None,
                   help="CT reconstruction diameter (default 400)")
    s.add_argument("--slice-thickness-mm", type=_float_in(0.5, 5.0), default=None,
                   help="CT slice thickness (default: the vendor's: 1.5, GE 1.25, Philips 2)")
    s.add_argument("--slice-spacing-mm", type=_float_in(0.3, 5.0), default=None,
                   help="CT slice spacing (default: the thickness; Philips 1.5)")
    s.add_argument("--patient-position", choices=("HFS", "FFS", "HFP", "FFP"), default=None,
                   help="patient position (default HFS)")
    s.add_argument("--psf-fwhm-mm", type=_float_in(0.0, 3.0), default=None,
                   help="in-plane point-spread function FWHM (default 0.8)")
    s.add_argument("--noise-sd-hu", type=_float_in(0.0, 100.0), default=None,
                   help="CT noise SD (default 13)")
    s.add_argument("--s-range-mm", type=float, nargs=2, metavar=("INFERIOR", "SUPERIOR"),
                   default=None, help="CT scan range along S in patient mm (default: from "
                   "above T10 to S4, about -530 to -160)")
    s.add_argument("--crop", type=_int_in(16, 1024), nargs=2, metavar=("ROWS", "COLUMNS"),
                   default=None, help="CT rows and columns: a rectangle of the reconstruction "
                   "around the spine and pelvis, same pixel size (default: the whole matrix)")
    s.add_argument("--no-mr", action="store_true", help="CT only")
    s.add_argument("--small", action="store_true",
                   help="the small study of sample_data: cropped 2 mm CT, 3 mm slices, "
                   "coarse MR")
    p.set_defaults(handler=_run_phantom)


def _run_phantom(args: argparse.Namespace) -> int:
    if args.anatomy == "lumbar":
        given = [f"--{name.replace('_', '-')}" for name in _SPINE_ONLY
                 if getattr(args, name) not in (None, False)]
        if given:
            raise ConfigError(
                f"phantom: {', '.join(given)} only apply to --anatomy spine. Potential fix: "
                "add --anatomy spine or drop the option(s)."
            )
        from bonelesion.phantom import write_study

        truth = write_study(args.out_dir, vendor=args.vendor, seed=args.seed,
                            enhanced=args.enhanced, compressed=args.compressed,
                            noise_free=args.noise_free)
    else:
        from bonelesion.phantom import write_spine_study_from_options

        truth = write_spine_study_from_options(
            args.out_dir, vendor=args.vendor, seed=args.seed, enhanced=args.enhanced,
            compressed=args.compressed, noise_free=args.noise_free,
            lumbar_rib=args.lumbar_rib, sacralised_l5=args.sacralised_l5,
            osteoporotic=args.osteoporotic, contrast=args.contrast,
            lytic_lesions=args.lytic, lesions=not args.no_lesions,
            look_alikes=not args.no_look_alikes, matrix=args.matrix, fov_mm=args.fov_mm,
            slice_thickness_mm=args.slice_thickness_mm,
            slice_spacing_mm=args.slice_spacing_mm, patient_position=args.patient_position,
            psf_fwhm_mm=args.psf_fwhm_mm, noise_sd_hu=args.noise_sd_hu, mr=not args.no_mr,
            small=args.small,
            s_range_mm=None if args.s_range_mm is None else tuple(args.s_range_mm),
            crop=None if args.crop is None else (args.crop[0], args.crop[1]))
    print(f"{args.out_dir}: {len(truth.series)} series, {len(truth.lesions)} lesions, "
          f"study {truth.study_instance_uid}")
    return EXIT_OK


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_phantom(sub)
