"""Series reader: DICOM files → stacks → `Volume` (`load_series`, `load_volume`).

The reader follows highdicom's ``get_volume_from_series`` and nibabel's ``series_signature``
(STYLE.md §2); each step is its own module:

1. **Discover** files (`bonelesion.dicom.discovery`: nested folders, links without loops,
   regular files only, any or no extension, with or without the Part 10 preamble; DICOMDIR
   and non-DICOM files are skipped and reported).
2. **Read headers** and **flatten** enhanced multi-frame objects into one header per frame
   (`bonelesion.dicom.header`, `bonelesion.dicom.multiframe`), and **group** frames into
   stacks by `bonelesion.dicom.stack_key.stack_key`, with the series context applied
   (`series_stack_keys`: a b0 whose only clue is a vendor b-value element of 0).
3. **Plan** every stack (`bonelesion.dicom.geometry`): one frame of reference, one
   orientation, one pixel spacing, no duplicate positions, regular slice spacing (rtol
   1e-2, like highdicom), no gantry tilt, a pixel count below a limit; sorted along the
   slice normal (never InstanceNumber or SliceLocation). A stack that fails is *refused*:
   returned with its problems and no volume, never dropped silently.
4. **Decode** (`bonelesion.dicom.decode`) each slice straight into one preallocated array
   (int16 for CT when exact, else float32), applying the modality LUT per frame.
5. **Assemble** (`bonelesion.dicom.assembly`) the `Stack`: its `Volume`, `SeriesInfo`,
   role (`bonelesion.dicom.vendors.roles`), warnings and problems.

**Fast path** (``fast_path=True``, the default): plain Part 10 headers are read by
`bonelesion.dicom.fastheader.read_header`, and uncompressed little-endian pixel data
straight from the file into the output; everything else takes the generic path (the
structure check of `bonelesion.dicom.structure`, then pydicom's parser and decoders on the
checked bytes). Both give the same volumes, voxel for voxel (tests/dicom/test_decode.py).

**Hostile input.** Every value passes through `bonelesion.dicom.values`; a file that
cannot be read (damaged structure, an invalid value, truncated or undecodable pixel data)
is returned as a refused one-file stack that names it and says what is wrong, and is left
out of its series' stack (`bonelesion.dicom.assembly.build_stack` plans the stack again
without it): a damaged or duplicate file is never the reason a stack is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.assembly import Stack, _acquisition_order, build_stack, refused_file_stack

# Re-exported for callers of the former one-module reader.
from bonelesion.dicom.discovery import Discovery, SkippedFile, discover_files  # noqa: E402
from bonelesion.dicom.geometry import (  # noqa: E402
    DUPLICATE_POSITION_ATOL_MM,
    MAX_VOLUME_BYTES,
    ORIENTATION_ATOL,
    SPACING_RTOL,
)
from bonelesion.dicom.header import (
    _DICOMDIR_SOP_CLASS,
    _NON_IMAGE_SOP_CLASSES,
    Frame,
    frames_of,
    read_file_header,
)
from bonelesion.dicom.identity import ensure_series_instance_uid
from bonelesion.dicom.stack_key import StackKey, series_stack_keys, stack_key
from bonelesion.dicom.tilt import TiltPolicy
from bonelesion.errors import (
    InputError,
    NotDicomError,
    SeriesSelectionError,
)
from bonelesion.model.volume import Volume

__all__ = [
    "Stack",
    "SkippedFile",
    "Discovery",
    "discover_files",
    "load_series",
    "load_volume",
    "MAX_VOLUME_BYTES",
    "SPACING_RTOL",
    "ORIENTATION_ATOL",
    "DUPLICATE_POSITION_ATOL_MM",
]

logger = logging.getLogger(__name__)


def load_series(
    path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    decode: bool = True,
    max_bytes: int = MAX_VOLUME_BYTES,
    fast_path: bool = True,
    tilt: TiltPolicy | str = TiltPolicy.REFUSE,
) -> list[Stack]:
    """Load every stack found under ``path``.

    Parameters
    ----------
    path : path or iterable of paths
        A folder (searched recursively), a file, or a list of files/folders.
    decode : bool
        Decode pixel data into volumes. With False only headers are read, but geometry is
        still validated (refusals are still reported).
    max_bytes : int
        Refuse stacks whose float32 array would be larger (checked before decoding).
    fast_path : bool
        Read plain Part 10 headers with `bonelesion.dicom.fastheader.read_header` and
        uncompressed little-endian pixel data straight from the file (the default). False
        reads every header with pydicom's parser (after the structure check) and decodes
        every file with pydicom's decoders; the results are the same, voxel for voxel, only
        slower.
    tilt : {"refuse", "resample"}
        What to do with a gantry-tilted CT stack: refuse it (the default), or resample it
        onto an orthogonal grid, recorded in ``SeriesInfo.notes`` and the stack's warnings
        (as dcm2niix's ``_Tilt`` output; `bonelesion.dicom.tilt`).

    Returns
    -------
    list of Stack
        Sorted by series, then acquisition order. Refused stacks are included, with
        ``problems`` (naming the files) and no volume; after them, one refused stack per
        DICOM file that could not be read or was left out of its stack as damaged. Files
        that are not DICOM at all, DICOMDIRs and non-image objects are logged (WARNING) and
        skipped.

    Raises
    ------
    InputError
        If ``path`` does not exist.

    Examples
    --------
    >>> stacks = load_series("export/")  # doctest: +SKIP
    >>> [s.info.role for s in stacks if s.usable]  # doctest: +SKIP
    ['dwi', 'dwi', 'adc']
    """
    try:
        policy = TiltPolicy(tilt)
    except ValueError:
        raise InputError(
            f"load_series: tilt={tilt!r}; expected one of "
            f"{[p.value for p in TiltPolicy]}. Potential fix: pass tilt='resample' or omit it."
        ) from None
    discovery = discover_files(path)
    for skipped in discovery.skipped:
        logger.warning("Skipped %s: %s", values.printable(skipped.path), skipped.reason)
    entries: list[tuple[Frame, StackKey, list[str]]] = []
    refused_files: list[Stack] = []
    for file, has_preamble in zip(discovery.files, discovery.has_preamble, strict=True):
        read_warnings: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = _file_frames(file, has_preamble, max_bytes, read_warnings,
                                  fast_path=fast_path)
        read_warnings.extend(f"{values.printable(file.name)}: {w.message}" for w in caught)
        for w in read_warnings:
            logger.warning("%s", w)
        if isinstance(result, Stack):
            refused_files.append(result)
            continue
        entries.extend((fr, key, read_warnings) for fr, key in result)
    groups: dict[StackKey, list[Frame]] = {}
    group_warnings: dict[StackKey, list[str]] = {}
    for fr, key, read_warnings in _with_series_b_values(entries):
        groups.setdefault(key, []).append(fr)
        if read_warnings:
            group_warnings.setdefault(key, []).extend(read_warnings)
    stacks: list[tuple[tuple[Any, ...], Stack]] = []
    per_series: dict[str, int] = {}
    for key in groups:
        per_series[key.series_instance_uid] = per_series.get(key.series_instance_uid, 0) + 1
    for key, frames in groups.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stack, left_out = build_stack(key, frames, decode=decode, max_bytes=max_bytes,
                                          tilt=policy,
                                          read_warnings=sorted(set(group_warnings.get(key, []))),
                                          fast_path=fast_path)
        refused_files.extend(left_out)
        if caught:
            extra = tuple(sorted({f"{key.series_instance_uid}: {w.message}" for w in caught}))
            for w in extra:
                logger.warning("%s", w)
            stack = dataclasses.replace(stack, warnings=stack.warnings + extra)
        order = (stack.info.series_number if stack.info.series_number is not None else 1 << 30,
                 key.series_instance_uid,
                 _acquisition_order(frames) if per_series[key.series_instance_uid] > 1
                 else (0, 0, 0), str(key))
        stacks.append((order, stack))
    stacks.sort(key=lambda item: item[0])
    return [s for _, s in stacks] + refused_files


def _with_series_b_values(entries: list[tuple[Frame, StackKey, list[str]]]
                          ) -> list[tuple[Frame, StackKey, list[str]]]:
    """Give b = 0 keys to the b0 images a series context reveals.

    The rule is `bonelesion.dicom.multiframe.series_stack_keys` (shared with the
    catalogue): images whose only diffusion clue is a vendor b-value element of 0, in a
    series that holds b > 0 images (e.g. a Philips classic b0), get b 0 and kind ``b0``.
    """
    keyed = series_stack_keys([fr.flat for fr, _, _ in entries], [key for _, key, _ in entries])
    out = list(entries)
    for i, (key, series_b) in enumerate(keyed):
        if series_b is not None:
            frame, _, read_warnings = entries[i]
            frame.series_b_value_s_per_mm2 = series_b
            out[i] = (frame, key, read_warnings)
    return out


def _file_frames(file: Path, has_preamble: bool, max_bytes: int, read_warnings: list[str],
                 *, fast_path: bool = True) -> list[tuple[Frame, StackKey]] | Stack:
    """Header, frames and stack keys of one file ([] when it is not an image to read).

    A file that cannot be read (damaged structure, invalid values, truncated pixel data,
    too large) comes back as a refused one-file `Stack` naming it: reported, never a
    reason for its series to be lost.
    """
    ds: Dataset | None = None
    try:
        ds, location = read_file_header(file, read_warnings, has_preamble, fast_path=fast_path,
                                        reuse=True)
        meta = ds.__dict__.get("file_meta")
        if meta is not None and values.get_text(meta, "MediaStorageSOPClassUID",
                                                strict=False) == _DICOMDIR_SOP_CLASS:
            logger.info("Skipped %s: DICOMDIR", values.printable(file))
            return []
        if not values.has(ds, "Rows") or not values.has(ds, "Columns"):
            logger.warning("Skipped %s: no image (SOP class %s has no Rows/Columns)",
                           values.printable(file),
                           values.get_text(ds, "SOPClassUID", strict=False) or "?")
            return []
        sop_class = values.get_text(ds, "SOPClassUID", strict=False) or ""
        if sop_class in _NON_IMAGE_SOP_CLASSES:
            logger.info("Skipped %s: %s, not an image series", values.printable(file),
                        _NON_IMAGE_SOP_CLASSES[sop_class])
            return []
        uid_note = ensure_series_instance_uid(ds, file)
        frames = frames_of(file, ds, max_bytes, location, file_size=file.stat().st_size)
        for fr in frames:
            fr.identity_note = uid_note
        return [(fr, stack_key(fr.flat)) for fr in frames]
    except OSError as exc:
        err: InputError = NotDicomError(
            f"File {values.printable(file)}: cannot be read ({exc.strerror or exc}). "
            "Potential fix: check the file's permissions, or copy it again.")
    except InputError as exc:
        err = exc
    logger.warning("%s", err)
    return refused_file_stack(file, ds if ds is not None else Dataset(), err)


_FILTERS = {
    "series_instance_uid", "role", "modality", "b_value_s_per_mm2", "echo_number",
    "echo_time_ms", "image_type", "series_number",
}


#: Echo-time filter tolerance (headers round TE differently).
_ECHO_TIME_FILTER_ATOL_MS = 0.05


#: b-value filter tolerance.
_B_VALUE_FILTER_ATOL = 1.0


def _matches(stack: Stack, filters: dict[str, Any]) -> bool:
    info = stack.info
    for name, wanted in filters.items():
        if name == "series_instance_uid" and info.series_instance_uid != wanted:
            return False
        if name == "role" and info.role != getattr(wanted, "value", wanted):
            return False
        if name == "modality" and info.modality.upper() != str(wanted).upper():
            return False
        if name == "series_number" and info.series_number != int(wanted):
            return False
        if name == "echo_number" and stack.key.echo_number != int(wanted):
            return False
        if name == "b_value_s_per_mm2":
            b = info.b_value_s_per_mm2
            if b is None or abs(b - float(wanted)) > _B_VALUE_FILTER_ATOL:
                return False
        if name == "echo_time_ms":
            te = info.echo_time_ms
            if te is None or abs(te - float(wanted)) > _ECHO_TIME_FILTER_ATOL_MS:
                return False
        if name == "image_type" and str(wanted).upper() not in {t.upper() for t in info.image_type}:
            return False
    return True


def load_volume(path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                max_bytes: int = MAX_VOLUME_BYTES, tilt: TiltPolicy | str = TiltPolicy.REFUSE,
                **filters: Any) -> Volume:
    """Load the one stack under ``path`` (after ``filters``) as a `Volume`.

    Parameters
    ----------
    path : path or iterable of paths
    max_bytes : int
        See `load_series`.
    tilt : {"refuse", "resample"}
        See `load_series`.
    **filters
        Any of ``series_instance_uid``, ``series_number``, ``role``, ``modality``,
        ``b_value_s_per_mm2`` (±1), ``echo_number``, ``echo_time_ms`` (±0.05 ms),
        ``image_type`` (a token the ImageType must contain).

    Returns
    -------
    Volume

    Raises
    ------
    SeriesSelectionError
        If no stack, or more than one, matches; the message lists what was found.
    SeriesGeometryError
        If the one matching stack was refused (its own error class for other refusals).
    InputError
        For an unknown filter name.
    """
    unknown = set(filters) - _FILTERS
    if unknown:
        raise InputError(
            f"load_volume: unknown filter(s) {sorted(unknown)}; expected some of "
            f"{sorted(_FILTERS)}. Potential fix: check the spelling."
        )
    stacks = load_series(path, max_bytes=max_bytes, tilt=tilt)
    matching = [s for s in stacks if _matches(s, filters)]
    if len(matching) == 1:
        matching[0].raise_if_refused()
        assert matching[0].volume is not None
        return matching[0].volume
    listing = "; ".join(
        f"[{s.key}] role={s.info.role}" + (" REFUSED" if s.problems else "") for s in stacks
    ) or "nothing"
    where = path if isinstance(path, (str, os.PathLike)) else "the given files"
    raise SeriesSelectionError(
        f"{where}: expected exactly one stack matching {filters or 'no filter'}, found "
        f"{len(matching)} (of {len(stacks)} stacks: {listing}). Potential fix: pass filters "
        "such as role=, b_value_s_per_mm2=, echo_number= or series_instance_uid=."
    )
