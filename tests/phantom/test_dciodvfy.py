"""Every phantom variant is valid DICOM: dciodvfy (dicom3tools) reports no error.

Truth: David Clunie's dciodvfy, which checks each object against the IOD definitions of
PS3.3 (Type 1/2/1C requirements, conditions, value multiplicity). Warnings are allowed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bonelesion.phantom import StudyTruth

StudyGetter = Callable[[str], tuple[Path, StudyTruth]]

pytestmark = pytest.mark.slow  # ~100 dciodvfy runs over six written studies (~8 s)

#: Each vendor classic, compressed, enhanced, and enhanced + compressed.
CHECKED = ["siemens-noise-free", "ge-classic", "philips-compressed", "siemens-enhanced",
           "ge-enhanced-compressed", "philips-enhanced"]


def _errors(exe: str, path: Path) -> list[str]:
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith("Error")]


#: Spine study variants: Siemens with MR, GE (Implicit VR, signed, PixelPaddingValue),
#: Philips (overlapping slices), FFS/HFP positions, GE enhanced + compressed with MR.
SPINE_CHECKED = ["spine-siemens", "spine-ge", "spine-philips", "spine-ffs-512",
                 "spine-hfp-variants", "spine-enhanced-compressed"]


@pytest.mark.parametrize("name", CHECKED + SPINE_CHECKED)
def test_phantom_variant_has_no_dciodvfy_error(name: str, get_study: StudyGetter,
                                               get_spine_study: StudyGetter) -> None:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not found (Debian package dicom3tools)")
    folder, truth = (get_spine_study if name.startswith("spine") else get_study)(name)
    series_dirs = sorted(p for p in (folder / "DICOM").iterdir() if p.is_dir())
    assert len(series_dirs) == len(truth.series)
    problems = {}
    for series in series_dirs:
        files = sorted(series.glob("*.dcm"))
        # first and last file: a DWI series holds original (b = 0) and derived (trace) images
        for path in dict.fromkeys([files[0], files[-1]]):
            errors = _errors(exe, path)
            if errors:
                problems[f"{series.name}/{path.name}"] = errors
    assert not problems, problems


def test_dciodvfy_flags_a_missing_deidentification_method(tmp_path: Path,
                                                         get_study: StudyGetter) -> None:
    """The check can fail: removing DeidentificationMethod brings back the original error."""
    import pydicom

    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not found (Debian package dicom3tools)")
    folder, _ = get_study("siemens-noise-free")
    ds = pydicom.dcmread(next((folder / "DICOM").rglob("*.dcm")))
    del ds.DeidentificationMethod
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    assert any("DeidentificationMethod" in e for e in _errors(exe, broken))
