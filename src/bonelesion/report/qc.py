"""QC images: per lesion and series, the lesion's central slice with its ROI outline and values.

The lesion is put on each series' grid within its bounding box only (`lesion_in_box`), and
only the displayed part of the central slice is rendered: the cost is the lesion's, not the
volume's. Pillow only (matplotlib is not a dependency). Windowing: CT bone window (level 500 HU,
width 2000 HU: shows both blastic metastases ~650 HU and enostoses ~1200 HU, Ulano 2016);
ADC maps 0–3×10⁻³ mm²/s; MR signal 1st–99th percentile of the slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from bonelesion.classify.call import LesionCall
from bonelesion.errors import EmptyMaskError
from bonelesion.model.results import LesionMeasurements
from bonelesion.model.volume import Volume
from bonelesion.report.result import LesionShape, lesion_in_box
from bonelesion.units import ADC_UM2_PER_S_PER_MM2_PER_S, IntensityUnit

__all__ = ["CT_WINDOW_HU", "ADC_WINDOW_MM2_PER_S", "window_limits", "central_slice_index",
           "render_qc_image", "qc_text_lines"]

#: (level, width) of the CT bone window.
CT_WINDOW_HU = (500.0, 2000.0)
#: (low, high) display range of ADC maps.
ADC_WINDOW_MM2_PER_S = (0.0, 3.0e-3)
#: Displayed images are enlarged to at least this many pixels along their short side.
_MIN_DISPLAY_PX = 256
_OUTLINE_RGB = (255, 40, 40)
#: Field of view around the lesion: its extent plus this margin on every side (at least).
_CROP_MARGIN_MM = 25.0
_TEXT_LINE_PX = 14


def window_limits(volume: Volume, image: NDArray[np.float64]) -> tuple[float, float]:
    """Display range (low, high) for one slice of ``volume``."""
    if volume.intensity_unit is IntensityUnit.HU:
        level, width = CT_WINDOW_HU
        return level - width / 2, level + width / 2
    if volume.intensity_unit is IntensityUnit.MM2_PER_S:
        return ADC_WINDOW_MM2_PER_S
    if volume.intensity_unit is IntensityUnit.FRACTION:
        return 0.0, 1.0
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [1.0, 99.0])
    return float(low), float(high if high > low else low + 1.0)


def central_slice_index(mask: NDArray[np.bool_], *, first_slice: int = 0) -> int:
    """Slice index (axis 0) nearest the mask's centroid, among slices that hold the mask.

    ``mask`` may be a box of a volume whose first slice is ``first_slice``: the index
    returned is the volume's, computed from the volume's slice indices (the same as for
    the whole-volume mask).

    Raises
    ------
    EmptyMaskError
        If the mask holds no voxel.
    """
    slices = (np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)) + first_slice
              if mask.size else np.zeros(0, dtype=np.intp))
    if slices.size == 0:
        raise EmptyMaskError("QC image: the lesion mask holds no voxel on this series. "
                             "Potential fix: check the mask's frame of reference.")
    centroid = float((np.argwhere(mask)[:, 0] + first_slice).mean())
    return int(slices[np.argmin(np.abs(slices - centroid))])


def qc_text_lines(m: LesionMeasurements, call: LesionCall, role: str) -> list[str]:
    """Return the text lines drawn on a QC image of series ``role``."""
    lines = [f"lesion {m.lesion_id} [{role}]  call: {call.label.value}  "
             f"P(malignant) {call.probability_malignant:.2f}"]
    if role == "ct" and m.ct is not None:
        lines.append(f"CT mean {m.ct.attenuation_mean_hu:.0f} HU  max "
                     f"{m.ct.attenuation_max_hu:.0f} HU  n={m.ct.core_voxel_count}")
    elif role.startswith("dixon") and m.chemical_shift is not None:
        cs = m.chemical_shift
        text = f"SIR {cs.chemical_shift_ratio:.3f}  drop {cs.signal_drop_pct:.1f} %"
        if cs.fat_fraction is not None:
            text += f"  FF {cs.fat_fraction:.3f}"
        lines.append(text)
    elif role in ("adc", "dwi") and m.adc is not None:
        lines.append(f"ADC mean {m.adc.adc_mean_mm2_per_s * ADC_UM2_PER_S_PER_MM2_PER_S:.0f} "
                     f"um2/s ({m.adc.adc_source})")
    return lines


def render_qc_image(
    volume: Volume,
    mask: LesionShape,
    path: str | Path,
    *,
    text_lines: Sequence[str] = (),
) -> Path:
    """Write a PNG of the lesion's central slice with its ROI outline and text.

    Parameters
    ----------
    volume : Volume
        The series to show.
    mask : Volume or Lesion
        Boolean lesion mask (resampled onto ``volume``, nearest neighbour through LPS, when
        on another grid), or the `Lesion` (rasterised on ``volume``'s grid). Either way only
        the lesion's bounding box on ``volume`` is computed.
    path : path
        Output PNG.
    text_lines : sequence of str
        Drawn in a band under the image.

    Raises
    ------
    EmptyMaskError
        If the mask holds no voxel on this series.
    FrameOfReferenceError
        If the mask is in another frame of reference.
    """
    box, m = lesion_in_box(mask, volume, lesion_id="QC")
    s = central_slice_index(m, first_slice=box.start[0])
    ms_box = m[s - box.start[0]]
    rr, cc = np.nonzero(ms_box)
    rr, cc = rr + box.start[1], cc + box.start[2]  # the volume's row and column indices
    slice_shape = volume.shape[1:]
    row_mm, col_mm = volume.spacing_mm[1], volume.spacing_mm[2]
    # crop to the lesion's neighbourhood: its extent plus a margin of max(25 mm, extent)
    pad_r = int(np.ceil(max(_CROP_MARGIN_MM, (rr.max() - rr.min() + 1) * row_mm) / row_mm))
    pad_c = int(np.ceil(max(_CROP_MARGIN_MM, (cc.max() - cc.min() + 1) * col_mm) / col_mm))
    r0, r1 = max(0, rr.min() - pad_r), min(slice_shape[0], rr.max() + pad_r + 1)
    c0, c1 = max(0, cc.min() - pad_c), min(slice_shape[1], cc.max() + pad_c + 1)
    # the window is the whole slice's (MR: its percentiles); the rest is the crop's only
    image = np.asarray(volume.array[s], dtype=np.float64)
    low, high = window_limits(volume, image)
    shown = image[r0:r1, c0:c1]
    grey = np.clip((np.nan_to_num(shown, nan=low) - low) / (high - low), 0.0, 1.0)
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    ms = np.zeros(shown.shape, dtype=bool)
    ms[rr - r0, cc - c0] = True
    # the crop holds the lesion with ≥ 25 mm around it (or ends at the slice's edge), so the
    # outline is the one of the whole slice
    outline = ms & ~ndimage.binary_erosion(ms)
    rgb[outline] = _OUTLINE_RGB
    rows, cols = rgb.shape[:2]
    # square pixels on screen: scale each axis by its spacing
    height_mm, width_mm = rows * row_mm, cols * col_mm
    scale = _MIN_DISPLAY_PX / min(height_mm, width_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    img = Image.fromarray(rgb, mode="RGB").resize(size, Image.Resampling.NEAREST)
    font = ImageFont.load_default()
    info = [*text_lines, f"slice {s + 1}/{volume.shape[0]}  rows {r0}-{r1 - 1}  columns "
            f"{c0}-{c1 - 1}  window {low:.4g}..{high:.4g}"]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_px = max(int(np.ceil(probe.textlength(line, font=font))) for line in info) + 8
    band = _TEXT_LINE_PX * len(info) + 4
    canvas = Image.new("RGB", (max(img.width, text_px), img.height + band), (0, 0, 0))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(info):
        draw.text((4, img.height + 2 + i * _TEXT_LINE_PX), line, fill=(255, 255, 255), font=font)
    path = Path(path)
    canvas.save(path, format="PNG")
    return path
