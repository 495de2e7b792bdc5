"""Fixtures of the PACS-loop tests: phantom studies written once per session."""

from __future__ import annotations

import pytest
from support.pacs_kit import PhantomSet, PhantomStudy, merge_rois

from bonelesion.phantom import write_study


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> PhantomSet:
    """Two phantom studies (Siemens and GE style) and a merged ROI file."""
    root = tmp_path_factory.mktemp("pacs-phantoms")
    studies = tuple(PhantomStudy(root / vendor, write_study(root / vendor, vendor=vendor, seed=seed))
                    for vendor, seed in (("siemens", 2001), ("ge", 2002)))
    rois = merge_rois([s.folder / "rois.csv" for s in studies], root / "rois.csv")
    return PhantomSet(studies=studies, rois=rois)
