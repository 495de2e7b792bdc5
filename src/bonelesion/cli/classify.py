"""Classifier commands: ``train``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bonelesion.cli._common import (
    EXIT_OK,
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




def register(sub: SubParsers) -> None:
    """Add this group's commands to ``sub``."""
    _add_train(sub)
