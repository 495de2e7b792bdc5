"""Decoding: the pixels of a planned stack into one preallocated array, modality LUT applied.

Every frame carries its file's validated `bonelesion.dicom.header.PixelModule` (where the
pixel data are, and what they are), so decoding never parses the header again:

* uncompressed little-endian pixel data are read straight from the file into the output
  (``fast_path``);
* everything else is decoded by pydicom's decoder for the transfer syntax from the pixel
  data *bytes* (read by us, bounded by the file size; inflated with a bound for a deflated
  file) and the validated module values — pydicom never reads a length from the file.

A file whose pixels cannot be decoded raises `DamagedFileError` naming it (and what the
decoder said), so that `bonelesion.dicom.assembly` can leave that one file out; a
transfer syntax whose decoder plugin is not installed raises `UnsupportedInputError`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless

from bonelesion.dicom import values
from bonelesion.dicom.geometry import Plan
from bonelesion.dicom.header import Frame, PixelModule, pixel_module, read_file_header
from bonelesion.dicom.structure import DEFLATED, inflate
from bonelesion.errors import (
    DamagedFileError,
    UnsupportedInputError,
)

__all__ = [
    "decode_plan",
    "output_arrays",
    "decode_file",
    "frame_values",
    "FileCache",
]

logger = logging.getLogger(__name__)


#: ``allocate(shape, dtype, ct)`` for `decode_plan`'s output arrays (None: ``np.empty``).
Allocate = Callable[[tuple[int, ...], np.dtype[Any], bool], "NDArray[Any] | None"]
_ALLOCATE: ContextVar[Allocate | None] = ContextVar("bonelesion_decode_allocate", default=None)


@contextmanager
def output_arrays(allocate: Allocate | None) -> Iterator[None]:
    """Let `decode_plan` allocate its output arrays with ``allocate(shape, dtype, ct)``.

    For a caller that wants the volumes it reads in memory of its own kind (the per-study
    run: its CTs in memory its labelling process maps, `bonelesion.pipeline.side`). The
    values are the same; only where they live differs. ``allocate`` returning None, or
    ``allocate=None``, means ``np.empty``.
    """
    token = _ALLOCATE.set(allocate)
    try:
        yield
    finally:
        _ALLOCATE.reset(token)


_NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _native_offset(frame: Frame, n_frames: int = 1
                   ) -> tuple[int, np.dtype[Any], int] | None:
    """Byte offset, dtype and BitsStored of uncompressed little-endian pixel data.

    None (decode through pydicom) for other syntaxes, bit depths, several samples, or a
    Pixel Data length that is not the expected one for ``n_frames`` frames.
    """
    pixel = frame.pixel
    if pixel is None or pixel.transfer_syntax not in _NATIVE_LITTLE_ENDIAN:
        return None
    loc = pixel.location
    if loc.inflated or loc.encapsulated:
        return None
    bits = pixel.bits_allocated
    if bits not in (8, 16, 32) or pixel.samples_per_pixel != 1:
        return None
    dtype = np.dtype(f"<{'i' if pixel.pixel_representation == 1 else 'u'}{bits // 8}")
    length = pixel.rows * pixel.columns * n_frames * (bits // 8)
    if loc.length in (length, length + 1):  # an odd length is padded to even
        return loc.offset, dtype, pixel.bits_stored
    return None


def _frame_native(frame: Frame) -> tuple[int, np.dtype[Any], int] | None:
    """`_native_offset` of one frame: of its file, or of its place in a multi-frame file.

    A frame of a multi-frame object is read from its own bytes (offset + index × frame
    bytes), as the frame of the file's decoded array would be, not with the whole file.
    """
    if frame.index is None:
        return _native_offset(frame, 1)
    pixel = frame.pixel
    if pixel is None:
        return None
    whole = _native_offset(frame, pixel.number_of_frames)
    if whole is None or not 0 <= frame.index < pixel.number_of_frames:
        return None
    offset, dtype, stored = whole
    return offset + frame.index * pixel.rows * pixel.columns * dtype.itemsize, dtype, stored


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


def _transfer_syntax(frame: Frame) -> str:
    return frame.pixel.transfer_syntax if frame.pixel is not None else "?"


def _read_exact(path: Path, offset: int, n_bytes: int) -> bytearray:
    """``n_bytes`` from ``offset`` (the pixel module checked they are in the file)."""
    data = bytearray(n_bytes)
    view = memoryview(data)
    n_read = 0
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        while n_read < n_bytes:  # a single read(2) returns at most ≈ 2 GiB
            got = fh.readinto(view[n_read:])
            if not got:
                break
            n_read += got
    view.release()
    if n_read != n_bytes:
        name = values.printable(path)
        raise DamagedFileError(
            f"File {name}: {n_read} of {n_bytes} bytes of pixel data could be read from "
            f"byte {offset} (the file changed or is truncated). Potential fix: copy the file "
            "again from the source.", name)
    return data


def _pixel_bytes(frame: Frame, pixel: PixelModule) -> bytes | bytearray:
    """Return the Pixel Data value (native, or the encapsulated items) as bytes."""
    loc = pixel.location
    if loc.inflated:
        with open(frame.path, "rb") as fh:
            head = fh.read(pixel.file_size)
        data_at = loc.data_offset
        limit = loc.offset + (loc.length if not loc.encapsulated else pixel.file_size * 8) + 16
        inflated = inflate(head[data_at:], limit=limit, where=values.printable(frame.path))
        end = len(inflated) if loc.encapsulated else loc.offset + loc.length
        if end > len(inflated):
            name = values.printable(frame.path)
            raise DamagedFileError(
                f"File {name}: the deflated data set ends {end - len(inflated)} bytes before "
                "the end of its pixel data. Potential fix: copy the file again from the "
                "source.", name)
        return inflated[loc.offset:end]
    if loc.encapsulated:
        end = pixel.encapsulated_end if pixel.encapsulated_end is not None else pixel.file_size
        return _read_exact(frame.path, loc.offset, end - loc.offset)
    return _read_exact(frame.path, loc.offset, min(loc.length, pixel.native_bytes + 1))


def decode_file(source: Frame | str | os.PathLike[str]) -> NDArray[Any]:
    """All frames of a file as stored values: (frames, rows, cols) or (rows, cols).

    Decoded by pydicom's decoder for the transfer syntax, from the pixel data bytes and
    the validated pixel module (no header is parsed again when ``source`` is a `Frame`;
    a path is read first with `bonelesion.dicom.header.read_file_header`).

    Raises
    ------
    DamagedFileError
        If the pixel data cannot be decoded (names the file and what the decoder said).
    UnsupportedInputError
        If the decoder plugin for the transfer syntax is not installed.
    """
    frame = source if isinstance(source, Frame) else _frame_of_path(Path(source))
    pixel = frame.pixel
    name = values.printable(frame.path)
    if pixel is None:
        raise DamagedFileError(f"File {name}: no pixel module; cannot decode.", name)
    uid = UID(pixel.transfer_syntax)
    if pixel.location.inflated or uid == DEFLATED:
        uid = ExplicitVRLittleEndian
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise DamagedFileError(
            f"File {name}: transfer syntax {pixel.transfer_syntax!r} is not one pydicom can "
            "decode. Potential fix: re-export the file with a standard transfer syntax.",
            name) from None
    if not decoder.is_available:
        raise UnsupportedInputError(
            f"File {name}: pixel data in {uid.name} ({uid}) need a decoder plugin that is "
            f"not installed ({'; '.join(decoder.missing_dependencies) or 'none found'}). "
            "Potential fix: install pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle or "
            "pyjpegls, or re-export uncompressed.")
    data = bytes(_pixel_bytes(frame, pixel))
    options: dict[str, Any] = dict(
        rows=pixel.rows, columns=pixel.columns, number_of_frames=pixel.number_of_frames,
        samples_per_pixel=pixel.samples_per_pixel, bits_allocated=pixel.bits_allocated,
        bits_stored=pixel.bits_stored, pixel_representation=pixel.pixel_representation,
        photometric_interpretation=pixel.photometric_interpretation,
        planar_configuration=pixel.planar_configuration, pixel_keyword="PixelData")
    # RLE Lossless: pydicom's own decoder, which checks the segment offsets and lengths
    # it reads (the Rust plugin panics, killing the process, on a damaged segment)
    plugin = "pydicom" if uid == RLELossless else ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arr, _ = decoder.as_array(data, decoding_plugin=plugin, **options)
        except (RuntimeError, ValueError) as exc:
            # pydicom: RuntimeError when every decoder plugin failed on the data, ValueError
            # when the data do not fit the pixel module
            raise DamagedFileError(
                f"File {name}: the pixel data ({uid.name}) cannot be decoded: "
                f"{values.printable(str(exc))[:300]}. Potential fix: the file is damaged; "
                "copy it again from the source, or remove it from the export.",
                name) from exc
    for w in caught:
        logger.info("%s: %s", name, w.message)
    return arr


def _frame_of_path(path: Path) -> Frame:
    """Make a frame standing for a whole file (for `decode_file` given a path)."""
    ds, location = read_file_header(path, [], None)
    pixel = pixel_module(ds, location, path)
    return Frame(path=path, flat=ds, index=None, n_frames_in_file=pixel.number_of_frames,
                 sop_instance_uid="", ipp=None, iop=None, pixel_spacing=None, pixel=pixel)


def _rescale(frame: Frame) -> tuple[float, float]:
    return frame.rescale_slope, frame.rescale_intercept


def _stored_range(frame: Frame) -> tuple[int, int]:
    pixel = frame.pixel
    bits = pixel.bits_stored if pixel is not None else 16
    if pixel is not None and pixel.pixel_representation == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _can_use_int16(frames: Sequence[Frame]) -> bool:
    for f in frames:
        s, b = _rescale(f)
        if s != int(s) or b != int(b) or abs(s) > 2**15 or abs(b) > 2**31:
            return False
        if f.pixel is not None and f.pixel.bits_stored > 16:
            return False
    return True


class FileCache:
    """Decoded pixel arrays of the most recently read file (one entry)."""

    def __init__(self, *, fast_path: bool = True) -> None:
        self.path: Path | None = None
        self.array: NDArray[Any] | None = None
        self.fast_path = fast_path

    def get(self, frame: Frame) -> NDArray[Any]:
        """Every frame of ``frame``'s file, as stored values."""
        if self.path != frame.path:
            self.array = None
            n_frames = frame.pixel.number_of_frames if frame.pixel is not None else 1
            native = _native_offset(frame, n_frames) if self.fast_path else None
            if native is not None and frame.pixel is not None:
                offset, dtype, stored = native
                shape = (n_frames, frame.pixel.rows, frame.pixel.columns)
                count = int(np.prod(shape))
                data = _read_exact(frame.path, offset, count * dtype.itemsize)
                arr = np.frombuffer(data, dtype=dtype)  # writable: one read, no copy
                _fix_stored_bits(arr, stored)
                self.array = arr.reshape(shape)
            if self.array is None:
                self.array = decode_file(frame)
            self.path = frame.path
        assert self.array is not None
        return self.array


def _frame_of_file(all_frames: NDArray[Any], frame: Frame) -> NDArray[Any]:
    """One frame of a file's decoded array, checked against the pixel module."""
    if frame.index is None:
        raw = all_frames[0] if all_frames.ndim == 3 and all_frames.shape[0] == 1 \
            else all_frames
    else:
        raw = all_frames[frame.index] if all_frames.ndim == 3 else all_frames
    return raw


def decode_plan(plan: Plan, ct: bool, *, fast_path: bool = True) -> NDArray[Any]:
    """Decode the frames of ``plan`` into a (slices, rows, columns) array, rescaled.

    int16 for CT when every value fits exactly, else float32; the modality LUT
    (RescaleSlope / RescaleIntercept) is applied per frame.

    Raises
    ------
    DamagedFileError
        If a file's pixel data cannot be read or decoded, or a decoded frame does not have
        the planned (Rows, Columns) shape; names the file.
    UnsupportedInputError
        If a decoder plugin is missing.
    """
    frames = plan.frames
    use_int16 = ct and _can_use_int16(frames)
    # a plain np.empty: mapping the pages up front (MAP_POPULATE) was measured slower, in
    # fresh processes (300×512² CT: 223 vs 194 ms) and in a process that loads series after
    # series (the allocator reuses freed memory; bench/bench_load.py)
    out_dtype = np.dtype(np.int16 if use_int16 else np.float32)
    allocate = _ALLOCATE.get()
    out = allocate(plan.shape, out_dtype, ct) if allocate is not None else None
    if out is None:
        out = np.empty(plan.shape, dtype=out_dtype)
    cache = FileCache(fast_path=fast_path)
    if plan.mosaic is not None:
        f = frames[0]
        mosaic_raw = _frame_of_file(cache.get(f), f)
        lay = plan.mosaic
        s, b = _rescale(f)
        for k in range(lay.n_tiles):
            per_row = lay.tiles_per_row or lay.grid
            r0 = (k // per_row) * lay.tile_rows
            c0 = (k % per_row) * lay.tile_cols
            tile = mosaic_raw[r0:r0 + lay.tile_rows, c0:c0 + lay.tile_cols]
            if tile.shape != (lay.tile_rows, lay.tile_cols):
                raise _shape_error(f, tile.shape, (lay.tile_rows, lay.tile_cols))
            dst = lay.n_tiles - 1 - k if plan.mosaic_reversed else k
            out = _store(out, dst, tile, s, b, f)
        return out
    direct: list[tuple[int, Frame, tuple[int, np.dtype[Any], int], float]] = []
    rest: list[tuple[int, Frame, tuple[int, np.dtype[Any], int] | None]] = []
    for s_idx, f in enumerate(frames):
        native = _frame_native(f) if fast_path else None
        if native is not None and out.dtype == np.int16 and native[1].itemsize == 2:
            s, b = _rescale(f)
            lo_s, hi_s = _stored_range(f)
            if s == 1 and -32768 <= lo_s + b and hi_s + b <= 32767 \
                    and -32768 <= lo_s and hi_s <= 32767:
                direct.append((s_idx, f, native, b))
                continue
        rest.append((s_idx, f, native))
    opened = _OpenFile()
    try:
        if direct:
            _read_direct(out, direct, opened)
        buffers: dict[tuple[int, str], NDArray[Any]] = {}
        for s_idx, f, native in rest:
            s, b = _rescale(f)
            raw: NDArray[Any] | None = None
            if native is not None:
                offset, dtype, stored = native
                key = (plan.shape[1] * plan.shape[2], dtype.str)
                buf = buffers.get(key)
                if buf is None:
                    buf = np.empty(plan.shape[1:], dtype=dtype)
                    buffers[key] = buf
                opened.read_into(f.path, offset, buf)
                _fix_stored_bits(buf, stored)
                raw = buf
            else:
                raw = _frame_of_file(cache.get(f), f)
            if raw.shape != plan.shape[1:]:
                raise _shape_error(f, raw.shape, plan.shape[1:])
            out = _store(out, s_idx, raw, s, b, f)
    finally:
        opened.close()
    return out


def _shape_error(frame: Frame, found: tuple[int, ...], expected: tuple[int, ...]
                 ) -> DamagedFileError:
    name = values.printable(frame.path)
    return DamagedFileError(
        f"File {name}: decoded frame has shape {found}, expected {expected} (Rows, "
        "Columns). Potential fix: the pixel data are not a single-sample greyscale image "
        "(e.g. RGB), or the file is damaged; select another series.", name)


class _OpenFile:
    """The file pixels were last read from, kept open for the next frame read from it.

    The frames of a multi-frame file are read with one ``open``, not one per frame.
    """

    def __init__(self) -> None:
        self.path: Path | None = None
        self.fh: Any = None

    def read_into(self, path: Path, offset: int, view: NDArray[Any]) -> None:
        """Fill ``view`` with bytes from ``offset`` (one read, no copy); refuse a short read."""
        if self.path != path or self.fh is None:
            self.close()
            self.fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            self.path = path
        self.fh.seek(offset)
        n_read = self.fh.readinto(memoryview(view).cast("B"))  # type: ignore[arg-type]
        if n_read != view.nbytes:
            raise _short_read(path, n_read, view.nbytes, offset)

    def close(self) -> None:
        """Close the open file, if any."""
        if self.fh is not None:
            self.fh.close()
        self.fh = self.path = None


def _short_read(path: Path, n_read: int, n_bytes: int, offset: int) -> DamagedFileError:
    name = values.printable(path)
    return DamagedFileError(
        f"File {name}: {n_read} of {n_bytes} bytes of pixel data could be read from "
        f"byte {offset} (the file changed or is truncated). Potential fix: copy the file "
        "again from the source.", name)


def _read_direct(out: NDArray[Any], jobs: Sequence[tuple[int, Frame, tuple[int, np.dtype[Any],
                                                                              int], float]],
                 opened: _OpenFile) -> None:
    """Read 16-bit uncompressed slices straight into the int16 output.

    Only called when every value BitsStored allows, plus the intercept, fits int16: the
    stored bits are masked / sign-extended in place in a view of the output slice, then the
    intercept is added. Same result as `_store` on pydicom's ``pixel_array``.
    """
    for s_idx, f, (offset, dtype, stored), intercept in jobs:
        dst = out[s_idx]
        view = dst.view(dtype)
        opened.read_into(f.path, offset, view)
        _fix_stored_bits(view, stored)
        if intercept:
            dst += np.int16(intercept)


def _store(out: NDArray[Any], index: int, raw: NDArray[Any], slope: float, intercept: float,
           frame: Frame) -> NDArray[Any]:
    """Write one slice through the modality LUT; upgrade to float32 if int16 overflows."""
    if out.dtype == np.int16:
        lo_s, hi_s = _stored_range(frame)
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
        tmp = raw.astype(np.int64, copy=False)
        if slope != 1:
            tmp = tmp * int(slope)
        if intercept:
            tmp = tmp + int(intercept)
        lo, hi = int(tmp.min()), int(tmp.max())
        if lo >= -32768 and hi <= 32767:
            out[index] = tmp
            return out
        out = out.astype(np.float32)  # rare: values beyond int16 after rescale
    with np.errstate(over="ignore", invalid="ignore"):
        if slope == 1:  # the values of raw × 1.0 (each integer rounded once to float32)
            np.copyto(out[index], raw, casting="unsafe")
        else:
            np.multiply(raw, slope, out=out[index], casting="unsafe")
        if intercept:
            out[index] += np.float32(intercept)
    return out


def frame_values(frame: Frame, cache: FileCache) -> NDArray[np.float64]:
    """Pixel values of one frame after the modality rescale, as float64 (rows, columns).

    Raises
    ------
    DamagedFileError
        If the file's pixel data cannot be read or decoded.
    """
    raw = _frame_of_file(cache.get(frame), frame)
    slope, intercept = _rescale(frame)
    with np.errstate(over="ignore", invalid="ignore"):
        return raw.astype(np.float64) * slope + intercept
