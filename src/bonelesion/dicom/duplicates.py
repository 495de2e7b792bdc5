"""Duplicate images in a stack: the same image twice is read once, and reported.

Exports hold the same image more than once: a file copied twice, the same SOP instance in
two encodings (compressed test sets), one slice re-sent under a new SOP Instance UID.
dcm2niix keeps one and says "duplicates removed"; we do the same, but only when the
duplicates really are the same image: frames of one stack at the same position are decoded
and compared; identical pixels after decoding (and rescale) → the first (by file name) is
kept and every other one is reported; different pixels at one position → the stack is
refused, with both files named (two different images cannot share a position in a volume).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bonelesion.dicom.decode import FileCache, frame_values
from bonelesion.dicom.header import Frame

__all__ = ["POSITION_DECIMALS_MM", "DuplicateCheck", "drop_duplicate_images"]

#: Positions equal after rounding to 0.01 mm are "the same position".
POSITION_DECIMALS_MM = 2


class DuplicateCheck:
    """Outcome of `drop_duplicate_images`: the frames to use, notes, and a refusal."""

    __slots__ = ("frames", "notes", "problem")

    def __init__(self, frames: list[Frame], notes: list[str], problem: str) -> None:
        self.frames = frames
        self.notes = notes
        self.problem = problem


def _position_key(frame: Frame) -> tuple[float, ...] | None:
    if frame.ipp is None:
        return None
    return tuple(float(v) for v in np.round(frame.ipp, POSITION_DECIMALS_MM))


def drop_duplicate_images(frames: Sequence[Frame], *, fast_path: bool = True
                          ) -> DuplicateCheck:
    """Keep one frame per position when the frames there are the same image.

    Parameters
    ----------
    frames : sequence of Frame
        The frames of one stack (same stack key).
    fast_path : bool
        Read uncompressed pixel data straight from the files (see `load_series`).

    Returns
    -------
    DuplicateCheck
        ``frames``: the frames to use (input order, duplicates removed); ``notes``: one
        line per removed duplicate; ``problem``: "" or why the stack must be refused (two
        different images at one position).
    """
    groups: dict[tuple[float, ...], list[Frame]] = {}
    for frame in frames:
        key = _position_key(frame)
        if key is not None:
            groups.setdefault(key, []).append(frame)
    repeated = {k: g for k, g in groups.items() if len(g) > 1}
    if not repeated:
        return DuplicateCheck(list(frames), [], "")
    cache = FileCache(fast_path=fast_path)
    dropped: set[int] = set()
    notes: list[str] = []
    for position, group in repeated.items():
        members = sorted(group, key=lambda f: (str(f.path), f.index or 0))
        kept = members[0]
        reference = frame_values(kept, cache)
        for other in members[1:]:
            values = frame_values(other, cache)
            if values.shape != reference.shape or not np.array_equal(values, reference):
                diff = (float(np.max(np.abs(values - reference)))
                        if values.shape == reference.shape else float("nan"))
                where = ", ".join(f"{v:g}" for v in position)
                return DuplicateCheck(list(frames), notes, (
                    f"duplicate positions: two different images share the position ({where}) "
                    f"mm: {_name(kept)} and {_name(other)} differ after decoding (max |Δ| "
                    f"{diff:.4g}); expected one image per position. This is not one volume "
                    "(e.g. repeated acquisitions, several reconstructions, or a lossy copy). "
                    "Potential fix: select the images of one acquisition."))
            same_uid = other.sop_instance_uid and other.sop_instance_uid == kept.sop_instance_uid
            notes.append(
                f"{_name(other)} repeats SOP instance of {_name(kept)}" if same_uid else
                f"{_name(other)} repeats the image of {_name(kept)} (another SOP Instance UID)")
            dropped.add(id(other))
    notes = [f"{n} (same position and pixels after decoding); not used" for n in notes]
    return DuplicateCheck([f for f in frames if id(f) not in dropped], notes, "")


def _name(frame: Frame) -> str:
    return frame.path.name + (f" frame {frame.index + 1}" if frame.index is not None else "")
