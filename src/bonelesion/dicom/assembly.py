"""Assembly: a planned, decoded stack → `Stack` with its `Volume` and `SeriesInfo`."""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset

from bonelesion.dicom import values, vendors
from bonelesion.dicom.decode import decode_plan
from bonelesion.dicom.duplicates import drop_duplicate_images
from bonelesion.dicom.geometry import Plan, plan_stack
from bonelesion.dicom.header import Frame
from bonelesion.dicom.stack_key import StackKey, series_context_role
from bonelesion.dicom.tilt import TiltPolicy, apply_tilt_correction
from bonelesion.errors import (
    DamagedFileError,
    InputError,
    SeriesGeometryError,
)
from bonelesion.model.roles import SeriesRole
from bonelesion.model.volume import SeriesInfo, Volume
from bonelesion.units import IntensityUnit

__all__ = [
    "Stack",
    "build_stack",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Stack:
    """One stack of a series: frames that form (or should form) one 3-D volume.

    Parameters
    ----------
    key : StackKey
        The signature shared by all frames of the stack.
    info : SeriesInfo
        Identifiers, role and acquisition values (no patient identifiers).
    files : tuple of str
        Source files in slice order (a multi-frame file appears once).
    volume : Volume or None
        The decoded volume; None when refused or loaded with ``decode=False``.
    problems : tuple of str
        Why the stack was refused; empty when it is usable.
    warnings : tuple of str
        Data-quality caveats of a usable (or refused) stack.
    shape : (3,) tuple of int or None
        (slices, rows, columns) when the geometry is valid, else None.
    spacing_mm, origin_lps_mm : (3,) tuple of float or None
        Geometry in the Volume conventions (None when refused).
    direction_lps : (3, 3) tuple of tuples or None
        Column *k* is the LPS unit vector of axis *k* (None when refused).
    role_reason : str
        Why the stack is not a volume to measure (``info.role`` ``localizer`` or
        ``other``: a localizer, a Secondary Capture screen capture, a dose report); empty
        otherwise.
    """

    key: StackKey
    info: SeriesInfo
    files: tuple[str, ...]
    volume: Volume | None = None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    shape: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    origin_lps_mm: tuple[float, float, float] | None = None
    direction_lps: tuple[tuple[float, float, float], ...] | None = None
    role_reason: str = ""
    error_class: type[InputError] = field(default=SeriesGeometryError, repr=False)

    @property
    def usable(self) -> bool:
        """True when the stack was not refused."""
        return not self.problems

    def error(self) -> InputError | None:
        """Return the exception that describes a refusal (None when usable)."""
        if not self.problems:
            return None
        return self.error_class(
            f"Series {self.info.series_instance_uid or '(no UID)'} stack [{self.key}] was "
            "refused: " + " ".join(self.problems)
        )

    def raise_if_refused(self) -> None:
        """Raise the refusal error of this stack, if any.

        Raises
        ------
        SeriesGeometryError, MissingAttributeError, UnsupportedInputError
        """
        err = self.error()
        if err is not None:
            raise err


def _series_info(frames: Sequence[Frame], files: tuple[str, ...], notes: Sequence[str]
                 ) -> tuple[SeriesInfo, str]:
    rep = frames[0].flat
    sops: list[str] = []
    for f in frames:
        if f.sop_instance_uid and f.sop_instance_uid not in sops:
            sops.append(f.sop_instance_uid)
    call = vendors.classify_stack(rep)
    role = call.role.value
    b_value = vendors.b_value_s_per_mm2(rep)
    series_b = frames[0].series_b_value_s_per_mm2
    if b_value is None and series_b is not None:
        # a b0 whose only clue is the vendor b-value element, in a series with b > 0 images
        b_value = series_b
        role = series_context_role(str(role), series_b)
        notes = [*notes, f"b = {series_b:g} s/mm² from the vendor b-value element, in a "
                 "series that also holds b > 0 images"]
    info = SeriesInfo(
        series_instance_uid=values.get_uid(rep, "SeriesInstanceUID", strict=False) or "",
        frame_of_reference_uid=values.get_uid(rep, "FrameOfReferenceUID", strict=False) or "",
        study_instance_uid=values.get_uid(rep, "StudyInstanceUID", strict=False) or "",
        modality=(values.get_cs(rep, "Modality", strict=False) or ("",))[0],
        manufacturer=values.get_text(rep, "Manufacturer", strict=False) or "",
        role=str(role),
        echo_time_ms=vendors.echo_time_ms(rep),
        repetition_time_ms=values.get_float(rep, "RepetitionTime", strict=False),
        b_value_s_per_mm2=b_value,
        magnetic_field_strength_t=vendors.magnetic_field_strength_t(rep),
        diffusion_direction=vendors.diffusion_direction_lps(rep),
        image_type=values.get_cs(rep, "ImageType", strict=False),
        series_description=values.get_text(rep, "SeriesDescription", strict=False) or "",
        series_number=values.get_int(rep, "SeriesNumber", strict=False),
        sop_instance_uids=tuple(sops),
        source_files=files,
        notes=tuple(notes),
    )
    return info, call.reason


def _ordered_files(frames: Sequence[Frame]) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for f in frames:
        p = str(f.path)
        if p not in seen:
            seen.add(p)
            out.append(p)
    return tuple(out)


def _acquisition_order(frames: Sequence[Frame]) -> tuple[float, float, float]:
    inst = [values.get_int(f.flat, "InstanceNumber", strict=False) or 0 for f in frames]
    acq = [a for a in (values.get_int(f.flat, "AcquisitionNumber", strict=False)
                       for f in frames) if a is not None]
    idx = [f.index if f.index is not None else 0 for f in frames]
    return (min(acq) if acq else 0, min(inst) if inst else 0, min(idx))


def _files_text(files: Sequence[str]) -> str:
    """Name the files of a stack for a refusal: all when few, else first … last."""
    names = [values.printable(os.path.basename(f)) for f in files]
    if not names:
        return "no file"
    folder = values.printable(os.path.dirname(files[0]))
    if len(names) <= 4:
        return f"{', '.join(names)} in {folder}"
    return f"{len(names)} files in {folder}: {names[0]} … {names[-1]}"


def _naming_files(problem: str, files: Sequence[str]) -> str:
    """``problem``, with the stack's files appended unless it names one of them already."""
    if any(values.printable(os.path.basename(f)) in problem for f in files):
        return problem
    return f"{problem.rstrip()} (files: {_files_text(files)})"


def build_stack(key: StackKey, frames: list[Frame], *, decode: bool, max_bytes: int,
                read_warnings: Sequence[str], fast_path: bool = True,
                tilt: TiltPolicy = TiltPolicy.REFUSE) -> tuple[Stack, list[Stack]]:
    """Plan, decode and assemble one stack; a refusal is a `Stack` with ``problems``.

    A file found damaged while the stack is read (its pixel data cannot be decoded, or a
    duplicate of a slice is truncated) is left out of the stack and returned as a refused
    one-file stack of its own; the stack is then planned again without it. A damaged or
    duplicate file is never the reason a stack is lost (the stack may still be refused,
    e.g. for the gap the file leaves: both are reported).

    Returns
    -------
    (Stack, list of Stack)
        The stack, and a refused stack for each file left out.
    """
    left_out: list[Stack] = []
    extra_warnings: list[str] = []
    while True:
        try:
            stack = _build_once(key, frames, decode=decode, max_bytes=max_bytes,
                                read_warnings=[*read_warnings, *extra_warnings],
                                fast_path=fast_path, tilt=tilt)
            return stack, left_out
        except DamagedFileError as exc:
            bad = [f for f in frames if values.printable(f.path) == exc.path]
            if not bad:
                raise
            frames = [f for f in frames if values.printable(f.path) != exc.path]
            note = f"{exc} (this file was left out of the stack)"
            logger.warning("Series %s: %s", key.series_instance_uid, note)
            extra_warnings.append(note)
            left_out.append(_refused_frames(bad, exc))
            if not frames:
                # every file was damaged: the first one's refusal stands for the stack
                return left_out[0], left_out[1:]


#: Role reason of a file that could not be read or was left out of its stack.
_LEFT_OUT = "a damaged file, left out of every stack"


def _refused_frames(frames: Sequence[Frame], exc: InputError) -> Stack:
    """Return a refused stack holding the frames of one file left out (names it)."""
    files = _ordered_files(frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file is refused: its odd values do not matter
        info, _ = _series_info(frames, files, ())
    # a left-out file plays no role: series policies never pick it as a volume
    info = dataclasses.replace(info, role=SeriesRole.OTHER.value)
    return Stack(key=_empty_key(info), info=info, files=files, role_reason=_LEFT_OUT,
                 problems=(_naming_files(str(exc), files),), error_class=type(exc))


def _empty_key(info: SeriesInfo, rows: int = 0, columns: int = 0) -> StackKey:
    return StackKey(
        series_instance_uid=info.series_instance_uid, echo_number=None, echo_time_ms=None,
        b_value_s_per_mm2=None, diffusion_direction=None, image_type=tuple(info.image_type),
        orientation=None, rows=rows, columns=columns, acquisition_kind="", stack_id="",
        temporal_position=None, acquisition_number=None)


def _build_once(key: StackKey, frames: list[Frame], *, decode: bool, max_bytes: int,
                read_warnings: Sequence[str], fast_path: bool = True,
                tilt: TiltPolicy = TiltPolicy.REFUSE) -> Stack:
    """One attempt of `build_stack` (raises `DamagedFileError` for a damaged file)."""
    all_files = _ordered_files(frames)
    duplicates = drop_duplicate_images(frames, fast_path=fast_path)
    plan: Plan | None = None
    problems: list[str] = [duplicates.problem]
    notes: list[str] = []
    error_class: type[InputError] = SeriesGeometryError
    if not duplicates.problem:
        try:
            plan, problems, notes, error_class = plan_stack(duplicates.frames, max_bytes,
                                                            tilt=tilt)
        except DamagedFileError:
            raise
        except InputError as exc:  # a value the plan needs is invalid: the message names it
            plan, problems, notes, error_class = None, [str(exc)], [], type(exc)
    notes = [*duplicates.notes, *notes]
    for identity_note in sorted({f.identity_note for f in frames} - {""}):
        logger.warning("Series %s: %s", key.series_instance_uid, identity_note)
        notes = [identity_note, *notes]
    ordered = plan.frames if plan is not None else frames
    files = _ordered_files(ordered)
    info, role_reason = _series_info(ordered, files, notes)
    stack_warnings = list(read_warnings) + list(notes)
    if plan is None:
        problems = [_naming_files(p, all_files) for p in problems]
        for p in problems:
            logger.warning("Series %s stack [%s] refused: %s", info.series_instance_uid, key, p)
        return Stack(key=key, info=info, files=files, role_reason=role_reason,
                     problems=tuple(problems),
                     warnings=tuple(stack_warnings), error_class=error_class)
    out_shape = plan.tilt.shape if plan.tilt is not None else plan.shape
    out_origin = plan.tilt.origin_lps_mm if plan.tilt is not None else plan.origin_lps_mm
    geometry: dict[str, Any] = dict(
        shape=out_shape,
        spacing_mm=tuple(float(s) for s in plan.spacing_mm),
        origin_lps_mm=tuple(float(o) for o in out_origin),
        direction_lps=tuple(tuple(float(v) for v in row) for row in plan.direction_lps),
    )
    volume: Volume | None = None
    if decode:
        ct = info.modality.upper() == "CT"
        try:
            array = decode_plan(plan, ct, fast_path=fast_path)
            if plan.tilt is not None:
                array = apply_tilt_correction(array, plan.tilt)
        except DamagedFileError:
            raise
        except InputError as exc:  # a missing decoder plugin: the whole stack
            return Stack(key=key, info=info, files=files, role_reason=role_reason,
                         problems=(_naming_files(str(exc), files),),
                         warnings=tuple(stack_warnings), error_class=type(exc))
        unit = IntensityUnit.HU if ct else IntensityUnit.ARBITRARY
        if info.role == SeriesRole.ADC.value:
            try:
                factor = vendors.adc_scale_to_mm2_per_s(ordered[0].flat, array)
            except InputError as exc:
                return Stack(key=key, info=info, files=files, role_reason=role_reason,
                             problems=(_naming_files(str(exc), files),),
                             warnings=tuple(stack_warnings), error_class=type(exc))
            array = array.astype(np.float32, copy=False)
            array *= np.float32(factor)
            unit = IntensityUnit.MM2_PER_S
        try:
            volume = Volume(
                array=array,
                spacing_mm=plan.spacing_mm,
                origin_lps_mm=tuple(out_origin),
                direction_lps=plan.direction_lps,
                intensity_unit=unit,
                series=info,
            )
        except InputError as exc:
            return Stack(key=key, info=info, files=files, role_reason=role_reason,
                         problems=(_naming_files(str(exc), files),),
                         warnings=tuple(stack_warnings), error_class=SeriesGeometryError)
    return Stack(key=key, info=info, files=files, role_reason=role_reason,
                 volume=volume,
                 warnings=tuple(stack_warnings), **geometry)


def refused_file_stack(file: Path, ds: Dataset, exc: InputError) -> Stack:
    """Return a refused one-file stack for a file that cannot be read (names the file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file is refused: its odd values do not matter
        series_uid = values.get_uid(ds, "SeriesInstanceUID", strict=False) or ""
        image_type = values.get_cs(ds, "ImageType", strict=False)
        rows = values.get_int(ds, "Rows", strict=False) or 0
        columns = values.get_int(ds, "Columns", strict=False) or 0
        modality = (values.get_cs(ds, "Modality", strict=False) or ("",))[0]
        manufacturer = values.get_text(ds, "Manufacturer", strict=False) or ""
    info = SeriesInfo(series_instance_uid=series_uid, modality=modality,
                      manufacturer=manufacturer, image_type=image_type,
                      role=SeriesRole.OTHER.value, source_files=(str(file),))
    files = (str(file),)
    return Stack(key=_empty_key(info, rows, columns), info=info, files=files,
                 role_reason=_LEFT_OUT, problems=(_naming_files(str(exc), files),),
                 error_class=type(exc))
