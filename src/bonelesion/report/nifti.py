"""NIfTI output of derived maps (fitted ADC): values unchanged, geometry in RAS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_nifti"]


def write_nifti(volume: Any, path: str | Path) -> Path:
    """Write a `Volume` as NIfTI-1 (RAS affine; data axes i, j, k = column, row, slice).

    The values are written unchanged (an ADC map stays in mm²/s, NaN where masked).
    """
    import nibabel as nib
    import numpy as np

    path = Path(path)
    data = np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0))
    affine = volume.affine_ras[:, [2, 1, 0, 3]]
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
    return path
