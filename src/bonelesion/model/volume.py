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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bonelesion.errors import FrameOfReferenceError, GeometryMismatchError, InputError
from bonelesion.units import IntensityUnit

__all__ = ["SeriesInfo", "Volume", "LPS_FROM_RAS", "DEFAULT_GEOMETRY_ATOL_MM"]

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
        return Volume(
            array=array,
            spacing_mm=self.spacing_mm,
            origin_lps_mm=self.origin_lps_mm,
            direction_lps=self.direction_lps,
            intensity_unit=self.intensity_unit if intensity_unit is None else intensity_unit,
            series=self.series if series is None else series,
        )

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
