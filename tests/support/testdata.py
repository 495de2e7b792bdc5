"""Where test data lives: ../shared/data (real scanner DICOM) and sample_data/ (phantom)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("BONELESION_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SAMPLE_DATA = REPO_ROOT / "sample_data"


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path}")
    return path


def sample_path(name: str = "") -> Path:
    """Path inside sample_data/, after checking the files against sample_data/SHA256SUMS."""
    sums = SAMPLE_DATA / "SHA256SUMS"
    if not sums.exists():
        pytest.skip("sample_data/SHA256SUMS not present yet")
    for line in sums.read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        rel = rel.lstrip("*")
        if name and not rel.startswith(name):
            continue
        actual = hashlib.sha256((SAMPLE_DATA / rel).read_bytes()).hexdigest()
        assert actual == digest, f"sample_data/{rel} does not match SHA256SUMS"
    return SAMPLE_DATA / name


def plan_and_load(folder: Path, tmp_path: Path, pipeline: str = "combined") -> tuple:
    """Index ``folder`` (one study), plan it with a shipped pipeline, load what the plan chose.

    The same path every command takes (inventory → series policy → loader). Returns
    ``(plan, volumes)``.
    """
    from bonelesion.pipeline.definition import load_pipeline
    from bonelesion.pipeline.inventory import build_inventory
    from bonelesion.pipeline.loading import load_study_volumes
    from bonelesion.pipeline.selection import plan_study

    inventory = build_inventory(folder, tmp_path / "catalogue.sqlite")
    (study,) = inventory.studies
    plan = plan_study(study.study_instance_uid, study.candidates, load_pipeline(pipeline))
    return plan, load_study_volumes(plan)
