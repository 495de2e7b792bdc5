"""Write every output of one study, once, into its folder.

`write_study_outputs(folder, result, document, ...)` renders, in this order, the QC images
(``qc/``), the DICOM SEG and TID 1500 SR (``dicom/``), ``report.html``, ``results.json``
(the study document, validated) and ``lesions.csv``. The calls are in ``result`` before
anything is written, and nothing is rewritten afterwards. A view that cannot be made (no
mask on a series, no source files for DICOM out) becomes a warning in the document; the
measurements are never lost for it.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bonelesion.errors import InputError
from bonelesion.report.document import write_json
from bonelesion.report.result import StudyResult, safe_name
from bonelesion.report.table import lesion_rows, write_lesions_csv

__all__ = ["OutputOptions", "write_study_outputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OutputOptions:
    """Which views of a study to render besides results.json and lesions.csv."""

    qc: bool = True
    dicom: bool = True
    html: bool = True


def _qc_images(folder: Path, result: StudyResult, warnings: list[str]
               ) -> dict[str, dict[str, str]]:
    from bonelesion.report.qc import qc_text_lines, render_qc_image

    qc_dir = folder / "qc"
    images: dict[str, dict[str, str]] = {}
    for m, call in zip(result.lesions, result.calls, strict=True):
        mask = result.masks.get(m.lesion_id)
        if mask is None:
            continue
        for role, volume in result.ordered_volumes():
            name = f"{safe_name(m.lesion_id)}_{safe_name(role)}.png"
            qc_dir.mkdir(exist_ok=True)
            try:
                render_qc_image(volume, mask, qc_dir / name,
                                text_lines=qc_text_lines(m, call, role))
            except InputError as exc:
                warnings.append(f"lesion {m.lesion_id}: no QC image of {role}: {exc}")
                continue
            images.setdefault(m.lesion_id, {})[role] = f"qc/{name}"
    return images


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
    if options.qc:
        outputs["qc_images"] = _qc_images(out, result, warnings)
    if options.dicom:
        outputs["dicom"] = _dicom(out, result, warnings)
    for w in warnings:
        logger.warning("study %s: %s", result.study_instance_uid, w)
    document["warnings"] = [*document["warnings"], *warnings]
    if options.html:
        from bonelesion.report.html_report import render_study_html

        outputs["report_html"] = "report.html"
        (out / "report.html").write_text(render_study_html(document), encoding="utf-8")
    write_json(out / "results.json", document)
    rows = lesion_rows(document)
    write_lesions_csv(out / "lesions.csv", rows)
    return document, rows
