"""Independent readers for the phantom tests.

The readers here use SimpleITK/GDCM and pydicom only (never bonelesion's own loader), so
that the truth is checked against what third-party DICOM readers see.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from bonelesion.phantom import StudyTruth

#: ``get_study(name)`` fixture type: writes a named variant once, returns (folder, truth).
StudyGetter = Callable[[str], tuple[Path, StudyTruth]]


def b_value_from_header(ds: pydicom.Dataset) -> float | None:
    """b-value by the vendors' published conventions (dcm2niix), independent of our code."""
    if "SharedFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        if "MRDiffusionSequence" in shared:
            b = shared.MRDiffusionSequence[0].get("DiffusionBValue")
            return None if b is None else float(b)
    if "DiffusionBValue" in ds:
        return float(ds.DiffusionBValue)
    if (0x0043, 0x1039) in ds:
        return float(int(ds[0x0043, 0x1039].value[0]) % 1_000_000_000)
    if (0x0019, 0x100C) in ds:
        return float(ds[0x0019, 0x100C].value)
    if (0x2001, 0x1003) in ds:
        return float(ds[0x2001, 0x1003].value)
    return None


def read_series(folder: Path) -> dict[float | None, sitk.Image]:
    """Every stack of a series folder, keyed by b-value (None for non-diffusion)."""
    files = sorted(folder.glob("*.dcm"))
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    if "PerFrameFunctionalGroupsSequence" in first:
        out = {}
        for f in files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            out[b_value_from_header(ds)] = sitk.ReadImage(str(f))
        return out
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    assert len(ids) == 1, f"{folder}: expected one series, GDCM found {ids}"
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
    groups: dict[float | None, list[str]] = defaultdict(list)
    for name in names:
        groups[b_value_from_header(pydicom.dcmread(name, stop_before_pixels=True))].append(name)
    out = {}
    for b, group in groups.items():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(group)
        out[b] = reader.Execute()
    return out


def sphere_values(img: sitk.Image, center_lps_mm, radius_mm: float) -> np.ndarray:
    """Voxel values whose centres lie within ``radius_mm`` of a point (SimpleITK geometry).

    The centre is located with ``TransformPhysicalPointToIndex``; voxel centres of the box
    around it come from the image's own origin, spacing and direction (SimpleITK's
    index → physical map, vectorised).
    """
    arr = sitk.GetArrayFromImage(img)  # [z, y, x]
    c_idx = img.TransformPhysicalPointToIndex(tuple(float(v) for v in center_lps_mm))
    half = [math.ceil(radius_mm / s) + 1 for s in img.GetSpacing()]
    lo = [max(0, c - h) for c, h in zip(c_idx, half, strict=True)]
    hi = [min(n, c + h + 1) for c, h, n in zip(c_idx, half, img.GetSize(), strict=True)]
    ii, jj, kk = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)),
                             indexing="ij")
    idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=-1).astype(np.float64)
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    points = (idx * np.asarray(img.GetSpacing())) @ direction.T + np.asarray(img.GetOrigin())
    inside = np.linalg.norm(points - np.asarray(center_lps_mm, float), axis=1) <= radius_mm
    sel = idx[inside].astype(int)
    return arr[sel[:, 2], sel[:, 1], sel[:, 0]].astype(np.float64)


def core_radius_mm(img: sitk.Image, radius_mm: float) -> float:
    """Lesion radius less 2 voxels of the coarsest spacing (the eroded core)."""
    return radius_mm - 2.0 * max(img.GetSpacing())


