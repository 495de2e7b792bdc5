"""dciodvfy (David Clunie's dicom3tools): the reference check of a DICOM object against its IOD."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def dciodvfy_errors(path: str | Path) -> list[str]:
    """The "Error" lines dciodvfy reports for one file; skips the test without dciodvfy."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not found (Debian package dicom3tools; `make install` installs it "
                    "when apt-get is available)")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
