"""Write every output of one study, once, into its folder.

`write_study_outputs(folder, result, document, ...)` renders, in this order, the figures
(`bonelesion.report.figures`: a key image of every lesion on every series and a sagittal
overview, written as PNGs under ``qc/`` and embedded in report.html), the DICOM SEG and
TID 1500 SR (``dicom/``), ``report.html``, ``results.json`` (the study document,
validated) and ``lesions.csv``. The calls are in ``result`` before
anything is written, and nothing is rewritten afterwards. A view that cannot be made (no
mask on a series, no source files for DICOM out) becomes a warning in the document; the
measurements are never lost for it.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bonelesion.errors import InputError
from bonelesion.model.volume import Volume
from bonelesion.report.document import write_json
from bonelesion.report.result import StudyResult, safe_name
from bonelesion.report.table import lesion_rows, write_lesions_csv

if TYPE_CHECKING:  # pragma: no cover - typing only; the renderers are imported when used
    from bonelesion.report.figures import LesionGeometry, StudyFigures

__all__ = ["OutputOptions", "LesionViews", "lesion_views", "write_study_outputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """Which views of a study to render besides results.json and lesions.csv."""

    qc: bool = True
    dicom: bool = True
    html: bool = True


#: Which stage measures each series role (its erosion margin outlines the measured core).
_STAGE_OF_ROLE = {"ct": "ct_attenuation", "dixon_in_phase": "mr_chemical_shift",
                  "dixon_opposed_phase": "mr_chemical_shift", "dixon_water": "mr_chemical_shift",
                  "dixon_fat": "mr_chemical_shift", "adc": "dwi_adc", "dwi": "dwi_adc"}


def _erosion(stages: Mapping[str, Any], role: str) -> tuple[int, float | None]:
    """(margin_voxels, margin_mm) of the stage that measures ``role`` (its defaults if unset)."""
    from bonelesion.stages.config import StagesConfig

    name = _STAGE_OF_ROLE.get(role, "ct_attenuation")
    default = getattr(StagesConfig(), name)
    cfg = stages.get(name) or {}
    voxels = cfg.get("erosion_margin_voxels", default.erosion_margin_voxels)
    margin_mm = cfg.get("erosion_margin_mm", default.erosion_margin_mm)
    return int(voxels), None if margin_mm is None else float(margin_mm)


def _drawn_masks(result: StudyResult, warnings: list[str]) -> dict[str, Volume]:
    """Each lesion's mask as a Volume: a `Lesion` is put on the first series within its box."""
    volumes = result.ordered_volumes()
    out: dict[str, Volume] = {}
    for lesion_id, shape in result.masks.items():
        if isinstance(shape, Volume):
            out[lesion_id] = shape
        elif volumes:
            try:
                out[lesion_id] = shape.box_mask_on(volumes[0][1])[1]
            except InputError as exc:
                warnings.append(f"lesion {lesion_id}: no size or position: {exc}")
    return out


@dataclass(frozen=True, kw_only=True, eq=False)
class LesionViews:
    """The lesions as the figures and the report draw them: on the study's first series.

    Attributes
    ----------
    masks : mapping of str to Volume
        Lesion id → boolean mask on the first series of `StudyResult.ordered_volumes`,
        within the lesion's box.
    geometry : mapping of str to LesionGeometry
        Lesion id → centroid, axes and key slices of that mask
        (`bonelesion.report.figures.lesion_geometry`).
    problems : tuple of str
        Lesions without a size or position, as warnings.
    """

    masks: Mapping[str, Volume]
    geometry: Mapping[str, LesionGeometry]
    problems: tuple[str, ...] = ()


def lesion_views(masks: Mapping[str, Volume], lesion_ids: Sequence[str]) -> LesionViews:
    """Measure the geometry of each lesion's mask on the first series (see `LesionViews`).

    The per-study run calls this with the masks it put on the first series while finding
    which lesions can be drawn, so each lesion is rasterised for the views once.
    """
    from bonelesion.report.figures import lesion_geometries

    problems: list[str] = []
    geometry = lesion_geometries(masks, lesion_ids, problems)
    return LesionViews(masks=dict(masks), geometry=geometry, problems=tuple(problems))


def _figures(folder: Path, result: StudyResult, document: dict[str, Any],
             masks: Mapping[str, Volume], geometry: Mapping[str, LesionGeometry],
             warnings: list[str]) -> StudyFigures:
    """Key images of every lesion on every series, and the overview; PNGs also under qc/."""
    from bonelesion.report.figures import (
        CALL_COLOURS,
        OverviewMarker,
        StudyFigures,
        key_image,
        sagittal_overview,
        series_window,
    )
    from bonelesion.report.wording import role_name, vertebral_level

    stages = (document.get("config") or {}).get("stages") or {}
    volumes = result.ordered_volumes()
    windows = {role: series_window(volume) for role, volume in volumes}
    qc_dir = folder / "qc"
    paths: dict[str, dict[str, str]] = {}
    images: dict[str, list[Any]] = {}
    for m in result.lesions:
        g = geometry.get(m.lesion_id)
        if g is None:
            continue
        for role, volume in volumes:
            voxels, margin_mm = _erosion(stages, role)
            try:
                image = key_image(volume, masks[m.lesion_id], g, role=role,
                                  margin_voxels=voxels, margin_mm=margin_mm,
                                  window=windows[role], title=role_name(role),
                                  mask_on=result.mask_sources.get(m.lesion_id))
            except InputError as exc:
                warnings.append(f"lesion {m.lesion_id}: no key image on {role_name(role)}: {exc}")
                continue
            name = f"{safe_name(m.lesion_id)}_{safe_name(role)}.png"
            qc_dir.mkdir(exist_ok=True)
            (qc_dir / name).write_bytes(image.png)
            paths.setdefault(m.lesion_id, {})[role] = f"qc/{name}"
            images.setdefault(m.lesion_id, []).append(image)
    document["outputs"]["qc_images"] = paths
    overview = None
    if geometry and volumes:
        role, volume = volumes[0]
        labels = {c.lesion_id: c.label.value for c in result.calls}
        number = {m.lesion_id: i + 1 for i, m in enumerate(result.lesions)}
        level = {m.lesion_id: vertebral_level({"annotations": dict(m.annotations)})
                 for m in result.lesions}
        markers = [OverviewMarker(
            label=" · ".join(x for x in (f"{number[lesion_id]}. {lesion_id}", level[lesion_id],
                                         labels.get(lesion_id, "")) if x),
            centroid_lps_mm=g.centroid_lps_mm, radius_mm=max(3.0, g.long_axis_mm / 2.0),
            colour=CALL_COLOURS.get(labels.get(lesion_id, ""), "#ffffff"))
            for lesion_id, g in geometry.items()]
        try:
            overview = sagittal_overview(volume, markers, window=windows[role],
                                         role_label=role_name(role))
        except InputError as exc:
            warnings.append(f"no overview figure: {exc}")
        else:
            qc_dir.mkdir(exist_ok=True)
            (qc_dir / "overview.png").write_bytes(overview.png)
            document["outputs"]["overview_image"] = "qc/overview.png"
    return StudyFigures(overview=overview, key_images=images, geometry=geometry)


def _dicom(folder: Path, result: StudyResult, warnings: list[str]) -> list[str]:
    from bonelesion.report.dicom_out import write_study_dicom

    if not result.masks or not result.volumes:
        warnings.append("no DICOM SEG/SR: no lesion mask or source series")
        return []
    try:
        written = write_study_dicom(result, folder / "dicom")
    except InputError as exc:
        warnings.append(f"no DICOM SEG/SR: {exc}")
        return []
    except Exception as exc:  # noqa: BLE001 - a bug in DICOM out must not lose the measurements
        logger.error("study %s: writing DICOM SEG/SR failed:\n%s", result.study_instance_uid,
                     "".join(traceback.format_exception(exc)))
        shutil.rmtree(folder / "dicom", ignore_errors=True)
        warnings.append(f"DICOM SEG/SR not written: unexpected {type(exc).__name__}: {exc} "
                        "(a bug; please report it with the log)")
        return []
    return [str(p.relative_to(folder)) for p in (written.seg_path, written.sr_path)]


def write_study_outputs(
    folder: str | Path,
    result: StudyResult,
    document: dict[str, Any],
    *,
    options: OutputOptions = OutputOptions(),
    views: LesionViews | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Render every view of one study into ``folder`` (created).

    Parameters
    ----------
    folder : path
        The study's output folder.
    result : StudyResult
        Measurements, calls, source volumes and lesion masks.
    document : dict
        The study document (`bonelesion.report.document.study_document`); its ``outputs``
        and ``warnings`` are completed here.
    options : OutputOptions
        Which views to render.
    views : LesionViews, optional
        The lesions already put on the first series (`lesion_views`); without it, each
        lesion of ``result.masks`` is put on it here.

    Returns
    -------
    document : dict
        The completed document, as written to ``results.json``.
    rows : list of mapping
        The lesion table rows (native values), as written to ``lesions.csv``.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    outputs = document["outputs"]
    figures: StudyFigures | None = None
    if options.qc or options.html:
        if views is None:
            views = lesion_views(_drawn_masks(result, warnings),
                                 [m.lesion_id for m in result.lesions])
        warnings.extend(views.problems)
        masks, geometry = views.masks, views.geometry
        if options.qc:
            figures = _figures(out, result, document, masks, geometry, warnings)
        else:
            from bonelesion.report.figures import StudyFigures

            figures = StudyFigures(geometry=geometry)
    if options.dicom:
        outputs["dicom"] = _dicom(out, result, warnings)
    warnings = [w for i, w in enumerate(warnings)
                if w not in warnings[:i] and w not in document["warnings"]]
    for w in warnings:
        logger.warning("study %s: %s", result.study_instance_uid, w)
    document["warnings"] = [*document["warnings"], *warnings]
    if options.html:
        from bonelesion.report.html_report import render_study_html

        outputs["report_html"] = "report.html"
        (out / "report.html").write_text(render_study_html(document, figures=figures),
                                         encoding="utf-8")
    write_json(out / "results.json", document)
    rows = lesion_rows(document)
    write_lesions_csv(out / "lesions.csv", rows)
    return document, rows
