"""``bonelesion detect``: vertebra levels and sclerotic-lesion candidates on each CT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bonelesion.cli._common import EXIT_OK, EXIT_PARTIAL, SubParsers, existing_path, positive_int

DESCRIPTION = (
    "Find and label the vertebrae on the CT of every study of EXPORT_DIR (the CT the "
    "ct_sclerotic pipeline's series policy chooses; a tilted CT is refused unless the pipeline "
    "resamples it) and write, in OUT_DIR: vertebrae.csv (one row per vertebra found: "
    "study_instance_uid, series_instance_uid, label, confidence and its reasons, "
    "center_l/p/s_mm = LPS centroid of the vertebral body, trabecular_mean_hu/sd_hu/voxels in "
    "the body eroded away from cortex and endplates, body volume and height, region, rib "
    "sides, fusion with the ilium, partial, the SINS location category, and the "
    "opportunistic osteoporosis category at L1 with its thresholds: <= 110 HU highly "
    "specific, <= 160 HU sensitive, Pickhardt et al., Ann Intern Med 2013); per study "
    "studies/<StudyInstanceUID>/vertebrae_seg.dcm (DICOM SEG of the vertebral bodies) and "
    "overview.png (curved sagittal and coronal reformats, each vertebra labelled and each "
    "candidate circled); candidates.csv (one row per sclerotic-lesion candidate inside the "
    "vertebral bodies and pelvis: lesion_id, center_l/p/s_mm, radius_mm of the "
    "volume-equivalent sphere - the annotations CSV columns, so the file works as --rois - "
    "then study and series UIDs, volume_ml, vertebra, kind, score, attenuation, contrast over "
    "the marrow, depth, and the reasons it was accepted) and studies/<StudyInstanceUID>/"
    "candidates_seg.dcm (DICOM SEG of the candidate masks); and detection.json (per study: "
    "status, notes such as 'no spinal column in view' or the foci rejected and why, files). "
    "Candidates are searched on thin-slice CTs (pixels <= 1 mm, slices <= 2 mm); a coarser CT "
    "gets a note instead. "
    "Levels come from anchors: the last rib-bearing vertebra is T12, the first segment fused "
    "with the iliac bones is S1, counting in between. Where anchors disagree or are missing "
    "(lumbar rib, transitional vertebra, partial field of view) the confidence is low and the "
    "reason is given. No model weights; deterministic. Exit 4 when a study could not be "
    "analysed (no CT, refused CT)."
)


def register(sub: SubParsers) -> None:
    """Add the ``detect`` command."""
    p = sub.add_parser("detect", help="label vertebrae and find sclerotic lesions on each CT",
                       description=DESCRIPTION)
    p.add_argument("export_dir", type=existing_path, metavar="EXPORT_DIR")
    p.add_argument("--out", required=True, type=Path, metavar="OUT_DIR", help="output folder")
    p.add_argument("--pipeline", default="ct_sclerotic",
                   help="pipeline whose CT role, tilt and [detection] settings apply "
                   "(default: ct_sclerotic)")
    p.add_argument("--detection-config", type=existing_path, metavar="FILE",
                   help="detection settings TOML laid over the pipeline's (see "
                   "configs/detection.toml)")
    p.add_argument("--catalogue", type=Path, help="index catalogue file (default "
                   "OUT/catalogue.sqlite)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes for indexing")
    p.add_argument("--force", action="store_true", help="replace an earlier result in OUT_DIR")
    p.set_defaults(handler=_cmd_detect)


def _cmd_detect(args: argparse.Namespace) -> int:
    from bonelesion.pipeline.detection import detect_export

    summary = detect_export(args.export_dir, args.out, pipeline=args.pipeline,
                            detection_config=args.detection_config, force=args.force,
                            catalogue=args.catalogue, workers=args.workers,
                            command=tuple(args.command_line), progress=print)
    total = len(summary.studies)
    vertebrae = sum(s.vertebrae for s in summary.studies)
    candidates = sum(s.candidates for s in summary.studies)
    print(f"{total} studies: {total - summary.failed} analysed, {summary.failed} not; "
          f"{vertebrae} vertebrae, {candidates} lesion candidates. Tables in "
          f"{summary.out_dir}/")
    for s in summary.studies:
        if s.status != "ok":
            print(f"NOT ANALYSED study {s.study_instance_uid} at {s.stage}: {s.message}",
                  file=sys.stderr)
    return EXIT_PARTIAL if summary.failed else EXIT_OK
