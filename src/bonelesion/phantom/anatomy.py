"""The lumbar-spine-like digital phantom: tissues, vertebrae, lesions and their rasterisation.

Everything here is analytic and in LPS millimetres; nothing knows about DICOM. A grid
(shape, spacing, origin, direction, as in `bonelesion.model.volume.Volume`) is turned into
per-tissue *volume fractions* by supersampling every voxel on a regular ``k × k × k``
sub-grid; images are then mixtures of the tissue values. A voxel whose sub-samples all fall
inside one lesion therefore holds exactly that lesion's value: partial volume exists only
at boundaries.

Anatomy (all sizes in mm, patient LPS)::

    body: elliptic cylinder, semi-axes 80 (L) × 60 (P), centre (0, 5): subcutaneous fat
          shell 8 mm, soft tissue (muscle-like) inside
    spinal canal: cylinder radius 8 mm at (0, 32): fluid (CSF-like)
    vertebral bodies L1..L3: elliptic cylinders 25 × 19, height 30, centres at
          S = +36, 0, −36; cortical shell 1.5 mm; trabecular marrow inside
    discs: 6 mm between the bodies, same cross-section
    lesions: homogeneous spheres inside the marrow of the vertebral bodies
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import InputError
from bonelesion.model.volume import Volume
from bonelesion.units import IntensityUnit

__all__ = [
    "ExpectedNature",
    "TissueSpec",
    "LesionSpec",
    "VertebraSpec",
    "Grid",
    "centred_grid",
    "TISSUES",
    "VERTEBRAE",
    "DEFAULT_LESIONS",
    "SIGNAL_VOID_LESIONS",
    "SMALL_BONE_ISLAND",
    "MIN_LESION_RADIUS_MM",
    "MIN_LESION_RADIUS_VOXELS",
    "check_lesions",
    "label_points",
    "tissue_fractions",
    "chemical_shift_ratio",
]

#: Smallest lesion radius accepted (an eroded core ROI must exist).
MIN_LESION_RADIUS_MM = 5.0
#: Smallest lesion radius in voxels of the coarsest spacing of any phantom grid.
MIN_LESION_RADIUS_VOXELS = 3.0


class ExpectedNature(str, Enum):
    """What a correct pipeline should conclude about a lesion."""

    BENIGN = "benign"
    MALIGNANT = "malignant"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True, kw_only=True)
class TissueSpec:
    """One background tissue of the phantom.

    Parameters
    ----------
    name : str
        Tissue name (``air``, ``fat``, ``soft_tissue``, ``fluid``, ``disc``,
        ``cortical_bone``, ``marrow``).
    label : int
        Label value in the label map (0–9; lesions use 10 + their index).
    attenuation_hu : float
        CT number.
    fat_fraction : float
        Signal fat fraction F / (W + F), 0–1.
    adc_mm2_per_s : float
        Apparent diffusion coefficient of the tissue water.
    mr_signal_scale : float
        Relative MR proton signal (0–1); multiplies the Dixon and DWI full scales.
    """

    name: str
    label: int
    attenuation_hu: float
    fat_fraction: float
    adc_mm2_per_s: float
    mr_signal_scale: float


@dataclass(frozen=True, kw_only=True)
class LesionSpec:
    """One spherical, homogeneous lesion.

    Parameters
    ----------
    lesion_id : str
        Identifier, unique within a study (``les01`` …).
    center_lps_mm : tuple of float
        Centre in LPS mm.
    radius_mm : float
        Sphere radius.
    attenuation_hu : float
        CT number inside the sphere (an integer, so that stored values are exact).
    fat_fraction : float
        Signal fat fraction inside the sphere.
    adc_mm2_per_s : float
        ADC inside the sphere.
    mr_signal_scale : float
        Relative MR proton signal (a sclerotic lesion is dark on every MR image).
    expected_nature : ExpectedNature
        What a correct pipeline should call the lesion.
    kind : str
        ``metastasis``, ``enostosis``, ``near_threshold`` or ``blastic_metastasis``.
    vertebra : str
        Name of the vertebral body that holds the lesion.
    treated : bool
        Whether the lesion is to be presented as treated (the CT rule does not apply).
    """

    lesion_id: str
    center_lps_mm: tuple[float, float, float]
    radius_mm: float
    attenuation_hu: float
    fat_fraction: float
    adc_mm2_per_s: float
    mr_signal_scale: float
    expected_nature: ExpectedNature
    kind: str
    vertebra: str
    treated: bool = False


@dataclass(frozen=True, kw_only=True)
class VertebraSpec:
    """An elliptic-cylinder vertebral body with a cortical shell."""

    name: str
    center_lps_mm: tuple[float, float, float]
    semi_axis_l_mm: float
    semi_axis_p_mm: float
    height_mm: float
    cortex_mm: float


#: A phantom grid is a `Volume` whose array is a zero-memory placeholder: all geometry
#: (index ↔ LPS) comes from `bonelesion.model.volume`.
Grid = Volume


def centred_grid(
    *,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    center_lps_mm: tuple[float, float, float],
    direction: NDArray[np.float64],
) -> Volume:
    """Grid whose centre (middle of the voxel block) lies at ``center_lps_mm``.

    Parameters
    ----------
    shape : (3,) tuple of int
        [slice, row, column] size.
    spacing_mm : (3,) tuple of float
    center_lps_mm : (3,) tuple of float
    direction : (3, 3) ndarray
        Column *k* is the LPS unit vector of axis *k*.

    Returns
    -------
    Volume
        Geometry only; its array is a read-only broadcast zero of dtype uint8.
    """
    half_mm = (np.asarray(shape, float) - 1.0) / 2.0 * np.asarray(spacing_mm, float)
    origin = np.asarray(center_lps_mm, float) - np.asarray(direction, float) @ half_mm
    return Volume(
        array=np.broadcast_to(np.uint8(0), tuple(int(n) for n in shape)),
        spacing_mm=spacing_mm,
        origin_lps_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction_lps=direction,
        intensity_unit=IntensityUnit.MASK,
    )


#: Labels of the background tissues.
AIR, FAT, SOFT_TISSUE, FLUID, DISC, CORTICAL_BONE, MARROW = range(7)
#: First lesion label.
LESION_LABEL_0 = 10

#: Background tissues. Numbers: CLINICAL_REFERENCE.md (marrow FF 0.65, Colombo 2021; marrow
#: ADC 0.42e-3, same; soft tissue ~1.0–1.5e-3; free water at body temperature ~3.0e-3);
#: disc and fat values are design choices of the phantom.
TISSUES: tuple[TissueSpec, ...] = (
    TissueSpec(name="air", label=AIR, attenuation_hu=-1000.0, fat_fraction=0.0,
               adc_mm2_per_s=0.0, mr_signal_scale=0.0),
    TissueSpec(name="fat", label=FAT, attenuation_hu=-100.0, fat_fraction=0.95,
               adc_mm2_per_s=1.0e-3, mr_signal_scale=1.0),
    TissueSpec(name="soft_tissue", label=SOFT_TISSUE, attenuation_hu=40.0, fat_fraction=0.05,
               adc_mm2_per_s=1.4e-3, mr_signal_scale=0.6),
    TissueSpec(name="fluid", label=FLUID, attenuation_hu=8.0, fat_fraction=0.0,
               adc_mm2_per_s=3.0e-3, mr_signal_scale=0.9),
    TissueSpec(name="disc", label=DISC, attenuation_hu=80.0, fat_fraction=0.0,
               adc_mm2_per_s=1.6e-3, mr_signal_scale=0.7),
    TissueSpec(name="cortical_bone", label=CORTICAL_BONE, attenuation_hu=1100.0,
               fat_fraction=0.0, adc_mm2_per_s=0.3e-3, mr_signal_scale=0.05),
    TissueSpec(name="marrow", label=MARROW, attenuation_hu=220.0, fat_fraction=0.65,
               adc_mm2_per_s=0.45e-3, mr_signal_scale=1.0),
)

_BODY_CENTER_LP_MM = (0.0, 5.0)
_BODY_SEMI_AXES_MM = (80.0, 60.0)
_FAT_SHELL_MM = 8.0
_CANAL_CENTER_LP_MM = (0.0, 32.0)
_CANAL_RADIUS_MM = 8.0
_VERTEBRA_PITCH_MM = 36.0  # 30 mm body + 6 mm disc

VERTEBRAE: tuple[VertebraSpec, ...] = tuple(
    VertebraSpec(
        name=name,
        center_lps_mm=(0.0, 0.0, s_mm),
        semi_axis_l_mm=25.0,
        semi_axis_p_mm=19.0,
        height_mm=30.0,
        cortex_mm=1.5,
    )
    for name, s_mm in (("L1", _VERTEBRA_PITCH_MM), ("L2", 0.0), ("L3", -_VERTEBRA_PITCH_MM))
)

#: The lesions of the standard study. Metastasis-like CT numbers follow Ulano 2016
#: (654 ± 176 HU), enostosis-like ones 1190 ± 239 HU; les04 sits 5 HU under the 885 HU
#: threshold with SIR 0.78 and ADC 1.15e-3 (each just across its cut-off) and is expected
#: to be called indeterminate. Sclerotic (enostosis-like) lesions are dark on every MR image
#: (signal scale 0.25–0.3) and have a low ADC, as dense bone does (CLINICAL_REFERENCE §C2:
#: "T2 black-out"), a deliberate trap for an ADC-only rule.
DEFAULT_LESIONS: tuple[LesionSpec, ...] = (
    LesionSpec(lesion_id="les01", vertebra="L1", center_lps_mm=(11.0, 0.0, 36.0),
               radius_mm=9.0, attenuation_hu=650.0, fat_fraction=0.05, adc_mm2_per_s=0.80e-3,
               mr_signal_scale=0.9, expected_nature=ExpectedNature.MALIGNANT, kind="metastasis"),
    LesionSpec(lesion_id="les02", vertebra="L1", center_lps_mm=(-11.0, 0.0, 36.0),
               radius_mm=8.0, attenuation_hu=1250.0, fat_fraction=0.20, adc_mm2_per_s=0.60e-3,
               mr_signal_scale=0.3, expected_nature=ExpectedNature.BENIGN, kind="enostosis"),
    LesionSpec(lesion_id="les03", vertebra="L2", center_lps_mm=(11.0, 0.0, 0.0),
               radius_mm=9.0, attenuation_hu=720.0, fat_fraction=0.08, adc_mm2_per_s=0.90e-3,
               mr_signal_scale=0.9, expected_nature=ExpectedNature.MALIGNANT, kind="metastasis"),
    LesionSpec(lesion_id="les04", vertebra="L2", center_lps_mm=(-11.0, 0.0, 0.0),
               radius_mm=9.0, attenuation_hu=880.0, fat_fraction=0.11, adc_mm2_per_s=1.15e-3,
               mr_signal_scale=0.7, expected_nature=ExpectedNature.INDETERMINATE,
               kind="near_threshold"),
    LesionSpec(lesion_id="les05", vertebra="L3", center_lps_mm=(11.0, 0.0, -36.0),
               radius_mm=8.0, attenuation_hu=1350.0, fat_fraction=0.15, adc_mm2_per_s=0.55e-3,
               mr_signal_scale=0.25, expected_nature=ExpectedNature.BENIGN, kind="enostosis"),
    LesionSpec(lesion_id="les06", vertebra="L3", center_lps_mm=(-11.0, 0.0, -36.0),
               radius_mm=10.0, attenuation_hu=580.0, fat_fraction=0.03, adc_mm2_per_s=0.75e-3,
               mr_signal_scale=0.95, expected_nature=ExpectedNature.MALIGNANT, kind="metastasis"),
)


#: Sclerotic lesions dark on every MR image (signal scale 0.05, as cortical bone): a bone island
#: and a blastic metastasis (Montoya-Bordón et al. 2023, table 2: both hypointense on T1,
#: T2/STIR and in/opposed phase; CLINICAL_REFERENCE §C2 "T2 black-out"). Their SIR and ADC
#: are ratios of small signals; only CT tells them apart (Ulano 2016: 1250 vs 650 HU). A
#: non-sclerotic metastasis in L3 keeps the MR evidence of a lesion that is not dark.
SIGNAL_VOID_LESIONS: tuple[LesionSpec, ...] = (
    LesionSpec(lesion_id="island_void", vertebra="L1", center_lps_mm=(-11.0, 0.0, 36.0),
               radius_mm=8.0, attenuation_hu=1250.0, fat_fraction=0.20, adc_mm2_per_s=0.60e-3,
               mr_signal_scale=0.05, expected_nature=ExpectedNature.BENIGN, kind="enostosis"),
    LesionSpec(lesion_id="blastic_void", vertebra="L2", center_lps_mm=(11.0, 0.0, 0.0),
               radius_mm=9.0, attenuation_hu=650.0, fat_fraction=0.10, adc_mm2_per_s=0.70e-3,
               mr_signal_scale=0.05, expected_nature=ExpectedNature.MALIGNANT,
               kind="blastic_metastasis"),
    LesionSpec(lesion_id="met_bright", vertebra="L3", center_lps_mm=(-11.0, 0.0, -36.0),
               radius_mm=10.0, attenuation_hu=60.0, fat_fraction=0.03, adc_mm2_per_s=0.80e-3,
               mr_signal_scale=0.95, expected_nature=ExpectedNature.MALIGNANT, kind="metastasis"),
)

#: A 3 mm bone island (radius 1.5 mm), centred on a voxel of the phantom's CT grid: the ~1-voxel
#: erosion leaves no core, so the whole mask (centre voxel and its four in-plane neighbours,
#: half lesion, half marrow) is measured and partial volume pulls the mean to ~840 HU. Needs
#: ``write_study(..., min_lesion_radius_mm=1.5)``.
SMALL_BONE_ISLAND = LesionSpec(
    lesion_id="island_3mm", vertebra="L1", center_lps_mm=(11.25, -0.25, 36.25), radius_mm=1.5,
    attenuation_hu=1250.0, fat_fraction=0.20, adc_mm2_per_s=0.60e-3, mr_signal_scale=0.05,
    expected_nature=ExpectedNature.BENIGN, kind="enostosis")


def chemical_shift_ratio(fat_fraction: float) -> float:
    """Opposed-phase / in-phase ratio of the two-point model, ``|1 − 2·FF|``."""
    return abs(1.0 - 2.0 * fat_fraction)


def _in_ellipse(
    l_mm: NDArray[np.float64], p_mm: NDArray[np.float64], center: tuple[float, float],
    semi_l: float, semi_p: float,
) -> NDArray[np.bool_]:
    return ((l_mm - center[0]) / semi_l) ** 2 + ((p_mm - center[1]) / semi_p) ** 2 <= 1.0


def _in_marrow(points: NDArray[np.float64], v: VertebraSpec) -> NDArray[np.bool_]:
    l_mm, p_mm, s_mm = points[..., 0], points[..., 1], points[..., 2]
    c = v.center_lps_mm
    inner = _in_ellipse(l_mm, p_mm, (c[0], c[1]), v.semi_axis_l_mm - v.cortex_mm,
                        v.semi_axis_p_mm - v.cortex_mm)
    return inner & (np.abs(s_mm - c[2]) <= v.height_mm / 2.0 - v.cortex_mm)


def label_points(
    points_lps_mm: NDArray[np.float64],
    lesions: Sequence[LesionSpec],
    *,
    bounds_lps_mm: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> NDArray[np.uint8]:
    """Tissue label at each point.

    Parameters
    ----------
    points_lps_mm : (..., 3) ndarray of float, LPS mm
    lesions : sequence of LesionSpec
        Lesion *i* gets label ``10 + i``.
    bounds_lps_mm : (lo, hi) pair of (3,) arrays, optional
        A box holding every point (computed when omitted); shapes outside it are skipped.

    Returns
    -------
    (...) ndarray of uint8
    """
    l_mm, p_mm, s_mm = points_lps_mm[..., 0], points_lps_mm[..., 1], points_lps_mm[..., 2]
    label = np.full(l_mm.shape, AIR, dtype=np.uint8)
    if label.size == 0:
        return label
    # Bounding box of the points: shapes that cannot reach it are skipped (speed only).
    if bounds_lps_mm is None:
        flat = points_lps_mm.reshape(-1, 3)
        lo, hi = flat.min(axis=0), flat.max(axis=0)
    else:
        lo, hi = bounds_lps_mm
    sl, sp = _BODY_SEMI_AXES_MM
    label[_in_ellipse(l_mm, p_mm, _BODY_CENTER_LP_MM, sl, sp)] = FAT
    label[_in_ellipse(l_mm, p_mm, _BODY_CENTER_LP_MM, sl - _FAT_SHELL_MM,
                      sp - _FAT_SHELL_MM)] = SOFT_TISSUE
    label[_in_ellipse(l_mm, p_mm, _CANAL_CENTER_LP_MM, _CANAL_RADIUS_MM,
                      _CANAL_RADIUS_MM)] = FLUID
    for i, v in enumerate(VERTEBRAE):
        c = v.center_lps_mm
        lowest_s_mm = c[2] - v.height_mm / 2.0  # of this body and the disc below it
        if i + 1 < len(VERTEBRAE):
            lowest_s_mm = VERTEBRAE[i + 1].center_lps_mm[2] + VERTEBRAE[i + 1].height_mm / 2.0
        if hi[2] < lowest_s_mm or lo[2] > c[2] + v.height_mm / 2.0:
            continue  # neither this body nor the disc below it reaches the points
        section = _in_ellipse(l_mm, p_mm, (c[0], c[1]), v.semi_axis_l_mm, v.semi_axis_p_mm)
        label[section & (np.abs(s_mm - c[2]) <= v.height_mm / 2.0)] = CORTICAL_BONE
        label[_in_marrow(points_lps_mm, v)] = MARROW
        if i + 1 < len(VERTEBRAE):
            below = VERTEBRAE[i + 1]
            top = below.center_lps_mm[2] + below.height_mm / 2.0
            bottom = c[2] - v.height_mm / 2.0
            label[section & (s_mm > top) & (s_mm < bottom)] = DISC
    for i, les in enumerate(lesions):
        centre = np.asarray(les.center_lps_mm)
        if np.any(centre + les.radius_mm < lo) or np.any(centre - les.radius_mm > hi):
            continue
        d2 = ((points_lps_mm - centre) ** 2).sum(axis=-1)
        label[d2 <= les.radius_mm**2] = LESION_LABEL_0 + i
    return label


def tissue_fractions(
    grid: Grid,
    lesions: Sequence[LesionSpec],
    *,
    slice_index: int,
    supersampling: int = 2,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Volume fraction of every label in every voxel of one slice.

    Parameters
    ----------
    grid : Volume
        The grid (only its geometry is used).
    lesions : sequence of LesionSpec
    slice_index : int
        Index along axis 0.
    supersampling : int
        Sub-samples per voxel edge (``k³`` per voxel).

    Returns
    -------
    fractions : (L, R, C) ndarray of float64
        Fractions summing to 1 over axis 0.
    labels : (L,) ndarray of int
        The label of each fraction plane.
    """
    k = supersampling
    _, n_rows, n_cols = grid.shape
    offsets = (np.arange(k) + 0.5) / k - 0.5
    ds, dr, dc = np.meshgrid(offsets, offsets, offsets, indexing="ij")
    sub = np.stack([ds.ravel(), dr.ravel(), dc.ravel()], axis=-1)  # (k³, 3)
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    idx = np.stack(
        [np.full(rows.shape, slice_index, float), rows.astype(float), cols.astype(float)], axis=-1
    )  # (R, C, 3)
    idx = idx[:, :, None, :] + sub[None, None, :, :]  # (R, C, k³, 3)
    # index → LPS with the Volume's affine, written out per axis (a BLAS matmul with an
    # inner size of 3 is slow under CPU contention)
    affine = grid.affine_lps
    points = (affine[:3, 3] + idx[..., 0, None] * affine[:3, 0]
              + idx[..., 1, None] * affine[:3, 1] + idx[..., 2, None] * affine[:3, 2])
    # bounding box of the slab: the affine image of its index-space corners
    corners = np.array([[slice_index + ds_, r, c] for ds_ in (-0.5, 0.5)
                        for r in (-0.5, n_rows - 0.5) for c in (-0.5, n_cols - 0.5)])
    corners_lps = corners @ affine[:3, :3].T + affine[:3, 3]
    bounds = (corners_lps.min(axis=0) - 1e-9, corners_lps.max(axis=0) + 1e-9)
    labels = label_points(points, lesions, bounds_lps_mm=bounds)  # (R, C, k³)
    present = np.unique(labels)
    fractions = np.stack([(labels == lab).mean(axis=-1) for lab in present])
    return fractions, present.astype(np.int64)


def check_lesions(lesions: Sequence[LesionSpec], *, coarsest_spacing_mm: float,
                  min_radius_mm: float | None = None) -> None:
    """Refuse lesions the phantom cannot render with an exact core.

    ``min_radius_mm`` lowers the smallest accepted radius (default: ≥ `MIN_LESION_RADIUS_MM`
    and ≥ `MIN_LESION_RADIUS_VOXELS` of the coarsest spacing, so an eroded core exists) for
    lesions meant to be partial-volume dominated.

    Raises
    ------
    InputError
        If a lesion id repeats, a radius is too small, a value is out of range, a lesion is
        not wholly inside the marrow of one vertebral body, or two lesions overlap.
    """
    if min_radius_mm is None:
        min_radius_mm = max(MIN_LESION_RADIUS_MM,
                            MIN_LESION_RADIUS_VOXELS * coarsest_spacing_mm)
    seen: set[str] = set()
    for les in lesions:
        where = f"Phantom lesion {les.lesion_id!r}"
        if les.lesion_id in seen or not les.lesion_id:
            raise InputError(
                f"{where}: lesion ids must be unique and non-empty, found a repeat or blank. "
                "Potential fix: give every LesionSpec its own lesion_id."
            )
        seen.add(les.lesion_id)
        if not les.radius_mm >= min_radius_mm:
            raise InputError(
                f"{where}: radius_mm must be ≥ {min_radius_mm:g} mm (≥ {MIN_LESION_RADIUS_MM:g} mm "
                f"and ≥ {MIN_LESION_RADIUS_VOXELS:g} voxels of {coarsest_spacing_mm:g} mm), found "
                f"{les.radius_mm:g}. Potential fix: use a larger radius."
            )
        hu = les.attenuation_hu
        if hu != round(hu) or not -1000 <= hu <= 3000:
            raise InputError(
                f"{where}: attenuation_hu must be an integer in [-1000, 3000], found "
                f"{les.attenuation_hu!r}. Potential fix: round the CT number."
            )
        if not (0.0 <= les.fat_fraction <= 1.0 and 0.0 < les.mr_signal_scale <= 1.0
                and 0.0 < les.adc_mm2_per_s <= 4.0e-3):
            raise InputError(
                f"{where}: expected fat_fraction in [0, 1], mr_signal_scale in (0, 1] and "
                f"adc_mm2_per_s in (0, 4e-3], found {les.fat_fraction!r}, "
                f"{les.mr_signal_scale!r}, {les.adc_mm2_per_s!r}. Potential fix: give "
                "values in those ranges (ADC in mm²/s, not 1e-3 mm²/s)."
            )
        # Sphere wholly inside one vertebral marrow: test a dense set of surface points.
        n = 64
        theta = np.arccos(1.0 - 2.0 * (np.arange(n * 4) + 0.5) / (n * 4))
        phi = math.pi * (1.0 + 5.0**0.5) * np.arange(n * 4)
        surface = np.asarray(les.center_lps_mm) + les.radius_mm * np.stack(
            [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1
        )
        holders = [v.name for v in VERTEBRAE if bool(np.all(_in_marrow(surface, v)))]
        if not holders:
            raise InputError(
                f"{where}: the sphere (centre {les.center_lps_mm} mm LPS, radius "
                f"{les.radius_mm:g} mm) is not wholly inside the marrow of a vertebral body "
                f"({', '.join(v.name for v in VERTEBRAE)}). Potential fix: move it towards a "
                "body centre (S = 36, 0, −36 mm) or shrink it."
            )
        if holders[0] != les.vertebra:
            raise InputError(
                f"{where}: lies in vertebra {holders[0]}, but vertebra={les.vertebra!r}. "
                f"Potential fix: set vertebra={holders[0]!r}."
            )
    for i, a in enumerate(lesions):
        for b in lesions[i + 1:]:
            gap = math.dist(a.center_lps_mm, b.center_lps_mm) - a.radius_mm - b.radius_mm
            if gap < 0:
                raise InputError(
                    f"Phantom lesions {a.lesion_id!r} and {b.lesion_id!r} overlap by "
                    f"{-gap:.1f} mm. Potential fix: move them apart or shrink them."
                )
