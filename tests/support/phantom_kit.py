"""Phantom export kit for the pipeline tests (``support.phantom_kit``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Vendors and seeds of the phantom studies (three header styles, three noise draws).
STUDIES = (("siemens", 101), ("ge", 102), ("philips", 103))


@dataclass(frozen=True)
class PhantomExport:
    """An export folder of phantom studies, its ROI file and the truth of each study."""

    root: Path
    export: Path
    rois: Path
    truths: dict[str, dict]  # study UID → truth.json content
    folders: dict[str, Path]  # study UID → study folder in the export
