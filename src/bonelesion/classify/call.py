"""The per-lesion call: label enum, per-feature reasons and the call record.

Shared by the rule-based classifier (`bonelesion.classify.rules`) and the trained logistic
model (`bonelesion.classify.model`), so the reports render both the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bonelesion.classify.spine import EsccGrade, SinsScore

__all__ = ["Label", "FeatureStatus", "FeatureReason", "LesionCall"]


class Label(str, Enum):
    """Call for one lesion. INDETERMINATE is an answer, with reasons, never a failure."""

    MALIGNANT = "malignant"
    BENIGN = "benign"
    INDETERMINATE = "indeterminate"


class FeatureStatus(str, Enum):
    """What became of one feature in a call."""

    APPLIED = "applied"
    """Counted with its likelihood ratio (or model coefficient) and weight."""
    SECONDARY = "secondary"
    """Reported and checked for agreement; counts with its (often zero) configured weight."""
    NEAR_THRESHOLD = "near_threshold"
    """Counted, but its value-specific likelihood ratio is near 1 (weak evidence)."""
    OUT_OF_SCOPE = "out_of_scope"
    """A scope gate excluded it (treated, not sclerotic, fat dominant …)."""
    UNRELIABLE = "unreliable"
    """Set aside: the measurement is not reliable here (signal void, partial volume …)."""
    MISSING = "missing"
    """Not measured for this lesion."""
    ABSENT = "absent"
    """A sign that was looked for and not found (e.g. no macroscopic fat): not counted."""
    DISABLED = "disabled"
    """Switched off in the configuration."""
    IMPUTED = "imputed"
    """Trained model only: missing, replaced by the training mean (plus its indicator)."""


def label_from_posterior(
    p: float, *, malignant_min_probability: float, benign_max_probability: float
) -> tuple[Label, str]:
    """Label of a posterior probability of malignancy against the two decision bounds.

    Between the bounds the call is ``indeterminate``, never a coin toss. Returns the label
    and the sentence that explains it.
    """
    if p >= malignant_min_probability:
        return Label.MALIGNANT, f"malignant: posterior ≥ {malignant_min_probability:g}"
    if p <= benign_max_probability:
        return Label.BENIGN, f"benign: posterior ≤ {benign_max_probability:g}"
    return Label.INDETERMINATE, (
        f"indeterminate: posterior between the decision bounds {benign_max_probability:g} "
        f"and {malignant_min_probability:g}"
    )


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, kw_only=True)
class FeatureReason:
    """Why one feature did (or did not) move the call.

    Attributes
    ----------
    feature : str
        Feature name with its unit (``ct_attenuation_mean_hu``, ``chemical_shift_ratio`` …).
    status : FeatureStatus
    value : float or None
        The measured value, in the unit named by ``unit``.
    unit : str
        UCUM-style unit of ``value`` and ``threshold`` ("[hnsf'U]", "1", "mm2/s").
    threshold : float or None
        The rule threshold (None for a trained model).
    direction : str
        Human-readable rule, e.g. "mean < 885 [hnsf'U] favours malignant".
    favours : Label or None
        The side this feature's evidence points to (None when not counted).
    weight : float
        Multiplier of the log likelihood ratio (0 when not counted).
    likelihood_ratio : float or None
        LR used (LR+ or LR−); None when not counted or for a trained model.
    log_odds : float
        Contribution to the log-odds of malignancy: weight × ln(LR), or coefficient × z.
    citation : str
    note : str
        Scope gates applied, why not used, correlation discount …
    unreliable : bool
        Down-weighted because the measurement is known to be unreliable here (ADC in dense
        sclerosis); such a feature still counts, but does not make the evidence "conflicting".
    """

    feature: str
    status: FeatureStatus
    value: float | None = None
    unit: str = ""
    threshold: float | None = None
    direction: str = ""
    favours: Label | None = None
    weight: float = 0.0
    likelihood_ratio: float | None = None
    log_odds: float = 0.0
    citation: str = ""
    note: str = ""
    unreliable: bool = False

    @property
    def counted(self) -> bool:
        """True when this feature moved the log-odds."""
        return self.weight > 0.0 and self.log_odds != 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (NaN-free)."""
        return {
            "feature": self.feature,
            "status": self.status.value,
            "value": _clean(self.value),
            "unit": self.unit,
            "threshold": _clean(self.threshold),
            "direction": self.direction,
            "favours": self.favours.value if self.favours else None,
            "weight": self.weight,
            "likelihood_ratio": _clean(self.likelihood_ratio),
            "log_odds": self.log_odds,
            "citation": self.citation,
            "note": self.note,
            "unreliable": self.unreliable,
        }


@dataclass(frozen=True, kw_only=True)
class LesionCall:
    """The explained call for one lesion, with spine scores beside it.

    ``probability_malignant`` is always a number in (0, 1): the prior when nothing applies.
    ``decision`` lists why the label is what it is (bounds, conflicts, sufficiency …);
    ``statement`` is the one-line reading a radiologist would give (e.g. "MR not evaluable:
    signal void; recommend CT", or the response statement of a treated lesion); ``prior`` is
    the prior probability of malignancy used and ``prior_source`` where it came from.
    """

    study_instance_uid: str
    lesion_id: str
    label: Label
    probability_malignant: float
    method: str
    reasons: tuple[FeatureReason, ...]
    decision: tuple[str, ...] = ()
    sins: SinsScore | None = None
    escc: EsccGrade | None = None
    spine_problems: tuple[str, ...] = ()
    statement: str = ""
    prior: float | None = None
    prior_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def set_aside(self) -> tuple[FeatureReason, ...]:
        """Features measured but not counted: unreliable or out of scope (with why)."""
        return tuple(r for r in self.reasons
                     if r.status in (FeatureStatus.UNRELIABLE, FeatureStatus.OUT_OF_SCOPE))

    def reasons_dict(self) -> dict[str, Any]:
        """Reasons, decision notes and method as one JSON-able mapping.

        ``set_aside`` lists every feature that was set aside (unreliable or out of scope) and
        why, so the table's ``reasons`` column (`bonelesion.report.table`) says it without
        reading every feature entry.
        """
        out: dict[str, Any] = {"method": self.method}
        if self.statement:
            out["statement"] = self.statement
        if self.prior is not None:
            out["prior"] = {"probability_malignant": self.prior, "source": self.prior_source}
        out["decision"] = list(self.decision)
        out["set_aside"] = [{"feature": r.feature, "status": r.status.value, "why": r.note}
                            for r in self.set_aside]
        out["features"] = [r.to_dict() for r in self.reasons]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "lesion_id": self.lesion_id,
            "label": self.label.value,
            "probability_malignant": self.probability_malignant,
            **self.reasons_dict(),
            "sins": self.sins.to_dict() if self.sins else None,
            "escc": self.escc.to_dict() if self.escc else None,
            "spine_problems": list(self.spine_problems),
            **({"extra": self.extra} if self.extra else {}),
        }
