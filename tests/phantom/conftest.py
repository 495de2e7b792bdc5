"""Fixtures of the phantom tests: studies written once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bonelesion.phantom import (
    CtProtocol,
    MrProtocol,
    SpineOptions,
    StudyTruth,
    write_spine_study,
    write_study,
)

#: Named study variants (all noise-free, seed 1 unless said otherwise).
VARIANTS: dict[str, dict[str, object]] = {
    "ge-classic": {"vendor": "ge", "noise_free": True, "seed": 1},
    "philips-compressed": {"vendor": "philips", "compressed": True, "noise_free": True,
                           "seed": 1},
    "siemens-enhanced": {"vendor": "siemens", "enhanced": True, "noise_free": True, "seed": 1},
    "ge-enhanced-compressed": {"vendor": "ge", "enhanced": True, "compressed": True,
                               "noise_free": True, "seed": 1},
    "philips-enhanced": {"vendor": "philips", "enhanced": True, "noise_free": True, "seed": 1},
    "siemens-noise-free": {"vendor": "siemens", "noise_free": True, "seed": 0},
    "siemens-noise-free-seed1": {"vendor": "siemens", "noise_free": True, "seed": 1},
    "siemens-noisy": {"vendor": "siemens", "seed": 0},
}

StudyGetter = Callable[[str], tuple[Path, StudyTruth]]


@pytest.fixture(scope="session")
def get_study(tmp_path_factory: pytest.TempPathFactory) -> StudyGetter:
    """``get_study(name)`` writes a variant of `VARIANTS` once and returns (folder, truth)."""
    cache: dict[str, tuple[Path, StudyTruth]] = {}

    def get(name: str) -> tuple[Path, StudyTruth]:
        if name not in cache:
            out = tmp_path_factory.mktemp(name) / "study"
            cache[name] = (out, write_study(out, **VARIANTS[name]))  # type: ignore[arg-type]
        return cache[name]

    return get


@pytest.fixture(scope="session")
def study_noise_free(get_study: StudyGetter) -> tuple[Path, StudyTruth]:
    """Siemens, classic, uncompressed, noise-free, seed 0."""
    return get_study("siemens-noise-free")


@pytest.fixture(scope="session")
def study_noisy(get_study: StudyGetter) -> tuple[Path, StudyTruth]:
    """Siemens, classic, noisy, seed 0 (the sample_data configuration)."""
    return get_study("siemens-noisy")


_READ_BACK = ["siemens-noise-free", "ge-classic", "philips-compressed", "siemens-enhanced",
              "ge-enhanced-compressed", "philips-enhanced"]


@pytest.fixture(scope="session", params=_READ_BACK)
def study_variant(request: pytest.FixtureRequest, get_study: StudyGetter
                  ) -> tuple[str, Path, StudyTruth]:
    """Each vendor / enhanced / compressed variant, noise-free."""
    return (request.param, *get_study(request.param))


# ---------------------------------------------------------------------- spine studies

#: The main spine CT of the tests: a 512² reconstruction over 400 mm (0.78 mm pixels, as a
#: clinical bone kernel), cropped to the body (320 × 420), the vendor's slices (Siemens
#: 1.5 mm), full T10–S4 range; coarse MR.
TEST_CT = CtProtocol(matrix=512, field_of_view_mm=400.0, rows=320, columns=420)
TEST_MR = MrProtocol(dixon_slices=24, dixon_slice_mm=5.0, dixon_pixel_mm=3.0, dwi_slices=20,
                     dwi_slice_mm=6.0, dwi_pixel_mm=4.0)
NO_MR = MrProtocol(dixon_slices=0)
#: L2–L4 only (header and geometry checks of the vendor variants).
MID_LUMBAR_S_MM = (-400.0, -300.0)
#: Coarser CTs for the variants (256² over 400 mm: 1.56 mm pixels).
SMALL_CT = CtProtocol(matrix=256, field_of_view_mm=400.0, slice_thickness_mm=2.5)
SMALL_CT_VENDOR = CtProtocol(matrix=256, field_of_view_mm=400.0, s_range_mm=MID_LUMBAR_S_MM)

#: Named spine variants: keyword arguments of `write_spine_study`.
SPINE_VARIANTS: dict[str, dict[str, object]] = {
    "spine-siemens": {"vendor": "siemens", "seed": 3, "ct": TEST_CT, "mr": TEST_MR},
    "spine-siemens-noise-free": {"vendor": "siemens", "seed": 3, "mr": TEST_MR,
                                 "noise_free": True, "ct": SMALL_CT},
    "spine-ge": {"vendor": "ge", "seed": 4, "ct": SMALL_CT_VENDOR, "mr": NO_MR},
    "spine-philips": {"vendor": "philips", "seed": 5, "ct": SMALL_CT_VENDOR, "mr": NO_MR},
    "spine-ffs-512": {"vendor": "siemens", "seed": 6, "mr": NO_MR,
                      "ct": CtProtocol(matrix=512, field_of_view_mm=360.0,
                                       slice_thickness_mm=3.0, patient_position="FFS",
                                       s_range_mm=(-440.0, -260.0))},
    "spine-hfp-variants": {"vendor": "siemens", "seed": 7, "mr": NO_MR,
                           "ct": CtProtocol(matrix=256, field_of_view_mm=420.0,
                                            slice_thickness_mm=3.0, patient_position="HFP"),
                           "options": SpineOptions(lumbar_rib=True, sacralised_l5=True,
                                                   osteoporotic=True, contrast=True,
                                                   lytic_lesions=True)},
    "spine-enhanced-compressed": {"vendor": "ge", "seed": 8, "enhanced": True,
                                  "compressed": True, "noise_free": True,
                                  "ct": CtProtocol(matrix=256, field_of_view_mm=400.0,
                                                   slice_thickness_mm=2.5,
                                                   s_range_mm=MID_LUMBAR_S_MM),
                                  "mr": MrProtocol(dixon_slices=6, dixon_slice_mm=8.0,
                                                   dixon_pixel_mm=4.0, dwi_slices=4,
                                                   dwi_slice_mm=10.0, dwi_pixel_mm=4.0)},
}


@pytest.fixture(scope="session")
def get_spine_study(tmp_path_factory: pytest.TempPathFactory) -> StudyGetter:
    """``get_spine_study(name)`` writes a variant of `SPINE_VARIANTS` once: (folder, truth)."""
    cache: dict[str, tuple[Path, StudyTruth]] = {}

    def get(name: str) -> tuple[Path, StudyTruth]:
        if name not in cache:
            out = tmp_path_factory.mktemp(name) / "study"
            cache[name] = (out, write_spine_study(out, **SPINE_VARIANTS[name]))  # type: ignore[arg-type]
        return cache[name]

    return get
