"""Shared fixtures. Data-location helpers are in tests/support/testdata.py."""

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


@pytest.fixture(scope="session")
def small_spine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """``small_spine(name)``: a spine-phantom CT of ``detect_kit.SMALL_VARIANTS`` (small
    protocol) or ``CROP_VARIANTS`` (thin-slice crops), written once per session (shared by
    the detection tests of roi/ and pipeline/)."""
    from support.detect_kit import (
        CROP_VARIANTS,
        SMALL_VARIANTS,
        SmallSpine,
        write_crop_spine,
        write_small_spine,
    )

    cache: dict[str, SmallSpine] = {}

    def get(name: str) -> SmallSpine:
        if name not in SMALL_VARIANTS and name not in CROP_VARIANTS:
            raise KeyError(name)
        if name not in cache:
            write = write_small_spine if name in SMALL_VARIANTS else write_crop_spine
            cache[name] = write(tmp_path_factory.mktemp(name) / "study", name)
        return cache[name]

    return get
