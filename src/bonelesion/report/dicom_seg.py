"""DICOM SEG of the lesion masks (highdicom): one binary segment per lesion on a source series.

No full-volume mask is stacked per lesion: each lesion is put on the source grid within its
bounding box, and highdicom gets one label map (segment numbers) of the source frames the
lesions touch (frames no lesion touches are omitted from a SEG anyway). Lesions are measured
each on its own, so they may overlap, which a label map cannot hold: then every shared pixel
goes to one lesion, keeping each lesion on every frame it touches (so highdicom makes the
same frames as from one binary array per lesion), and each frame's pixels are then replaced
by its lesion's own mask. Memory: one byte (two above 255 lesions) per pixel of the touched
frames, instead of one per pixel, frame and lesion.

References
----------
DICOM PS3.3 A.51 (Segmentation IOD).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from bonelesion.errors import (
    GeometryMismatchError,
    InputError,
    UnsupportedInputError,
)
from bonelesion.model.volume import IndexBox, Volume
from bonelesion.report.dicom_sources import (
    HIGHDICOM_FAILURES,
    OTHER_STACK,
    copy_deidentification,
    describe_source,
    log_warnings,
    read_source,
    safe_text,
    with_shared_geometry,
    with_type2_present,
)
from bonelesion.report.result import LesionShape, lesion_in_box

__all__ = ["write_segmentation"]

logger = logging.getLogger(__name__)



def _mask_on(source: Volume, mask: LesionShape, lesion_id: str
             ) -> tuple[IndexBox, np.ndarray]:
    """Put the lesion on the source grid within its box; raise if it holds no voxel there."""
    box, arr = lesion_in_box(mask, source, lesion_id=lesion_id)
    if not arr.any():
        raise InputError(
            f"DICOM SEG: mask of lesion {lesion_id} holds no voxel on series "
            f"{source.series.series_instance_uid}. Potential fix: check that the mask and the "
            "series share a frame of reference and overlap.")
    return box, arr


def _planes(arr: np.ndarray) -> np.ndarray:
    """Return the indices (in the box) of the slices a box mask holds voxels on."""
    return np.flatnonzero(arr.reshape(arr.shape[0], -1).any(axis=1))


def _label_map(shape: tuple[int, int, int], boxed: Sequence[tuple[IndexBox, np.ndarray]]
               ) -> tuple[list[int], np.ndarray | None, bool]:
    """Return the slices the lesions touch and a label map of them (lesion k → k + 1).

    Returns (slices, labels, overlap). With overlap, shared pixels go to the first lesion,
    then each lesion left without a pixel on a slice it touches takes one of its pixels from
    a lesion holding two or more there; ``labels`` is None when that is impossible (two
    lesions of one and the same pixel on a slice).
    """
    touched = sorted({box.start[0] + int(k) for box, arr in boxed for k in _planes(arr)})
    row_of = {sl: t for t, sl in enumerate(touched)}
    labels = np.zeros((len(touched), *shape[1:]),
                      dtype=np.uint8 if len(boxed) < 256 else np.uint16)
    overlap = False
    absent: list[tuple[int, int, IndexBox, np.ndarray]] = []
    for n, (box, arr) in enumerate(boxed, start=1):
        for k in _planes(arr):
            t = row_of[box.start[0] + int(k)]
            plane = labels[t, box.slices[1], box.slices[2]]
            free = arr[k] & (plane == 0)
            if not overlap and free.sum() != arr[k].sum():
                overlap = True
            if free.any():
                plane[free] = n
            else:
                absent.append((n, t, box, arr[k]))
    for n, t, box, pixels in absent:
        plane = labels[t, box.slices[1], box.slices[2]]
        counts = np.bincount(labels[t].ravel(), minlength=len(boxed) + 1)
        owners = plane[pixels]
        give = np.flatnonzero(counts[owners] >= 2)
        if give.size == 0:
            return touched, None, True
        rr, cc = np.nonzero(pixels)
        plane[rr[give[0]], cc[give[0]]] = n
    return touched, labels, overlap


def _stacked(shape: tuple[int, int, int], touched: Sequence[int],
             boxed: Sequence[tuple[IndexBox, np.ndarray]]) -> np.ndarray:
    """Stack one binary plane per lesion on the touched slices (T, R, C, lesions): fallback."""
    row_of = {sl: t for t, sl in enumerate(touched)}
    stacked = np.zeros((len(touched), *shape[1:], len(boxed)), dtype=bool)
    for n, (box, arr) in enumerate(boxed):
        for k in _planes(arr):
            stacked[row_of[box.start[0] + int(k)], box.slices[1], box.slices[2], n] |= arr[k]
    return stacked


def _own_pixels(seg: Dataset, source: Volume, touched: Sequence[int],
                boxed: Sequence[tuple[IndexBox, np.ndarray]], where: str) -> None:
    """Replace each SEG frame's pixels by its lesion's own mask on that slice.

    A frame's lesion is its ReferencedSegmentNumber; its slice is the touched slice whose
    position along the slice normal is nearest the frame's ImagePositionPatient.

    Raises
    ------
    GeometryMismatchError
        If a frame lies between the touched slices (not on one of them).
    """
    normal = source.slice_normal_lps
    offsets = source.index_to_lps([[sl, 0, 0] for sl in touched]) @ normal
    rows, cols = source.shape[1:]
    packed: list[bytes] = []
    carry = np.zeros(0, dtype=np.uint8)
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        position = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        t = int(np.argmin(np.abs(offsets - position @ normal)))
        if abs(offsets[t] - position @ normal) > 0.25 * source.spacing_mm[0]:
            raise GeometryMismatchError(
                f"DICOM SEG on {where}: frame {k + 1} lies at {position.tolist()}, on no "
                "slice a lesion touches. Potential fix: report this (a bug).")
        box, arr = boxed[number - 1]
        plane = np.zeros((rows, cols), dtype=np.uint8)
        local = touched[t] - box.start[0]
        if 0 <= local < arr.shape[0]:
            plane[box.slices[1], box.slices[2]] = arr[local]
        bits = np.concatenate([carry, plane.ravel()])
        whole = bits.size - bits.size % 8
        packed.append(np.packbits(bits[:whole], bitorder="little").tobytes())
        carry = bits[whole:]
    if carry.size:
        packed.append(np.packbits(carry, bitorder="little").tobytes())
    data = b"".join(packed)
    old = bytes(seg.PixelData)
    if len(data) > len(old):
        raise GeometryMismatchError(
            f"DICOM SEG on {where}: {len(data)} bytes of frames for {len(old)} of pixel data. "
            "Potential fix: report this (a bug).")
    seg.PixelData = data + old[len(data):]  # keeps highdicom's padding byte
    seg.SegmentsOverlap = "YES"


def write_segmentation(
    source: Volume,
    masks: Mapping[str, LesionShape],
    path: str | Path,
    *,
    source_datasets: Sequence[Dataset] | None = None,
    frame_slices: Sequence[int] | None = None,
    series_number: int = 9901,
    algorithm_type: str = "MANUAL",
) -> tuple[Dataset, dict[str, int]]:
    """Write a binary DICOM SEG with one segment per lesion on ``source``.

    Parameters
    ----------
    source : Volume
        The series the masks are drawn on; its ``series.source_files`` are read.
    masks : mapping of lesion id to boolean Volume or Lesion
        A mask Volume is resampled onto ``source`` (nearest neighbour) when on another
        grid; a `Lesion` is rasterised on it. Either way only the lesion's bounding box on
        ``source`` is computed.
    path : path
        Output file.
    algorithm_type : {"MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"}
        How the masks were made (``AUTOMATIC`` adds bonelesion's algorithm identification).

    Returns
    -------
    (Dataset, dict)
        The SEG dataset and lesion id → segment number.

    Raises
    ------
    InputError
        No masks, an empty mask, or source files that do not match the volume.
    MissingAttributeError
        A multi-frame source lacks Pixel Measures or Plane Orientation (shared and per frame).
    UnsupportedInputError
        The frames of a multi-frame source differ in pixel spacing or orientation, or
        highdicom cannot build a SEG on the source (its message is kept).

    Notes
    -----
    An enhanced (multi-frame) source is referenced as one object: the SEG's frames follow
    the source's frames (matched through each frame's PlanePositionSequence, see
    `read_source`) and reference them by frame number. Pixel Measures and Plane
    Orientation that the source repeats per frame instead of sharing are accepted when all
    frames agree (see `with_shared_geometry`).
    """
    if not masks:
        raise InputError(
            f"DICOM SEG: no lesion masks for series {source.series.series_instance_uid}. "
            "Potential fix: pass the study's lesion masks.")
    from bonelesion import __version__

    if source_datasets is None:
        datasets, slices = read_source(source)
    else:
        datasets = list(source_datasets)
        slices = list(frame_slices) if frame_slices is not None else list(range(source.shape[0]))
    ids = list(masks)
    boxed = [_mask_on(source, masks[i], i) for i in ids]
    touched, labels, overlap = _label_map(source.shape, boxed)
    pixels = labels if labels is not None else _stacked(source.shape, touched, boxed)
    # highdicom gets the touched frames only, each with the position of its source frame
    own_frames: set[int] | None = None
    if OTHER_STACK in slices:
        # one stack of a multi-frame object: highdicom matches the planes to the source
        # frames at their positions (and to the other stacks' frames there: dropped below)
        frame_of = {sl: k for k, sl in enumerate(slices) if sl != OTHER_STACK}
        own_frames = {k + 1 for k in frame_of.values()}
        positions = [_plane_position(datasets[0], frame_of[sl]) for sl in touched]
    elif len(datasets) == 1 and "PerFrameFunctionalGroupsSequence" in datasets[0]:
        frame_of = {sl: k for k, sl in enumerate(slices)}
        positions = [_plane_position(datasets[0], frame_of[sl]) for sl in touched]
    else:
        file_of = {sl: k for k, sl in enumerate(slices)}
        positions = [_file_position(datasets[file_of[sl]]) for sl in touched]
    algo = hd.seg.SegmentAlgorithmTypeValues(algorithm_type)
    ident = None
    if algo is not hd.seg.SegmentAlgorithmTypeValues.MANUAL:
        ident = hd.AlgorithmIdentificationSequence(
            name="bonelesion", version=__version__, family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=f"lesion {lesion_id}"[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion, algorithm_type=algo,
            algorithm_identification=ident, tracking_uid=generate_uid(),
            tracking_id=f"lesion {lesion_id}"[:64],
            anatomic_regions=[codes.SCT.Bone],
        )
        for n, lesion_id in enumerate(ids)
    ]
    uid = source.series.series_instance_uid or "(no UID)"
    where = f"series {uid} ({describe_source(datasets)})"
    # highdicom reads the geometry of a multi-frame source from its shared groups only
    spatial = [with_type2_present(ds, where) for ds in datasets]
    if len(spatial) == 1:
        spatial = [with_shared_geometry(spatial[0], where)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            seg = _segmentation(spatial, pixels, descriptions, series_number, positions)
        except HIGHDICOM_FAILURES as exc:
            raise UnsupportedInputError(
                f"DICOM SEG on {where}: highdicom {hd.__version__} cannot build a "
                f"Segmentation on this source ({safe_text(exc)}); expected source images "
                "complete for their IOD (identification; positions, orientation and pixel "
                "measures of every frame). Potential fix: write the SEG on another series of "
                "the study, or skip DICOM output (--no-dicom); the measurements are "
                "unaffected.") from exc
    log_warnings(caught, "DICOM SEG")
    if overlap and labels is not None:
        _own_pixels(seg, source, touched, boxed, where)
    if own_frames is not None:
        _keep_source_frames(seg, own_frames, where)
    copy_deidentification(datasets[0], seg)
    seg.save_as(Path(path))
    return seg, {lesion_id: n + 1 for n, lesion_id in enumerate(ids)}


def _file_position(ds: Dataset) -> hd.PlanePositionSequence:
    return hd.PlanePositionSequence(
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        image_position=[float(v) for v in ds.ImagePositionPatient])


def _plane_position(ds: Dataset, frame_index: int) -> hd.PlanePositionSequence:
    item = ds.PerFrameFunctionalGroupsSequence[frame_index].PlanePositionSequence[0]
    return hd.PlanePositionSequence(
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        image_position=[float(v) for v in item.ImagePositionPatient])


def _keep_source_frames(seg: Dataset, frames: set[int], where: str) -> None:
    """Drop the SEG's references to source frames of other stacks.

    highdicom refers to every frame of the object at a plane's position, and the frames of
    the other stacks share those positions.

    Raises
    ------
    GeometryMismatchError
        If a SEG frame keeps no source frame.
    """
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        for derivation in item.get("DerivationImageSequence", []):
            kept = [src for src in derivation.SourceImageSequence
                    if int(src.get("ReferencedFrameNumber", 0) or 0) in frames]
            if not kept:
                raise GeometryMismatchError(
                    f"DICOM SEG on {where}: SEG frame {k + 1} matches no source frame of the "
                    "volume's stack; expected one at its position. Potential fix: pass the "
                    "Volume loaded from exactly this file.")
            derivation.SourceImageSequence = DicomSequence(kept)


def _segmentation(datasets: Sequence[Dataset], pixels: np.ndarray,
                  descriptions: Sequence[hd.seg.SegmentDescription],
                  series_number: int,
                  plane_positions: Sequence[hd.PlanePositionSequence] | None = None,
                  ) -> hd.seg.Segmentation:
    from bonelesion import __version__

    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, plane_positions=plane_positions,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="bonelesion", manufacturer_model_name="bonelesion",
        software_versions=__version__, device_serial_number="0",
        series_description="bonelesion lesion masks", content_label="LESIONS",
    )


