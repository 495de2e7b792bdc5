"""sample_data/: checksums, truth, and byte-identical regeneration with the README command."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from phantom._readers import core_radius_mm, read_series, sphere_values
from support.testdata import SAMPLE_DATA, sample_path

from bonelesion.cli import main
from bonelesion.phantom import load_truth

#: The sample study is noisy (10 HU): its core means agree within 5 standard errors.
N_STANDARD_ERRORS = 5.0
#: sample_data budget, the three studies together (the thin-slice CT the detector needs is
#: JPEG-LS compressed: 3.8 MB).
MAX_SAMPLE_BYTES = 14 * 1000 * 1000
#: The studies and the arguments of `bonelesion phantom` that rebuild them
#: (as in sample_data/regenerate.sh).
STUDIES: dict[str, list[str]] = {
    "spine_phantom": ["--vendor", "siemens", "--seed", "0"],
    "thoracolumbar_phantom": ["--anatomy", "spine", "--small", "--vendor", "siemens",
                              "--seed", "0"],
    "lumbar_thin_ct": ["--anatomy", "spine", "--small", "--vendor", "siemens", "--seed", "7",
                       "--matrix", "512", "--fov-mm", "512", "--slice-thickness-mm", "2",
                       "--slice-spacing-mm", "2", "--psf-fwhm-mm", "0.8", "--noise-sd-hu", "13",
                       "--s-range-mm", "-485", "-300", "--crop", "160", "210", "--compressed"],
}
#: Correlated CT noise of the spine study: at most 4 voxels per independent sample.
NOISE_VOXELS_PER_SAMPLE = 4.0


def _sums() -> dict[str, str]:
    lines = (SAMPLE_DATA / "SHA256SUMS").read_text().splitlines()
    return {rel.lstrip("*"): digest for digest, rel in (ln.split(maxsplit=1) for ln in lines)}


def test_checksums_and_size() -> None:
    listed = _sums()
    files = []
    for name in STUDIES:
        root = sample_path(name)
        files += sorted(p for p in root.rglob("*") if p.is_file())
    assert {p.relative_to(SAMPLE_DATA).as_posix() for p in files} == set(listed)
    assert sum(p.stat().st_size for p in files) < MAX_SAMPLE_BYTES
    regenerate = (SAMPLE_DATA / "regenerate.sh").read_text()
    for name, args in STUDIES.items():
        assert f"phantom {name} {' '.join(args)}" in regenerate


def test_sample_truth_and_ct(tmp_path: Path) -> None:
    root = sample_path("spine_phantom")
    truth = load_truth(root)
    assert (truth.vendor, truth.seed, truth.noise_free) == ("siemens", 0, False)
    ct = read_series(root / truth.series_for_role("ct").path)[None]
    for les in truth.lesions:
        hu = sphere_values(ct, les.center_lps_mm, core_radius_mm(ct, les.radius_mm))
        se = truth.noise.ct_sd_hu / np.sqrt(hu.size)
        assert abs(hu.mean() - les.attenuation_mean_hu) <= N_STANDARD_ERRORS * se


def test_sample_spine_study() -> None:
    """The thoracolumbar study: T10–S1 truth, lesion cores and MR series in one frame."""
    root = sample_path("thoracolumbar_phantom")
    truth = load_truth(root)
    assert truth.schema_version == "2.0" and truth.spine is not None
    assert [v.label for v in truth.spine.vertebrae][0::8] == ["T10", "S1"]
    assert {s.role for s in truth.series} == {
        "ct", "dixon_in_phase", "dixon_opposed_phase", "dixon_water", "dixon_fat", "dwi", "adc"}
    assert len({s.series_instance_uid for s in truth.series}) == len(truth.series)
    sd = truth.noise.ct_sd_hu
    for les in truth.spine.lesions:
        if les.core_voxel_count >= 20:
            se = sd * math.sqrt(NOISE_VOXELS_PER_SAMPLE / les.core_voxel_count)
            assert abs(les.core_mean_hu - les.attenuation_true_hu) <= N_STANDARD_ERRORS * se + 2
    ct = read_series(root / truth.series_for_role("ct").path)[None]
    largest = max(truth.spine.lesions, key=lambda les: les.volume_ml)
    hu = sphere_values(ct, largest.centre_lps_mm, 2.5)
    assert abs(float(np.mean(hu)) - largest.attenuation_true_hu) <= 25.0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STUDIES))
def test_regeneration_is_byte_identical(tmp_path: Path, name: str) -> None:
    """The regenerate.sh command rebuilds each study exactly (same seed → same bytes)."""
    sample_path(name)
    out = tmp_path / name
    assert main(["-q", "phantom", str(out), *STUDIES[name]]) == 0
    regenerated = {
        f"{name}/{p.relative_to(out).as_posix()}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*") if p.is_file()
    }
    assert regenerated == {k: v for k, v in _sums().items() if k.startswith(f"{name}/")}


def test_thin_sample_ct_gives_the_demo_its_lesions() -> None:
    """`make demo` has no ROI file: detection on lumbar_thin_ct finds every sclerotic lesion
    of at least 0.3 ml in view (truth.json), names its bone, and finds nothing else."""
    from bonelesion.dicom.series import load_volume
    from bonelesion.roi.candidates import detect_candidates
    from bonelesion.roi.vertebrae import AnchorCountingLabeller

    root = sample_path("lumbar_thin_ct")
    truth = load_truth(root)
    assert truth.spine is not None
    ct = load_volume(root / truth.series_for_role("ct").path)
    search = detect_candidates(AnchorCountingLabeller().label(ct))
    lesions = [les for les in truth.spine.lesions if les.kind != "lytic_metastasis"]
    lo, hi = sorted(float(ct.index_to_lps([[k, 0, 0]])[0][2]) for k in (0, ct.shape[0] - 1))
    targets = [les for les in lesions if les.volume_ml >= 0.3 and lo <= les.centre_lps_mm[2] <= hi]
    assert len(targets) >= 5

    def nearest(centre: tuple[float, ...]) -> tuple[float, object]:
        return min((float(np.linalg.norm(np.subtract(centre, les.centre_lps_mm))), les)
                   for les in lesions)

    matched = []
    for c in search.accepted:
        distance, les = nearest(c.centre_lps_mm)
        assert distance <= max(6.0, les.equivalent_radius_mm + 2.0), (c.lesion_id, c.reasons)
        matched.append(les)
        if les.bone[:1] in "TLS" and les.bone != "sacrum":
            assert c.vertebra == les.bone
    assert all(any(m is t for m in matched) for t in targets)
