"""The `Volume`: an image array that always carries its geometry, in LPS.

All geometry of bonelesion lives here (DESIGN.md: "geometry only in the Volume model"):
the voxel↔patient transforms, comparisons of grids, resampling of one volume onto the grid
of another, and the conversions to and from the RAS convention of NIfTI.

Conventions (STYLE.md §2, after highdicom's ``Volume``):

* ``array`` is indexed **[slice, row, column]** (axis 0, 1, 2);
* ``spacing_mm[k]`` is the distance between neighbouring voxel centres along axis *k*;
* ``direction_lps[:, k]`` is the unit vector, in LPS patient coordinates, of axis *k*;
* ``origin_lps_mm`` is the centre of voxel ``[0, 0, 0]``;
* ``affine_lps = [[D · diag(spacing), origin], [0, 0, 0, 1]]`` maps (s, r, c, 1) to LPS mm.

For a DICOM stack, axis 2 (column) runs along the first ImageOrientationPatient vector,
axis 1 (row) along the second, and axis 0 (slice) along the slice normal in the order of
increasing projection of ImagePositionPatient.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bonelesion.errors import FrameOfReferenceError, GeometryMismatchError, InputError
from bonelesion.units import IntensityUnit

__all__ = ["SeriesInfo", "Volume", "IndexBox", "LPS_FROM_RAS", "DEFAULT_GEOMETRY_ATOL_MM"]

#: Flip between the RAS (NIfTI, nibabel) and LPS (DICOM) conventions; its own inverse.
LPS_FROM_RAS: NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Two grids are "the same" when origins agree and voxel axes agree to this distance.
DEFAULT_GEOMETRY_ATOL_MM = 1e-3
#: Orthonormality tolerance of a direction matrix (DICOM stores 6–10 significant digits).
_ORTHONORMAL_ATOL = 1e-4


@dataclass(frozen=True, kw_only=True)
class SeriesInfo:
    """Where a volume came from: identifiers and the acquisition values that define a stack.

    Holds no patient identifier (name, ID, birth date) by design: these objects are logged.

    Parameters
    ----------
    series_instance_uid, frame_of_reference_uid, study_instance_uid : str
        DICOM UIDs ("" when unknown, e.g. for a NIfTI input).
    modality : str
        DICOM Modality ("CT", "MR", …).
    manufacturer : str
        DICOM Manufacturer as written by the scanner.
    role : str
        One of ``ct``, ``dwi``, ``adc``, ``dixon_in_phase``, ``dixon_opposed_phase``,
        ``dixon_water``, ``dixon_fat``, ``other``.
    echo_time_ms, repetition_time_ms, b_value_s_per_mm2, magnetic_field_strength_t : float or None
        Acquisition values shared by every slice of the stack.
    diffusion_direction : tuple of float or None
        Unit gradient direction (LPS) of a directional DWI stack; None for trace/isotropic.
    image_type : tuple of str
        DICOM ImageType values.
    series_description : str
        DICOM SeriesDescription.
    sop_instance_uids : tuple of str
        SOP Instance UIDs of the source objects, in slice order (one per file; a multi-frame
        object appears once).
    source_files : tuple of str
        Paths of the source files, in slice order.
    notes : tuple of str
        What the reader did to the data beyond a plain copy (e.g. gantry-tilt resampling).
    """

    series_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    study_instance_uid: str = ""
    modality: str = ""
    manufacturer: str = ""
    role: str = "other"
    echo_time_ms: float | None = None
    repetition_time_ms: float | None = None
    b_value_s_per_mm2: float | None = None
    magnetic_field_strength_t: float | None = None
    diffusion_direction: tuple[float, float, float] | None = None
    image_type: tuple[str, ...] = ()
    series_description: str = ""
    series_number: int | None = None
    sop_instance_uids: tuple[str, ...] = ()
    source_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> SeriesInfo:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class IndexBox:
    """A box of voxel indices: ``start[k] <= i_k < stop[k]`` along (slice, row, column).

    Index space of one grid, half-open like Python slices; ``stop == start`` along an axis
    makes the box empty. `Volume.crop` turns a box into a sub-volume.

    Examples
    --------
    >>> box = IndexBox((2, 0, 5), (4, 3, 9))
    >>> box.shape, box.is_empty
    ((2, 3, 4), False)
    >>> box.grown((1, 1, 1)).clipped((10, 10, 10))
    IndexBox(start=(1, 0, 4), stop=(5, 4, 10))
    """

    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    def __post_init__(self) -> None:
        start = tuple(int(v) for v in self.start)
        stop = tuple(max(int(b), a) for a, b in zip(start, self.stop, strict=True))
        if len(start) != 3:
            raise InputError(f"IndexBox: needs 3 axes, found start {self.start}.")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @classmethod
    def full(cls, shape: Sequence[int]) -> IndexBox:
        """Return the box of a whole grid of ``shape``."""
        return cls((0, 0, 0), tuple(int(n) for n in shape))  # type: ignore[arg-type]

    @classmethod
    def around(
        cls, low_index: ArrayLike, high_index: ArrayLike, shape: Sequence[int]
    ) -> IndexBox:
        """Smallest box holding every voxel whose continuous index lies in [low, high], clipped.

        ``low_index``/``high_index`` are continuous (slice, row, column) indices; the box
        runs from ``floor(low)`` to ``ceil(high)`` inclusive, clipped to ``shape``.
        """
        low = np.floor(np.asarray(low_index, dtype=np.float64))
        high = np.ceil(np.asarray(high_index, dtype=np.float64)) + 1
        bound = np.asarray(shape, dtype=np.float64)
        low = np.clip(low, 0, bound)
        high = np.clip(high, 0, bound)
        return cls(tuple(int(v) for v in low), tuple(int(v) for v in high))  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of voxels along each axis."""
        return (self.stop[0] - self.start[0], self.stop[1] - self.start[1],
                self.stop[2] - self.start[2])

    @property
    def is_empty(self) -> bool:
        """True when the box holds no voxel."""
        return any(n == 0 for n in self.shape)

    def intersects(self, other: IndexBox) -> bool:
        """Tell whether the two boxes (of one grid) share a voxel.

        Examples
        --------
        >>> IndexBox((0, 0, 0), (2, 2, 2)).intersects(IndexBox((1, 1, 1), (3, 3, 3)))
        True
        >>> IndexBox((0, 0, 0), (2, 2, 2)).intersects(IndexBox((2, 0, 0), (3, 2, 2)))
        False
        """
        return not (self.is_empty or other.is_empty) and all(
            a0 < b1 and b0 < a1 for a0, a1, b0, b1 in
            zip(self.start, self.stop, other.start, other.stop, strict=True))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """The box as a numpy index: ``array[box.slices]``."""
        return (slice(self.start[0], self.stop[0]), slice(self.start[1], self.stop[1]),
                slice(self.start[2], self.stop[2]))

    def grown(self, margin_voxels: Sequence[int]) -> IndexBox:
        """Return the box grown by ``margin_voxels[k]`` on both sides of axis *k* (not clipped).

        An empty box stays empty.
        """
        if self.is_empty:
            return self
        m = [int(v) for v in margin_voxels]
        return IndexBox(tuple(a - d for a, d in zip(self.start, m, strict=True)),  # type: ignore[arg-type]
                        tuple(b + d for b, d in zip(self.stop, m, strict=True)))  # type: ignore[arg-type]

    def clipped(self, shape: Sequence[int]) -> IndexBox:
        """Return the part of the box inside a grid of ``shape``."""
        return self.intersection(IndexBox.full(shape))

    def intersection(self, other: IndexBox) -> IndexBox:
        """Voxels in both boxes (possibly empty)."""
        start = tuple(max(a, b) for a, b in zip(self.start, other.start, strict=True))
        stop = tuple(min(a, b) for a, b in zip(self.stop, other.stop, strict=True))
        return IndexBox(start, stop)  # type: ignore[arg-type]

    def contains(self, other: IndexBox) -> bool:
        """Tell whether every voxel of ``other`` is in this box (an empty box is in any)."""
        return other.is_empty or all(
            a <= c and d <= b
            for a, b, c, d in zip(self.start, self.stop, other.start, other.stop, strict=True))

    def relative_to(self, outer: IndexBox) -> tuple[slice, slice, slice]:
        """Return this box as a numpy index into an array covering ``outer`` (holding it)."""
        return tuple(slice(a - o, b - o)  # type: ignore[return-value]
                     for a, b, o in zip(self.start, self.stop, outer.start, strict=True))


def _as_readonly(array: ArrayLike) -> NDArray[Any]:
    """Return a read-only view of ``array``: no copy; the caller's own array stays writeable.

    The volume does not copy (volumes can be GBs); whoever passes an array hands it over and
    must not modify it afterwards. Code holding only the volume cannot modify it.
    """
    out = np.asarray(array).view()
    out.flags.writeable = False
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class Volume:
    """A 3-D image with its geometry in LPS patient coordinates.

    Parameters
    ----------
    array : (S, R, C) ndarray
        Voxel values indexed [slice, row, column]. Stored read-only; stages return new volumes.
    spacing_mm : (3,) sequence of float
        Voxel spacing along (slice, row, column), all > 0.
    origin_lps_mm : (3,) sequence of float
        LPS position of the centre of voxel [0, 0, 0].
    direction_lps : (3, 3) array
        Column *k* is the LPS unit vector of array axis *k*; must be orthonormal.
    intensity_unit : IntensityUnit
        Meaning of the voxel values.
    series : SeriesInfo
        Identifiers and acquisition values of the source.

    Raises
    ------
    InputError
        If the array is not 3-D, a spacing is not positive and finite, or the direction is
        not orthonormal.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(array=np.zeros((2, 3, 4)), spacing_mm=(5.0, 1.0, 1.0),
    ...            origin_lps_mm=(0.0, 0.0, 0.0), direction_lps=np.eye(3))
    >>> v.index_to_lps([[1, 0, 0]]).tolist()
    [[0.0, 0.0, 5.0]]
    """

    array: NDArray[Any]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction_lps: NDArray[np.float64]
    intensity_unit: IntensityUnit = IntensityUnit.ARBITRARY
    series: SeriesInfo = field(default_factory=SeriesInfo)

    def __post_init__(self) -> None:
        array = _as_readonly(self.array)
        if array.ndim != 3:
            raise InputError(
                f"Volume of series {self.series.series_instance_uid or '(no UID)'}: "
                f"array must be 3-D [slice, row, column], found shape {array.shape}. "
                "Potential fix: split 4-D data into one Volume per stack."
            )
        spacing = tuple(float(s) for s in np.asarray(self.spacing_mm, dtype=float).ravel())
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise InputError(
                f"Volume: spacing_mm must be three positive finite numbers, found {spacing}."
            )
        origin = tuple(float(o) for o in np.asarray(self.origin_lps_mm, dtype=float).ravel())
        if len(origin) != 3 or not all(np.isfinite(o) for o in origin):
            raise InputError(f"Volume: origin_lps_mm must be three finite numbers, found {origin}.")
        direction = np.array(self.direction_lps, dtype=np.float64)
        if direction.shape != (3, 3) or not np.allclose(
            direction.T @ direction, np.eye(3), atol=_ORTHONORMAL_ATOL
        ):
            raise InputError(
                "Volume: direction_lps must be an orthonormal 3×3 matrix (columns = axis unit "
                f"vectors), found {direction.tolist()}."
            )
        direction.flags.writeable = False
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_lps_mm", origin)
        object.__setattr__(self, "direction_lps", direction)
        object.__setattr__(self, "intensity_unit", IntensityUnit(self.intensity_unit))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_affine(
        cls,
        array: ArrayLike,
        affine_lps: ArrayLike,
        *,
        intensity_unit: IntensityUnit = IntensityUnit.ARBITRARY,
        series: SeriesInfo | None = None,
    ) -> Volume:
        """Build a volume from an array and a 4×4 LPS affine (axis *k* ↔ affine column *k*).

        Raises
        ------
        InputError
            If the affine has a shear or a zero column.
        """
        affine = np.asarray(affine_lps, dtype=np.float64)
        if affine.shape != (4, 4):
            raise InputError(f"Volume.from_affine: affine must be 4×4, found {affine.shape}.")
        linear = affine[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        if np.any(spacing <= 0):
            raise InputError(f"Volume.from_affine: affine has a zero axis: {affine.tolist()}.")
        return cls(
            array=np.asarray(array),
            spacing_mm=tuple(spacing),
            origin_lps_mm=tuple(affine[:3, 3]),
            direction_lps=linear / spacing,
            intensity_unit=intensity_unit,
            series=series or SeriesInfo(),
        )

    @classmethod
    def from_ras_affine(
        cls,
        array: ArrayLike,
        affine_ras: ArrayLike,
        *,
        intensity_unit: IntensityUnit = IntensityUnit.ARBITRARY,
        series: SeriesInfo | None = None,
    ) -> Volume:
        """Build a volume from RAS data (NIfTI/nibabel), converting to LPS once, on entry."""
        return cls.from_affine(
            array,
            LPS_FROM_RAS @ np.asarray(affine_ras, dtype=np.float64),
            intensity_unit=intensity_unit,
            series=series,
        )

    def with_array(
        self,
        array: ArrayLike,
        *,
        intensity_unit: IntensityUnit | None = None,
        series: SeriesInfo | None = None,
    ) -> Volume:
        """Return a new volume on the same grid with other voxel values."""
        array = np.asarray(array)
        if array.shape != self.shape:
            raise GeometryMismatchError(
                f"Volume.with_array: new array shape {array.shape} differs from the grid's "
                f"{self.shape}."
            )
        return self._on_valid_grid(
            array,
            origin_lps_mm=self.origin_lps_mm,
            intensity_unit=self.intensity_unit if intensity_unit is None else intensity_unit,
            series=self.series if series is None else series,
        )

    def _on_valid_grid(
        self,
        array: NDArray[Any],
        *,
        origin_lps_mm: tuple[float, float, float],
        intensity_unit: IntensityUnit,
        series: SeriesInfo,
    ) -> Volume:
        """Return a volume of this spacing and direction, built without re-validation.

        For `crop` and `with_array` only: ``array`` is 3-D (the callers check its shape)
        and ``origin_lps_mm`` a point of this (valid) grid, so what `__post_init__` would
        check holds already; its per-call cost (an orthonormality test, the conversions)
        is paid once per grid instead of once per crop (a study's lesions crop hundreds
        of times). The result equals ``Volume(...)`` with the same arguments.
        """
        out = object.__new__(Volume)
        object.__setattr__(out, "array", _as_readonly(array))
        object.__setattr__(out, "spacing_mm", self.spacing_mm)
        object.__setattr__(out, "origin_lps_mm", origin_lps_mm)
        object.__setattr__(out, "direction_lps", self.direction_lps)
        object.__setattr__(out, "intensity_unit", IntensityUnit(intensity_unit))
        object.__setattr__(out, "series", series)
        return out

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (slices, rows, columns)."""
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def affine_lps(self) -> NDArray[np.float64]:
        """4×4 matrix mapping (slice, row, column, 1) to LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction_lps * np.asarray(self.spacing_mm)
        affine[:3, 3] = self.origin_lps_mm
        return affine

    @property
    def affine_ras(self) -> NDArray[np.float64]:
        """4×4 matrix mapping (slice, row, column, 1) to RAS mm (for NIfTI writers)."""
        return LPS_FROM_RAS @ self.affine_lps

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        return float(np.prod(self.spacing_mm))

    @property
    def slice_normal_lps(self) -> NDArray[np.float64]:
        """Unit vector of axis 0 (the slice axis)."""
        return np.array(self.direction_lps[:, 0])

    def index_to_lps(self, indices: ArrayLike) -> NDArray[np.float64]:
        """Map (N, 3) continuous voxel indices (slice, row, column) to (N, 3) LPS mm."""
        idx = np.atleast_2d(np.asarray(indices, dtype=np.float64))
        affine = self.affine_lps
        return idx @ affine[:3, :3].T + affine[:3, 3]

    def lps_to_index(self, points_lps_mm: ArrayLike) -> NDArray[np.float64]:
        """Map (N, 3) LPS points to (N, 3) continuous voxel indices (slice, row, column)."""
        pts = np.atleast_2d(np.asarray(points_lps_mm, dtype=np.float64))
        linear_inv = (self.direction_lps * np.asarray(self.spacing_mm)).T
        # inverse of D·diag(s) is diag(1/s)·Dᵀ
        linear_inv = linear_inv / np.asarray(self.spacing_mm)[:, None] ** 2
        return (pts - np.asarray(self.origin_lps_mm)) @ linear_inv.T

    def voxel_centres_lps(self) -> NDArray[np.float64]:
        """LPS coordinates of every voxel centre, shape (S, R, C, 3)."""
        grids = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in self.shape), indexing="ij")
        idx = np.stack(grids, axis=-1).reshape(-1, 3)
        return self.index_to_lps(idx).reshape(*self.shape, 3)

    @property
    def full_box(self) -> IndexBox:
        """The `IndexBox` of the whole grid."""
        return IndexBox.full(self.shape)

    def margin_voxels(self, margin_mm: float) -> tuple[int, int, int]:
        """Whole voxels along each axis that cover at least ``margin_mm`` (ceil per axis)."""
        return tuple(int(math.ceil(float(margin_mm) / s - 1e-9))  # type: ignore[return-value]
                     for s in self.spacing_mm)

    def crop(self, box: IndexBox) -> Volume:
        """Return the sub-volume of the voxels in ``box``: a view, with the sub-grid's geometry.

        The crop's voxel [0, 0, 0] is this volume's voxel ``box.start``; spacing, direction,
        unit and series are this volume's. No voxel is copied.

        Raises
        ------
        InputError
            If ``box`` is empty or reaches outside the grid.

        Examples
        --------
        >>> import numpy as np
        >>> v = Volume(array=np.arange(24).reshape(2, 3, 4), spacing_mm=(5.0, 1.0, 1.0),
        ...            origin_lps_mm=(0.0, 0.0, 0.0), direction_lps=np.eye(3))
        >>> c = v.crop(IndexBox((1, 1, 2), (2, 3, 4)))
        >>> c.shape, c.origin_lps_mm, int(c.array[0, 0, 0])
        ((1, 2, 2), (2.0, 1.0, 5.0), 18)
        """
        if box.is_empty or not self.full_box.contains(box):
            raise InputError(
                f"Volume.crop: box {box.start}..{box.stop} of series "
                f"{self.series.series_instance_uid or '(no UID)'} is empty or reaches outside "
                f"the grid of shape {self.shape}. Potential fix: clip the box to the grid "
                "(IndexBox.clipped).")
        origin = self.index_to_lps([box.start])[0]
        return self._on_valid_grid(
            self.array[box.slices],
            origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
            intensity_unit=self.intensity_unit,
            series=self.series,
        )

    def box_centres_lps(self, box: IndexBox) -> NDArray[np.float64]:
        """LPS coordinates of the centres of the voxels in ``box``, shape (3, S, R, C).

        Each centre is computed from its own index of this grid with one fixed sequence of
        element-wise operations, ``((o + a₀·s) + a₁·r) + a₂·c``, whatever the box: the
        centres of a voxel are bit-identical whether it is reached through a small box or
        through the whole grid (`index_to_lps` uses a matrix product, whose rounding may
        depend on the array's size).
        """
        affine = self.affine_lps
        s, r, c = (np.arange(a, b, dtype=np.float64) for a, b in zip(box.start, box.stop,
                                                                    strict=True))
        out = np.empty((3, *box.shape), dtype=np.float64)
        for k in range(3):
            out[k] = ((affine[k, 3] + affine[k, 0] * s)[:, None, None]
                      + (affine[k, 1] * r)[None, :, None]) + (affine[k, 2] * c)[None, None, :]
        return out

    def sample_nearest(
        self,
        target: Volume,
        box: IndexBox | None = None,
        *,
        fill_value: float = 0,
        check_frame_of_reference: bool = True,
    ) -> NDArray[Any]:
        """Sample this volume at the centres of ``target``'s voxels in ``box`` (nearest voxel).

        Nearest-neighbour resampling through LPS, like ``resample_like(target, order=0)``
        but restricted to a box of the target grid, with explicit index arithmetic: each
        target voxel's continuous index on this grid is computed from its own target index
        with one fixed sequence of element-wise operations, so the value of a voxel is the
        same whether it is reached through a small box or through the whole grid.

        Parameters
        ----------
        target : Volume
            The grid to sample on; its values are not used.
        box : IndexBox, optional
            Part of the target grid (default: all of it); must lie inside it.
        fill_value : float
            Value of target voxels whose centre lies outside this volume (beyond half a
            voxel from its outermost centres, as ITK).
        check_frame_of_reference : bool
            Refuse volumes of different known frames of reference.

        Returns
        -------
        ndarray, shape ``box.shape``, this volume's dtype

        Raises
        ------
        FrameOfReferenceError
        InputError
            If ``box`` reaches outside the target grid.
        """
        if check_frame_of_reference:
            target.check_same_frame_of_reference(self, what="Resampled volume")
        box = target.full_box if box is None else box
        if not target.full_box.contains(box):
            raise InputError(
                f"Volume.sample_nearest: box {box.start}..{box.stop} reaches outside the "
                f"target grid of shape {target.shape}. Potential fix: clip the box.")
        src = self.array
        if self.geometry_equal(target):
            return np.array(src[box.slices])
        out = np.full(box.shape, fill_value, dtype=src.dtype)
        if box.is_empty:
            return out
        # index_self = M · index_target + t, with M = A_self⁻¹ · A_target
        m = np.linalg.inv(self.affine_lps) @ target.affine_lps
        rows = np.arange(box.start[1], box.stop[1], dtype=np.float64)
        cols = np.arange(box.start[2], box.stop[2], dtype=np.float64)
        row_terms = [m[k, 1] * rows for k in range(3)]
        col_terms = [m[k, 2] * cols for k in range(3)]
        size = np.asarray(self.shape)
        for n, s in enumerate(range(box.start[0], box.stop[0])):
            inside = np.ones(box.shape[1:], dtype=bool)
            nearest = []
            for k in range(3):
                idx = (m[k, 3] + m[k, 0] * np.float64(s) + row_terms[k][:, None]) \
                    + col_terms[k][None, :]
                inside &= (idx >= -0.5) & (idx <= size[k] - 0.5)
                nearest.append(np.clip(np.floor(idx + 0.5), 0, size[k] - 1).astype(np.intp))
            out[n][inside] = src[nearest[0][inside], nearest[1][inside], nearest[2][inside]]
        return out

    def geometry_equal(self, other: Volume, *, atol_mm: float = DEFAULT_GEOMETRY_ATOL_MM) -> bool:
        """Tell whether both volumes have the same shape and voxel centres (to ``atol_mm``).

        Compares the two grids' corner positions, so a small direction difference over a
        large field of view is caught (unlike a comparison of direction cosines alone).
        """
        if self.shape != other.shape:
            return False
        corners = np.array(
            [[i, j, k] for i in (0, self.shape[0] - 1)
             for j in (0, self.shape[1] - 1) for k in (0, self.shape[2] - 1)],
            dtype=np.float64,
        )
        return bool(
            np.allclose(
                self.index_to_lps(corners), other.index_to_lps(corners), atol=atol_mm, rtol=0
            )
        )

    def check_same_frame_of_reference(self, other: Volume, *, what: str = "volume") -> None:
        """Raise if ``other`` comes from a different, known frame of reference.

        An empty FrameOfReferenceUID (NIfTI input) matches any frame.

        Raises
        ------
        FrameOfReferenceError
        """
        a = self.series.frame_of_reference_uid
        b = other.series.frame_of_reference_uid
        if a and b and a != b:
            raise FrameOfReferenceError(
                f"{what} of series {other.series.series_instance_uid or '(no UID)'} is in frame "
                f"of reference {b}, but series {self.series.series_instance_uid} is in {a}. "
                "Positions in different frames cannot be compared without registration. "
                "Potential fix: draw the ROI on a series of the same frame of reference, or "
                "register the series first."
            )

    def resample_like(
        self,
        target: Volume,
        *,
        order: int = 0,
        fill_value: float = 0.0,
        check_frame_of_reference: bool = True,
    ) -> Volume:
        """Resample this volume onto ``target``'s grid through patient (LPS) coordinates.

        Parameters
        ----------
        target : Volume
            The grid to sample on; its values are not used.
        order : int
            Spline order: 0 nearest neighbour (masks, labels), 1 trilinear (images).
        fill_value : float
            Value of target voxels that fall outside this volume.
        check_frame_of_reference : bool
            Refuse volumes of different known frames of reference.

        Returns
        -------
        Volume
            On target's grid, with this volume's unit and series info.

        Raises
        ------
        FrameOfReferenceError
        """
        from scipy import ndimage  # local: keeps `import bonelesion` light

        if check_frame_of_reference:
            target.check_same_frame_of_reference(self, what="Resampled volume")
        if self.geometry_equal(target):
            return self.with_array(np.asarray(self.array))
        # index_self = M · index_target + t, with M = A_self⁻¹ · A_target
        m = np.linalg.inv(self.affine_lps) @ target.affine_lps
        src = self.array
        if src.dtype == bool:
            src = src.astype(np.uint8)
        # Like ITK: a point belongs to the image when its continuous index lies within half a
        # voxel of the outermost centres; values there are clamped to the edge voxel.
        out = ndimage.affine_transform(
            src,
            m[:3, :3],
            offset=m[:3, 3],
            output_shape=target.shape,
            order=order,
            mode="nearest",
            prefilter=order > 1,
        )
        upper = np.asarray(self.shape, dtype=np.float64) - 0.5
        rows, cols = np.meshgrid(
            np.arange(target.shape[1], dtype=np.float64),
            np.arange(target.shape[2], dtype=np.float64),
            indexing="ij",
        )
        for s in range(target.shape[0]):  # one slice at a time: no (S, R, C, 3) temporary
            idx = (
                m[:3, 0, None, None] * s
                + m[:3, 1, None, None] * rows
                + m[:3, 2, None, None] * cols
                + m[:3, 3, None, None]
            )
            outside = np.any((idx < -0.5) | (idx > upper[:, None, None]), axis=0)
            out[s][outside] = fill_value
        if self.array.dtype == bool:
            out = out.astype(bool)
        return Volume(
            array=out,
            spacing_mm=target.spacing_mm,
            origin_lps_mm=target.origin_lps_mm,
            direction_lps=target.direction_lps,
            intensity_unit=self.intensity_unit,
            series=self.series,
        )

    def __repr__(self) -> str:
        return (
            f"Volume(shape={self.shape}, spacing_mm={tuple(round(s, 4) for s in self.spacing_mm)}, "
            f"unit={self.intensity_unit.value}, series={self.series.series_instance_uid!r}, "
            f"role={self.series.role!r})"
        )
