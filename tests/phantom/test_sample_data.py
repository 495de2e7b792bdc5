"""sample_data/: checksums, truth, and byte-identical regeneration with the README command."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from phantom._readers import core_radius_mm, read_series, sphere_values
from testdata import SAMPLE_DATA, sample_path

from bonelesion.cli import main
from bonelesion.phantom import load_truth

#: The sample study is noisy (10 HU): its core means agree within 5 standard errors.
N_STANDARD_ERRORS = 5.0
#: sample_data budget (brief: < 10 MB).
MAX_SAMPLE_BYTES = 10 * 1024 * 1024


def _sums() -> dict[str, str]:
    lines = (SAMPLE_DATA / "SHA256SUMS").read_text().splitlines()
    return {rel.lstrip("*"): digest for digest, rel in (ln.split(maxsplit=1) for ln in lines)}


def test_checksums_and_size() -> None:
    root = sample_path("spine_phantom")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    listed = _sums()
    assert {p.relative_to(SAMPLE_DATA).as_posix() for p in files} == set(listed)
    assert sum(p.stat().st_size for p in files) < MAX_SAMPLE_BYTES


def test_sample_truth_and_ct(tmp_path: Path) -> None:
    root = sample_path("spine_phantom")
    truth = load_truth(root)
    assert (truth.vendor, truth.seed, truth.noise_free) == ("siemens", 0, False)
    ct = read_series(root / truth.series_for_role("ct").path)[None]
    for les in truth.lesions:
        hu = sphere_values(ct, les.center_lps_mm, core_radius_mm(ct, les.radius_mm))
        se = truth.noise.ct_sd_hu / np.sqrt(hu.size)
        assert abs(hu.mean() - les.attenuation_mean_hu) <= N_STANDARD_ERRORS * se


@pytest.mark.slow
def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    """The README command rebuilds sample_data exactly (same seed → same bytes and UIDs)."""
    sample_path("spine_phantom")
    out = tmp_path / "spine_phantom"
    assert main(["-q", "phantom", str(out), "--vendor", "siemens", "--seed", "0"]) == 0
    regenerated = {
        f"spine_phantom/{p.relative_to(out).as_posix()}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*") if p.is_file()
    }
    assert regenerated == _sums()
