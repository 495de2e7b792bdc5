"""Human wording of the reports: units as radiologists write them, calls never bare."""

from __future__ import annotations

import doctest
from html.parser import HTMLParser

import pytest

from bonelesion.report import figures, wording
from bonelesion.report.html_report import _probability_text, _reason, render_index_html
from bonelesion.report.wording import (
    format_adc,
    format_feature_value,
    format_hu,
    humanise,
    vertebral_level,
)

BOUNDS = (0.1, 0.85)


@pytest.mark.parametrize("module", [wording, figures], ids=lambda m: m.__name__)
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def test_numbers_in_the_units_people_write() -> None:
    assert format_hu(649.6) == "650 HU"
    assert format_adc(0.001149) == "1.15 ×10⁻³ mm²/s"
    assert format_feature_value(0.8998, "1", "chemical_shift_ratio") == "0.90"
    assert format_feature_value(0.05007, "1", "fat_fraction") == "5 %"
    assert format_feature_value(885.0, "[hnsf'U]") == "885 HU"
    assert format_feature_value(0.00114, "mm2/s") == "1.14 ×10⁻³ mm²/s"
    assert format_feature_value(None, "mm2/s") == "—"


def test_humanise_converts_adc_but_not_probabilities_or_likelihood_ratios() -> None:
    text = ("benign (posterior 0.004): ct_attenuation_mean_hu 1251 (LR 0.0052), "
            "adc_mean_mm2_per_s 0.001601 (LR 0.61); ADC 0.0016 ≤ 0.00114 mm2/s")
    out = humanise(text)
    assert "posterior 0.004" in out and "LR 0.0052" in out
    assert "CT mean 1251 HU" in out and "ADC 1.60 ×10⁻³ mm²/s (LR 0.61)" in out
    assert out.endswith("ADC 1.60 ≤ 1.14 ×10⁻³ mm²/s")
    groups = humanise("groups (malignant 0.00101 ± 0.00022, benign 0.00141 ± 0.00031 mm2/s; "
                      "clamp: pooled)")
    assert groups == ("groups (malignant 1.01 ± 0.22, benign 1.41 ± 0.31 ×10⁻³ mm²/s; "
                      "clamp: pooled)")
    for machine in ("[hnsf'U]", "mm2/s"):
        assert machine not in humanise(f"x 5 {machine} and 0.0009 mm2/s [hnsf'U]")


def test_vertebral_level_from_the_document() -> None:
    assert vertebral_level({"vertebra": "l3"}) == "L3"
    assert vertebral_level({"annotations": {"sins_location": "T12"}}) == "T12"
    assert vertebral_level({"annotations": {"sins_location": "junctional"}}) == ""
    assert vertebral_level({"vertebra": "ilium"}) == "Ilium"  # detected in the pelvis
    assert vertebral_level({"vertebra": "femur"}) == ""
    assert vertebral_level({"annotations": {"vertebra": "C7-T1"}}) == "C7-T1"
    assert vertebral_level({"annotations": {}}) == ""


def call(label: str, p: float, decision: list[str], statement: str = "") -> dict:
    return {"label": label, "probability_malignant": p, "decision": decision,
            "statement": statement}


def test_probability_beside_a_call_always_says_what_it_means() -> None:
    assert _probability_text(call("malignant", 0.987, []), BOUNDS) == "P(malignant) 0.99 ≥ 0.85"
    assert _probability_text(call("benign", 0.05, []), BOUNDS) == "P(malignant) 0.05 ≤ 0.10"
    between = _probability_text(call("indeterminate", 0.372, [
        "indeterminate: posterior between the decision bounds 0.1 and 0.85"]), BOUNDS)
    assert between == ("P(malignant) 0.37 does not decide: it lies between the benign (≤ 0.10) "
                       "and malignant (≥ 0.85) bounds")
    conflict = _probability_text(call("indeterminate", 0.9, [
        "indeterminate: conflicting evidence: ct_attenuation_mean_hu favours benign"]), BOUNDS)
    assert conflict.startswith("P(malignant) 0.90 does not decide: conflicting evidence")
    assert "CT mean favours benign" in conflict
    treated = _probability_text(call("indeterminate", 0.5, [
        "indeterminate: treated lesion — response assessment, never 'benign'"]), BOUNDS)
    assert "P(malignant)" not in treated and "no probability" in treated


def test_reason_drops_the_call_already_shown_beside_it() -> None:
    c = call("indeterminate", 0.37, [], "ADC 0.00115 mm2/s: malignant range; indeterminate "
             "(posterior 0.37): posterior between the decision bounds 0.1 and 0.85; evidence: "
             "ct_attenuation_mean_hu 880.4 (LR 1.37)")
    assert _reason(c) == ("ADC 1.15\u00a0×10⁻³\u00a0mm²/s: malignant range; evidence: CT mean "
                          "880\u00a0HU (LR 1.37)")


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "study" in (a.get("class") or "").split():
            self.rows.append(a.get("data-study") or "")


def test_index_lists_most_concerning_studies_first() -> None:
    def lesion(lid: str, label: str, p: float) -> dict:
        return {"lesion_id": lid, "annotations": {},
                "call": call(label, p, [f"{label}: x"], f"{label} (posterior {p}): why")}

    def study(uid: str, status: str, lesions: list[dict]) -> dict:
        result = None if status == "failed" else {
            "study": {"study_instance_uid": uid, "patient": "P"}, "lesions": lesions,
            "outputs": {"report_html": "report.html"}, "config": {"classifier": {}}}
        failure = ({"stage": "load", "series_instance_uid": "", "error_type": "InputError",
                    "message": "bad series"} if status == "failed" else None)
        return {"study_instance_uid": uid, "patient": "P", "status": status,
                "output_dir": f"studies/P/{uid}", "failure": failure, "warnings": [],
                "result": result}

    document = {"pipeline": {"name": "combined"}, "run": {"generated_utc": "now"},
                "bad_files": [], "not_run": [], "warnings": [], "studies": [
                    study("1.1", "ok", [lesion("a", "benign", 0.05)]),
                    study("1.2", "ok", [lesion("b", "benign", 0.02),
                                        lesion("c", "malignant", 0.9)]),
                    study("1.3", "failed", []),
                    study("1.4", "ok", []),
                    study("1.5", "ok", [lesion("d", "indeterminate", 0.4)])]}
    html = render_index_html(document)
    parser = _Rows()
    parser.feed(html)
    assert parser.rows == ["1.3", "1.2", "1.5", "1.1", "1.4"]
    assert "failed at load: bad series" in html and 'href="studies/P/1.2/report.html#' in html
