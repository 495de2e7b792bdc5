"""Header reading for the series reader: one file → its header, its pixel module and frames.

Every file is read through two guarded steps before anything else sees it:

1. **Structure.** A plain Part 10 file is read by the fast reader
   (`bonelesion.dicom.fastheader.read_header`), which checks sequences with
   `bonelesion.dicom.structure.check_elements`; any other file (no preamble, big endian,
   deflated, an unknown VR …) is checked whole by `bonelesion.dicom.structure.scan_header`
   (lengths against the bytes left, nesting depth, delimiters, deflate with a bound) and
   only then parsed by pydicom, from the validated bytes in memory (pydicom never reads a
   length from the file itself, so a length beyond the file allocates nothing).
2. **Values.** Everything the reader uses later — the Image Pixel module, the geometry of
   every frame, the modality rescale — is read here by `bonelesion.dicom.values`
   (typed parsers, plausibility bounds) and kept in `PixelModule` and `Frame`: later steps
   never parse a file value again. A file whose pixel data are truncated (native data
   shorter than Rows × Columns × frames × samples × BitsAllocated, fragments past the end
   of the file) is refused here, by name, before it can join a stack.

Any failure is an `InputError` naming the file (`DamagedFileError` for a damaged one);
`bonelesion.dicom.series` reports such a file as refused and reads the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset

from bonelesion.dicom import kept_headers, values, vendors
from bonelesion.dicom.discovery import sniff_dicom
from bonelesion.dicom.fastheader import read_header
from bonelesion.dicom.multiframe import flatten_frames, frame_number
from bonelesion.dicom.structure import (
    ITEM_TAG,
    SEQUENCE_DELIMITER_TAG,
    PixelLocation,
    scan_header,
)
from bonelesion.errors import (
    DamagedFileError,
    MissingAttributeError,
    NotDicomError,
    UnsupportedInputError,
)

__all__ = [
    "Frame",
    "PixelModule",
    "read_file_header",
    "pixel_module",
    "deflated_dataset",
    "frames_of",
    "MAX_FRAMES_PER_FILE",
]


logger = logging.getLogger(__name__)


_DICOMDIR_SOP_CLASS = pydicom.uid.MediaStorageDirectoryStorage


#: Objects with Rows/Columns that are not images of the patient: read by other modules.
_NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation (read it as an ROI source)",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.11.1": "presentation state",
}


_PIXEL_DATA_TAG = 0x7FE00010
_IMPLICIT_LITTLE = "1.2.840.10008.1.2"
_EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
_EXPLICIT_BIG = "1.2.840.10008.1.2.2"

#: Most frames accepted in one file (an enhanced object of 20 000 frames is huge already).
MAX_FRAMES_PER_FILE = 100_000
_BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})
#: Fragments of encapsulated pixel data walked when checking a file for truncation.
_MAX_FRAGMENTS = 1_000_000
#: The exceptions pydicom's parser raises for bytes it cannot parse (after the structure
#: check they mean a gap in that check: reported as such, with the file).
_PYDICOM_PARSE_ERRORS = (InvalidDicomError, EOFError, struct.error, ValueError,
                         NotImplementedError, KeyError, TypeError, UnicodeError, IndexError,
                         OSError)


@dataclass(frozen=True)
class PixelModule:
    """The Image Pixel module of a file (PS3.3 C.7.6.3), validated, and where its data are.

    Parameters
    ----------
    rows, columns : int
        1 … 65535.
    number_of_frames : int
        1 … `MAX_FRAMES_PER_FILE`.
    samples_per_pixel : int
        1 or 3.
    bits_allocated : int
        1, 8, 16, 32 or 64.
    bits_stored : int
        1 … ``bits_allocated``.
    pixel_representation : int
        0 (unsigned) or 1 (two's complement).
    photometric_interpretation : str
    planar_configuration : int
    transfer_syntax : str
        From the File Meta Information (from the encoding of a raw data set).
    location : PixelLocation
        Where the Pixel Data value is.
    file_size : int
        Bytes.
    """

    rows: int
    columns: int
    number_of_frames: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    transfer_syntax: str
    location: PixelLocation
    file_size: int
    #: End (file offset) of encapsulated pixel data, after the sequence delimiter.
    encapsulated_end: int | None = None

    @property
    def native_bytes(self) -> int:
        """Bytes of native (uncompressed) pixel data: Rows × Columns × frames × samples × bits."""
        n_bits = (self.rows * self.columns * self.number_of_frames * self.samples_per_pixel
                  * self.bits_allocated)
        return (n_bits + 7) // 8


@dataclass
class Frame:
    """One frame of a file: its flat header and the typed values the reader needs.

    Every number here was parsed and checked by `frames_of`; the later steps (geometry,
    decoding, assembly) do not read the flat header for them again.
    """

    path: Path
    flat: Dataset
    index: int | None  # 0-based frame index in a multi-frame file, None for single-frame
    n_frames_in_file: int
    sop_instance_uid: str
    ipp: NDArray[np.float64] | None
    iop: NDArray[np.float64] | None
    pixel_spacing: NDArray[np.float64] | None
    #: the file's pixel module (None only for frames built by hand in tests)
    pixel: PixelModule | None = None
    #: modality LUT of this frame (slope 0 or absent → 1)
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    #: b-value known only from the series context (`_with_series_b_values`)
    series_b_value_s_per_mm2: float | None = None
    #: what was substituted for a missing identifier (`ensure_series_instance_uid`)
    identity_note: str = ""

    @property
    def pixel_location(self) -> tuple[int, int] | None:
        """(byte offset, length) of the Pixel Data value in the file, when it is native."""
        loc = self.pixel.location if self.pixel is not None else None
        if loc is None or loc.inflated or loc.tag != _PIXEL_DATA_TAG:
            return None
        return loc.offset, loc.length


def read_file_header(path: Path, read_warnings: list[str], has_preamble: bool | None = None,
                     *, fast_path: bool = True, reuse: bool = False
                     ) -> tuple[Dataset, PixelLocation | None]:
    """Read a header (no pixels); return it and where its pixel data are.

    Parameters
    ----------
    path : Path
        A regular file.
    read_warnings : list of str
        Receives pydicom's warnings about the header.
    has_preamble : bool, optional
        From discovery (sniffed when None).
    fast_path : bool
        Use the fast reader for plain Part 10 files.
    reuse : bool
        Take the header the index just parsed of this file, if it kept it and the file is
        unchanged (`bonelesion.dicom.kept_headers`; the fast path only), instead of
        parsing it again.

    Returns
    -------
    (Dataset, PixelLocation or None)
        The header, bound to its file (`bonelesion.dicom.values.source_of`).

    Raises
    ------
    NotDicomError
        If the file cannot be read.
    bonelesion.dicom.structure.HeaderStructureError
        If its encoding is damaged or hostile (names the file, element and byte).
    """
    name = values.printable(path)
    if has_preamble is None:
        has_preamble = sniff_dicom(path)[1]
    try:
        if fast_path and has_preamble:
            fast = kept_headers.take(os.fspath(path), os.stat(path)) \
                if reuse and kept_headers.n_kept() else None
            if fast is None:
                fast = read_header(path)
            if fast is not None:
                values.bind_source(fast.dataset, path)
                location = None
                if fast.pixel_data_tag is not None and fast.pixel_data_offset is not None \
                        and fast.pixel_data_length is not None:
                    location = PixelLocation(fast.pixel_data_tag, None, fast.pixel_data_offset,
                                             fast.pixel_data_length)
                return fast.dataset, location
        scan = scan_header(path, where=name)
    except OSError as exc:
        raise NotDicomError(
            f"File {name}: cannot be read ({exc.strerror or exc}). Potential fix: check the "
            "file's permissions, or copy it again."
        ) from exc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if scan.deflated:
                ds: Dataset = deflated_dataset(scan.header, scan.data_offset, path)
            else:
                ds = pydicom.dcmread(BytesIO(scan.header), force=True)
        except _PYDICOM_PARSE_ERRORS as exc:
            raise NotDicomError(
                f"File {name}: the header passed the structure check but pydicom cannot "
                f"parse it ({type(exc).__name__}: {values.printable(str(exc))[:200]}). "
                "Potential fix: re-export the file, or remove it from the export."
            ) from exc
    for w in caught:
        read_warnings.append(f"{name}: {w.message}")
    values.bind_source(ds, path)
    # the whole header passed `check_elements`: its sequences need no second check
    values.mark_checked(ds, {t: e for t, e in ds._dict.items() if type(e) is RawDataElement})
    return ds, scan.pixel


def deflated_dataset(header: bytes, data_offset: int, path: str | os.PathLike[str]
                     ) -> FileDataset:
    """Build a deflated file's header from its File Meta Information and inflated data set."""
    meta = FileMetaDataset(read_dataset(BytesIO(header[132:data_offset]), False, True))
    data = read_dataset(BytesIO(header[data_offset:]), False, True)
    ds = FileDataset(os.fspath(path), data, header[:128], meta, False, True)
    ds.set_original_encoding(False, True, data._character_set)
    return ds


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = values.get_uid(meta, "TransferSyntaxUID") if meta is not None else None
    if uid:
        return uid
    implicit, little = ds.original_encoding
    if implicit:
        return _IMPLICIT_LITTLE
    return _EXPLICIT_LITTLE if little in (None, True) else _EXPLICIT_BIG


def _int_in(ds: Dataset, keyword: str, allowed: range | frozenset[int], default: int | None,
            name: str) -> int:
    where = f"File {name}"
    value = values.get_int(ds, keyword)
    if value is None:
        if default is None:
            raise MissingAttributeError(
                f"{where}: {keyword} is absent; expected it in every image. Potential fix: "
                "re-export the file with its Image Pixel module.")
        return default
    if value not in allowed:
        shown = (f"{min(allowed)}–{max(allowed)}" if isinstance(allowed, range)
                 else ", ".join(str(v) for v in sorted(allowed)))
        raise DamagedFileError(
            f"{where}: {keyword} is {value}; expected {shown}. Potential fix: the header is "
            "damaged; re-export the file, or remove it from the export.", name)
    return value


def pixel_module(ds: Dataset, location: PixelLocation | None, path: Path,
                 file_size: int | None = None) -> PixelModule:
    """Return the validated Image Pixel module of a header, after a truncation check.

    Raises
    ------
    MissingAttributeError
        If Rows, Columns, BitsAllocated or the Pixel Data are absent.
    DamagedFileError
        If a value is out of range, or the pixel data are shorter than the module says
        (native) or run past the end of the file (encapsulated).
    InputError
        If a value is not a valid number (from `bonelesion.dicom.values`).
    """
    name = values.printable(path)
    where = f"File {name}"
    rows = _int_in(ds, "Rows", range(1, 65536), None, name)
    columns = _int_in(ds, "Columns", range(1, 65536), None, name)
    n_frames = _int_in(ds, "NumberOfFrames", range(1, MAX_FRAMES_PER_FILE + 1), 1, name)
    samples = _int_in(ds, "SamplesPerPixel", frozenset({1, 3}), 1, name)
    bits = _int_in(ds, "BitsAllocated", _BITS_ALLOCATED, None, name)
    stored = _int_in(ds, "BitsStored", range(1, bits + 1), bits, name)
    signed = _int_in(ds, "PixelRepresentation", frozenset({0, 1}), 0, name)
    planar = _int_in(ds, "PlanarConfiguration", frozenset({0, 1}), 0, name)
    photometric = (values.get_cs(ds, "PhotometricInterpretation") or ("MONOCHROME2",))[0]
    if location is None or location.tag != _PIXEL_DATA_TAG:
        raise MissingAttributeError(
            f"{where}: no Pixel Data (7FE0,0010); expected the image's pixels. Potential fix: "
            "export the images with their pixel data.")
    if file_size is None:
        file_size = path.stat().st_size
    module = PixelModule(rows, columns, n_frames, samples, bits, stored, signed, photometric,
                         planar, _transfer_syntax(ds), location, file_size)
    if location.inflated:
        return module  # deflated: the inflated length was checked when inflating
    if location.encapsulated:
        end = _check_fragments(path, location.offset, file_size, where)
        return dataclasses.replace(module, encapsulated_end=end)
    if location.offset + location.length > file_size:
        raise DamagedFileError(
            f"{where}: truncated: the pixel data need {location.length} bytes from byte "
            f"{location.offset} but the file ends after {file_size} bytes "
            f"({max(0, file_size - location.offset)} bytes of pixel data present). Potential "
            "fix: copy the file again from the source.", name)
    if location.length < module.native_bytes:
        raise DamagedFileError(
            f"{where}: the pixel data hold {location.length} bytes; Rows × Columns × frames "
            f"× samples × BitsAllocated/8 = {rows}×{columns}×{n_frames}×{samples}×{bits}/8 = "
            f"{module.native_bytes} bytes expected. Potential fix: copy the file again from "
            "the source.", name)
    return module


def _check_fragments(path: Path, start: int, file_size: int, where: str) -> int:
    """Walk the item headers of encapsulated pixel data; refuse a truncated file."""
    pos = start
    with open(path, "rb") as fh:
        for n_items in range(_MAX_FRAGMENTS):
            fh.seek(pos)
            head = fh.read(8)
            if len(head) < 8:
                raise DamagedFileError(
                    f"{where}: truncated: the encapsulated pixel data end after {n_items} "
                    f"item(s) at byte {pos} without a sequence delimiter (file size "
                    f"{file_size} bytes). Potential fix: copy the file again from the source.",
                    values.printable(path))
            group, element, length = struct.unpack("<HHL", head)
            tag = group << 16 | element
            if tag == SEQUENCE_DELIMITER_TAG:
                return pos + 8
            if tag != ITEM_TAG:
                raise DamagedFileError(
                    f"{where}: encapsulated pixel data item {n_items} at byte {pos} has the "
                    f"tag ({group:04X},{element:04X}); expected an item (FFFE,E000). "
                    "Potential fix: re-export the file.", values.printable(path))
            pos += 8 + length
            if pos > file_size:
                raise DamagedFileError(
                    f"{where}: truncated: encapsulated pixel data item {n_items} needs bytes "
                    f"up to {pos} but the file ends at {file_size} bytes. Potential fix: "
                    "copy the file again from the source.", values.printable(path))
    raise DamagedFileError(
        f"{where}: more than {_MAX_FRAGMENTS} pixel data fragments; refused. Potential fix: "
        "check the file.", values.printable(path))


def _geometry(flat: Dataset, where: str) -> tuple[NDArray[np.float64] | None,
                                                  NDArray[np.float64] | None,
                                                  NDArray[np.float64] | None]:
    """ImagePositionPatient, ImageOrientationPatient, PixelSpacing of a flat header."""
    ipp_values = values.get_floats(flat, "ImagePositionPatient", count=3)
    iop_values = values.get_floats(flat, "ImageOrientationPatient", count=6)
    ps_values = values.get_floats(flat, "PixelSpacing", count=2)
    # plausibility (positive spacing, positions within reach) is judged per stack
    # (`bonelesion.dicom.geometry.plan_stack`): one odd exporter writes it on every file
    ipp = np.array(ipp_values) if ipp_values is not None else None
    iop = np.array(iop_values) if iop_values is not None else None
    ps = np.array(ps_values) if ps_values is not None else None
    return ipp, iop, ps


def _rescale(flat: Dataset) -> tuple[float, float]:
    slope = values.get_float(flat, "RescaleSlope")
    intercept = values.get_float(flat, "RescaleIntercept")
    s = 1.0 if slope is None or slope == 0.0 else slope
    return s, 0.0 if intercept is None else intercept


def frames_of(path: Path, ds: Dataset, max_bytes: int,
              pixel_location: PixelLocation | None = None, *, file_size: int | None = None
              ) -> list[Frame]:
    """Frames of one header (one per frame of a multi-frame object), every value checked.

    Raises
    ------
    UnsupportedInputError
        If Rows × Columns × frames as float32 would exceed ``max_bytes``.
    InputError
        If a value the reader needs is invalid (`DamagedFileError` for a damaged file,
        `MissingAttributeError` for an absent one); the message names the file.
    """
    name = values.printable(path)
    where = f"File {name}"
    rows = values.get_int(ds, "Rows") or 0
    cols = values.get_int(ds, "Columns") or 0
    n_frames = values.get_int(ds, "NumberOfFrames") or 1
    if rows * cols * n_frames * 4 > max_bytes:
        raise UnsupportedInputError(
            f"{where}: {rows}×{cols}×{n_frames} frames would need "
            f"{rows * cols * n_frames * 4 / 1024**3:.1f} GiB as float32 (limit "
            f"{max_bytes / 1024**3:.1f} GiB); refused before decoding. "
            "Potential fix: check the header (Rows, Columns, NumberOfFrames) or raise max_bytes."
        )
    pixel = pixel_module(ds, pixel_location, path, file_size)
    flats = flatten_frames(ds)
    multi = len(flats) > 1 or frame_number(flats[0]) is not None
    if multi and len(flats) != pixel.number_of_frames:
        raise DamagedFileError(
            f"{where}: {len(flats)} frame headers for NumberOfFrames "
            f"{pixel.number_of_frames}; expected one per frame. Potential fix: re-export the "
            "file.", name)
    out = []
    sop = values.get_uid(ds, "SOPInstanceUID") or ""
    # A UIH mosaic has no top-level position: its first tile's position stands for it.
    uih_mosaic = len(flats) == 1 and vendors.uih.is_uih_mosaic(flats[0])
    uih_first_tile = None
    if uih_mosaic:
        tiles = vendors.uih.uih_tile_positions(flats[0])
        uih_first_tile = tiles[0] if tiles is not None and len(tiles) else None
    for i, flat in enumerate(flats):
        ipp, iop, ps = _geometry(flat, where)
        slope, intercept = _rescale(flat)
        out.append(
            Frame(
                path=path,
                flat=flat,
                index=i if multi else None,
                n_frames_in_file=len(flats) if multi else 1,
                sop_instance_uid=sop,
                ipp=ipp if not uih_mosaic else uih_first_tile,
                iop=iop,
                pixel_spacing=ps,
                pixel=pixel,
                rescale_slope=slope,
                rescale_intercept=intercept,
            )
        )
    return out

