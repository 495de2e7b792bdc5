"""Fixtures of the PACS-loop tests: phantom studies written once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from pacs_kit import PhantomSet, PhantomStudy, merge_rois  # noqa: E402

from bonelesion.phantom import write_study  # noqa: E402


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> PhantomSet:
    """Two phantom studies (Siemens and GE style) and a merged ROI file."""
    root = tmp_path_factory.mktemp("pacs-phantoms")
    studies = tuple(PhantomStudy(root / vendor, write_study(root / vendor, vendor=vendor, seed=seed))
                    for vendor, seed in (("siemens", 2001), ("ge", 2002)))
    rois = merge_rois([s.folder / "rois.csv" for s in studies], root / "rois.csv")
    return PhantomSet(studies=studies, rois=rois)
