"""Outputs of CT detection: vertebrae.csv, candidates.csv, label-map DICOM SEGs, QC overview.

Rendered from the objects the detector returns (`bonelesion.roi.vertebrae.SpineLabelling`,
`bonelesion.roi.candidates.Candidate`), never from files. Every function writes one file.

* `vertebra_rows` / `write_vertebrae_csv`: one row per vertebra found (level, confidence and
  its reasons, body centroid in LPS mm, trabecular attenuation, the osteoporosis thresholds
  and the category they give at the screening level, the SINS location category).
* `write_label_seg`: a BINARY DICOM Segmentation (highdicom) with one segment per mask,
  built from a label map of the touched frames only (masks are boxes on the CT grid).
* `render_overview`: curved sagittal and coronal reformats through the spinal axis with each
  vertebra outlined and labelled (and each lesion candidate circled).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bonelesion.errors import InputError, UnsupportedInputError
from bonelesion.model.volume import Volume
from bonelesion.report.figures import OverviewMarker
from bonelesion.report.table import rows_csv_text
from bonelesion.roi.config import OsteoporosisConfig, VertebraConfig
from bonelesion.roi.vertebrae import SpineLabelling, Vertebra

__all__ = [
    "VERTEBRA_COLUMNS",
    "SegmentMask",
    "osteoporosis_category",
    "sins_location_of",
    "vertebra_record",
    "vertebra_rows",
    "write_vertebrae_csv",
    "write_rows_csv",
    "write_label_seg",
    "render_overview",
    "CANDIDATE_COLOUR",
    "CANDIDATE_COLUMNS",
    "candidate_rows",
    "write_candidates_csv",
]

logger = logging.getLogger(__name__)

#: Columns of vertebrae.csv, in order.
VERTEBRA_COLUMNS = (
    "study_instance_uid", "series_instance_uid", "label", "confidence", "reasons",
    "center_l_mm", "center_p_mm", "center_s_mm", "trabecular_mean_hu", "trabecular_sd_hu",
    "trabecular_voxels", "body_volume_ml", "height_mm", "region", "rib_sides", "fused_to_ilium",
    "partial", "sins_location", "osteoporosis_category", "osteoporosis_level",
    "osteoporosis_highly_specific_hu", "osteoporosis_sensitive_hu",
)


#: Columns of candidates.csv, in order: the leading ones are the annotations CSV format
#: (`bonelesion.roi.sources.read_annotations_csv`), so the file works as ``--rois``; the
#: others are kept there as per-lesion annotations.
CANDIDATE_COLUMNS = (
    "lesion_id", "center_l_mm", "center_p_mm", "center_s_mm", "radius_mm",
    "study_instance_uid", "series_instance_uid", "volume_ml", "vertebra",
    "vertebra_confidence", "kind", "score", "detected", "attenuation_mean_hu",
    "attenuation_max_hu", "background_hu", "contrast_hu", "depth_mm", "part", "reasons",
)


def candidate_rows(study_instance_uid: str, candidates: Iterable[Any], series_instance_uid: str
                   ) -> list[dict[str, Any]]:
    """Rows of candidates.csv for one study (`bonelesion.roi.candidates.Candidate`)."""
    rows = []
    for c in candidates:
        rows.append({
            "lesion_id": c.lesion_id, "center_l_mm": round(c.centre_lps_mm[0], 2),
            "center_p_mm": round(c.centre_lps_mm[1], 2),
            "center_s_mm": round(c.centre_lps_mm[2], 2), "radius_mm": round(c.radius_mm, 2),
            "study_instance_uid": study_instance_uid,
            "series_instance_uid": series_instance_uid, "volume_ml": round(c.volume_ml, 4),
            "vertebra": c.vertebra,
            "vertebra_confidence": round(c.vertebra_confidence, 3) if c.vertebra else None,
            "kind": c.kind, "score": round(c.score, 4), "detected": True,
            "attenuation_mean_hu": round(c.attenuation_mean_hu, 1),
            "attenuation_max_hu": round(c.attenuation_max_hu, 1),
            "background_hu": round(c.background_hu, 1), "contrast_hu": round(c.contrast_hu, 1),
            "depth_mm": round(c.depth_mm, 2), "part": c.part, "reasons": "; ".join(c.reasons),
        })
    return rows


def write_candidates_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write candidates.csv (`CANDIDATE_COLUMNS`)."""
    return write_rows_csv(path, CANDIDATE_COLUMNS, rows)


def osteoporosis_category(trabecular_mean_hu: float | None, config: OsteoporosisConfig) -> str:
    """Opportunistic screening category of a trabecular attenuation (Pickhardt 2013).

    ``likely`` (≤ ``highly_specific_hu``), ``indeterminate`` (≤ ``sensitive_hu``),
    ``unlikely`` (above), "" without a measurement.

    Examples
    --------
    >>> cfg = OsteoporosisConfig()
    >>> [osteoporosis_category(v, cfg) for v in (95.0, 140.0, 210.0, None)]
    ['likely', 'indeterminate', 'unlikely', '']
    """
    if trabecular_mean_hu is None or not math.isfinite(trabecular_mean_hu):
        return ""
    if trabecular_mean_hu <= config.highly_specific_hu:
        return "likely"
    if trabecular_mean_hu <= config.sensitive_hu:
        return "indeterminate"
    return "unlikely"


def sins_location_of(label: str, confidence: float, config: VertebraConfig) -> str:
    """SINS location category of a level (Fisher 2010), "" below the confidence needed."""
    from bonelesion.classify.spine import location_category_from_level

    if not label or confidence < config.min_confidence_for_level:
        return ""
    try:
        return location_category_from_level(label)
    except InputError:
        return ""


def vertebra_record(v: Vertebra, *, osteoporosis: OsteoporosisConfig,
                    vertebrae: VertebraConfig) -> dict[str, Any]:
    """One vertebra as plain values (for the study document and vertebrae.csv)."""
    level_ok = v.label == osteoporosis.level and v.confidence >= vertebrae.min_confidence_for_level
    return {
        "label": v.label,
        "confidence": round(v.confidence, 3),
        "reasons": list(v.reasons),
        "center_lps_mm": [round(c, 2) for c in v.centroid_lps_mm],
        "trabecular_mean_hu": _round(v.trabecular_mean_hu, 1),
        "trabecular_sd_hu": _round(v.trabecular_sd_hu, 1),
        "trabecular_voxels": v.trabecular_voxel_count,
        "body_volume_ml": round(v.body_volume_ml, 2),
        "height_mm": round(v.height_mm, 1),
        "region": v.region,
        "rib_sides": list(v.rib_sides),
        "fused_to_ilium": v.fused_to_ilium,
        "partial": v.partial,
        "sins_location": sins_location_of(v.label, v.confidence, vertebrae),
        "osteoporosis_category": (osteoporosis_category(v.trabecular_mean_hu, osteoporosis)
                                  if level_ok else ""),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def vertebra_rows(study_instance_uid: str, labelling: SpineLabelling, *,
                  osteoporosis: OsteoporosisConfig, vertebrae: VertebraConfig
                  ) -> list[dict[str, Any]]:
    """Rows of vertebrae.csv for one study (cranial to caudal)."""
    series = (labelling.analysis.ct.series.series_instance_uid
              if labelling.analysis is not None else "")
    rows = []
    for v in labelling.vertebrae:
        rec = vertebra_record(v, osteoporosis=osteoporosis, vertebrae=vertebrae)
        rows.append({
            "study_instance_uid": study_instance_uid, "series_instance_uid": series,
            "label": rec["label"], "confidence": rec["confidence"],
            "reasons": "; ".join(rec["reasons"]),
            "center_l_mm": rec["center_lps_mm"][0], "center_p_mm": rec["center_lps_mm"][1],
            "center_s_mm": rec["center_lps_mm"][2],
            "trabecular_mean_hu": rec["trabecular_mean_hu"],
            "trabecular_sd_hu": rec["trabecular_sd_hu"],
            "trabecular_voxels": rec["trabecular_voxels"],
            "body_volume_ml": rec["body_volume_ml"], "height_mm": rec["height_mm"],
            "region": rec["region"], "rib_sides": ";".join(rec["rib_sides"]),
            "fused_to_ilium": rec["fused_to_ilium"], "partial": rec["partial"],
            "sins_location": rec["sins_location"],
            "osteoporosis_category": rec["osteoporosis_category"],
            "osteoporosis_level": osteoporosis.level,
            "osteoporosis_highly_specific_hu": osteoporosis.highly_specific_hu,
            "osteoporosis_sensitive_hu": osteoporosis.sensitive_hu,
        })
    return rows


def write_rows_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]
                   ) -> Path:
    """Write rows (header always present, Unix line ends, UTF-8); returns the path.

    Cells as in lesions.csv (`bonelesion.report.table.csv_cell`).
    """
    path = Path(path)
    path.write_text(rows_csv_text(columns, rows), encoding="utf-8")
    return path


def write_vertebrae_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write vertebrae.csv (`VERTEBRA_COLUMNS`)."""
    return write_rows_csv(path, VERTEBRA_COLUMNS, rows)


# ------------------------------------------------------------------------------ DICOM SEG
@dataclass(frozen=True, kw_only=True)
class SegmentMask:
    """One segment of a label-map SEG: its label, coded property and mask (a box Volume)."""

    label: str
    mask: Volume
    property_type: Any
    property_category: Any
    tracking_id: str = ""


def _paste(source: Volume, mask: Volume) -> tuple[tuple[slice, slice, slice], NDArray[np.bool_]]:
    """Where a box mask on ``source``'s grid sits (index slices) and its array.

    Raises
    ------
    InputError
        The mask is not a box of the source grid (other spacing, direction or a fractional
        offset).
    """
    offset = source.lps_to_index([mask.origin_lps_mm])[0]
    start = np.round(offset).astype(int)
    if (not np.allclose(offset, start, atol=1e-3)
            or not np.allclose(mask.spacing_mm, source.spacing_mm, rtol=1e-6)
            or not np.allclose(mask.direction_lps, source.direction_lps, atol=1e-6)):
        raise InputError(
            f"DICOM SEG: a mask is not a box of series {source.series.series_instance_uid} "
            "(other spacing, orientation or a fractional offset). Potential fix: build masks "
            "on the CT grid.")
    array = np.asarray(mask.array) != 0
    stop = start + np.asarray(array.shape)
    lo = np.maximum(start, 0)
    hi = np.minimum(stop, np.asarray(source.shape))
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    inner = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True))
    return (box[0], box[1], box[2]), array[inner]


def write_label_seg(
    source: Volume,
    segments: Sequence[SegmentMask],
    path: str | Path,
    *,
    series_description: str,
    content_label: str,
    series_number: int,
) -> Path:
    """Write a BINARY DICOM SEG (one segment per mask) on the source series' touched frames.

    Masks are pasted into a label map (later segments win where masks overlap) holding only
    the slices a mask touches, so memory follows the masks, not the study.

    Raises
    ------
    InputError
        No segment, or a mask that is not a box of the source grid.
    UnsupportedInputError
        The source is not one single-frame file per slice (or a multi-frame object holding
        exactly this volume), or highdicom cannot build a SEG on it.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from bonelesion import __version__
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

    if not segments:
        raise InputError(f"DICOM SEG {path}: no segment to write. Potential fix: write none.")
    if len(segments) > 65535:
        raise InputError(f"DICOM SEG {path}: {len(segments)} segments exceed 65535.")
    placed = [_paste(source, s.mask) for s in segments]
    touched = sorted({i for box, _ in placed for i in range(box[0].start, box[0].stop)})
    if not touched:
        raise InputError(f"DICOM SEG {path}: every mask lies outside series "
                         f"{source.series.series_instance_uid}.")
    datasets, frame_slices = read_source(source)
    if OTHER_STACK in frame_slices:
        raise UnsupportedInputError(
            f"DICOM SEG on series {source.series.series_instance_uid}: the source object holds "
            "other stacks besides this volume. Potential fix: none needed; the CSV outputs hold "
            "the same results.")
    dtype = np.uint8 if len(segments) < 256 else np.uint16
    if len(datasets) > 1:
        # classic series: only the datasets of touched slices are referenced
        by_slice = {sl: ds for ds, sl in zip(datasets, frame_slices, strict=True)}
        order = touched
        sources = [by_slice[i] for i in order]
        slice_pos = {s: k for k, s in enumerate(order)}
    else:
        order = list(frame_slices)
        sources = datasets
        slice_pos = {s: k for k, s in enumerate(order)}
    labels = np.zeros((len(order), *source.shape[1:]), dtype=dtype)
    for number, (box, array) in enumerate(placed, start=1):
        for z in range(box[0].start, box[0].stop):
            if z not in slice_pos:
                continue
            plane = labels[slice_pos[z], box[1], box[2]]
            plane[array[z - box[0].start]] = number
    where = f"series {source.series.series_instance_uid} ({describe_source(datasets)})"
    spatial = [with_type2_present(ds, where) for ds in sources]
    if len(spatial) == 1:
        spatial = [with_shared_geometry(spatial[0], where)]
    algo = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    ident = hd.AlgorithmIdentificationSequence(
        name="bonelesion", version=__version__, family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=s.label[:64],
            segmented_property_category=s.property_category,
            segmented_property_type=s.property_type, algorithm_type=algo,
            algorithm_identification=ident, tracking_uid=generate_uid(),
            tracking_id=(s.tracking_id or s.label)[:64])
        for n, s in enumerate(segments, start=1)
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            seg = hd.seg.Segmentation(
                source_images=spatial, pixel_array=labels,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions, series_instance_uid=generate_uid(),
                series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1,
                manufacturer="bonelesion", manufacturer_model_name="bonelesion",
                software_versions=__version__, device_serial_number="0",
                series_description=series_description, content_label=content_label)
        except HIGHDICOM_FAILURES as exc:
            raise UnsupportedInputError(
                f"DICOM SEG on {where}: highdicom {hd.__version__} cannot build a Segmentation "
                f"on this source ({safe_text(exc)}). Potential fix: none needed; the CSV "
                "outputs hold the same results.") from exc
    log_warnings(caught, "DICOM SEG")
    copy_deidentification(datasets[0], seg)
    path = Path(path)
    seg.save_as(path)
    return path


# ------------------------------------------------------------------------------ overview
#: Colour of a lesion candidate's circle on the spine overview.
CANDIDATE_COLOUR = "#ff3c3c"
_WINDOW_HU = (400.0, 1800.0)  # bone window (level, width)
_MIN_HEIGHT_PX = 700
_PALETTE = ((80, 200, 255), (255, 210, 60), (120, 255, 120), (255, 130, 200))


def _canonical_view(ct: Volume, order: tuple[int, int, int], flips: tuple[bool, bool, bool]
                    ) -> tuple[NDArray[Any], tuple[float, float, float]]:
    view = np.transpose(np.asarray(ct.array), order)
    for k in range(3):
        if flips[k]:
            view = np.flip(view, axis=k)
    return view, (ct.spacing_mm[order[0]], ct.spacing_mm[order[1]], ct.spacing_mm[order[2]])


def render_overview(
    labelling: SpineLabelling,
    path: str | Path,
    *,
    marks: Sequence[OverviewMarker] = (),
    title: str = "",
) -> Path:
    """Write a PNG: curved sagittal and coronal reformats through the spinal axis.

    Each vertebral body is outlined in colour and labelled with its level and confidence;
    each mark (lesion candidate) is circled. The reformats follow the axis: the sagittal
    image takes, on every axial slice, the column at the axis' left–right position; the
    coronal image the row at its anterior–posterior position.

    Raises
    ------
    InputError
        The labelling has no spinal axis (nothing to show).
    """
    from PIL import Image, ImageDraw, ImageFont

    an = labelling.analysis
    if an is None or an.axis is None:
        raise InputError("QC overview: no spinal column was found on this CT; nothing to show.")
    grid, axis, ct = an.grid, an.axis, an.ct
    view, sp = _canonical_view(ct, grid.order, grid.flips)
    n_s = view.shape[0]
    # axis position (canonical full-resolution indices) for every full-resolution slice
    s_mm = np.arange(n_s) * sp[0]
    src = grid.mm_to_source_index(axis.points_mm)
    canon = np.empty_like(src)
    for k in range(3):
        a = grid.order[k]
        canon[:, k] = (ct.shape[a] - 1 - src[:, a]) if grid.flips[k] else src[:, a]
    ax_s = canon[:, 0] * sp[0]
    order_s = np.argsort(ax_s)
    p_idx = np.interp(s_mm, ax_s[order_s], canon[order_s, 1])
    l_idx = np.interp(s_mm, ax_s[order_s], canon[order_s, 2])
    rows = np.arange(n_s)
    sag = view[rows, :, np.clip(np.round(l_idx).astype(int), 0, view.shape[2] - 1)]
    cor = view[rows, np.clip(np.round(p_idx).astype(int), 0, view.shape[1] - 1), :]
    level, width = _WINDOW_HU

    def grey(img: NDArray[Any]) -> NDArray[np.uint8]:
        g = np.clip((np.asarray(img, np.float64) - (level - width / 2)) / width, 0, 1)
        return (g * 255).astype(np.uint8)

    sag_rgb = np.repeat(grey(sag)[..., None], 3, axis=-1)
    cor_rgb = np.repeat(grey(cor)[..., None], 3, axis=-1)
    labels_at: list[tuple[str, str, float, float, float, tuple[int, int, int]]] = []
    for n, v in enumerate(labelling.vertebrae):
        colour = _PALETTE[n % len(_PALETTE)]
        if v.body_mask is not None:
            _outline(v.body_mask, ct, grid.order, grid.flips, p_idx, l_idx, sag_rgb, cor_rgb,
                     colour)
        c = _to_canon(ct, grid.order, grid.flips, v.centroid_lps_mm)
        text = f"{v.label or '?'} {v.confidence:.2f}"
        labels_at.append((text, v.label, c[0], c[1], c[2], colour))
    # superior at the top; square pixels; at least _MIN_HEIGHT_PX tall
    sag_rgb, cor_rgb = sag_rgb[::-1], cor_rgb[::-1]
    unit = min(sp[1], sp[2])
    zoom = max(1.0, _MIN_HEIGHT_PX / (n_s * sp[0] / unit))
    fx_s, fx_p, fx_l = zoom * sp[0] / unit, zoom * sp[1] / unit, zoom * sp[2] / unit
    height = max(1, int(round(n_s * fx_s)))
    sag_img = Image.fromarray(np.ascontiguousarray(sag_rgb)).resize(
        (max(1, int(round(view.shape[1] * fx_p))), height))
    cor_img = Image.fromarray(np.ascontiguousarray(cor_rgb)).resize(
        (max(1, int(round(view.shape[2] * fx_l))), height))
    margin, gap, band = 90, 8, 18
    x_sag, x_cor = margin, margin + sag_img.width + gap
    canvas = Image.new("RGB", (x_cor + cor_img.width + margin, height + band), (0, 0, 0))
    canvas.paste(sag_img, (x_sag, band))
    canvas.paste(cor_img, (x_cor, band))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()

    def y_of(s: float) -> float:
        return band + (n_s - 1 - s) * fx_s

    for text, _, s, p, l_, colour in labels_at:
        y = y_of(s)
        draw.text((4, y - 6), text, fill=colour, font=font)
        draw.line((margin - 24, y, x_sag + p * fx_p, y), fill=colour)
        x_right = x_cor + cor_img.width
        draw.text((x_right + 26, y - 6), text, fill=colour, font=font)
        draw.line((x_cor + l_ * fx_l, y, x_right + 22, y), fill=colour)
    for mark in marks:
        s, p, l_ = _to_canon(ct, grid.order, grid.flips, mark.centroid_lps_mm)
        r = max(5.0, mark.radius_mm * zoom / unit + 3.0)
        for x, y in ((x_sag + p * fx_p, y_of(s)), (x_cor + l_ * fx_l, y_of(s))):
            draw.ellipse((x - r, y - r, x + r, y + r), outline=mark.colour, width=2)
            draw.text((x + r + 2, y - 4), mark.label, fill=mark.colour, font=font)
    head = title or "bonelesion spine overview: curved sagittal (left), coronal (right)"
    draw.text((4, 3), head, fill=(255, 255, 255), font=font)
    path = Path(path)
    canvas.save(path, format="PNG")
    return path


def _to_canon(ct: Volume, order: tuple[int, int, int], flips: tuple[bool, bool, bool],
              point: Sequence[float]) -> tuple[float, float, float]:
    idx = ct.lps_to_index([list(point)])[0]
    out = []
    for k in range(3):
        a = order[k]
        out.append((ct.shape[a] - 1 - idx[a]) if flips[k] else idx[a])
    return out[0], out[1], out[2]


def _outline(mask: Volume, ct: Volume, order: tuple[int, int, int],
             flips: tuple[bool, bool, bool], p_idx: NDArray[np.float64],
             l_idx: NDArray[np.float64], sag: NDArray[np.uint8], cor: NDArray[np.uint8],
             colour: tuple[int, int, int]) -> None:
    """Draw a box mask's outline on the two reformats (canonical full-resolution images)."""
    from scipy import ndimage

    box, array = _paste(ct, mask)
    start = [b.start for b in box]
    idx = np.argwhere(array) + np.asarray(start)
    canon = np.empty_like(idx)
    for k in range(3):
        a = order[k]
        canon[:, k] = (ct.shape[a] - 1 - idx[:, a]) if flips[k] else idx[:, a]
    s = canon[:, 0]
    on_sag = np.abs(canon[:, 2] - np.round(l_idx[s])) < 0.5
    on_cor = np.abs(canon[:, 1] - np.round(p_idx[s])) < 0.5
    for keep, image, col in ((on_sag, sag, 1), (on_cor, cor, 2)):
        pts = canon[keep]
        if not len(pts):
            continue
        plane = np.zeros(image.shape[:2], dtype=bool)
        plane[pts[:, 0], pts[:, col]] = True
        edge = plane & ~ndimage.binary_erosion(plane)
        image[edge] = colour
