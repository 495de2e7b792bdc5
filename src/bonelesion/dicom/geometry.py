"""Geometry planning: validate one stack's frames and lay them on a regular grid."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bonelesion.dicom import values, vendors
from bonelesion.dicom.header import Frame
from bonelesion.dicom.tilt import (
    TiltCorrection,
    TiltPolicy,
    plan_tilt_correction,
)
from bonelesion.dicom.vendors.siemens import MosaicLayout, is_mosaic, mosaic_layout
from bonelesion.errors import (
    InputError,
    MissingAttributeError,
    SeriesGeometryError,
    UnsupportedInputError,
)

__all__ = [
    "MAX_VOLUME_BYTES",
    "SPACING_RTOL",
    "ORIENTATION_ATOL",
    "PIXEL_SPACING_RTOL",
    "DUPLICATE_POSITION_ATOL_MM",
    "TILT_RTOL",
    "TILT_ATOL_MM",
    "Plan",
    "plan_stack",
]

logger = logging.getLogger(__name__)


#: Refuse a stack whose decoded float32 array would exceed this (checked before decoding).
MAX_VOLUME_BYTES = 4 * 1024**3


#: Relative tolerance of the slice-spacing regularity check (highdicom's default).
SPACING_RTOL = 1e-2


#: Largest difference of an ImageOrientationPatient cosine within one stack.
ORIENTATION_ATOL = 1e-3


#: Relative tolerance of PixelSpacing equality within one stack.
PIXEL_SPACING_RTOL = 1e-4


#: Two slices closer than this along the normal are at the same position.
DUPLICATE_POSITION_ATOL_MM = 1e-2


#: Largest in-plane offset of a slice from the stacking line, relative to the slice spacing
#: (a gantry tilt of 0.3° gives 0.5 % of the spacing per slice).
TILT_RTOL = 5e-3


#: ... and never below this absolute offset (DICOM DS rounding of positions).
TILT_ATOL_MM = 2e-2


@dataclass
class Plan:
    """A validated stack, ready to decode."""

    frames: list[Frame]  # in slice order (mosaic: the one frame)
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: NDArray[np.float64]
    direction_lps: NDArray[np.float64]
    mosaic: MosaicLayout | None
    mosaic_reversed: bool
    notes: list[str]
    #: The resampling of a gantry-tilted stack (``tilt="resample"``); None otherwise.
    tilt: TiltCorrection | None = None


def _uid(frames: Sequence[Frame]) -> str:
    return values.get_text(frames[0].flat, "SeriesInstanceUID", strict=False) or "(no UID)"


def _files_text(frames: Sequence[Frame]) -> str:
    """Name the files of a stack for a refusal: all when few, else first … last."""
    names: list[str] = []
    for f in frames:
        name = values.printable(f.path.name)
        if not names or names[-1] != name:
            names.append(name)
    folder = values.printable(frames[0].path.parent) if frames else ""
    if len(names) <= 4:
        return f"{', '.join(names)} in {folder}"
    return f"{len(names)} files in {folder}: {names[0]} … {names[-1]}"


def _rows_columns(frame: Frame) -> tuple[int, int]:
    if frame.pixel is not None:
        return frame.pixel.rows, frame.pixel.columns
    return (values.get_int(frame.flat, "Rows") or 0, values.get_int(frame.flat, "Columns") or 0)


def orthonormal(iop: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    row_dir = iop[:3] / np.linalg.norm(iop[:3])
    col_dir = iop[3:] - np.dot(iop[3:], row_dir) * row_dir
    col_dir = col_dir / np.linalg.norm(col_dir)
    return row_dir, col_dir


def plan_stack(frames: list[Frame], max_bytes: int, *, tilt: TiltPolicy = TiltPolicy.REFUSE
               ) -> tuple[Plan | None, list[str], list[str], type[InputError]]:
    """Validate and sort one stack; return (plan, problems, warnings, error class).

    A gantry-tilted stack is refused, or with ``tilt=TiltPolicy.RESAMPLE`` planned for
    resampling onto an orthogonal grid (`bonelesion.dicom.tilt`).
    """
    tilt_plan: TiltCorrection | None = None
    problems: list[str] = []
    notes: list[str] = []
    uid = _uid(frames)
    fix_geom = "Potential fix: re-export the series from the scanner/PACS, or select the "
    missing = [k for k, attr in (("ImagePositionPatient (0020,0032)", "ipp"),
                                 ("ImageOrientationPatient (0020,0037)", "iop"),
                                 ("PixelSpacing (0028,0030)", "pixel_spacing"))
               if any(getattr(f, attr) is None for f in frames)]
    if missing:
        n_bad = sum(1 for f in frames if f.ipp is None or f.iop is None or f.pixel_spacing is None)
        problems.append(
            f"{n_bad} of {len(frames)} frames lack {', '.join(missing)} (file "
            f"{frames[0].path.name}); expected on every image of a volume. Potential fix: "
            "this is not a cross-sectional volume (e.g. a screenshot or report); select "
            "another series."
        )
        return None, problems, notes, MissingAttributeError
    rows, cols = _rows_columns(frames[0])
    if rows < 1 or cols < 1:
        problems.append(f"Rows×Columns is {rows}×{cols}; expected ≥ 1. {fix_geom}images.")
        return None, problems, notes, UnsupportedInputError
    fors = sorted({values.get_uid(f.flat, "FrameOfReferenceUID") or "" for f in frames} - {""})
    if len(fors) > 1:
        problems.append(
            f"mixed frames of reference ({len(fors)} FrameOfReferenceUID values: "
            f"{', '.join(fors[:3])}); expected one. {fix_geom}images of one acquisition."
        )
    ps0 = frames[0].pixel_spacing
    assert ps0 is not None
    all_ps = np.array([f.pixel_spacing for f in frames])
    ps_ok = np.all(np.abs(all_ps - ps0) <= PIXEL_SPACING_RTOL * np.abs(ps0), axis=1)
    bad_ps = [frames[i] for i in np.flatnonzero(~ps_ok)]
    if bad_ps:
        problems.append(
            f"inconsistent PixelSpacing (0028,0030): {ps0.tolist()} mm vs "
            f"{bad_ps[0].pixel_spacing.tolist()} mm in {bad_ps[0].path.name}; expected one "  # type: ignore[union-attr]
            f"value per stack. {fix_geom}images of one reconstruction."
        )
    iop0 = frames[0].iop
    assert iop0 is not None
    norms = (float(np.linalg.norm(iop0[:3])), float(np.linalg.norm(iop0[3:])))
    if min(norms) < 0.5 or abs(float(np.dot(iop0[:3], iop0[3:]))) > 1e-2 * max(norms) ** 2:
        problems.append(
            f"invalid ImageOrientationPatient (0020,0037) {iop0.tolist()} in "
            f"{frames[0].path.name}; expected two orthogonal unit vectors. "
            f"{fix_geom}images with a valid header."
        )
        return None, problems, notes, SeriesGeometryError
    if not np.all(ps0 > 0):
        problems.append(
            f"PixelSpacing (0028,0030) {ps0.tolist()} in {frames[0].path.name}; expected "
            f"positive values. {fix_geom}images with a valid header."
        )
        return None, problems, notes, SeriesGeometryError
    if not np.all((ps0 >= values.MIN_SPACING_MM) & (ps0 <= values.MAX_SPACING_MM)):
        problems.append(
            f"implausible PixelSpacing (0028,0030) {ps0.tolist()} mm in {frames[0].path.name}; "
            f"expected {values.MIN_SPACING_MM:g}–{values.MAX_SPACING_MM:g} mm. "
            f"{fix_geom}images with a valid header."
        )
        return None, problems, notes, SeriesGeometryError
    far = [f for f in frames if f.ipp is not None
           and not np.all(np.abs(f.ipp) <= values.MAX_POSITION_MM)]
    if far:
        problems.append(
            f"implausible ImagePositionPatient (0020,0032) {far[0].ipp.tolist()} mm in "  # type: ignore[union-attr]
            f"{far[0].path.name}; expected coordinates within ±{values.MAX_POSITION_MM:g} mm. "
            f"{fix_geom}images with a valid header."
        )
        return None, problems, notes, SeriesGeometryError
    dev = float(np.max(np.abs(np.array([f.iop for f in frames]) - iop0)))
    if dev > ORIENTATION_ATOL:
        problems.append(
            f"mixed orientation: ImageOrientationPatient (0020,0037) cosines differ by up to "
            f"{dev:.4f} (tolerance {ORIENTATION_ATOL}); expected one orientation per stack. "
            f"{fix_geom}slices of one orientation (e.g. drop localizers)."
        )
    if problems:
        return None, problems, notes, SeriesGeometryError
    row_dir, col_dir = orthonormal(iop0)
    normal = np.cross(row_dir, col_dir)
    ps_row, ps_col = float(ps0[0]), float(ps0[1])

    if is_mosaic(frames[0].flat):
        if len(frames) != 1:
            problems.append(
                f"{len(frames)} mosaic images share one stack signature (same b-value, "
                "direction, echo and acquisition number); expected one mosaic per volume. "
                f"{fix_geom}one acquisition."
            )
            return None, problems, notes, SeriesGeometryError
        try:
            layout = mosaic_layout(frames[0].flat, row_dir, col_dir)
        except InputError as exc:
            return None, [str(exc)], notes, type(exc)
        notes.extend(layout.notes)
        bad = _implausible_spacing(layout.spacing_mm, "mosaic slice spacing", frames)
        if bad:
            return None, [bad], notes, SeriesGeometryError
        # nibabel MosaicWrapper.image_position: IPP is the corner of the whole mosaic; moved
        # to the corner of the tile it describes.
        rd = np.array([rows, cols], dtype=np.float64)
        tile = np.array([layout.tile_rows, layout.tile_cols], dtype=np.float64)
        fix = (rd - tile) / 2.0
        ipp_tile = frames[0].ipp + col_dir * ps_row * fix[0] + row_dir * ps_col * fix[1]  # type: ignore[operator]
        sn = layout.normal
        ipp_index = 0
        if layout.protocol_positions is not None:
            # Tiles follow the protocol slice array (ASCCONV sSliceArray.asSlice[k]); the IPP
            # describes the tile whose protocol position is nearest to it (the first tile for
            # ascending protocols, the last one for descending ones, as in dicom2nifti).
            centre = ipp_tile + col_dir * ps_row * (layout.tile_rows - 1) / 2.0 \
                + row_dir * ps_col * (layout.tile_cols - 1) / 2.0
            pos = layout.protocol_positions
            ipp_index = int(np.argmin(np.linalg.norm(pos - centre, axis=1)))
            step = pos[-1] - pos[0]
            if np.dot(step, sn) < 0:
                sn = -sn
            if ipp_index not in (0, layout.n_tiles - 1):
                notes.append(f"mosaic IPP matches protocol slice {ipp_index}, not an end slice")
        tile0 = ipp_tile - ipp_index * layout.spacing_mm * sn
        reverse = bool(np.dot(sn, normal) < 0)
        origin = tile0 + (layout.n_tiles - 1) * layout.spacing_mm * sn if reverse else tile0
        # Keep the in-plane axes exactly orthogonal to the slice axis.
        direction = np.column_stack([normal, col_dir, row_dir])
        shape = (layout.n_tiles, layout.tile_rows, layout.tile_cols)
        if not np.allclose(np.abs(np.dot(sn, normal)), 1.0, atol=1e-3):
            notes.append("mosaic slice normal differs from the in-plane cross product; "
                         "used the latter")
        err = check_size(shape, max_bytes, uid)
        if err:
            return None, [err], notes, UnsupportedInputError
        return (Plan(frames, shape, (layout.spacing_mm, ps_row, ps_col), origin, direction,
                      layout, reverse, notes), [], notes, SeriesGeometryError)

    if vendors.uih.is_uih_mosaic(frames[0].flat):
        return _plan_uih_mosaic(frames, (rows, cols), row_dir, col_dir, (ps_row, ps_col),
                                max_bytes, notes)

    positions = np.array([f.ipp for f in frames])
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    frames = [frames[i] for i in order]
    proj = proj[order]
    positions = positions[order]
    n = len(frames)
    if n > 1:
        diffs = np.diff(proj)
        dup = int(np.sum(diffs < DUPLICATE_POSITION_ATOL_MM))
        if dup:
            problems.append(
                f"duplicate positions: {dup + 1 if dup == n - 1 else dup} of {n} slices "
                f"share a position along the slice normal (tolerance "
                f"{DUPLICATE_POSITION_ATOL_MM} mm); expected one slice per position. This is "
                "not one volume (e.g. repeated acquisitions or several reconstructions). "
                f"{fix_geom}images of one acquisition."
            )
            return None, problems, notes, SeriesGeometryError
        spacing = float(np.median(diffs))
        rel = np.abs(diffs - spacing) / spacing
        if np.any(rel > SPACING_RTOL):
            gaps = diffs / spacing
            hint = ""
            if np.any(np.abs(gaps - np.round(gaps)) < SPACING_RTOL) and np.max(gaps) > 1.5:
                hint = f" ({int(np.sum(np.round(gaps) - 1))} missing slice(s)?)"
            problems.append(
                f"irregular slice spacing: {float(diffs.min()):.4g}–{float(diffs.max()):.4g} mm "
                f"between neighbouring slices (median {spacing:.4g} mm, rtol {SPACING_RTOL})"
                f"{hint}; expected regular spacing. {fix_geom}complete series."
            )
        # Gantry tilt: positions must lie on the line along the slice normal.
        rel_pos = positions - positions[0]
        along = rel_pos @ normal
        inplane = rel_pos - np.outer(along, normal)
        offset = float(np.max(np.linalg.norm(inplane, axis=1)))
        tilted = offset > max(TILT_ATOL_MM, TILT_RTOL * spacing * (n - 1))
        if tilted and TiltPolicy(tilt) is TiltPolicy.RESAMPLE and not problems:
            tilt_plan = plan_tilt_correction(inplane, along, positions[0], row_dir, col_dir,
                                             (ps_row, ps_col), (n, rows, cols))
            notes.append(tilt_plan.note((n, rows, cols)))
        elif tilted:
            total_inplane = float(np.linalg.norm(inplane[-1]))
            tilt_deg = math.degrees(math.atan2(total_inplane, float(along[-1])))
            gantry = values.get_float(frames[0].flat, "GantryDetectorTilt", strict=False)
            gantry_txt = (f", GantryDetectorTilt (0018,1120) = {gantry:g}"
                          if gantry is not None else "")
            problems.append(
                f"gantry tilt: the stacking direction is {tilt_deg:.2f}° from the slice normal "
                f"(in-plane drift {offset:.3g} mm over {n} slices{gantry_txt}); expected slices "
                "stacked along their normal. Potential fix: reconstruct without tilt, or "
                "load with tilt='resample' (`bonelesion convert --tilt resample`) to resample "
                "onto an orthogonal grid, as dcm2niix's tilt correction does."
            )
        if problems:
            return None, problems, notes, SeriesGeometryError
    else:
        sbs = values.get_float(frames[0].flat, "SpacingBetweenSlices")
        st = values.get_float(frames[0].flat, "SliceThickness")
        if sbs is not None and sbs > 0:
            spacing = sbs
            notes.append("single slice: slice spacing from SpacingBetweenSlices")
        elif st is not None and st > 0:
            spacing = st
            notes.append("single slice: slice spacing from SliceThickness")
        else:
            spacing = 1.0
            notes.append("single slice without thickness: slice spacing set to 1 mm")
    bad = _implausible_spacing(spacing, "slice spacing", frames)
    if bad:
        return None, [bad], notes, SeriesGeometryError
    shape = (n, rows, cols)
    err = check_size(shape, max_bytes, uid)
    if err:
        return None, [err], notes, UnsupportedInputError
    direction = np.column_stack([normal, col_dir, row_dir])
    origin = positions[0]
    if tilt_plan is not None:
        err = check_size(tilt_plan.shape, max_bytes, uid)
        if err:
            return None, [err], notes, UnsupportedInputError
    return (Plan(frames, shape, (spacing, ps_row, ps_col), origin, direction, None, False, notes,
                 tilt_plan), [], notes, SeriesGeometryError)


def _implausible_spacing(spacing_mm: float, what: str, frames: Sequence[Frame]) -> str:
    """Return a refusal when a spacing is implausible (e.g. 1e-320 mm), else ""."""
    try:
        values.plausible_spacing_mm(spacing_mm, what=what, where=f"File {frames[0].path}")
    except InputError:
        return (f"implausible {what} {spacing_mm!r} mm ({_files_text(frames)}); expected "
                f"{values.MIN_SPACING_MM:g}–{values.MAX_SPACING_MM:g} mm. Potential fix: the "
                "header is damaged; re-export the series.")
    return ""


def check_size(shape: tuple[int, int, int], max_bytes: int, uid: str) -> str:
    n_bytes = int(np.prod(shape, dtype=np.int64)) * 4
    if n_bytes > max_bytes or shape[1] > 65535 or shape[2] > 65535:
        return (
            f"absurd size: {shape[0]}×{shape[1]}×{shape[2]} voxels would need "
            f"{n_bytes / 1024**3:.2f} GiB as float32 (limit {max_bytes / 1024**3:.2f} GiB); "
            "refused before decoding. Potential fix: check Rows/Columns/NumberOfFrames, or "
            "raise max_bytes if the data are genuine."
        )
    return ""


def _plan_uih_mosaic(frames: list[Frame], size: tuple[int, int], row_dir: NDArray[np.float64],
                     col_dir: NDArray[np.float64], pixel_spacing: tuple[float, float],
                     max_bytes: int, notes: list[str]
                     ) -> tuple[Plan | None, list[str], list[str], type[InputError]]:
    """Plan a United Imaging mosaic: tile positions from its private sequence (0065,1051)."""
    uid = _uid(frames)
    if len(frames) != 1:
        return None, [
            f"{len(frames)} UIH mosaic images share one stack signature (same b-value, "
            "direction and echo); expected one mosaic per volume. Potential fix: re-export "
            "the series from the scanner/PACS."], notes, SeriesGeometryError
    flat = frames[0].flat
    try:
        n, tile_rows, tile_cols, per_row = vendors.uih.uih_mosaic_tiles(flat)
    except MissingAttributeError as exc:
        return None, [str(exc)], notes, MissingAttributeError
    positions = vendors.uih.uih_tile_positions(flat)
    if positions is None or len(positions) < n:
        found = 0 if positions is None else len(positions)
        return None, [
            f"UIH mosaic {frames[0].path.name}: {found} tile positions in the private sequence "
            f"(0065,1051), expected {n} (one per slice, (0065,1050)); the slices cannot be "
            "placed. Potential fix: export without removing UIH private tags."
        ], notes, MissingAttributeError
    positions = positions[:n]
    normal = np.cross(row_dir, col_dir)
    proj = positions @ normal
    diffs = np.diff(proj)
    reverse = bool(n > 1 and np.all(diffs < 0))
    steps = np.abs(diffs)
    spacing = float(np.median(steps)) if n > 1 else (
        values.get_float(flat, "SpacingBetweenSlices")
        or values.get_float(flat, "SliceThickness") or 1.0)
    bad = _implausible_spacing(spacing, "UIH mosaic slice spacing", frames)
    if bad:
        return None, [bad], notes, SeriesGeometryError
    if n > 1 and (not (np.all(diffs > 0) or reverse)
                  or np.any(np.abs(steps - spacing) > SPACING_RTOL * spacing)):
        return None, [
            f"UIH mosaic {frames[0].path.name}: tile positions (0065,1051) are not regularly "
            f"spaced along the slice normal ({float(steps.min()):.4g}–{float(steps.max()):.4g} "
            f"mm, rtol {SPACING_RTOL}); expected one regular stack. Potential fix: export as "
            "single slices."], notes, SeriesGeometryError
    inplane = (positions - positions[0]) - np.outer(proj - proj[0], normal)
    drift = float(np.max(np.linalg.norm(inplane, axis=1)))
    if drift > max(TILT_ATOL_MM, TILT_RTOL * spacing * (n - 1)):
        return None, [
            f"UIH mosaic {frames[0].path.name}: tiles drift {drift:.3g} mm in-plane from the "
            "slice normal; expected slices stacked along their normal. Potential fix: export "
            "as single slices."], notes, SeriesGeometryError
    layout = MosaicLayout(n_tiles=n, grid=per_row, tile_rows=tile_rows, tile_cols=tile_cols,
                          normal=normal, spacing_mm=spacing,
                          notes=("UIH mosaic: tile positions from (0065,1051)",),
                          tiles_per_row=per_row)
    notes.extend(layout.notes)
    shape = (n, tile_rows, tile_cols)
    err = check_size(shape, max_bytes, uid)
    if err:
        return None, [err], notes, UnsupportedInputError
    origin = positions[-1] if reverse else positions[0]
    direction = np.column_stack([normal, col_dir, row_dir])
    return (Plan(frames, shape, (spacing, *pixel_spacing), origin, direction, layout, reverse,
                 notes), [], notes, SeriesGeometryError)
