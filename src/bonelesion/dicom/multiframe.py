"""Enhanced multi-frame DICOM → one *flat* header per frame, and the stack signature.

An enhanced (multi-frame) object keeps per-frame geometry and acquisition values in the
Shared and Per-Frame Functional Groups Sequences (DICOM PS3.3 C.7.6.16). Every other part of
bonelesion (the vendor rules in `bonelesion.dicom.vendors`, the catalogue, the series
reader) works on *flat* headers that look like classic single-frame data sets: this module
builds them.

A flat header holds

* the top-level attributes of the object, without Pixel Data and the functional-group
  sequences;
* the contents of Philips private per-frame items (2005,140F), where present (lowest
  precedence: they repeat standard attributes with vendor-specific values);
* the contents of every Shared Functional Groups item, then of the frame's Per-Frame
  Functional Groups item (highest precedence), copied to the top level: Pixel Measures →
  PixelSpacing / SliceThickness / SpacingBetweenSlices, Plane Position →
  ImagePositionPatient, Plane Orientation → ImageOrientationPatient, Pixel Value
  Transformation → RescaleSlope / RescaleIntercept, Frame Content → StackID,
  InStackPositionNumber, TemporalPositionIndex, DimensionIndexValues, MR Diffusion →
  DiffusionBValue, DiffusionDirectionality, DiffusionGradientDirectionSequence (and its
  DiffusionGradientOrientation), and so on;
* two renamings: MR/CT Image Frame Type FrameType → ImageType, MR Echo EffectiveEchoTime →
  EchoTime;
* the frame number (1-based) in a private element of block ``bonelesion`` in group 0x0099,
  read back with `frame_number`.

Flat headers share (do not copy) the data elements of the source data set, so flattening
819 frames costs milliseconds, not a deep copy of the object per frame.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag, Tag

from bonelesion.dicom import vendors
from bonelesion.dicom.fastheader import PIXEL_TAGS
from bonelesion.errors import InputError

__all__ = [
    "flatten_frames",
    "is_multiframe",
    "frame_number",
    "StackKey",
    "stack_key",
    "series_stack_keys",
    "series_context_role",
    "FRAME_NUMBER_PRIVATE_GROUP",
    "FRAME_NUMBER_PRIVATE_CREATOR",
]

#: Private block that records which frame a flat header came from.
FRAME_NUMBER_PRIVATE_GROUP = 0x0099
FRAME_NUMBER_PRIVATE_CREATOR = "bonelesion"

_SHARED = Tag(0x5200, 0x9229)  # SharedFunctionalGroupsSequence
_PER_FRAME = Tag(0x5200, 0x9230)  # PerFrameFunctionalGroupsSequence
_FRAME_TYPE = Tag(0x0008, 0x9007)
_IMAGE_TYPE = Tag(0x0008, 0x0008)
_EFFECTIVE_ECHO_TIME = Tag(0x0018, 0x9082)
_ECHO_TIME = Tag(0x0018, 0x0081)
_DIFFUSION_GRADIENT_DIRECTION_SEQ = Tag(0x0018, 0x9076)
_FRAME_NUMBER_TAG = Tag(FRAME_NUMBER_PRIVATE_GROUP, 0x1001)
_FRAME_NUMBER_CREATOR_TAG = Tag(FRAME_NUMBER_PRIVATE_GROUP, 0x0010)


def is_multiframe(ds: Dataset) -> bool:
    """Return True for an object with functional groups (enhanced or legacy multi-frame)."""
    return _PER_FRAME in ds or _SHARED in ds


def frame_number(flat: Dataset) -> int | None:
    """1-based frame number recorded by `flatten_frames`, None for a classic header."""
    if _FRAME_NUMBER_TAG not in flat:
        return None
    return int(flat[_FRAME_NUMBER_TAG].value)


def _merge_item(target: dict[BaseTag, DataElement], item: Dataset) -> None:
    """Copy the elements of one functional-group macro item into ``target`` (a tag dict).

    Private elements are copied only when their private creator does not clash with the
    creator already at that slot (a clash would relabel the top-level private block).
    """
    blocked: set[tuple[int, int]] = set()
    for elem in item:
        tag = elem.tag
        if tag.is_private_creator:
            existing = target.get(tag)
            if existing is not None and existing.value != elem.value:
                blocked.add((tag.group, tag.element))
                continue
        elif tag.is_private:
            if (tag.group, tag.element >> 8) in blocked:
                continue
        if tag == _FRAME_TYPE:
            target[_IMAGE_TYPE] = DataElement(_IMAGE_TYPE, "CS", elem.value)
            continue
        if tag == _EFFECTIVE_ECHO_TIME:
            target[_ECHO_TIME] = DataElement(_ECHO_TIME, "DS", elem.value)
        target[tag] = elem
        if tag == _DIFFUSION_GRADIENT_DIRECTION_SEQ and elem.value:
            for inner in elem.value[0]:
                target[inner.tag] = inner


def flatten_frames(ds: Dataset) -> list[Dataset]:
    """Return one flat header per frame of ``ds``; a classic single-frame object → ``[ds]``.

    Parameters
    ----------
    ds : pydicom.Dataset
        A data set read with or without its pixel data.

    Returns
    -------
    list of pydicom.Dataset
        In frame order. Each flat header shares data elements with ``ds`` (treat them as
        read-only) and carries its 1-based frame number (see `frame_number`).

    Notes
    -----
    Precedence (last wins): top level < Philips private per-frame item < Shared Functional
    Groups < Per-Frame Functional Groups. A frame without a per-frame item (fewer items than
    NumberOfFrames) gets the shared values only.

    References
    ----------
    DICOM PS3.3 C.7.6.16 "Multi-frame Functional Groups Module".

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset(); ds.Rows = 2
    >>> flatten_frames(ds)[0] is ds
    True
    """
    if not is_multiframe(ds):
        return [ds]
    base: dict[BaseTag, DataElement] = {}
    for elem in ds:
        if elem.tag in PIXEL_TAGS or elem.tag in (_SHARED, _PER_FRAME):
            continue
        base[elem.tag] = elem
    shared_items: list[Dataset] = []
    shared_seq = ds.get(_SHARED)
    if shared_seq is not None and shared_seq.value:
        for elem in shared_seq.value[0]:
            if elem.VR == "SQ" and elem.value and not elem.tag.is_private:
                shared_items.append(elem.value[0])
    per_frame_seq = ds.get(_PER_FRAME)
    per_frame = list(per_frame_seq.value) if per_frame_seq is not None else []
    n_frames = int(ds.get("NumberOfFrames", None) or len(per_frame) or 1)
    creator = DataElement(_FRAME_NUMBER_CREATOR_TAG, "LO", FRAME_NUMBER_PRIVATE_CREATOR)
    flats: list[Dataset] = []
    for index in range(n_frames):
        tags = dict(base)
        frame_item = per_frame[index] if index < len(per_frame) else None
        if frame_item is not None:
            for private_item in vendors.philips_private_frame_items(frame_item):
                _merge_item(tags, private_item)
        for item in shared_items:
            _merge_item(tags, item)
        if frame_item is not None:
            for elem in frame_item:
                if elem.VR == "SQ" and elem.value and not elem.tag.is_private:
                    _merge_item(tags, elem.value[0])
        tags[_FRAME_NUMBER_CREATOR_TAG] = creator
        tags[_FRAME_NUMBER_TAG] = DataElement(_FRAME_NUMBER_TAG, "UL", index + 1)
        flat = Dataset(tags)  # type: ignore[arg-type]
        if hasattr(ds, "file_meta"):
            flat.file_meta = ds.file_meta
        flats.append(flat)
    return flats


# ---------------------------------------------------------------------------- stack key
#: Orientation cosines are rounded to this many decimals in the key (≈0.6° buckets).
_KEY_ORIENTATION_DECIMALS = 2
#: b-values rounded to 1 s/mm² in the key.
_KEY_B_VALUE_DECIMALS = 0
#: Gradient directions rounded to 0.01 in the key.
_KEY_DIRECTION_DECIMALS = 2
#: Echo times rounded to 0.01 ms in the key.
_KEY_ECHO_TIME_DECIMALS = 2


@dataclass(frozen=True)
class StackKey:
    """Signature of a stack: frames with equal keys belong to one 3-D volume.

    After nibabel's ``series_signature``: SeriesInstanceUID plus everything that separates
    the volumes one series may hold (echoes, b-values, gradient directions, image types,
    orientations, matrix sizes, diffusion kinds, enhanced StackID and temporal position).
    """

    series_instance_uid: str
    echo_number: int | None
    echo_time_ms: float | None
    b_value_s_per_mm2: float | None
    diffusion_direction: tuple[float, float, float] | None
    image_type: tuple[str, ...]
    orientation: tuple[float, ...] | None
    rows: int
    columns: int
    acquisition_kind: str
    stack_id: str
    temporal_position: int | None
    acquisition_number: int | None

    def __str__(self) -> str:
        parts = [self.series_instance_uid or "(no series UID)"]
        if self.echo_number is not None:
            parts.append(f"echo {self.echo_number}")
        if self.echo_time_ms is not None:
            parts.append(f"TE {self.echo_time_ms:g} ms")
        if self.b_value_s_per_mm2 is not None:
            parts.append(f"b {self.b_value_s_per_mm2:g}")
        if self.diffusion_direction is not None:
            parts.append("dir (" + ", ".join(f"{v:g}" for v in self.diffusion_direction) + ")")
        if self.image_type:
            parts.append("\\".join(self.image_type))
        parts.append(f"{self.rows}x{self.columns}")
        if self.orientation is not None:
            parts.append("iop " + ",".join(f"{v:g}" for v in self.orientation))
        if self.acquisition_kind not in ("", "none"):
            parts.append(self.acquisition_kind)
        if self.stack_id:
            parts.append(f"stack {self.stack_id}")
        if self.temporal_position is not None:
            parts.append(f"t {self.temporal_position}")
        if self.acquisition_number is not None:
            parts.append(f"acq {self.acquisition_number}")
        return " | ".join(parts)


def _round_or_none(value: float | None, decimals: int) -> float | None:
    if value is None:
        return None
    out = round(float(value), decimals)
    return 0.0 if out == 0 else out  # no "-0.0" in keys


def _int_or_none(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _first_int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword, None)
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        items = list(value)  # type: ignore[call-overload]
        value = items[0] if items else None
    return _int_or_none(value)


def is_mosaic(ds: Dataset) -> bool:
    """Return True for a Siemens mosaic (several slices tiled into one image)."""
    image_type = ds.get("ImageType", None) or ()
    if isinstance(image_type, str):
        image_type = [image_type]
    return any(str(t).strip().upper() == "MOSAIC" for t in image_type)


def stack_key(flat: Dataset) -> StackKey:
    """Return the `StackKey` of one flat header (classic data set or flattened frame).

    Uses the vendor rules of `bonelesion.dicom.vendors` for the b-value, gradient
    direction, echo time and diffusion kind.
    """
    image_type = flat.get("ImageType", None) or ()
    if isinstance(image_type, str):
        image_type = [image_type]
    iop = flat.get("ImageOrientationPatient", None)
    orientation: tuple[float, ...] | None = None
    if iop is not None and len(iop) == 6:
        try:
            orientation = tuple(
                _round_or_none(float(v), _KEY_ORIENTATION_DECIMALS) or 0.0 for v in iop
            )
        except (TypeError, ValueError):
            orientation = None
    b_value = vendors.b_value_s_per_mm2(flat)
    direction = vendors.diffusion_direction_lps(flat)
    kind = vendors.diffusion_kind(flat)
    echo_time = vendors.echo_time_ms(flat)
    temporal = _int_or_none(flat.get("TemporalPositionIndex", None))
    if temporal is None:
        temporal = _int_or_none(flat.get("TemporalPositionIdentifier", None))
        # Classic headers often write TemporalPositionIdentifier 1 of 1: not a separator.
        n_temporal = _int_or_none(flat.get("NumberOfTemporalPositions", None))
        if n_temporal is not None and n_temporal <= 1:
            temporal = None
    direction_key: tuple[float, float, float] | None = None
    if direction is not None and all(math.isfinite(v) for v in direction):
        dx, dy, dz = (_round_or_none(v, _KEY_DIRECTION_DECIMALS) or 0.0 for v in direction)
        direction_key = (dx, dy, dz)
    return StackKey(
        series_instance_uid=str(flat.get("SeriesInstanceUID", "") or ""),
        echo_number=_first_int(flat, "EchoNumbers"),
        echo_time_ms=_round_or_none(echo_time, _KEY_ECHO_TIME_DECIMALS),
        b_value_s_per_mm2=_round_or_none(b_value, _KEY_B_VALUE_DECIMALS),
        diffusion_direction=direction_key,
        image_type=tuple(str(t).strip().upper() for t in image_type),
        orientation=orientation,
        rows=int(flat.get("Rows", 0) or 0),
        columns=int(flat.get("Columns", 0) or 0),
        acquisition_kind=getattr(kind, "value", str(kind)),
        stack_id=str(flat.get("StackID", "") or ""),
        temporal_position=temporal,
        acquisition_number=_int_or_none(flat.get("AcquisitionNumber", None))
        if is_mosaic(flat)
        else None,
    )


# ------------------------------------------------------------------ series-level stack keys
# One rule for the reader (`bonelesion.dicom.series.load_series`) and the catalogue
# (`bonelesion.dicom.index`): a stack key depends on its series when a b0 image's only
# diffusion clue is a vendor b-value element of 0.


def series_stack_keys(flats: Sequence[Dataset], keys: Sequence[StackKey]
                      ) -> list[tuple[StackKey, float | None]]:
    """Stack keys of frames with the series context applied (the b0 fill).

    `bonelesion.dicom.vendors.b_values_of_series_s_per_mm2` gives a b-value to images whose
    only diffusion clue is a vendor b-value element of 0, in a series that holds b > 0
    images (e.g. a Philips classic b0). Their key gets that b-value (rounded like
    `stack_key`) and, for b = 0, the diffusion kind ``b0``. Only series that mix keys with
    and without a b-value are looked at; the other keys are returned unchanged.

    Parameters
    ----------
    flats : sequence of Dataset
        Flat headers (see `flatten_frames`) of the frames, of one or several series.
    keys : sequence of StackKey
        ``stack_key(flat)`` of each frame, in the same order.

    Returns
    -------
    list of (StackKey, float or None)
        Per frame: its key, and the b-value in s/mm² that only the series context gave
        (None when the frame's own header decided its key).

    Raises
    ------
    InputError
        If ``flats`` and ``keys`` differ in length.

    Examples
    --------
    >>> series_stack_keys([], [])
    []
    """
    if len(flats) != len(keys):
        raise InputError(f"series_stack_keys: {len(flats)} headers but {len(keys)} keys; "
                         "expected one key per header. Potential fix: pass stack_key(flat) "
                         "of every header.")
    out: list[tuple[StackKey, float | None]] = [(key, None) for key in keys]
    by_series: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_series.setdefault(key.series_instance_uid, []).append(i)
    for indices in by_series.values():
        b_keys = [keys[i].b_value_s_per_mm2 for i in indices]
        if all(b is None for b in b_keys) or all(b is not None for b in b_keys):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already recorded when the keys were made
            values = vendors.b_values_of_series_s_per_mm2([flats[i] for i in indices])
        for i, b_key, b_value in zip(indices, b_keys, values, strict=True):
            if b_key is None and b_value is not None:
                filled = dataclasses.replace(
                    keys[i], b_value_s_per_mm2=float(round(b_value)),
                    acquisition_kind=vendors.DiffusionKind.B0.value if b_value <= 0.0
                    else keys[i].acquisition_kind)
                out[i] = (filled, float(b_value))
    return out


def series_context_role(role: str, series_b_value_s_per_mm2: float | None) -> str:
    """Role of a stack whose b-value only the series context gives (see `series_stack_keys`).

    Parameters
    ----------
    role : str
        ``vendors.stack_role(flat).value`` of the stack's first frame.
    series_b_value_s_per_mm2 : float or None
        The b-value `series_stack_keys` gave that frame (None: its own header decided).

    Returns
    -------
    str
        ``dwi`` instead of ``other`` for such a frame; ``role`` otherwise.

    Examples
    --------
    >>> series_context_role("other", 0.0), series_context_role("other", None)
    ('dwi', 'other')
    """
    if series_b_value_s_per_mm2 is not None and role == vendors.Role.OTHER.value:
        return vendors.Role.DWI.value
    return role
