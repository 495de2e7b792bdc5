"""Assembly: a planned, decoded stack → `Stack` with its `Volume` and `SeriesInfo`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset

from bonelesion.dicom import vendors
from bonelesion.dicom.decode import _transfer_syntax, decode_plan
from bonelesion.dicom.duplicates import drop_duplicate_images
from bonelesion.dicom.geometry import Plan, plan_stack
from bonelesion.dicom.header import Frame
from bonelesion.dicom.stack_key import StackKey, series_context_role
from bonelesion.dicom.tilt import TiltPolicy, apply_tilt_correction
from bonelesion.errors import (
    InputError,
    SeriesGeometryError,
    UnsupportedInputError,
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

    def _float(keyword: str) -> float | None:
        value = rep.get(keyword, None)
        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    image_type = rep.get("ImageType", None) or ()
    if isinstance(image_type, str):
        image_type = [image_type]
    sops: list[str] = []
    for f in frames:
        if f.sop_instance_uid and f.sop_instance_uid not in sops:
            sops.append(f.sop_instance_uid)
    series_number = rep.get("SeriesNumber", None)
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
        series_instance_uid=str(rep.get("SeriesInstanceUID", "") or ""),
        frame_of_reference_uid=str(rep.get("FrameOfReferenceUID", "") or ""),
        study_instance_uid=str(rep.get("StudyInstanceUID", "") or ""),
        modality=str(rep.get("Modality", "") or ""),
        manufacturer=str(rep.get("Manufacturer", "") or ""),
        role=str(role),
        echo_time_ms=vendors.echo_time_ms(rep),
        repetition_time_ms=_float("RepetitionTime"),
        b_value_s_per_mm2=b_value,
        magnetic_field_strength_t=vendors.magnetic_field_strength_t(rep),
        diffusion_direction=vendors.diffusion_direction_lps(rep),
        image_type=tuple(str(t) for t in image_type),
        series_description=str(rep.get("SeriesDescription", "") or ""),
        series_number=int(series_number) if series_number not in (None, "") else None,
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
    inst = [int(f.flat.get("InstanceNumber", 0) or 0) for f in frames]
    acq = [int(f.flat.get("AcquisitionNumber", 0) or 0) for f in frames if
           str(f.flat.get("AcquisitionNumber", "") or "").strip().lstrip("-").isdigit()]
    idx = [f.index if f.index is not None else 0 for f in frames]
    return (min(acq) if acq else 0, min(inst) if inst else 0, min(idx))


def build_stack(key: StackKey, frames: list[Frame], *, decode: bool, max_bytes: int,
                 read_warnings: Sequence[str], fast_path: bool = True,
                 tilt: TiltPolicy = TiltPolicy.REFUSE) -> Stack:
    """Plan, decode and assemble one stack; a refusal is a `Stack` with ``problems``."""
    duplicates = drop_duplicate_images(frames, fast_path=fast_path)
    plan: Plan | None = None
    problems: list[str] = [duplicates.problem]
    notes: list[str] = []
    error_class: type[InputError] = SeriesGeometryError
    if not duplicates.problem:
        plan, problems, notes, error_class = plan_stack(duplicates.frames, max_bytes, tilt=tilt)
    notes = [*duplicates.notes, *notes]
    for identity_note in sorted({f.identity_note for f in frames} - {""}):
        logger.warning("Series %s: %s", key.series_instance_uid, identity_note)
        notes = [identity_note, *notes]
    ordered = plan.frames if plan is not None else frames
    files = _ordered_files(ordered)
    info, role_reason = _series_info(ordered, files, notes)
    stack_warnings = list(read_warnings) + list(notes)
    if plan is None:
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
        except InputError as exc:
            return Stack(key=key, info=info, files=files, role_reason=role_reason,
                     problems=(str(exc),),
                         warnings=tuple(stack_warnings), error_class=type(exc))
        except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
            msg = (
                f"pixel data could not be decoded ({type(exc).__name__}: {exc}); transfer "
                f"syntax {_transfer_syntax(ordered[0].flat)}. "
                "Potential fix: install the pydicom decoder plugin for this syntax "
                "(pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls) or re-export uncompressed."
            )
            return Stack(key=key, info=info, files=files, role_reason=role_reason,
                     problems=(msg,),
                         warnings=tuple(stack_warnings), error_class=UnsupportedInputError)
        unit = IntensityUnit.HU if ct else IntensityUnit.ARBITRARY
        if info.role == SeriesRole.ADC.value:
            try:
                factor = vendors.adc_scale_to_mm2_per_s(ordered[0].flat, array)
            except InputError as exc:
                return Stack(key=key, info=info, files=files, role_reason=role_reason,
                     problems=(str(exc),),
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
                     problems=(str(exc),),
                         warnings=tuple(stack_warnings), error_class=SeriesGeometryError)
    return Stack(key=key, info=info, files=files, role_reason=role_reason,
                     volume=volume,
                 warnings=tuple(stack_warnings), **geometry)


def refused_file_stack(file: Path, ds: Dataset, exc: InputError) -> Stack:
    flat = Dataset()
    for kw in ("SeriesInstanceUID", "Modality", "Manufacturer", "Rows", "Columns", "ImageType"):
        if kw in ds:
            setattr(flat, kw, ds.get(kw))
    key = StackKey(
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""), echo_number=None,
        echo_time_ms=None, b_value_s_per_mm2=None, diffusion_direction=None,
        image_type=tuple(str(t) for t in (ds.get("ImageType", None) or ())), orientation=None,
        rows=int(ds.get("Rows", 0) or 0), columns=int(ds.get("Columns", 0) or 0),
        acquisition_kind="", stack_id="", temporal_position=None, acquisition_number=None,
    )
    info = SeriesInfo(series_instance_uid=key.series_instance_uid,
                      modality=str(ds.get("Modality", "") or ""),
                      manufacturer=str(ds.get("Manufacturer", "") or ""),
                      source_files=(str(file),))
    return Stack(key=key, info=info, files=(str(file),), problems=(str(exc),),
                 error_class=type(exc))
