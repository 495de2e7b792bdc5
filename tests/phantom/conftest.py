"""Fixtures of the phantom tests: studies written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bonelesion.phantom import StudyTruth, write_study


@pytest.fixture(scope="session")
def study_noise_free(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StudyTruth]:
    """Siemens, classic, uncompressed, noise-free."""
    out = tmp_path_factory.mktemp("siemens_nf") / "study"
    return out, write_study(out, vendor="siemens", seed=0, noise_free=True)


@pytest.fixture(scope="session")
def study_noisy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StudyTruth]:
    """Siemens, classic, noisy (the sample_data configuration)."""
    out = tmp_path_factory.mktemp("siemens_noisy") / "study"
    return out, write_study(out, vendor="siemens", seed=0)


_VARIANTS = {
    "ge-classic": {"vendor": "ge", "noise_free": True},
    "philips-compressed": {"vendor": "philips", "compressed": True, "noise_free": True},
    "siemens-enhanced": {"vendor": "siemens", "enhanced": True, "noise_free": True},
    "ge-enhanced-compressed": {"vendor": "ge", "enhanced": True, "compressed": True,
                               "noise_free": True},
    "philips-enhanced": {"vendor": "philips", "enhanced": True, "noise_free": True},
}


@pytest.fixture(scope="session", params=sorted(_VARIANTS))
def study_variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[str, Path, StudyTruth]:
    """Each vendor / enhanced / compressed variant, noise-free."""
    out = tmp_path_factory.mktemp(request.param) / "study"
    return request.param, out, write_study(out, seed=1, **_VARIANTS[request.param])
