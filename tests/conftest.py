"""Shared fixtures. Data-location helpers are in tests/testdata.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """One seeded random generator per test."""
    return np.random.default_rng(20261121)


@pytest.fixture(autouse=True)
def _restore_bonelesion_log_level() -> Iterator[None]:
    """Undo `cli.main` setting the ``bonelesion`` logger's level (-v/-q) after each test.

    A ``-q`` run must not hide INFO records from a later test's ``caplog``.
    """
    log = logging.getLogger("bonelesion")
    level = log.level
    yield
    log.setLevel(level)
