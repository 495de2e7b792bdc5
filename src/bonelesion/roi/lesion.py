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

Per-lesion work scales with the lesion, not the volume: `Lesion.box_on(target)` is the
lesion's bounding box on a grid (index space, with a margin, clipped) and
`Lesion.mask_in_box(target, box)` puts the lesion on only that box. Every voxel is computed
from its own index of the target grid by one implementation (`mask_on` is the box of the
whole grid), so a box's mask equals the whole-grid mask cropped, voxel for voxel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import (
    EmptyMaskError,
    FrameOfReferenceError,
    GeometryMismatchError,
    InputError,
)
from bonelesion.model.volume import IndexBox, Volume
from bonelesion.units import IntensityUnit

__all__ = ["Sphere", "Lesion", "rasterise_sphere", "rasterise_contours"]

#: Extra voxels on each side of a lesion's computed bounding box: its corners come from
#: continuous indices (floating point), and a box too large by a voxel costs nothing.
_BOX_SLACK_VOXELS = 1.0

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


def _sphere_box(target: Volume, sphere: Sphere) -> IndexBox:
    """Index box of the target voxels that may lie in the sphere (clipped to the grid)."""
    centre_idx = target.lps_to_index([sphere.centre_lps_mm])[0]
    half = sphere.radius_mm / np.asarray(target.spacing_mm) + _BOX_SLACK_VOXELS
    return IndexBox.around(centre_idx - half, centre_idx + half, target.shape)


def rasterise_sphere(
    target: Volume, sphere: Sphere, box: IndexBox | None = None
) -> NDArray[np.bool_]:
    """Boolean array: target voxels (in ``box``, default the whole grid) centred in the sphere.

    Only the sphere's own bounding box is evaluated, so the cost scales with the lesion
    size. Voxel centres come from `Volume.box_centres_lps`, so a voxel's value does not
    depend on ``box``.
    """
    box = target.full_box if box is None else box
    out = np.zeros(box.shape, dtype=bool)
    inner = _sphere_box(target, sphere).intersection(box)
    if inner.is_empty:
        return out
    centres = target.box_centres_lps(inner)
    d = [centres[k] - sphere.centre_lps_mm[k] for k in range(3)]
    dist = np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    out[inner.relative_to(box)] = dist <= sphere.radius_mm
    return out


@dataclass(frozen=True)
class _ContourPlanes:
    """Contours grouped by plane, in target index space (see `rasterise_contours`)."""

    positions: NDArray[np.float64]  # slice index of each plane, ascending
    polygons: tuple[tuple[NDArray[np.float64], ...], ...]  # (N, 3) index arrays per plane
    reach: float  # a target slice takes the nearest plane within this many slices

    def box(self, shape: tuple[int, int, int]) -> IndexBox:
        """Index box of the voxels the contours may fill (clipped to ``shape``)."""
        if not len(self.positions):
            return IndexBox((0, 0, 0), (0, 0, 0))
        points = np.concatenate([p for plane in self.polygons for p in plane])
        low = np.array([self.positions[0] - self.reach, *points[:, 1:].min(axis=0)])
        high = np.array([self.positions[-1] + self.reach, *points[:, 1:].max(axis=0)])
        return IndexBox.around(low - _BOX_SLACK_VOXELS, high + _BOX_SLACK_VOXELS, shape)


def _contour_planes(
    target: Volume, contours: tuple[NDArray[np.float64], ...], lesion_id: str
) -> _ContourPlanes:
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
    ordered = sorted(positions.items(), key=lambda kv: kv[1])
    plane_pos = np.array([p for _, p in ordered], dtype=np.float64)
    gap = float(np.median(np.diff(plane_pos))) if len(plane_pos) > 1 else 0.0
    return _ContourPlanes(positions=plane_pos,
                          polygons=tuple(tuple(planes[k]) for k, _ in ordered),
                          reach=max(0.5, gap / 2.0))


def _fill_plane(target: Volume, polygons: Sequence[NDArray[np.float64]], box: IndexBox
                ) -> NDArray[np.bool_]:
    """XOR of the filled polygons of one plane, on the rows and columns of ``box``.

    Polygons are filled in the target's own in-plane index coordinates (the whole plane's),
    then restricted to the box: the same pixels whatever the box.
    """
    from skimage.draw import polygon

    r0, c0 = box.start[1], box.start[2]
    r1, c1 = box.stop[1], box.stop[2]
    plane = np.zeros(box.shape[1:], dtype=bool)
    for idx in polygons:
        rr, cc = polygon(idx[:, 1], idx[:, 2], shape=target.shape[1:])
        keep = (rr >= r0) & (rr < r1) & (cc >= c0) & (cc < c1)
        part = np.zeros_like(plane)
        part[rr[keep] - r0, cc[keep] - c0] = True
        plane ^= part
    return plane


def rasterise_contours(
    target: Volume,
    contours: tuple[NDArray[np.float64], ...],
    *,
    lesion_id: str = "",
    box: IndexBox | None = None,
) -> NDArray[np.bool_]:
    """Fill closed planar LPS contours on the target grid (in ``box``), slice by slice.

    Each contour must lie in a plane parallel to the target's slices. Contours in the same
    plane are combined with XOR (a contour inside another is a hole, the convention of
    plastimatch and dcmrtstruct2nii). Each target slice takes the contour plane nearest to
    it, within half the contour-plane spacing (at least half a target slice), so a target
    with thinner slices than the contour planes is filled between them.

    Parameters
    ----------
    target : Volume
        The grid.
    contours : tuple of (N, 3) arrays
        Closed planar contours, LPS mm.
    lesion_id : str
        For messages.
    box : IndexBox, optional
        Part of the grid to fill (default: all of it); the result has its shape and equals
        the whole-grid result cropped to it.

    Raises
    ------
    GeometryMismatchError
        A contour not parallel to the target slices.
    """
    box = target.full_box if box is None else box
    planes = _contour_planes(target, contours, lesion_id)
    out = np.zeros(box.shape, dtype=bool)
    if not len(planes.positions) or planes.box(target.shape).intersection(box).is_empty:
        return out
    filled: dict[int, NDArray[np.bool_]] = {}
    for s in range(box.start[0], box.stop[0]):
        j = int(np.argmin(np.abs(planes.positions - s)))
        if abs(planes.positions[j] - s) <= planes.reach + 1e-6:
            if j not in filled:
                filled[j] = _fill_plane(target, planes.polygons[j], box)
            out[s - box.start[0]] = filled[j]
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

    @cached_property
    def _mask_support(self) -> IndexBox:
        """Index box of the mask's nonzero voxels on its own grid (computed once)."""
        assert self.mask is not None
        nonzero = np.asarray(self.mask.array) != 0
        found = [np.flatnonzero(nonzero.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))]
        if any(f.size == 0 for f in found):
            return IndexBox((0, 0, 0), (0, 0, 0))
        return IndexBox(tuple(int(f[0]) for f in found),  # type: ignore[arg-type]
                        tuple(int(f[-1]) + 1 for f in found))  # type: ignore[arg-type]

    def _own_box(self, target: Volume) -> IndexBox:
        """Index box on ``target`` holding every voxel of the lesion (clipped, no margin)."""
        if self.sphere is not None:
            return _sphere_box(target, self.sphere)
        if self.mask is not None:
            support = self._mask_support
            if support.is_empty:
                return support
            if self.mask.geometry_equal(target):
                return support  # `Volume.sample_nearest` copies voxels on an equal grid
            # the nearest-neighbour cells of the support: a parallelepiped, so the
            # target box of its 8 corners holds every target voxel that samples it
            corners = np.array([[a, b, c] for a in (support.start[0] - 0.5, support.stop[0] - 0.5)
                                for b in (support.start[1] - 0.5, support.stop[1] - 0.5)
                                for c in (support.start[2] - 0.5, support.stop[2] - 0.5)])
            idx = target.lps_to_index(self.mask.index_to_lps(corners))
            return IndexBox.around(idx.min(axis=0) - _BOX_SLACK_VOXELS,
                                   idx.max(axis=0) + _BOX_SLACK_VOXELS, target.shape)
        return _contour_planes(target, self.contours, self.lesion_id).box(target.shape)

    def box_on(
        self,
        target: Volume,
        *,
        margin_voxels: int | Sequence[int] = 0,
        margin_mm: float = 0.0,
    ) -> IndexBox:
        """Return the lesion's bounding box on ``target``'s grid, grown by a margin, clipped.

        Parameters
        ----------
        target : Volume
            The grid (any series of the lesion's frame of reference).
        margin_voxels : int or (3,) ints
            Voxels added on both sides of each axis.
        margin_mm : float
            Added as well, in whole voxels per axis (`Volume.margin_voxels`).

        Returns
        -------
        IndexBox
            Holds every voxel of ``lesion.mask_on(target)`` (conservatively: it may hold a
            voxel or so more); empty when the lesion lies wholly outside the grid.

        Raises
        ------
        FrameOfReferenceError
            Lesion and target are in different (known) frames of reference.
        GeometryMismatchError
            Contours not parallel to the target slices.
        """
        self.check_frame_of_reference(target)
        own = self._own_box(target)
        if own.is_empty:
            return own
        voxels = np.broadcast_to(np.asarray(margin_voxels, dtype=int), (3,))
        margin = voxels + np.asarray(target.margin_voxels(margin_mm))
        return own.grown(tuple(int(m) for m in margin)).clipped(target.shape)

    def mask_in_box(self, target: Volume, box: IndexBox) -> NDArray[np.bool_]:
        """Return the lesion's voxels on ``target``'s grid within ``box`` (boolean, box shape).

        Equals ``lesion.mask_on(target).array[box.slices]`` voxel for voxel (one
        implementation: `mask_on` is the box of the whole grid), at a cost that scales with
        the box. Does not check the frame of reference (`box_on` does) and may be empty.

        Raises
        ------
        GeometryMismatchError
            Contours not parallel to the target slices.
        """
        if self.sphere is not None:
            return rasterise_sphere(target, self.sphere, box)
        if self.mask is not None:
            out = np.zeros(box.shape, dtype=bool)
            inner = self._own_box(target).intersection(box)
            if not inner.is_empty:
                out[inner.relative_to(box)] = self.mask.sample_nearest(
                    target, inner, fill_value=0, check_frame_of_reference=False) != 0
            return out
        return rasterise_contours(target, self.contours, lesion_id=self.lesion_id, box=box)

    def _no_voxel(self, target: Volume) -> EmptyMaskError:
        return EmptyMaskError(
            f"Lesion {self.lesion_id!r} ({self.source}) has no voxel on series "
            f"{_series_label(target)} (shape {target.shape}): it lies outside the series' "
            "field of view or is smaller than a voxel. Potential fix: check the ROI "
            "coordinates (LPS mm) against the series, or measure on a series that covers it."
        )

    def box_mask_on(
        self,
        target: Volume,
        *,
        margin_voxels: int | Sequence[int] = 0,
        margin_mm: float = 0.0,
    ) -> tuple[IndexBox, Volume]:
        """Put the lesion on ``target``'s grid within its bounding box (see `box_on`).

        Returns
        -------
        box : IndexBox
            The box on ``target`` (`box_on` with the given margin).
        mask : Volume
            Boolean mask on ``target.crop(box)``; equal to ``mask_on(target)`` cropped.

        Raises
        ------
        FrameOfReferenceError, GeometryMismatchError
            As `box_on`.
        EmptyMaskError
            No target voxel lies in the lesion (the message of `mask_on`, naming ``target``).
        """
        box = self.box_on(target, margin_voxels=margin_voxels, margin_mm=margin_mm)
        if box.is_empty:
            raise self._no_voxel(target)
        array = self.mask_in_box(target, box)
        if not array.any():
            raise self._no_voxel(target)
        return box, target.crop(box).with_array(array, intensity_unit=IntensityUnit.MASK)

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
        array = self.mask_in_box(target, target.full_box)
        if not array.any():
            raise self._no_voxel(target)
        return target.with_array(array, intensity_unit=IntensityUnit.MASK)
