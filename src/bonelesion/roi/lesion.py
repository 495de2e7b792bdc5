"""A lesion: an identifier, its shape in patient (LPS) space, and its annotations.

A lesion's shape is one of

* a sphere (centre + radius in LPS mm) — rasterised analytically on any target grid;
* a mask `Volume` (NIfTI label map, DICOM SEG) — resampled onto the target grid through LPS
  (nearest neighbour, `Volume.resample_like`);
* closed planar contours in LPS (DICOM RTSTRUCT) — filled slice by slice in the target's
  in-plane coordinates with `skimage.draw.polygon`.

`Lesion.mask_on(target)` puts the lesion on the grid of any series of the same frame of
reference and refuses other frames (`FrameOfReferenceError`) and empty results
(`EmptyMaskError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import (
    EmptyMaskError,
    FrameOfReferenceError,
    GeometryMismatchError,
    InputError,
)
from bonelesion.model.volume import Volume
from bonelesion.units import IntensityUnit

__all__ = ["Sphere", "Lesion", "rasterise_sphere", "rasterise_contours"]

#: A contour is "in a target slice plane" when its points deviate from their mean plane
#: position (along the target slice normal) by at most this fraction of the slice spacing.
CONTOUR_PLANE_RTOL = 0.1


@dataclass(frozen=True)
class Sphere:
    """A sphere in LPS patient coordinates."""

    centre_lps_mm: tuple[float, float, float]
    radius_mm: float


def _series_label(volume: Volume) -> str:
    return volume.series.series_instance_uid or "(no UID)"


def rasterise_sphere(target: Volume, sphere: Sphere) -> NDArray[np.bool_]:
    """Boolean (S, R, C) array: target voxels whose centre lies within the sphere.

    Only the index-space bounding box of the sphere is evaluated, so cost scales with the
    lesion size, not the volume size.
    """
    centre_idx = target.lps_to_index([sphere.centre_lps_mm])[0]
    half = sphere.radius_mm / np.asarray(target.spacing_mm)
    shape = np.asarray(target.shape)
    lo = np.clip(np.floor(centre_idx - half).astype(int), 0, shape)
    hi = np.clip(np.ceil(centre_idx + half).astype(int) + 1, 0, shape)
    out = np.zeros(target.shape, dtype=bool)
    if np.any(hi <= lo):
        return out
    grids = np.meshgrid(*(np.arange(a, b, dtype=np.float64) for a, b in zip(lo, hi, strict=True)),
                        indexing="ij")
    idx = np.stack(grids, axis=-1).reshape(-1, 3)
    dist = np.linalg.norm(target.index_to_lps(idx) - np.asarray(sphere.centre_lps_mm), axis=1)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = (dist <= sphere.radius_mm).reshape(grids[0].shape)
    return out


def rasterise_contours(
    target: Volume, contours: tuple[NDArray[np.float64], ...], *, lesion_id: str = ""
) -> NDArray[np.bool_]:
    """Fill closed planar LPS contours on the target grid, slice by slice.

    Each contour must lie in a plane parallel to the target's slices. Contours in the same
    plane are combined with XOR (a contour inside another is a hole, the convention of
    plastimatch and dcmrtstruct2nii). Each target slice takes the contour plane nearest to
    it, within half the contour-plane spacing (at least half a target slice), so a target
    with thinner slices than the contour planes is filled between them.

    Raises
    ------
    GeometryMismatchError
        A contour not parallel to the target slices.
    """
    from skimage.draw import polygon

    planes: dict[int, list[NDArray[np.float64]]] = {}
    positions: dict[int, float] = {}
    for n, points in enumerate(contours):
        idx = target.lps_to_index(points)
        spread = float(idx[:, 0].max() - idx[:, 0].min())
        if spread > CONTOUR_PLANE_RTOL:
            raise GeometryMismatchError(
                f"Lesion {lesion_id!r}: contour {n} spans {spread * target.spacing_mm[0]:.2f} mm "
                f"along the slice normal of series {_series_label(target)} (tolerance "
                f"{CONTOUR_PLANE_RTOL * target.spacing_mm[0]:.2f} mm): it is not parallel to "
                "the target slices. Potential fix: measure on the series the contours were "
                "drawn on, or reformat the series to the contour orientation."
            )
        pos = float(idx[:, 0].mean())
        key = next((k for k, p in positions.items() if abs(p - pos) <= CONTOUR_PLANE_RTOL), None)
        if key is None:
            key = len(positions)
            positions[key] = pos
        planes.setdefault(key, []).append(idx)
    out = np.zeros(target.shape, dtype=bool)
    if not positions:
        return out
    ordered = sorted(positions.items(), key=lambda kv: kv[1])
    plane_pos = np.array([p for _, p in ordered])
    gap = float(np.median(np.diff(plane_pos))) if len(plane_pos) > 1 else 0.0
    reach = max(0.5, gap / 2.0)
    filled: dict[int, NDArray[np.bool_]] = {}
    for key, _ in ordered:
        plane = np.zeros(target.shape[1:], dtype=bool)
        for idx in planes[key]:
            rr, cc = polygon(idx[:, 1], idx[:, 2], shape=target.shape[1:])
            part = np.zeros_like(plane)
            part[rr, cc] = True
            plane ^= part
        filled[key] = plane
    keys = [k for k, _ in ordered]
    for s in range(target.shape[0]):
        j = int(np.argmin(np.abs(plane_pos - s)))
        if abs(plane_pos[j] - s) <= reach + 1e-6:
            out[s] = filled[keys[j]]
    return out


@dataclass(frozen=True, kw_only=True)
class Lesion:
    """One lesion of a ROI source.

    Parameters
    ----------
    lesion_id : str
        Identifier, unique within a study.
    source : str
        Where it came from (file and line / segment / ROI number), for messages.
    frame_of_reference_uid : str
        Frame of reference of its coordinates; "" when unknown (matches any).
    study_instance_uid, series_instance_uid : str
        Restrict the lesion to one study / name the series it was drawn on ("" = any).
    treated : bool or None
        Whether the lesion was treated (radiotherapy, systemic therapy); None when unknown.
    annotations : mapping
        Structured per-lesion inputs (SINS items, ESCC grade, free columns), passed through.
    sphere, mask, contours
        Exactly one shape: a `Sphere`, a boolean mask `Volume`, or closed planar contours
        ((N, 3) LPS mm arrays).
    """

    lesion_id: str
    source: str = ""
    frame_of_reference_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    treated: bool | None = None
    annotations: Mapping[str, Any] = field(default_factory=dict)
    sphere: Sphere | None = None
    mask: Volume | None = None
    contours: tuple[NDArray[np.float64], ...] = ()

    def __post_init__(self) -> None:
        shapes = sum(x is not None for x in (self.sphere, self.mask)) + bool(self.contours)
        if shapes != 1:
            raise InputError(
                f"Lesion {self.lesion_id!r} ({self.source}): needs exactly one shape (sphere, "
                f"mask or contours), found {shapes}. Potential fix: build one Lesion per shape."
            )

    @property
    def kind(self) -> str:
        """``sphere``, ``mask`` or ``contours``."""
        if self.sphere is not None:
            return "sphere"
        return "mask" if self.mask is not None else "contours"

    def applies_to_study(self, study_instance_uid: str) -> bool:
        """Return True when the lesion is not restricted to another study."""
        return not self.study_instance_uid or self.study_instance_uid == study_instance_uid

    def with_frame_of_reference(self, frame_of_reference_uid: str) -> Lesion:
        """Copy with the frame of reference set (e.g. from the series named in the CSV)."""
        import dataclasses

        return dataclasses.replace(self, frame_of_reference_uid=frame_of_reference_uid)

    def check_frame_of_reference(self, target: Volume) -> None:
        """Raise `FrameOfReferenceError` when the lesion and ``target`` frames differ."""
        ours = self.frame_of_reference_uid
        theirs = target.series.frame_of_reference_uid
        if ours and theirs and ours != theirs:
            raise FrameOfReferenceError(
                f"Lesion {self.lesion_id!r} ({self.source}) is in frame of reference {ours}, "
                f"but series {_series_label(target)} is in {theirs}; positions in different "
                "frames cannot be compared without registration. Potential fix: draw the ROI on "
                "a series of this frame of reference, or register the series first."
            )

    def mask_on(self, target: Volume) -> Volume:
        """Rasterise or resample the lesion into a boolean mask Volume on ``target``'s grid.

        Raises
        ------
        FrameOfReferenceError
            Lesion and target are in different (known) frames of reference.
        GeometryMismatchError
            Contours not parallel to the target slices.
        EmptyMaskError
            No target voxel lies in the lesion.
        """
        self.check_frame_of_reference(target)
        if self.sphere is not None:
            array = rasterise_sphere(target, self.sphere)
        elif self.mask is not None:
            array = np.asarray(
                self.mask.resample_like(target, order=0, fill_value=0,
                                        check_frame_of_reference=False).array
            ) != 0
        else:
            array = rasterise_contours(target, self.contours, lesion_id=self.lesion_id)
        if not array.any():
            raise EmptyMaskError(
                f"Lesion {self.lesion_id!r} ({self.source}) has no voxel on series "
                f"{_series_label(target)} (shape {target.shape}): it lies outside the series' "
                "field of view or is smaller than a voxel. Potential fix: check the ROI "
                "coordinates (LPS mm) against the series, or measure on a series that covers it."
            )
        return target.with_array(array, intensity_unit=IntensityUnit.MASK)
