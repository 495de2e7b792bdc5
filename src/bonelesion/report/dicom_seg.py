"""DICOM SEG of the lesion masks (highdicom): one binary segment per lesion on a source series.

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
from bonelesion.model.volume import Volume
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
from bonelesion.report.result import mask_array_on

__all__ = ["write_segmentation"]

logger = logging.getLogger(__name__)



def _mask_on(source: Volume, mask: Volume, lesion_id: str) -> np.ndarray:
    arr = mask_array_on(mask, source)
    if not arr.any():
        raise InputError(
            f"DICOM SEG: mask of lesion {lesion_id} holds no voxel on series "
            f"{source.series.series_instance_uid}. Potential fix: check that the mask and the "
            "series share a frame of reference and overlap.")
    return arr


def write_segmentation(
    source: Volume,
    masks: Mapping[str, Volume],
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
    masks : mapping of lesion id to boolean Volume
        Resampled onto ``source`` (nearest neighbour) when on another grid.
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
    stacked = np.stack([_mask_on(source, masks[i], i) for i in ids], axis=-1)
    positions = None
    own_frames: set[int] | None = None
    if OTHER_STACK in slices:
        # one stack of a multi-frame object: SEG planes in slice order at the positions of
        # the stack's own frames (highdicom matches them to the source frames)
        frame_of = {sl: k for k, sl in enumerate(slices) if sl != OTHER_STACK}
        own_frames = {k + 1 for k in frame_of.values()}
        positions = [_plane_position(datasets[0], frame_of[sl]) for sl in range(source.shape[0])]
        pixels = stacked
    else:
        # frames in source-frame order (file order for classic series, frame order for
        # enhanced objects)
        pixels = stacked[slices]
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
    if own_frames is not None:
        _keep_source_frames(seg, own_frames, where)
    copy_deidentification(datasets[0], seg)
    seg.save_as(Path(path))
    return seg, {lesion_id: n + 1 for n, lesion_id in enumerate(ids)}


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


