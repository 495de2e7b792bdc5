"""The one module that talks to SimpleITK (STYLE.md §2).

SimpleITK indexes images (x, y, z) = (column, row, slice), the reverse of our array order,
and its direction matrix has the physical axis of image index *i* in column *i*, also in LPS.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.units import IntensityUnit

__all__ = ["volume_to_sitk", "volume_from_sitk"]


def volume_to_sitk(volume: Volume) -> sitk.Image:
    """Return a SimpleITK image with the same voxels and geometry as ``volume``."""
    array = volume.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    # sitk index i ↔ our axis 2 − i
    image.SetSpacing(tuple(float(s) for s in volume.spacing_mm[::-1]))
    image.SetOrigin(tuple(float(o) for o in volume.origin_lps_mm))
    image.SetDirection(tuple(float(d) for d in volume.direction_lps[:, ::-1].ravel()))
    return image


def volume_from_sitk(
    image: sitk.Image,
    *,
    intensity_unit: IntensityUnit = IntensityUnit.ARBITRARY,
    series: SeriesInfo | None = None,
) -> Volume:
    """Return a `Volume` with the voxels and geometry of a 3-D SimpleITK image."""
    if image.GetDimension() != 3:
        raise ValueError(f"volume_from_sitk: need a 3-D image, got {image.GetDimension()}-D")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Volume(
        array=sitk.GetArrayFromImage(image),
        spacing_mm=tuple(image.GetSpacing()[::-1]),
        origin_lps_mm=tuple(image.GetOrigin()),
        direction_lps=direction[:, ::-1],
        intensity_unit=intensity_unit,
        series=series or SeriesInfo(),
    )
