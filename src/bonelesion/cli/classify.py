"""Classifier commands: ``classify`` (re-call a measurement table) and ``train``."""

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
    positive_int,
)
from bonelesion.errors import ConfigError, InputError

logger = logging.getLogger("bonelesion.cli")


# ---- classify / report commands ----
def _add_train(sub: SubParsers) -> None:
    p = sub.add_parser(
        "train",
        help="fit the logistic lesion classifier on lesions.csv + labels",
        description=(
            "Fit an L2-regularised logistic model on the measured features of LESIONS_CSV "
            "(missing values: training-mean imputation plus indicator), report k-fold "
            "cross-validated AUC and calibration, and save it as JSON for `measure --model`."
        ),
    )
    p.add_argument("lesions_csv", type=existing_path, metavar="LESIONS_CSV")
    p.add_argument("--labels", type=existing_path, required=True, metavar="LABELS_CSV",
                   help="CSV with lesion_id (and study_instance_uid) and label=malignant|benign")
    p.add_argument("--out", type=Path, required=True, metavar="MODEL.json")
    p.add_argument("--folds", type=positive_int, default=5, help="k of k-fold CV (default 5)")
    p.add_argument("--l2", type=float, default=1.0, help="ridge penalty λ (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="fold assignment seed (default 0)")
    p.add_argument("--config", type=existing_path,
                   help="classifier TOML (decision bounds; default configs/classifier.toml values)")
    p.add_argument("--force", action="store_true", help="overwrite MODEL.json")
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from bonelesion.classify.config import load_classifier_config
    from bonelesion.classify.model import train_model_from_csv

    if args.out.exists() and not args.force:
        raise InputError(
            f"train: output {args.out} already exists. Potential fix: pass --force to "
            "overwrite it or choose another --out."
        )
    if not args.l2 >= 0:
        raise ConfigError(f"train --l2: must be ≥ 0, found {args.l2}. Potential fix: 1.0.")
    model = train_model_from_csv(
        args.lesions_csv, args.labels, l2_penalty=args.l2, folds=args.folds, seed=args.seed,
        config=load_classifier_config(args.config),
    )
    model.to_json(args.out)
    cv = model.cv
    print(
        f"trained on {model.training['n_lesions']} lesions ({model.training['n_malignant']} "
        f"malignant, {model.training['n_benign']} benign); {cv['folds']}-fold CV AUC "
        f"{cv['auc']:.3f}, calibration slope {cv['calibration_slope']:.2f}, intercept "
        f"{cv['calibration_intercept']:+.2f}; model written to {args.out}"
    )
    for note in model.training.get("notes", []):
        logger.info("train: %s", note)
    return EXIT_OK


def _probability(value: str) -> float:
    try:
        p = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from exc
    if not 0.0 < p < 1.0:
        raise argparse.ArgumentTypeError(f"{value!r} must lie strictly between 0 and 1")
    return p


def _add_classify(sub: SubParsers) -> None:
    p = sub.add_parser(
        "classify",
        help="re-call a measured lesions.csv (no images) with other thresholds, prior or model",
        description=(
            "Read TABLE (a lesions.csv written by `measure` or `run`, same column names), call "
            "every row again without reading images, and write OUT_DIR/lesions.csv with the "
            "call columns (label, probability_malignant, reasons, SINS, ESCC) replaced, plus "
            "OUT_DIR/classify.json (input SHA-256, resolved thresholds, prior, problems). Rows "
            "missing features are called on what they have. Exit codes: 0 all rows read; "
            f"{EXIT_PARTIAL} some cells could not be read (reported per row on stderr, treated "
            "as missing; every row is still written); 2 bad configuration; 3 unreadable table "
            "or existing output."
        ),
    )
    p.add_argument("table", type=existing_path, metavar="TABLE")
    p.add_argument("--out", type=Path, required=True, metavar="OUT_DIR")
    p.add_argument("--config", type=existing_path, metavar="FILE",
                   help="classifier TOML (default: configs/classifier.toml values)")
    p.add_argument("--model", type=existing_path, metavar="MODEL.json",
                   help="trained model (bonelesion train) instead of the literature rules")
    p.add_argument("--prior", type=_probability, metavar="P",
                   help="prior probability of malignancy of the population, 0 < P < 1 "
                        "(default: the configuration's, 0.5)")
    p.add_argument("--force", action="store_true", help="overwrite OUT_DIR/lesions.csv")
    p.set_defaults(handler=_run_classify)


def _run_classify(args: argparse.Namespace) -> int:
    from bonelesion.classify.config import load_classifier_config
    from bonelesion.report.recall import check_prior_with_model, recall_table

    config = load_classifier_config(args.config)
    model = None
    if args.model is not None:
        from bonelesion.classify.model import load_model

        model = load_model(args.model)
    check_prior_with_model(args.prior, model)
    if args.prior is not None:
        config = config.with_prior(args.prior, source=f"--prior {args.prior:g} (command line)")
    result = recall_table(args.table, args.out, config=config, model=model, force=args.force)
    counts = result.label_counts
    print(f"{len(result.calls)} lesion(s): {counts.get('malignant', 0)} malignant, "
          f"{counts.get('benign', 0)} benign, {counts.get('indeterminate', 0)} indeterminate → "
          f"{result.lesions_csv}")
    for problem in result.problems:
        print(f"bonelesion classify: {args.table}: {problem}", file=sys.stderr)
    return EXIT_PARTIAL if result.problems else EXIT_OK


def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_classify(sub)
    _add_train(sub)
