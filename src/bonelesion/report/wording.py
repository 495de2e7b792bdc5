"""Human wording of the report: names, numbers and units as radiologists write them.

The results document keeps machine names and UCUM codes (``[hnsf'U]``, ``mm2/s``,
``adc_mean_mm2_per_s``): those stay in results.json, lesions.csv and the DICOM SR. Every
human view (report.html, index.html) goes through this module instead:

* CT attenuation in HU, no decimal (``650 HU``); SD likewise;
* signal intensity ratios (SIR) to 2 decimals; fat fraction and signal drop in %, no decimal;
* ADC as ×10⁻³ mm²/s to 2 decimals (``0.80 ×10⁻³ mm²/s``);
* likelihood ratios to 3 significant digits, probabilities to 2 decimals.

`humanise` rewrites the free text of a call (statements, decision notes, feature notes):
feature names become their reading names, ``[hnsf'U]`` becomes HU, and ADC values written
in mm²/s become ×10⁻³ mm²/s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ROLE_NAMES",
    "FEATURE_NAMES",
    "STATUS_NAMES",
    "role_name",
    "feature_name",
    "format_hu",
    "format_ratio",
    "format_pct",
    "format_adc",
    "format_lr",
    "format_probability",
    "format_feature_value",
    "humanise",
    "vertebral_level",
    "format_dicom_date",
]

#: Reading names of the series roles.
ROLE_NAMES: Mapping[str, str] = {
    "ct": "CT",
    "dixon_in_phase": "Dixon in-phase",
    "dixon_opposed_phase": "Dixon opposed-phase",
    "dixon_water": "Dixon water",
    "dixon_fat": "Dixon fat",
    "adc": "ADC map",
    "dwi": "DWI",
    "other": "other",
}

#: Reading names of the classifier features (see `bonelesion.classify`).
FEATURE_NAMES: Mapping[str, str] = {
    "ct_attenuation_mean_hu": "CT mean attenuation",
    "ct_attenuation_max_hu": "CT maximum attenuation",
    "chemical_shift_ratio": "SIR (opposed/in-phase)",
    "fat_fraction": "Dixon fat fraction",
    "adc_mean_mm2_per_s": "ADC (mean)",
    "macroscopic_fat": "Macroscopic fat",
}

#: Short names used where a feature is quoted with its value.
_FEATURE_SHORT: Mapping[str, str] = {
    "ct_attenuation_mean_hu": "CT mean",
    "ct_attenuation_max_hu": "CT max",
    "chemical_shift_ratio": "SIR",
    "fat_fraction": "fat fraction",
    "adc_mean_mm2_per_s": "ADC",
    "macroscopic_fat": "macroscopic fat",
}

#: What each feature status means, for the reader.
STATUS_NAMES: Mapping[str, str] = {
    "applied": "counted",
    "secondary": "checked, not added",
    "near_threshold": "counted, weak (near threshold)",
    "out_of_scope": "set aside: out of scope",
    "unreliable": "set aside: unreliable here",
    "missing": "not measured",
    "absent": "looked for, not found",
    "disabled": "switched off",
    "imputed": "imputed (model)",
}

UCUM_HU = "[hnsf'U]"
UCUM_ADC = "mm2/s"
#: 1 mm²/s in the display unit 10⁻³ mm²/s.
ADC_DISPLAY_PER_MM2_PER_S = 1.0e3
ADC_DISPLAY_UNIT = "×10⁻³ mm²/s"


def role_name(role: str) -> str:
    """Return the reading name of a series role (the role itself when unknown)."""
    return ROLE_NAMES.get(role, role.replace("_", " "))


def feature_name(feature: str) -> str:
    """Return the reading name of a classifier feature."""
    return FEATURE_NAMES.get(feature, feature.replace("_", " "))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def format_hu(value: Any) -> str:
    """Format CT attenuation as ``650 HU`` (no decimal); "—" when not a number.

    Examples
    --------
    >>> format_hu(650.2876), format_hu(None)
    ('650 HU', '—')
    """
    return f"{value:.0f} HU" if _finite(value) else "—"


def format_ratio(value: Any) -> str:
    """Format a ratio such as the SIR: 2 decimals."""
    return f"{value:.2f}" if _finite(value) else "—"


def format_pct(fraction: Any) -> str:
    """Format a 0–1 fraction as a percentage, no decimal (``5 %``)."""
    return f"{100.0 * fraction:.0f} %" if _finite(fraction) else "—"


def format_adc(value_mm2_per_s: Any, *, unit: bool = True) -> str:
    """Format an ADC in ×10⁻³ mm²/s, 2 decimals.

    Examples
    --------
    >>> format_adc(0.000800766)
    '0.80 ×10⁻³ mm²/s'
    """
    if not _finite(value_mm2_per_s):
        return "—"
    text = f"{value_mm2_per_s * ADC_DISPLAY_PER_MM2_PER_S:.2f}"
    return f"{text} {ADC_DISPLAY_UNIT}" if unit else text


def format_lr(value: Any) -> str:
    """Format a likelihood ratio: 3 significant digits."""
    return f"{value:.3g}" if _finite(value) else "—"


def format_probability(value: Any) -> str:
    """Format a probability: 2 decimals."""
    return f"{value:.2f}" if _finite(value) else "—"


def format_feature_value(value: Any, unit: str, feature: str = "") -> str:
    """Format a feature value (or threshold) in its human unit, from its UCUM unit."""
    if not _finite(value):
        return "—"
    if unit == UCUM_HU:
        return format_hu(value)
    if unit == UCUM_ADC:
        return format_adc(value)
    if feature == "fat_fraction":
        return format_pct(value)
    if unit in ("1", ""):
        return format_ratio(value)
    return f"{value:.3g} {unit}"


# ---------------------------------------------------------------------------- free text
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_FEATURE_VALUE = re.compile(r"\b(" + "|".join(map(re.escape, _FEATURE_SHORT)) + r")\b(\s+)("
                            + _NUMBER + r")")
_FEATURE_ALONE = re.compile(r"\b(" + "|".join(map(re.escape, _FEATURE_SHORT)) + r")\b")
#: ADC values as the classifier writes them: ~1e-5..1e-2 mm²/s, in plain or e-notation.
_ADC_NUMBER = re.compile(r"(?<![\w.])(\d\.\d+[eE]-0?[3-5]|0\.0\d+)(?![\w.])")
#: Numbers that are never ADC values although small (posteriors, likelihood ratios).
_NOT_ADC_BEFORE = re.compile(r"(posterior|probability|LR|LR[-+±]|p|prior|bounds?)\s*[=:]?\s*$",
                             re.IGNORECASE)


def _feature_value(match: re.Match[str]) -> str:
    feature, space, number = match.group(1), match.group(2), float(match.group(3))
    short = _FEATURE_SHORT[feature]
    if feature.endswith("_hu"):
        return f"{short}{space}{format_hu(number)}"
    if feature.endswith("_mm2_per_s"):
        return f"{short}{space}{format_adc(number)}"
    if feature == "fat_fraction":
        return f"{short}{space}{format_pct(number)}"
    return f"{short}{space}{format_ratio(number)}"


def _adc_clause(clause: str) -> str:
    """Rewrite the ADC numbers of one clause into ×10⁻³ mm²/s.

    A clause that names its unit (``… 0.00101 ± 0.00022 mm2/s``) keeps one unit at the end;
    a number in a clause without one (``published cutoff 0.00114``) gets its own.
    """
    has_unit = "mm2/s" in clause
    out: list[str] = []
    pos = 0
    for m in _ADC_NUMBER.finditer(clause):
        value = float(m.group(1))
        if _NOT_ADC_BEFORE.search(clause[:m.start()]) or not 1e-5 <= value < 1e-2:
            continue
        out.append(clause[pos:m.start()])
        out.append(f"{value * ADC_DISPLAY_PER_MM2_PER_S:.2f}")
        if not has_unit:
            out.append(f" {ADC_DISPLAY_UNIT}")
        pos = m.end()
    out.append(clause[pos:])
    return re.sub(r"(?:\s*(?:e-3|×\s*10⁻³))?\s*mm2/s", f" {ADC_DISPLAY_UNIT}", "".join(out))


def humanise(text: str) -> str:
    """Rewrite a classifier text for people: reading names, HU, ADC in ×10⁻³ mm²/s.

    Examples
    --------
    >>> humanise("ct_attenuation_mean_hu 650.3 (LR 17.4), adc_mean_mm2_per_s 0.0008008")
    'CT mean 650 HU (LR 17.4), ADC 0.80 ×10⁻³ mm²/s'
    >>> humanise("ADC 0.000801 mm2/s: malignant range (LR 6.2; published cutoff 0.00114)")
    'ADC 0.80 ×10⁻³ mm²/s: malignant range (LR 6.2; published cutoff 1.14 ×10⁻³ mm²/s)'
    >>> humanise("mean < 885 [hnsf'U] favours malignant")
    'mean < 885 HU favours malignant'
    """
    text = text.replace(UCUM_HU, "HU")
    text = _FEATURE_VALUE.sub(_feature_value, text)
    text = _FEATURE_ALONE.sub(lambda m: _FEATURE_SHORT[m.group(1)], text)
    if "mm2/s" not in text and "mm²/s" not in text:
        return text
    # clauses: split at ';', keep the separators
    parts = re.split(r"(;\s*)", text)
    return "".join(p if re.fullmatch(r";\s*", p) else _adc_clause(p) for p in parts)


#: Bones detection names outside the labelled segments (`bonelesion.roi.candidates`).
_PELVIC_BONES = frozenset({"sacrum", "ilium", "pelvis"})
_LEVEL = re.compile(r"^(C[1-7]|T(?:[1-9]|1[0-2])|L[1-5]|S[1-5]|Co\d?)(?:[-–/](?:C[1-7]|T(?:[1-9]|"
                    r"1[0-2])|L[1-5]|S[1-5]))?$", re.IGNORECASE)


def vertebral_level(lesion: Mapping[str, Any]) -> str:
    """Return the lesion's vertebral level, or its pelvic bone, when the document knows it.

    Read from a ``vertebra`` field, else the annotations ``vertebra``, ``vertebral_level``,
    ``level`` or a ``sins_location`` written as a level (``"T12"``; a SINS category such
    as ``"junctional"`` is not a level). A lesion that detection placed in the pelvis
    outside a labelled segment has the bone instead (``"Ilium"``, ``"Sacrum"``); "" when
    neither is known.
    """
    candidates = [lesion.get("vertebra")]
    annotations = lesion.get("annotations") or {}
    candidates += [annotations.get(k) for k in ("vertebra", "vertebral_level", "level",
                                                 "sins_location")]
    for value in candidates:
        if isinstance(value, str) and _LEVEL.match(value.strip()):
            text = value.strip()
            return text[0].upper() + text[1:]
    bone = lesion.get("vertebra")
    if isinstance(bone, str) and bone.strip().lower() in _PELVIC_BONES:
        return bone.strip().capitalize()
    return ""


def format_dicom_date(value: str) -> str:
    """Write a DICOM DA value (``YYYYMMDD``) as ISO 8601 (``YYYY-MM-DD``), else unchanged.

    Examples
    --------
    >>> format_dicom_date("20200131"), format_dicom_date("")
    ('2020-01-31', '')
    """
    text = (value or "").strip()
    if re.fullmatch(r"\d{8}", text):
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text
