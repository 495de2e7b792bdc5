"""A trainable, L2-regularised logistic model over the measured features (numpy/scipy only).

Missing features are handled with an indicator column plus imputation with the training mean;
both are recorded in the model file. The model is saved as JSON (no pickle) with its
coefficients, feature names, means/SDs, imputation values and k-fold cross-validated AUC and
calibration. Applied to a lesion it still explains itself: each feature's contribution is
coefficient × standardised value.

Notes
-----
Training minimises ``−Σ [y ln p + (1 − y) ln(1 − p)] + λ/2 ‖w‖²`` (the intercept is not
penalised) with L-BFGS, on standardised features ``z = (x − mean) / sd``.
Calibration is the logistic recalibration ``logit P(y=1) = a + b · logit(p̂)`` of the
out-of-fold predictions (slope b = 1, intercept a = 0 when calibrated; Cox 1958), plus
reliability bins.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

from bonelesion.classify.call import (
    FeatureReason,
    FeatureStatus,
    Label,
    LesionCall,
    label_from_posterior,
)
from bonelesion.classify.config import ClassifierConfig
from bonelesion.classify.rules import UNIT_ADC, UNIT_HU, UNIT_RATIO, _spine, sigmoid
from bonelesion.errors import InputError
from bonelesion.model.results import (
    MISSING_ADC,
    MISSING_CHEMICAL_SHIFT,
    MISSING_CT,
    MISSING_FAT_FRACTION,
    LesionMeasurements,
    missing_reason,
)

__all__ = [
    "FEATURES",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "LogisticModel",
    "fit_logistic_model",
    "roc_auc",
    "read_lesion_features_csv",
    "read_labels_csv",
    "train_model_from_csv",
    "load_model",
]

MODEL_FORMAT = "bonelesion-logistic"
MODEL_FORMAT_VERSION = 1


@dataclass(frozen=True)
class _Feature:
    name: str
    unit: str
    getter: Callable[[LesionMeasurements], float | None]
    aliases: tuple[str, ...]
    missing_keys: tuple[str, ...]  # keys of LesionMeasurements.missing, most specific first


def _get(obj: Any, attr: str) -> float | None:
    if obj is None:
        return None
    value = getattr(obj, attr, None)
    return None if value is None else float(value)


#: Input features of the trained model: name, unit, how to read it from a
#: `LesionMeasurements`, and the lesions.csv column names accepted for it.
FEATURES: tuple[_Feature, ...] = (
    _Feature("ct_attenuation_mean_hu", UNIT_HU, lambda m: _get(m.ct, "attenuation_mean_hu"),
             ("ct_attenuation_mean_hu", "ct.attenuation_mean_hu", "attenuation_mean_hu"),
             (MISSING_CT,)),
    _Feature("ct_attenuation_max_hu", UNIT_HU, lambda m: _get(m.ct, "attenuation_max_hu"),
             ("ct_attenuation_max_hu", "ct.attenuation_max_hu", "attenuation_max_hu"),
             (MISSING_CT,)),
    _Feature("chemical_shift_ratio", UNIT_RATIO,
             lambda m: _get(m.chemical_shift, "chemical_shift_ratio"),
             ("chemical_shift_ratio", "chemical_shift.chemical_shift_ratio",
              "chemical_shift_chemical_shift_ratio", "mr_chemical_shift_ratio", "sir"),
             (MISSING_CHEMICAL_SHIFT,)),
    _Feature("fat_fraction", UNIT_RATIO, lambda m: _get(m.chemical_shift, "fat_fraction"),
             ("fat_fraction", "chemical_shift.fat_fraction", "chemical_shift_fat_fraction",
              "mr_fat_fraction"),
             (MISSING_FAT_FRACTION, MISSING_CHEMICAL_SHIFT)),
    _Feature("adc_mean_mm2_per_s", UNIT_ADC, lambda m: _get(m.adc, "adc_mean_mm2_per_s"),
             ("adc_mean_mm2_per_s", "adc.adc_mean_mm2_per_s", "adc_adc_mean_mm2_per_s"),
             (MISSING_ADC,)),
)
_BY_NAME = {f.name: f for f in FEATURES}

# ----------------------------------------------------------------------------- maths


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _fit_weights(
    x: NDArray[np.float64], y: NDArray[np.float64], l2: float, *, penalise: bool = True
) -> tuple[float, NDArray[np.float64]]:
    """Penalised maximum-likelihood logistic fit; returns (intercept, coefficients)."""
    n, p = x.shape
    lam = l2 if penalise else 1e-8

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        b, w = theta[0], theta[1:]
        eta = b + x @ w
        # −log-likelihood = Σ log(1 + e^η) − y η, computed stably
        nll = float(np.sum(np.logaddexp(0.0, eta) - y * eta))
        resid = _sigmoid(eta) - y
        grad = np.concatenate(([resid.sum()], x.T @ resid + lam * w))
        return nll + 0.5 * lam * float(w @ w), grad

    res = optimize.minimize(objective, np.zeros(p + 1), jac=True, method="L-BFGS-B",
                            options={"maxiter": 2000})
    return float(res.x[0]), np.asarray(res.x[1:], dtype=np.float64)


def roc_auc(y: Sequence[float] | NDArray[Any], score: Sequence[float] | NDArray[Any]) -> float:
    """Area under the ROC curve (Mann–Whitney U / (n₁ n₀), ties counted half).

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y_arr = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    n_pos, n_neg = int((y_arr == 1).sum()), int((y_arr == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # rank form of U (average ranks for ties): O(n log n) instead of all n₁·n₀ pairs
    ranks = stats.rankdata(s)
    u = float(ranks[y_arr == 1].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


@dataclass(frozen=True)
class _Design:
    """Standardisation and imputation learned on training rows."""

    features: tuple[str, ...]
    means: tuple[float, ...]
    sds: tuple[float, ...]
    indicators: tuple[str, ...]  # features that get a `<name>_missing` column

    @property
    def columns(self) -> tuple[str, ...]:
        return self.features + tuple(f"{n}_missing" for n in self.indicators)

    def matrix(self, raw: NDArray[np.float64], names: Sequence[str]) -> NDArray[np.float64]:
        idx = [list(names).index(n) for n in self.features]
        sub = raw[:, idx]
        miss = ~np.isfinite(sub)
        z = (np.where(miss, np.asarray(self.means), sub) - np.asarray(self.means)) / np.asarray(
            self.sds)
        ind = [miss[:, self.features.index(n)].astype(float) for n in self.indicators]
        return np.column_stack([z, *ind]) if ind else z


def _learn_design(raw: NDArray[np.float64], names: Sequence[str]) -> tuple[_Design, list[str]]:
    notes: list[str] = []
    feats: list[str] = []
    means: list[float] = []
    sds: list[float] = []
    indicators: list[str] = []
    for j, name in enumerate(names):
        col = raw[:, j]
        ok = np.isfinite(col)
        if not ok.any():
            notes.append(f"{name}: missing in every training lesion; dropped")
            continue
        feats.append(name)
        means.append(float(col[ok].mean()))
        sd = float(col[ok].std(ddof=1)) if ok.sum() > 1 else 0.0
        if not sd > 0:
            notes.append(f"{name}: constant in the training data; SD set to 1")
            sd = 1.0
        sds.append(sd)
        if not ok.all():
            indicators.append(name)
            notes.append(f"{name}: missing in {int((~ok).sum())} of {len(col)} training lesions; "
                         "imputed with the training mean plus a missing-indicator column")
    return _Design(tuple(feats), tuple(means), tuple(sds), tuple(indicators)), notes


def _stratified_folds(y: NDArray[np.float64], k: int, seed: int) -> list[NDArray[np.intp]]:
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for cls in (0.0, 1.0):
        idx = np.flatnonzero(y == cls)
        rng.shuffle(idx)
        for i, j in enumerate(idx):
            folds[i % k].append(int(j))
    return [np.asarray(sorted(f), dtype=np.intp) for f in folds]


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True, kw_only=True)
class LogisticModel:
    """A fitted logistic model; `to_json` / `load_model` round-trip it without pickle."""

    features: tuple[str, ...]
    means: tuple[float, ...]
    sds: tuple[float, ...]
    indicators: tuple[str, ...]
    intercept: float
    coefficients: tuple[float, ...]
    l2_penalty: float
    malignant_min_probability: float = 0.85
    benign_max_probability: float = 0.15
    cv: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """Design-matrix columns: standardised features, then missing indicators."""
        return self.features + tuple(f"{n}_missing" for n in self.indicators)

    def _design(self) -> _Design:
        return _Design(self.features, self.means, self.sds, self.indicators)

    def predict_proba(self, raw: NDArray[np.float64], names: Sequence[str]) -> NDArray[np.float64]:
        """Probability of malignancy for rows of raw features (NaN = missing)."""
        x = self._design().matrix(np.asarray(raw, dtype=np.float64), names)
        return _sigmoid(self.intercept + x @ np.asarray(self.coefficients))

    def call(self, m: LesionMeasurements, *, config: ClassifierConfig | None = None
             ) -> LesionCall:
        """Explained call for one lesion (contribution = coefficient × standardised value).

        A lesion with none of the model's features measured is INDETERMINATE; spine scores
        are computed as in the rule-based classifier.
        """
        config = config or ClassifierConfig()
        values = {n: _BY_NAME[n].getter(m) for n in self.features}
        raw = np.array([[np.nan if v is None or not math.isfinite(v) else v
                         for v in values.values()]])
        x = self._design().matrix(raw, list(self.features))[0]
        coef = np.asarray(self.coefficients)
        contrib = x * coef
        log_odds = self.intercept + float(contrib.sum())
        p = sigmoid(log_odds)
        reasons: list[FeatureReason] = []
        for j, name in enumerate(self.features):
            c = float(contrib[j])
            v = raw[0, j]
            note = (f"coefficient {coef[j]:+.4g} per SD (mean {self.means[j]:.6g}, "
                    f"SD {self.sds[j]:.6g})")
            status = FeatureStatus.APPLIED
            if name in self.indicators:
                k = len(self.features) + self.indicators.index(name)
                c += float(contrib[k])
                if not math.isfinite(v):
                    status = FeatureStatus.IMPUTED
                    why = missing_reason(m, *_BY_NAME[name].missing_keys)
                    note += (f"; missing ({why}): imputed with the training mean, indicator "
                             f"coefficient {coef[k]:+.4g}")
            elif not math.isfinite(v):
                status = FeatureStatus.IMPUTED
                note += "; missing: imputed with the training mean (never missing in training)"
            reasons.append(FeatureReason(
                feature=name, status=status, value=None if not math.isfinite(v) else float(v),
                unit=_BY_NAME[name].unit, direction="higher value raises P(malignant)"
                if coef[j] > 0 else "higher value lowers P(malignant)",
                favours=(Label.MALIGNANT if c > 0 else Label.BENIGN) if c != 0 else None,
                weight=1.0, log_odds=c, citation="trained logistic model", note=note,
            ))
        decision = [f"trained logistic model: intercept {self.intercept:+.4g}, posterior {p:.3f}",
                    f"cross-validated AUC {self.cv.get('auc', float('nan')):.3f}"]
        if all(r.status is FeatureStatus.IMPUTED for r in reasons):
            label = Label.INDETERMINATE
            decision.append("indeterminate: none of the model's features was measured")
        else:
            label, why = label_from_posterior(
                p, malignant_min_probability=self.malignant_min_probability,
                benign_max_probability=self.benign_max_probability)
            decision.append(why)
        sins, escc, problems = _spine(m, config)
        return LesionCall(
            study_instance_uid=m.study_instance_uid, lesion_id=m.lesion_id, label=label,
            probability_malignant=p, method="trained_logistic_model", reasons=tuple(reasons),
            decision=tuple(decision), sins=sins, escc=escc, spine_problems=problems,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (see `load_model`)."""
        from bonelesion import __version__

        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "bonelesion_version": __version__,
            "features": list(self.features),
            "design_columns": list(self.columns),
            "means": list(self.means),
            "sds": list(self.sds),
            "imputation_values": {n: self.means[self.features.index(n)] for n in self.features},
            "missing_indicators": list(self.indicators),
            "intercept": self.intercept,
            "coefficients": list(self.coefficients),
            "l2_penalty": self.l2_penalty,
            "decision": {"malignant_min_probability": self.malignant_min_probability,
                         "benign_max_probability": self.benign_max_probability},
            "cv": dict(self.cv),
            "training": dict(self.training),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the model as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path


def load_model(path: str | Path) -> LogisticModel:
    """Read a model written by `LogisticModel.to_json`.

    Raises
    ------
    InputError
        If the file is not JSON, not a bonelesion model, of another format version, or its
        arrays are inconsistent.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"Model file {path}: cannot be read as JSON ({exc}). Potential fix: "
                         "pass the MODEL.json written by `bonelesion train`.") from exc
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"Model file {path}: expected format {MODEL_FORMAT!r}, found "
                         f"{found!r}. "
                         "Potential fix: pass the MODEL.json written by `bonelesion train`.")
    if data.get("format_version") != MODEL_FORMAT_VERSION:
        raise InputError(f"Model file {path}: format_version {data.get('format_version')!r}, this "
                         f"bonelesion reads {MODEL_FORMAT_VERSION}. Potential fix: retrain the "
                         "model with this version.")
    try:
        feats = tuple(str(f) for f in data["features"])
        model = LogisticModel(
            features=feats, means=tuple(float(v) for v in data["means"]),
            sds=tuple(float(v) for v in data["sds"]),
            indicators=tuple(str(v) for v in data["missing_indicators"]),
            intercept=float(data["intercept"]),
            coefficients=tuple(float(v) for v in data["coefficients"]),
            l2_penalty=float(data["l2_penalty"]),
            malignant_min_probability=float(data["decision"]["malignant_min_probability"]),
            benign_max_probability=float(data["decision"]["benign_max_probability"]),
            cv=data.get("cv", {}), training=data.get("training", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"Model file {path}: missing or malformed entry ({exc!r}). Potential "
                         "fix: retrain with `bonelesion train`.") from exc
    unknown = [f for f in feats if f not in _BY_NAME]
    if (unknown or len(model.means) != len(feats) or len(model.sds) != len(feats)
            or len(model.coefficients) != len(model.columns)
            or any(i not in feats for i in model.indicators)):
        raise InputError(
            f"Model file {path}: inconsistent arrays ({len(feats)} features, "
            f"{len(model.means)} means, {len(model.coefficients)} coefficients for "
            f"{len(model.columns)} columns; unknown features {unknown}). Potential fix: retrain "
            "with `bonelesion train`.")
    return model


def fit_logistic_model(
    raw: NDArray[np.float64],
    y: NDArray[np.float64] | Sequence[float],
    names: Sequence[str],
    *,
    l2_penalty: float = 1.0,
    folds: int = 5,
    seed: int = 0,
    n_bins: int = 5,
    malignant_min_probability: float = 0.85,
    benign_max_probability: float = 0.15,
) -> LogisticModel:
    """Fit the L2 logistic model and cross-validate it.

    Parameters
    ----------
    raw : (N, F) ndarray of float
        Feature values, NaN where missing, columns named by ``names`` (see `FEATURES`).
    y : (N,) array of {0, 1}
        1 = malignant.
    l2_penalty : float
        λ of the ridge penalty on standardised coefficients.
    folds : int
        k of the stratified k-fold cross-validation (reduced to the minority class size).

    Returns
    -------
    LogisticModel
        With ``cv`` = {"folds", "auc", "calibration_slope", "calibration_intercept",
        "reliability_bins"} from out-of-fold predictions; standardisation and imputation are
        re-learned inside each fold.

    Raises
    ------
    InputError
        If there are fewer than 2 lesions of either class or no usable feature.
    """
    raw = np.asarray(raw, dtype=np.float64)
    y_arr = np.asarray(y, dtype=np.float64)
    n_pos, n_neg = int((y_arr == 1).sum()), int((y_arr == 0).sum())
    if min(n_pos, n_neg) < 2:
        raise InputError(
            f"Training data: need ≥ 2 malignant and ≥ 2 benign lesions, found {n_pos} malignant "
            f"and {n_neg} benign. Potential fix: label more lesions of the rare class.")
    design, notes = _learn_design(raw, names)
    if not design.features:
        raise InputError("Training data: no feature column holds a single value (expected one of "
                         f"{', '.join(f.name for f in FEATURES)}). Potential fix: train on "
                         "the lesions.csv written by `bonelesion measure`.")
    b0, w = _fit_weights(design.matrix(raw, names), y_arr, l2_penalty)
    k = max(2, min(folds, n_pos, n_neg))
    oof = np.full(len(y_arr), np.nan)
    for test_idx in _stratified_folds(y_arr, k, seed):
        train = np.setdiff1d(np.arange(len(y_arr)), test_idx)
        d, _ = _learn_design(raw[train], names)
        if not d.features:
            continue
        bb, ww = _fit_weights(d.matrix(raw[train], names), y_arr[train], l2_penalty)
        oof[test_idx] = _sigmoid(bb + d.matrix(raw[test_idx], names) @ ww)
    ok = np.isfinite(oof)
    auc = roc_auc(y_arr[ok], oof[ok])
    eps = 1e-6
    lo = np.log(np.clip(oof[ok], eps, 1 - eps) / (1 - np.clip(oof[ok], eps, 1 - eps)))
    cal_a, cal_b = _fit_weights(lo[:, None], y_arr[ok], 0.0, penalise=False)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = []
    for i in range(n_bins):
        sel = ok & (oof >= edges[i]) & ((oof < edges[i + 1]) if i < n_bins - 1 else (oof <= 1))
        if sel.any():
            bins.append({"lower": float(edges[i]), "upper": float(edges[i + 1]),
                         "count": int(sel.sum()), "mean_predicted": float(oof[sel].mean()),
                         "observed_fraction": float(y_arr[sel].mean())})
    cv = {"folds": k, "seed": seed, "auc": auc, "calibration_slope": float(cal_b[0]),
          "calibration_intercept": cal_a, "reliability_bins": bins,
          "n_out_of_fold": int(ok.sum())}
    training = {"n_lesions": int(len(y_arr)), "n_malignant": n_pos, "n_benign": n_neg,
                "notes": notes,
                "trained_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return LogisticModel(
        features=design.features, means=design.means, sds=design.sds,
        indicators=design.indicators, intercept=b0, coefficients=tuple(float(c) for c in w),
        l2_penalty=l2_penalty, malignant_min_probability=malignant_min_probability,
        benign_max_probability=benign_max_probability, cv=cv, training=training,
    )


# ----------------------------------------------------------------------------- CSV input

_MISSING_TEXT = {"", "nan", "na", "n/a", "none", "null"}
_MALIGNANT_TEXT = {"malignant", "1", "true", "yes", "metastasis"}
_BENIGN_TEXT = {"benign", "0", "false", "no", "enostosis"}


def _read_csv(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot be read ({exc}). Potential fix: check the "
                         "path.") from exc
    if "lesion_id" not in header:
        found = ", ".join(header) or "nothing"
        raise InputError(f"{what} {path}: no 'lesion_id' column (found: {found}). Potential "
                         "fix: add a lesion_id column matching lesions.csv.")
    return header, rows


def _key(row: Mapping[str, str], with_study: bool) -> tuple[str, str]:
    return ((row.get("study_instance_uid") or "").strip() if with_study else "",
            (row.get("lesion_id") or "").strip())


def _fmt(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]


def read_lesion_features_csv(
    path: str | Path,
) -> tuple[list[tuple[str, str]], NDArray[np.float64], list[str], bool]:
    """Read feature columns of a lesions.csv.

    Returns
    -------
    keys : list of (study_instance_uid, lesion_id)
    raw : (N, F) ndarray, NaN where missing
    names : list of str
        Canonical feature names (see `FEATURES`) found in the file.
    has_study : bool
        Whether a study_instance_uid column exists.

    Raises
    ------
    InputError
        No lesion_id column, duplicate lesions, no feature column, or a non-numeric value.
    """
    path = Path(path)
    header, rows = _read_csv(path, "Lesion table")
    has_study = "study_instance_uid" in header
    cols: dict[str, str] = {}
    for f in FEATURES:
        hit = next((a for a in f.aliases if a in header), None)
        if hit is not None:
            cols[f.name] = hit
    if not cols:
        raise InputError(
            f"Lesion table {path}: none of the feature columns was found (expected e.g. "
            f"{', '.join(f.name for f in FEATURES)}). Potential fix: use the lesions.csv written "
            "by `bonelesion measure`.")
    keys: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    raw = np.full((len(rows), len(cols)), np.nan)
    for i, row in enumerate(rows):
        key = _key(row, has_study)
        if key in seen:
            raise InputError(f"Lesion table {path}: lesion {_fmt(key)} appears twice (line "
                             f"{i + 2}). Potential fix: keep one row per lesion.")
        seen.add(key)
        keys.append(key)
        for j, col in enumerate(cols.values()):
            text = (row.get(col) or "").strip()
            if text.lower() in _MISSING_TEXT:
                continue
            try:
                raw[i, j] = float(text)
            except ValueError as exc:
                raise InputError(f"Lesion table {path}, line {i + 2}, column {col}: expected a "
                                 f"number, found {text!r}. Potential fix: leave missing values "
                                 "empty.") from exc
    return keys, raw, list(cols), has_study


def read_labels_csv(
    path: str | Path, lesion_keys: Sequence[tuple[str, str]], *, lesions_have_study: bool
) -> NDArray[np.float64]:
    """Read labels (1 = malignant) aligned to ``lesion_keys``; refuse any mismatch.

    The file has columns ``lesion_id`` and ``label`` (malignant/benign, 1/0), and
    ``study_instance_uid`` when lesion ids repeat across studies.

    Raises
    ------
    InputError
        No label column, an unknown label value, a duplicate lesion, a lesion without a label,
        or a label for a lesion not in the lesion table.
    """
    path = Path(path)
    header, rows = _read_csv(path, "Labels file")
    if "label" not in header:
        raise InputError(f"Labels file {path}: no 'label' column (found: {', '.join(header)}). "
                         "Potential fix: add a label column with malignant/benign.")
    with_study = lesions_have_study and "study_instance_uid" in header
    keys = list(lesion_keys) if with_study else [("", k[1]) for k in lesion_keys]
    if not with_study and len(set(keys)) != len(keys):
        raise InputError(
            f"Labels file {path}: lesion ids repeat across studies in the lesion table, but the "
            "labels file has no study_instance_uid column. Potential fix: add a "
            "study_instance_uid column to the labels file.")
    labels: dict[tuple[str, str], float] = {}
    for i, row in enumerate(rows):
        key = _key(row, with_study)
        text = (row.get("label") or "").strip().lower()
        if text in _MALIGNANT_TEXT:
            value = 1.0
        elif text in _BENIGN_TEXT:
            value = 0.0
        else:
            raise InputError(f"Labels file {path}, line {i + 2}: label {row.get('label')!r} for "
                             f"lesion {_fmt(key)} is not malignant/benign (or 1/0). Potential "
                             "fix: correct the label.")
        if key in labels:
            raise InputError(f"Labels file {path}: lesion {_fmt(key)} is labelled twice (line "
                             f"{i + 2}). Potential fix: keep one label per lesion.")
        labels[key] = value
    missing = [k for k in keys if k not in labels]
    unknown = [k for k in labels if k not in set(keys)]
    if missing:
        raise InputError(
            f"Labels file {path}: {len(missing)} lesion(s) of the lesion table have no label, "
            f"e.g. {', '.join(_fmt(k) for k in missing[:5])}. Potential fix: label every lesion "
            "or remove the unlabelled rows from the lesion table.")
    if unknown:
        raise InputError(
            f"Labels file {path}: {len(unknown)} label(s) name lesions not in the lesion table, "
            f"e.g. {', '.join(_fmt(k) for k in unknown[:5])}. Potential fix: check the lesion_id "
            "(and study_instance_uid) spelling.")
    return np.array([labels[k] for k in keys])


def train_model_from_csv(
    lesions_csv: str | Path,
    labels_csv: str | Path,
    *,
    l2_penalty: float = 1.0,
    folds: int = 5,
    seed: int = 0,
    config: ClassifierConfig | None = None,
) -> LogisticModel:
    """Train the logistic model on a lesions.csv and a labels file (see `fit_logistic_model`).

    The decision bounds come from ``config.fusion`` (defaults 0.15 / 0.85).

    Raises
    ------
    InputError
        On any mismatch between the two files or unusable data.
    """
    config = config or ClassifierConfig()
    keys, raw, names, has_study = read_lesion_features_csv(lesions_csv)
    y = read_labels_csv(labels_csv, keys, lesions_have_study=has_study)
    model = fit_logistic_model(
        raw, y, names, l2_penalty=l2_penalty, folds=folds, seed=seed,
        malignant_min_probability=config.fusion.malignant_min_probability,
        benign_max_probability=config.fusion.benign_max_probability,
    )
    training = dict(model.training)
    training["lesions_csv"] = str(lesions_csv)
    training["labels_csv"] = str(labels_csv)
    return dataclasses.replace(model, training=training)
