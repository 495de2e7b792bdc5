"""Small spine-phantom CTs for the detection tests, written once per session.

Each study is the phantom's small protocol (the sample_data CT: 2 mm pixels, 3 mm slices,
cropped to the spine and pelvis), CT only, with its truth.json. Importable as ``detect_kit``.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bonelesion.model.volume import Volume

#: Variant name → phantom options (seeds 21-23 are not among the tuning seeds 0-5).
SMALL_VARIANTS: dict[str, dict[str, Any]] = {
    "siemens_plain": {"vendor": "siemens", "seed": 21, "noise_sd_hu": 13.0},
    "ge_lumbar_rib": {"vendor": "ge", "seed": 22, "noise_sd_hu": 12.0, "lumbar_rib": True},
    "philips_osteoporotic": {"vendor": "philips", "seed": 23, "noise_sd_hu": 15.0,
                             "osteoporotic": True},
}


@dataclass(frozen=True)
class SmallSpine:
    """A written small spine study: folder, CT volume and truth (the spine block)."""

    name: str
    folder: Path
    ct: Volume
    truth: dict[str, Any]

    @property
    def spine(self) -> dict[str, Any]:
        """The truth's spine block."""
        spine: dict[str, Any] = self.truth["spine"]
        return spine


def write_small_spine(out: Path, name: str) -> SmallSpine:
    """Write one variant of `SMALL_VARIANTS` into ``out`` and load its CT."""
    from bonelesion.dicom.series import load_series
    from bonelesion.phantom.spine_study import write_spine_study_from_options

    write_spine_study_from_options(out, small=True, mr=False, **SMALL_VARIANTS[name])
    stacks = load_series(sorted(glob.glob(str(out / "DICOM" / "*" / "*.dcm"))))
    truth = json.loads((out / "truth.json").read_text())
    return SmallSpine(name=name, folder=out, ct=stacks[0].volume, truth=truth)


def crop_slices(ct: Volume, start: int, stop: int) -> Volume:
    """The slices [start, stop) of a volume, as a volume (a partial field of view)."""
    origin = ct.index_to_lps([[start, 0, 0]])[0]
    return Volume(array=np.asarray(ct.array)[start:stop], spacing_mm=ct.spacing_mm,
                  origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
                  direction_lps=ct.direction_lps, intensity_unit=ct.intensity_unit,
                  series=ct.series)


def slice_of(ct: Volume, s_mm: float) -> int:
    """Index of the slice nearest to an LPS S coordinate (axial volumes)."""
    return int(round(float(ct.lps_to_index([[0.0, 0.0, s_mm]])[0][0])))
