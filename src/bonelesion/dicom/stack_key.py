"""Stack signature: which frames form one 3-D volume (`StackKey`, `stack_key`).

One rule for the reader (`bonelesion.dicom.series.load_series`) and the catalogue
(`bonelesion.dicom.index`), after nibabel's ``series_signature``: SeriesInstanceUID plus
everything that separates the volumes one series may hold. `series_stack_keys` applies the
series context (a b0 whose only diffusion clue is a vendor b-value element of 0).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset

from bonelesion.dicom import values, vendors
from bonelesion.dicom.vendors.ge import ge_volume_label
from bonelesion.dicom.vendors.siemens import is_mosaic
from bonelesion.errors import (
    InputError,
)

__all__ = [
    "StackKey",
    "stack_key",
    "series_stack_keys",
    "series_context_role",
]

logger = logging.getLogger(__name__)


#: Orientation cosines are rounded to this many decimals in the key (≈0.6° buckets).
_KEY_ORIENTATION_DECIMALS = 2


#: b-values rounded to 1 s/mm² in the key.
_KEY_B_VALUE_DECIMALS = 0


#: Gradient directions rounded to 0.01 in the key.
_KEY_DIRECTION_DECIMALS = 2


#: Echo times rounded to 0.01 ms in the key.
_KEY_ECHO_TIME_DECIMALS = 2

#: Diffusion kinds whose volumes may need a vendor label to be told apart.
_DWI_KINDS = frozenset({vendors.DiffusionKind.B0, vendors.DiffusionKind.DIRECTIONAL,
                        vendors.DiffusionKind.TRACE})


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
    #: Vendor label of a diffusion volume when b-value and direction cannot tell the
    #: volumes apart (GE (0043,xx30), `bonelesion.dicom.vendors.ge.ge_volume_label`).
    vendor_volume: str = ""

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
        if self.vendor_volume:
            parts.append(f"vol {self.vendor_volume}")
        return " | ".join(parts)


def _round_or_none(value: float | None, decimals: int) -> float | None:
    if value is None:
        return None
    out = round(float(value), decimals)
    return 0.0 if out == 0 else out  # no "-0.0" in keys


def stack_key(flat: Dataset) -> StackKey:
    """Return the `StackKey` of one flat header (classic data set or flattened frame).

    Uses the vendor rules of `bonelesion.dicom.vendors` for the b-value, gradient
    direction, echo time and diffusion kind; every value is read through
    `bonelesion.dicom.values` (descriptive values that are invalid are ignored with a
    `DataQualityWarning`).

    Raises
    ------
    InputError
        If SeriesInstanceUID, Rows or Columns is invalid (names the file and the value).
    """
    image_type = values.get_cs(flat, "ImageType", strict=False)
    iop = values.get_floats(flat, "ImageOrientationPatient", strict=False)
    orientation: tuple[float, ...] | None = None
    if iop is not None and len(iop) == 6:
        # as `_round_or_none` (no "-0.0"), inline: six values of every frame
        orientation = tuple([r if (r := round(v, _KEY_ORIENTATION_DECIMALS)) else 0.0
                             for v in iop])
    # kind, b-value and direction as `diffusion_kind`, `b_value_s_per_mm2` and
    # `diffusion_direction_lps` give them, the evidence read once
    kind, b_value, direction = vendors.diffusion_facts(flat)
    echo_time = vendors.echo_time_ms(flat)
    temporal = values.get_int(flat, "TemporalPositionIndex", strict=False)
    if temporal is None:
        temporal = values.get_int(flat, "TemporalPositionIdentifier", strict=False)
        # Classic headers often write TemporalPositionIdentifier 1 of 1: not a separator.
        n_temporal = values.get_int(flat, "NumberOfTemporalPositions", strict=False)
        if n_temporal is not None and n_temporal <= 1:
            temporal = None
    direction_key: tuple[float, float, float] | None = None
    if direction is not None and all(math.isfinite(v) for v in direction):
        dx, dy, dz = (_round_or_none(v, _KEY_DIRECTION_DECIMALS) or 0.0 for v in direction)
        direction_key = (dx, dy, dz)
    return StackKey(
        series_instance_uid=values.get_uid(flat, "SeriesInstanceUID") or "",
        echo_number=values.get_int(flat, "EchoNumbers", strict=False),
        echo_time_ms=_round_or_none(echo_time, _KEY_ECHO_TIME_DECIMALS),
        b_value_s_per_mm2=_round_or_none(b_value, _KEY_B_VALUE_DECIMALS),
        diffusion_direction=direction_key,
        image_type=image_type,
        orientation=orientation,
        rows=values.get_int(flat, "Rows") or 0,
        columns=values.get_int(flat, "Columns") or 0,
        acquisition_kind=getattr(kind, "value", str(kind)),
        stack_id=values.get_text(flat, "StackID", strict=False) or "",
        temporal_position=temporal,
        acquisition_number=values.get_int(flat, "AcquisitionNumber", strict=False)
        if is_mosaic(flat)
        else None,
        vendor_volume=ge_volume_label(flat) if kind in _DWI_KINDS else "",
    )


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
