"""The classifier on the phantom's nominal lesion values gives truth.json's expected nature.

Truth: `bonelesion.phantom.DEFAULT_LESIONS` (the lesions `phantom.write_study` places, with
their ``expected_nature``), whose values are the exact noise-free core values of the phantom.
"""

from __future__ import annotations

import pytest
from support.classify_factory import lesion

from bonelesion.classify import classify_lesion
from bonelesion.phantom import DEFAULT_LESIONS, LesionSpec


@pytest.mark.parametrize("spec", DEFAULT_LESIONS, ids=lambda s: f"{s.lesion_id}-{s.kind}")
def test_nominal_values_give_expected_nature(spec: LesionSpec) -> None:
    sir = abs(1.0 - 2.0 * spec.fat_fraction)  # two-point model, CLINICAL_REFERENCE §B1
    m = lesion(ct=(spec.attenuation_hu, spec.attenuation_hu), sir=sir,
               fat_fraction=spec.fat_fraction, adc=spec.adc_mm2_per_s,
               annotations={"treated": spec.treated}, lesion_id=spec.lesion_id)
    call = classify_lesion(m)
    assert call.label.value == spec.expected_nature.value, call.decision
