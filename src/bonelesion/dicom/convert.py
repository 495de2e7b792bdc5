"""DICOM export → NIfTI (.nii.gz) + JSON sidecars, the way dcm2niix lays them out.

* one NIfTI per usable stack; all DWI stacks of one series that share one grid (and
  stacks that differ only by temporal position) become ONE 4-D file, volumes in
  acquisition order, with a ``.bval`` beside it and a ``.bvec`` when any volume is
  directional (FSL convention: image-axis components, x negated for a positive-determinant
  affine, like dcm2niix);
* NIfTI axis order is (column, row, slice), rows written bottom-up as dcm2niix does, and
  the affine is RAS (`Volume.affine_ras`);
* a JSON sidecar per file (UIDs, role, modality, manufacturer, echo time, b-values,
  warnings, problems; no patient identifiers);
* ``summary.json`` lists what was written and every refused stack with its problems;
* with ``tilt="resample"`` a gantry-tilted CT is resampled onto an orthogonal grid and
  written as ``…_Tilt`` (dcm2niix's name for its tilt-corrected output).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.dicom.series import Stack, load_series
from bonelesion.dicom.tilt import TILT_NOTE_PREFIX, TiltPolicy
from bonelesion.errors import InputError
from bonelesion.model.roles import SeriesRole
from bonelesion.model.volume import Volume

__all__ = ["ConversionSummary", "convert_export", "nifti_affine_ras", "fsl_bvec",
           "exact_integer_array"]

logger = logging.getLogger(__name__)

SIDECAR_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class ConversionSummary:
    """What `convert_export` wrote and what it refused."""

    written: tuple[Path, ...]
    refused: tuple[dict[str, Any], ...]

    @property
    def n_refused(self) -> int:
        """Number of refused stacks."""
        return len(self.refused)


def nifti_affine_ras(volume: Volume) -> NDArray[np.float64]:
    """RAS affine of the NIfTI voxel axes written here: (column, reversed row, slice).

    The rows are written bottom-up, as dcm2niix does, so that the voxel layout (and with
    it the FSL bvec of `fsl_bvec`) equals dcm2niix's for the same series.
    """
    affine = volume.affine_ras[:, [2, 1, 0, 3]].copy()
    n_rows = volume.shape[1]
    affine[:3, 3] += affine[:3, 1] * (n_rows - 1)
    affine[:3, 1] = -affine[:3, 1]
    return affine


def nifti_array(array: NDArray[Any]) -> NDArray[Any]:
    """Reorder a (slice, row, column) array into the NIfTI voxels of `nifti_affine_ras`."""
    return array[:, ::-1, :].transpose(2, 1, 0)


def exact_integer_array(array: NDArray[Any]) -> NDArray[Any]:
    """``array`` as int16 or uint16 when every value is an integer in that range, else as is.

    Rescaled MR volumes are float32 even when every voxel holds a whole number (slope 1,
    intercept 0): written as 16-bit integers they keep every value exactly, take half the
    bytes and half the gzip time (dcm2niix writes its integer volumes the same way).

    Examples
    --------
    >>> exact_integer_array(np.array([0.0, 4095.0], dtype=np.float32)).dtype
    dtype('uint16')
    >>> exact_integer_array(np.array([0.5], dtype=np.float32)).dtype
    dtype('float32')
    """
    if array.dtype.kind != "f" or array.size == 0:
        return array
    lo, hi = float(np.min(array)), float(np.max(array))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return array
    if lo >= 0 and hi <= 65535:
        target: type[np.integer[Any]] = np.uint16
    elif lo >= -32768 and hi <= 32767:
        target = np.int16
    else:
        return array
    converted = array.astype(target)
    if not np.array_equal(converted, array):  # a fraction somewhere: keep the floats
        return array
    return converted


def fsl_bvec(volume: Volume, direction_lps: Sequence[float] | None) -> NDArray[np.float64]:
    """Gradient direction in FSL/dcm2niix bvec convention for the NIfTI written here.

    Components along the NIfTI voxel axes (column, reversed row, slice); the first is
    negated when the NIfTI affine has a positive determinant (FSL's radiological voxel
    convention), as dcm2niix does.
    """
    if direction_lps is None:
        return np.zeros(3)
    g = np.asarray(direction_lps, dtype=np.float64)
    d = volume.direction_lps
    v = np.array([g @ d[:, 2], -(g @ d[:, 1]), g @ d[:, 0]])
    if np.linalg.det(nifti_affine_ras(volume)[:3, :3]) > 0:
        v[0] = -v[0]
    return v


def _tilt_corrected(stack: Stack) -> bool:
    return any(n.startswith(TILT_NOTE_PREFIX) for n in stack.info.notes)


#: Longest description part of an output name (file systems allow 255 bytes per name).
_NAME_PART_MAX_CHARS = 64


def _safe(text: str) -> str:
    """Make a file-name part: letters, digits, ``.``, ``_``, ``-``; at most 64 characters."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "x")[:_NAME_PART_MAX_CHARS]


def _groups(stacks: Sequence[Stack]) -> list[list[Stack]]:
    """Usable stacks grouped into output files (4-D for DWI / temporal series)."""
    groups: list[list[Stack]] = []
    for stack in stacks:
        if not stack.usable or stack.volume is None:
            continue
        placed = False
        for group in groups:
            head = group[0]
            if head.info.series_instance_uid != stack.info.series_instance_uid:
                continue
            assert head.volume is not None
            if not head.volume.geometry_equal(stack.volume):
                continue
            both_dwi = head.info.role == stack.info.role == SeriesRole.DWI.value
            same_but_time = dataclasses.replace(head.key, temporal_position=None) == \
                dataclasses.replace(stack.key, temporal_position=None)
            if both_dwi or same_but_time:
                group.append(stack)
                placed = True
                break
        if not placed:
            groups.append([stack])
    return groups


def _sidecar(group: Sequence[Stack]) -> dict[str, Any]:
    info = group[0].info
    vol = group[0].volume
    assert vol is not None
    return {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "series_instance_uid": info.series_instance_uid,
        "study_instance_uid": info.study_instance_uid,
        "frame_of_reference_uid": info.frame_of_reference_uid,
        "series_number": info.series_number,
        "series_description": info.series_description,
        "modality": info.modality,
        "manufacturer": info.manufacturer,
        "role": info.role,
        "image_type": list(info.image_type),
        "echo_time_ms": info.echo_time_ms,
        "repetition_time_ms": info.repetition_time_ms,
        "magnetic_field_strength_t": info.magnetic_field_strength_t,
        "b_values_s_per_mm2": [s.info.b_value_s_per_mm2 for s in group],
        "diffusion_directions_lps": [
            list(s.info.diffusion_direction) if s.info.diffusion_direction else None for s in group
        ],
        "intensity_unit": vol.intensity_unit.value,
        "shape": list(vol.shape),
        "n_volumes": len(group),
        "spacing_mm": list(vol.spacing_mm),
        "sop_instance_uids": [uid for s in group for uid in s.info.sop_instance_uids],
        "warnings": sorted({w for s in group for w in s.warnings}),
        "notes": sorted({n for s in group for n in s.info.notes}),
        "tilt_corrected": any(_tilt_corrected(s) for s in group),
        "problems": [p for s in group for p in s.problems],
    }


def convert_export(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    tilt: TiltPolicy | str = TiltPolicy.REFUSE,
) -> ConversionSummary:
    """Convert every usable stack under ``source`` to NIfTI in ``out_dir``.

    Parameters
    ----------
    source : path or iterable of paths
        DICOM folder(s) or files.
    out_dir : path
        Created if needed.
    force : bool
        Overwrite existing output files (otherwise FileExistsError).
    tilt : {"refuse", "resample"}
        Gantry-tilted CT: refuse (default) or resample onto an orthogonal grid; a resampled
        stack is written as ``…_Tilt.nii.gz`` (as dcm2niix) with ``"tilt_corrected": true``
        and the correction in its sidecar's ``notes``.

    Returns
    -------
    ConversionSummary

    Raises
    ------
    FileExistsError
        If an output file exists and ``force`` is False.
    InputError
        If ``source`` does not exist.
    """
    import nibabel as nib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stacks = load_series(source, tilt=tilt)
    written: list[Path] = []
    used_names: set[str] = set()
    for group in _groups(stacks):
        head = group[0]
        info = head.info
        base = f"{info.series_number if info.series_number is not None else 0:04d}_" \
               f"{_safe(info.series_description or info.modality)}_{info.role}"
        if len(group) == 1:
            if head.key.echo_number is not None:
                base += f"_e{head.key.echo_number}"
            if "FIELD_MAP" in {t.upper() for t in info.image_type}:
                base += "_fieldmap"
        if _tilt_corrected(head):
            base += "_Tilt"
        name = base
        k = 2
        while name in used_names:
            name = f"{base}_{k}"
            k += 1
        used_names.add(name)
        nii_path = out / f"{name}.nii.gz"
        paths = [nii_path, out / f"{name}.json"]
        is_dwi = head.info.role == SeriesRole.DWI.value
        if is_dwi:
            paths.append(out / f"{name}.bval")
        if not force:
            for p in paths:
                if p.exists():
                    raise FileExistsError(
                        f"{p} exists; expected a fresh output folder. Potential fix: pass "
                        "--force to overwrite, or choose another OUT_DIR."
                    )
        volumes = [s.volume for s in group]
        assert all(v is not None for v in volumes)
        arrays = [nifti_array(v.array) for v in volumes if v is not None]
        data = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=-1)
        first = volumes[0]
        assert first is not None
        image = nib.Nifti1Image(exact_integer_array(np.asarray(data)), nifti_affine_ras(first))
        image.header.set_xyzt_units("mm", "sec")
        image.set_qform(nifti_affine_ras(first), code=1)
        image.set_sform(nifti_affine_ras(first), code=1)
        nib.save(image, nii_path)
        written.append(nii_path)
        (out / f"{name}.json").write_text(json.dumps(_sidecar(group), indent=2))
        written.append(out / f"{name}.json")
        if is_dwi:
            bvals = [s.info.b_value_s_per_mm2 or 0.0 for s in group]
            (out / f"{name}.bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
            written.append(out / f"{name}.bval")
            if any(s.info.diffusion_direction is not None for s in group):
                vecs = np.array([fsl_bvec(first, s.info.diffusion_direction) for s in group]).T
                (out / f"{name}.bvec").write_text(
                    "\n".join(" ".join(f"{x:.6f}" for x in row) for row in vecs) + "\n"
                )
                written.append(out / f"{name}.bvec")
        logger.info("Wrote %s (%d volume(s))", nii_path.name, len(group))
    refused = tuple(
        {
            "series_instance_uid": s.info.series_instance_uid,
            "stack": str(s.key),
            "role": s.info.role,
            "n_files": len(s.files),
            "problems": list(s.problems),
        }
        for s in stacks
        if not s.usable
    )
    summary = {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "written": [p.name for p in written if p.suffix == ".gz"],
        "refused": list(refused),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if not written and not refused:
        raise InputError(
            f"{source}: no DICOM image stack found; expected at least one. Potential fix: "
            "check the folder (see the log for skipped files)."
        )
    return ConversionSummary(written=tuple(written), refused=refused)
