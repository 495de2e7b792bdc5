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


#: Thin-slice spine CTs cropped around the spine and pelvis (full in-plane resolution:
#: 0.78 mm pixels, the vendor's slices), L2-S2 (``crop``) or T10-S2 (``tall``): what the
#: lesion detector is validated on. Seeds 31-33 are not among the tuning seeds.
CROP_VARIANTS: dict[str, dict[str, Any]] = {
    "siemens_crop": {"vendor": "siemens", "seed": 31, "noise": 13.0, "s_range": (-485.0, -300.0),
                     "options": {}},
    "philips_osteoporotic_crop": {"vendor": "philips", "seed": 32, "noise": 15.0,
                                  "s_range": (-485.0, -195.0),
                                  "options": {"osteoporotic": True}},
    "ge_mr_crop": {"vendor": "ge", "seed": 33, "noise": 12.0, "s_range": (-485.0, -300.0),
                   "options": {}, "mr": True},
}


def write_crop_spine(out: Path, name: str) -> SmallSpine:
    """Write one variant of `CROP_VARIANTS` into ``out`` and load its CT."""
    from bonelesion.dicom.series import load_series
    from bonelesion.phantom.spine import SpineOptions
    from bonelesion.phantom.spine_study import SAMPLE_MR, CtProtocol, MrProtocol, write_spine_study

    spec = SMALL_VARIANTS.get(name) or CROP_VARIANTS[name]
    ct = CtProtocol(matrix=512, field_of_view_mm=400.0, rows=200, columns=260,
                    centre_lp_mm=(0.0, 60.0), s_range_mm=spec["s_range"],
                    noise_sd_hu=spec["noise"])
    mr = SAMPLE_MR if spec.get("mr") else MrProtocol(dixon_slices=0)
    write_spine_study(out, vendor=spec["vendor"], seed=spec["seed"],
                      options=SpineOptions(**spec["options"]), ct=ct, mr=mr)
    stacks = load_series(sorted(glob.glob(str(out / "DICOM" / "*Br*" / "*.dcm"))
                                or glob.glob(str(out / "DICOM" / "*" / "*.dcm"))))
    ct_stack = next(s for s in stacks if s.volume.series.modality == "CT")
    truth = json.loads((out / "truth.json").read_text())
    return SmallSpine(name=name, folder=out, ct=ct_stack.volume, truth=truth)


def in_view(ct: Volume, point: Any) -> bool:
    """Whether an LPS point lies inside a volume's grid."""
    idx = ct.lps_to_index([list(point)])[0]
    return bool(np.all(idx >= 0) and np.all(idx <= np.asarray(ct.shape) - 1))
