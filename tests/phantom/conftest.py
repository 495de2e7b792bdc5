"""Fixtures of the phantom tests: studies written once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bonelesion.phantom import StudyTruth, write_study

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
