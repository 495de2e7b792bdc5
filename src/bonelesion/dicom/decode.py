"""Decoding: the pixels of a planned stack into one preallocated array, modality LUT applied."""

from __future__ import annotations

import logging
import mmap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom import Dataset

from bonelesion.dicom.geometry import Plan
from bonelesion.dicom.header import Frame
from bonelesion.errors import (
    UnsupportedInputError,
)

__all__ = [
    "decode_plan",
    "PREFAULT_MIN_BYTES",
]

logger = logging.getLogger(__name__)


_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _native_offset(path: Path, flat: Dataset, n_frames: int,
                   location: tuple[int, int] | None = None
                   ) -> tuple[int, np.dtype[Any], int] | None:
    """Byte offset and dtype of uncompressed little-endian pixel data.

    With ``location`` (offset, length of the Pixel Data value, from the fast header
    reader) no file access is needed. Without it, the Pixel Data element must be the
    file's last element, with its header bytes where its length says. Returns None (use
    pydicom) otherwise.
    """
    meta = getattr(flat, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts and ts not in _NATIVE_LITTLE_ENDIAN:
        return None
    bits = int(flat.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32) or int(flat.get("SamplesPerPixel", 1) or 1) != 1:
        return None
    signed = int(flat.get("PixelRepresentation", 0) or 0) == 1
    stored = int(flat.get("BitsStored", bits) or bits)
    if not 1 <= stored <= bits:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    length = int(flat.Rows) * int(flat.Columns) * n_frames * (bits // 8)
    if location is not None:
        offset, found = location
        if found in (length, length + 1):  # an odd length is padded to even
            return offset, dtype, stored
        return None
    size = path.stat().st_size
    for pad in (0, 1):
        offset = size - length - pad
        if offset < 12:
            continue
        with open(path, "rb") as fh:
            fh.seek(offset - 12)
            head = fh.read(12)
        tag_ok_explicit = head[0:4] == b"\xe0\x7f\x10\x00" and head[4:6] in (b"OW", b"OB") \
            and int.from_bytes(head[8:12], "little") == length + pad
        tag_ok_implicit = head[4:8] == b"\xe0\x7f\x10\x00" \
            and int.from_bytes(head[8:12], "little") == length + pad
        if tag_ok_explicit or tag_ok_implicit:
            return offset, dtype, stored
    return None


def _fix_stored_bits(arr: NDArray[Any], stored: int) -> None:
    """Mask (unsigned) or sign-extend (signed) values stored in fewer bits, in place.

    Same result as pydicom's pixel_array (bits above BitsStored are ignored: they may hold
    overlays or garbage).
    """
    bits = arr.dtype.itemsize * 8
    if stored >= bits:
        return
    if arr.dtype.kind == "u":
        np.bitwise_and(arr, np.array((1 << stored) - 1, dtype=arr.dtype), out=arr)
    else:
        shift = np.array(bits - stored, dtype=arr.dtype)
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)


def _transfer_syntax(flat: Dataset) -> str:
    meta = getattr(flat, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "?")) if meta is not None else "?"


def decode_file(path: Path) -> NDArray[Any]:
    """All frames of one file as stored values, shape (frames, rows, cols) or (rows, cols)."""
    from pydicom.pixels import pixel_array

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arr = pixel_array(str(path))
        except Exception:  # noqa: BLE001 - retry through a forced full read (no preamble)
            ds = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian \
                    if not ds.original_encoding[0] else pydicom.uid.ImplicitVRLittleEndian
            arr = ds.pixel_array
    for w in caught:
        logger.info("%s: %s", path.name, w.message)
    return arr


def _rescale(flat: Dataset) -> tuple[float, float]:
    slope = flat.get("RescaleSlope", None)
    intercept = flat.get("RescaleIntercept", None)
    s = float(slope) if slope not in (None, "") else 1.0
    b = float(intercept) if intercept not in (None, "") else 0.0
    if s == 0:
        s = 1.0
    return s, b


def _stored_range(flat: Dataset) -> tuple[int, int]:
    bits = int(flat.get("BitsStored", 16) or 16)
    if int(flat.get("PixelRepresentation", 0) or 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _can_use_int16(frames: Sequence[Frame]) -> bool:
    for f in frames:
        s, b = _rescale(f.flat)
        if s != int(s) or b != int(b):
            return False
        if int(f.flat.get("BitsStored", 16) or 16) > 16:
            return False
    return True


class FileCache:
    """Decoded pixel arrays of the most recently read file (one entry)."""

    def __init__(self, *, fast_path: bool = True) -> None:
        self.path: Path | None = None
        self.array: NDArray[Any] | None = None
        self.fast_path = fast_path

    def get(self, path: Path, flat: Dataset | None = None, n_frames: int = 1,
            location: tuple[int, int] | None = None) -> NDArray[Any]:
        if self.path != path:
            self.array = None
            native = _native_offset(path, flat, n_frames, location) \
                if flat is not None and self.fast_path else None
            if native is not None:
                offset, dtype, stored = native
                shape = (n_frames, int(flat.Rows), int(flat.Columns))  # type: ignore[union-attr]
                arr = np.fromfile(path, dtype=dtype, count=int(np.prod(shape)), offset=offset)
                if arr.size == int(np.prod(shape)):
                    _fix_stored_bits(arr, stored)
                    self.array = arr.reshape(shape)
            if self.array is None:
                self.array = decode_file(path)
            self.path = path
        assert self.array is not None
        return self.array


#: Output arrays at least this large are allocated with their pages already mapped.
PREFAULT_MIN_BYTES = 4 * 1024**2


def _empty_prefaulted(shape: tuple[int, int, int], dtype: type[np.generic]) -> NDArray[Any]:
    """``np.empty`` whose memory pages are mapped up front (Linux ``MAP_POPULATE``).

    Filling a fresh 150 MiB array page by page costs one page fault per 4 KiB; on virtual
    machines that is several times the cost of reading the pixels. One ``mmap`` with
    ``MAP_POPULATE`` maps them in one system call. Elsewhere (no ``MAP_POPULATE``), or for
    small arrays, this is ``np.empty``.
    """
    n_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is None or n_bytes < PREFAULT_MIN_BYTES:
        return np.empty(shape, dtype=dtype)
    try:
        buffer = mmap.mmap(-1, n_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    except (OSError, ValueError):  # e.g. an address-space limit: let numpy try
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def decode_plan(plan: Plan, ct: bool, *, fast_path: bool = True) -> NDArray[Any]:
    """Decode the frames of ``plan`` into a (slices, rows, columns) array, rescaled.

    int16 for CT when every value fits exactly, else float32; the modality LUT
    (RescaleSlope / RescaleIntercept) is applied per frame.

    Raises
    ------
    UnsupportedInputError
        If a decoded frame does not have the planned (Rows, Columns) shape.
    """
    frames = plan.frames
    use_int16 = ct and _can_use_int16(frames)
    out = _empty_prefaulted(plan.shape, np.int16 if use_int16 else np.float32)
    cache = FileCache(fast_path=fast_path)
    if plan.mosaic is not None:
        f = frames[0]
        mosaic_raw = cache.get(f.path)
        lay = plan.mosaic
        s, b = _rescale(f.flat)
        for k in range(lay.n_tiles):
            per_row = lay.tiles_per_row or lay.grid
            r0 = (k // per_row) * lay.tile_rows
            c0 = (k % per_row) * lay.tile_cols
            tile = mosaic_raw[r0:r0 + lay.tile_rows, c0:c0 + lay.tile_cols]
            dst = lay.n_tiles - 1 - k if plan.mosaic_reversed else k
            out = _store(out, dst, tile, s, b, f)
        return out
    direct: list[tuple[int, Frame, tuple[int, np.dtype[Any], int], float]] = []
    rest: list[tuple[int, Frame]] = []
    for s_idx, f in enumerate(frames):
        native = _native_offset(f.path, f.flat, 1, f.pixel_location) \
            if f.index is None and fast_path else None
        if native is not None and out.dtype == np.int16 and native[1].itemsize == 2:
            s, b = _rescale(f.flat)
            lo_s, hi_s = _stored_range(f.flat)
            if s == 1 and -32768 <= lo_s + b and hi_s + b <= 32767 \
                    and -32768 <= lo_s and hi_s <= 32767:
                direct.append((s_idx, f, native, b))
                continue
        rest.append((s_idx, f))
    if direct:
        failed = _read_direct(out, direct)
        rest = sorted(rest + [(s_idx, f) for s_idx, f in failed], key=lambda item: item[0])
    buffers: dict[tuple[int, str], NDArray[Any]] = {}
    for s_idx, f in rest:
        s, b = _rescale(f.flat)
        raw: NDArray[Any] | None = None
        if f.index is None and fast_path:
            native = _native_offset(f.path, f.flat, 1, f.pixel_location)
            if native is not None:
                offset, dtype, stored = native
                key = (plan.shape[1] * plan.shape[2], dtype.str)
                buf = buffers.get(key)
                if buf is None:
                    buf = np.empty(plan.shape[1:], dtype=dtype)
                    buffers[key] = buf
                with open(f.path, "rb", buffering=0) as fh:  # one read, no copy
                    fh.seek(offset)
                    n_read = fh.readinto(memoryview(buf).cast("B"))  # type: ignore[arg-type]
                if n_read == buf.nbytes:
                    _fix_stored_bits(buf, stored)
                    raw = buf
            if raw is None:
                raw = cache.get(f.path)
        else:
            all_frames = cache.get(f.path, f.flat, f.n_frames_in_file, f.pixel_location)
            raw = all_frames[f.index] if all_frames.ndim == 3 else all_frames
        if raw.shape != plan.shape[1:]:
            raise UnsupportedInputError(
                f"File {f.path}: decoded frame has shape {raw.shape}, expected "
                f"{plan.shape[1:]} (Rows, Columns). Potential fix: the pixel data is not a "
                "single-sample greyscale image (e.g. RGB); select another series."
            )
        out = _store(out, s_idx, raw, s, b, f)
    return out


def _read_direct(out: NDArray[Any], jobs: Sequence[tuple[int, Frame, tuple[int, np.dtype[Any],
                                                                              int], float]]
                 ) -> list[tuple[int, Frame]]:
    """Read 16-bit uncompressed slices straight into the int16 output; return the failures.

    Only called when every value BitsStored allows, plus the intercept, fits int16: the
    stored bits are masked / sign-extended in place in a view of the output slice, then the
    intercept is added. Same result as `_store` on pydicom's ``pixel_array``.
    """

    def _one(job: tuple[int, Frame, tuple[int, np.dtype[Any], int], float]
             ) -> tuple[int, Frame] | None:
        s_idx, f, (offset, dtype, stored), intercept = job
        dst = out[s_idx]
        view = dst.view(dtype)
        with open(f.path, "rb", buffering=0) as fh:  # one read, no copy
            fh.seek(offset)
            n_read = fh.readinto(memoryview(view).cast("B"))  # type: ignore[arg-type]
        if n_read != view.nbytes:
            return s_idx, f
        _fix_stored_bits(view, stored)
        if intercept:
            dst += np.int16(intercept)
        return None

    results = [_one(job) for job in jobs]
    return [r for r in results if r is not None]


def _store(out: NDArray[Any], index: int, raw: NDArray[Any], slope: float, intercept: float,
           frame: Frame) -> NDArray[Any]:
    """Write one slice through the modality LUT; upgrade to float32 if int16 overflows."""
    if out.dtype == np.int16:
        lo_s, hi_s = _stored_range(frame.flat)
        if slope == 1 and raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2 \
                and -32768 <= lo_s + intercept and hi_s + intercept <= 32767 \
                and -32768 <= lo_s and hi_s <= 32767:
            # Every value BitsStored allows (decoders mask the bits above it) maps into
            # int16 exactly: no per-voxel range check needed.
            dst = out[index]
            np.copyto(dst, raw, casting="unsafe")
            if intercept:
                dst += np.int16(intercept)
            return out
        tmp = raw.astype(np.int32, copy=False)
        if slope != 1:
            tmp = tmp * int(slope)
        if intercept:
            tmp = tmp + int(intercept)
        lo, hi = int(tmp.min()), int(tmp.max())
        if lo >= -32768 and hi <= 32767:
            out[index] = tmp
            return out
        out = out.astype(np.float32)  # rare: values beyond int16 after rescale
    np.multiply(raw, slope, out=out[index], casting="unsafe")
    if intercept:
        out[index] += np.float32(intercept)
    return out


def frame_values(frame: Frame, cache: FileCache) -> NDArray[np.float64]:
    """Pixel values of one frame after the modality rescale, as float64 (rows, columns)."""
    if frame.index is None:
        raw = cache.get(frame.path, frame.flat, 1, frame.pixel_location)
        if raw.ndim == 3 and raw.shape[0] == 1:  # the native reader keeps a frame axis
            raw = raw[0]
    else:
        all_frames = cache.get(frame.path, frame.flat, frame.n_frames_in_file,
                               frame.pixel_location)
        raw = all_frames[frame.index] if all_frames.ndim == 3 else all_frames
    slope, intercept = _rescale(frame.flat)
    return raw.astype(np.float64) * slope + intercept
