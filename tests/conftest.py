"""Shared fixtures. Data-location helpers are in tests/testdata.py."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """One seeded random generator per test."""
    return np.random.default_rng(20261121)
