"""`write_reports`: every output of a run, rendered from the same `StudyResult` objects."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.classify.config import ClassifierConfig
from bonelesion.errors import InputError
from bonelesion.report.html_report import render_html
from bonelesion.report.json_report import build_results_document, write_results_json
from bonelesion.report.qc import qc_text_lines, render_qc_image
from bonelesion.report.study import StudyResult, safe_name
from bonelesion.report.table import write_lesion_table

__all__ = ["ReportFiles", "write_reports"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ReportFiles:
    """Paths written by `write_reports` (all under ``out_dir``)."""

    results_json: Path | None
    lesion_table: Path | None = None
    html: Path | None = None
    qc_images: Mapping[tuple[str, str], tuple[tuple[str, Path], ...]] = field(default_factory=dict)
    dicom: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    document: Mapping[str, Any] = field(default_factory=dict)


def write_reports(
    out_dir: str | Path,
    studies: Sequence[StudyResult],
    *,
    config: ClassifierConfig | None = None,
    resolved_config: Mapping[str, Any] | None = None,
    model: Any | None = None,
    warnings: Sequence[str] = (),
    command: Sequence[str] | None = None,
    table: bool = True,
    qc: bool = True,
    html: bool = True,
    dicom: bool = True,
    results_json: bool = True,
) -> ReportFiles:
    """Write results.json and, as asked, lesions.csv, QC PNGs, DICOM SEG + SR and report.html.

    Parameters
    ----------
    out_dir : path
        Created if needed. Layout: ``results.json``, ``lesions.csv``, ``report.html``,
        ``qc/<study>_<lesion>_<role>.png``, ``dicom/<study>/seg_*.dcm`` and ``sr_*.dcm``.
    studies : sequence of StudyResult
    config : ClassifierConfig, optional
        Thresholds recorded in provenance (the ones the calls were made with).
    resolved_config : mapping, optional
        Resolved pipeline configuration (stages, overrides), embedded verbatim.
    model : LogisticModel, optional
        When the calls came from a trained model.
    warnings, command
        Run-level warnings and the command line, recorded in provenance.
    table, qc, html, dicom : bool
        Which views to render besides the canonical results.json.
    results_json : bool
        Write results.json (False when a caller merges ``ReportFiles.document`` into its own).

    Returns
    -------
    ReportFiles
        Paths written; ``problems`` lists views that could not be made for a study (for
        instance DICOM out without source files), which are also added to results.json
        warnings. One study's problem never stops the others.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    qc_paths: dict[tuple[str, str], tuple[tuple[str, Path], ...]] = {}
    dicom_paths: dict[str, tuple[Path, ...]] = {}
    if qc:
        qc_dir = out / "qc"
        qc_dir.mkdir(exist_ok=True)
        for study in studies:
            for m, call in zip(study.lesions, study.calls, strict=True):
                mask = study.masks.get(m.lesion_id)
                if mask is None:
                    continue
                images: list[tuple[str, Path]] = []
                for role, volume in study.ordered_volumes():
                    name = (f"{safe_name(study.study_instance_uid)}_{safe_name(m.lesion_id)}_"
                            f"{safe_name(role)}.png")
                    try:
                        images.append((role, render_qc_image(
                            volume, mask, qc_dir / name,
                            text_lines=qc_text_lines(m, call, role))))
                    except InputError as exc:
                        problems.append(f"study {study.study_instance_uid}, lesion "
                                        f"{m.lesion_id}, QC image of {role}: {exc}")
                qc_paths[(study.study_instance_uid, m.lesion_id)] = tuple(images)
    if dicom:
        from bonelesion.report.dicom_out import write_study_dicom

        for study in studies:
            if not study.masks or not study.volumes:
                problems.append(f"study {study.study_instance_uid}: no DICOM SEG/SR (no lesion "
                                "masks or source series were given)")
                continue
            try:
                written = write_study_dicom(study, out / "dicom" / safe_name(
                    study.study_instance_uid))
            except InputError as exc:
                problems.append(f"study {study.study_instance_uid}: no DICOM SEG/SR: {exc}")
                continue
            dicom_paths[study.study_instance_uid] = (written.seg_path, written.sr_path)
    for p in problems:
        logger.warning("%s", p)
    document = build_results_document(
        studies, config=config, resolved_config=resolved_config, model=model,
        warnings=[*warnings, *problems], command=command,
    )
    html_path = attach_outputs(out, document, qc_paths, dicom_paths, html=html)
    results = write_results_json(out / "results.json", document) if results_json else None
    table_path = write_lesion_table(out / "lesions.csv", studies) if table else None
    return ReportFiles(results_json=results, lesion_table=table_path, html=html_path,
                       qc_images=qc_paths, dicom=dicom_paths, problems=tuple(problems),
                       document=document)


def attach_outputs(
    out: Path,
    document: dict[str, Any],
    qc_paths: Mapping[tuple[str, str], Sequence[tuple[str, Path]]],
    dicom_paths: Mapping[str, Sequence[Path]],
    *,
    html: bool,
) -> Path | None:
    """Record the written QC images and DICOM files in ``document`` and render report.html.

    Paths are stored relative to ``out``; the HTML is rendered from ``document`` alone.
    Returns the HTML path (None when ``html`` is off).
    """
    document["outputs"] = {
        "qc_images": {f"{s}/{lid}": {role: str(p.relative_to(out)) for role, p in imgs}
                      for (s, lid), imgs in qc_paths.items()},
        "dicom": {s: [str(p.relative_to(out)) for p in ps] for s, ps in dicom_paths.items()},
    }
    if not html:
        return None
    html_path = out / "report.html"
    html_path.write_text(render_html(document), encoding="utf-8")
    return html_path
