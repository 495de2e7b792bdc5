"""Render CT mid-slices to PNG (test artefacts a person can look at).

Reads with SimpleITK only; reorients to LPS so that every patient position gives the same
picture: sagittal with the head at the top and the face on the left, coronal with the
head at the top and the patient's right on the left (radiological convention).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where the pictures go (gitignored).
ARTIFACTS = REPO_ROOT / "test-artifacts"


def _window(hu: np.ndarray, centre: float, width: float) -> np.ndarray:
    return (np.clip((hu - (centre - width / 2)) / width, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_mid_slices(ct: sitk.Image, name: str, *, coronal_p_mm: float,
                      window: tuple[float, float] = (400.0, 1800.0)) -> list[Path]:
    """Write ``<name>_sagittal.png`` and ``<name>_coronal.png`` under `ARTIFACTS`.

    The sagittal slice is the middle column (patient midline for a centred field of
    view); the coronal slice passes through P = ``coronal_p_mm``. Pixels are resampled to
    square millimetres so the anatomy has its true proportions.
    """
    img = sitk.DICOMOrient(ct, "LPS")
    arr = sitk.GetArrayFromImage(img).astype(np.float32)  # [S, P, L], ascending
    sx, sy, sz = img.GetSpacing()
    ARTIFACTS.mkdir(exist_ok=True)
    out = []
    sag = arr[::-1, :, arr.shape[2] // 2]  # rows: superior first; columns: anterior first
    cor_index = img.TransformPhysicalPointToIndex(
        (img.GetOrigin()[0], float(coronal_p_mm), img.GetOrigin()[2]))[1]
    cor = arr[::-1, int(np.clip(cor_index, 0, arr.shape[1] - 1)), :]  # columns: right first
    for plane, data, col_mm in (("sagittal", sag, sy), ("coronal", cor, sx)):
        picture = Image.fromarray(_window(data, *window))
        height = int(round(data.shape[0] * sz / col_mm))
        path = ARTIFACTS / f"{name}_{plane}.png"
        picture.resize((data.shape[1], height), Image.Resampling.BILINEAR).save(path)
        out.append(path)
    return out
