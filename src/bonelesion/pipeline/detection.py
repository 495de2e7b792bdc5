"""CT detection along the one per-study path: vertebra levels and lesion candidates.

`detect_on_ct(ct, config)` is what a study's CT gives: the vertebra labelling
(`bonelesion.roi.vertebrae`) and the sclerotic-lesion candidates (`bonelesion.roi.candidates`);
in `run_study`, the study document's ``spine`` section, each lesion's level, and, without an
ROI file (``rois = "auto"``), the lesions themselves.

`detect_export` is ``bonelesion detect``: index the export (`bonelesion.pipeline.inventory`),
plan each study with the CT role of the ``ct_sclerotic`` pipeline
(`bonelesion.pipeline.selection`, the one series policy), load the chosen CT
(`bonelesion.pipeline.loading`, which refuses a tilted CT unless the pipeline resamples),
detect, and write ``vertebrae.csv`` and ``candidates.csv``, DICOM SEGs of the vertebral bodies
and of the candidates, and a QC overview per study. A study without a CT, or whose CT is
refused, is recorded with the reason; the run goes on (a batch never stops for one study).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bonelesion.errors import InputError, PipelineError
from bonelesion.model.volume import Volume
from bonelesion.roi.config import DetectionConfig, detection_config_from_mapping
from bonelesion.roi.lesion import Lesion
from bonelesion.roi.vertebrae import AnchorCountingLabeller, SpineLabelling

if TYPE_CHECKING:  # the candidate search is imported by the runs that search (rois = auto)
    from bonelesion.roi.candidates import Candidate, CandidateSearch

__all__ = [
    "CtDetection",
    "detect_on_ct",
    "detected_lesions",
    "detection_config_of",
    "lesion_centre_lps",
    "spine_section",
    "lesion_location",
    "with_level",
    "DetectStudy",
    "DetectSummary",
    "detect_export",
    "DETECTION_FILENAMES",
]

logger = logging.getLogger(__name__)

#: Files ``detect`` writes at the top of its output folder.
DETECTION_FILENAMES = {"vertebrae": "vertebrae.csv", "candidates": "candidates.csv",
                       "summary": "detection.json"}


@dataclass(frozen=True, kw_only=True, eq=False)
class CtDetection:
    """What detection found on one CT: the vertebra labelling and the lesion candidates."""

    labelling: SpineLabelling
    candidates: CandidateSearch | None = None
    duration_s: float = 0.0

    @property
    def notes(self) -> tuple[str, ...]:
        """Study-level notes (no spine in view, partial field of view, foci rejected …)."""
        extra = self.candidates.notes if self.candidates is not None else ()
        return (*self.labelling.notes, *extra)

    def candidate(self, lesion_id: str) -> Candidate | None:
        """Return the accepted candidate of a lesion id, or None."""
        if self.candidates is None:
            return None
        return next((c for c in self.candidates.accepted if c.lesion_id == lesion_id), None)


def detection_config_of(pipeline: Mapping[str, Any]) -> DetectionConfig:
    """Return the detection configuration of a pipeline (its ``detection`` table over defaults).

    Raises
    ------
    ConfigError
        An unknown key or a value out of range in the pipeline's ``detection`` table.
    """
    return detection_config_from_mapping(dict(pipeline.get("detection") or {}))


def detect_on_ct(ct: Volume, config: DetectionConfig, *, candidates: bool = True
                 ) -> CtDetection:
    """Label the vertebrae of a CT and (``candidates``) find sclerotic-lesion candidates.

    Pure: no file I/O.

    Raises
    ------
    InputError
        Not a CT in HU, or a volume too small to analyse.
    """
    start = time.perf_counter()
    labelling = AnchorCountingLabeller(config).label(ct)
    search = None
    if candidates:
        from bonelesion.roi.candidates import detect_candidates

        search = detect_candidates(labelling, config=config)
    return CtDetection(labelling=labelling, candidates=search,
                       duration_s=time.perf_counter() - start)


def detected_lesions(detection: CtDetection | None, study_instance_uid: str,
                     warnings_out: list[str]) -> list[Lesion]:
    """Return a study's accepted candidates as mask lesions (none, with the reason, if none)."""
    if detection is None:
        warnings_out.append("no CT in the study (or it could not be analysed): no lesion "
                            "candidates detected; measured with zero lesions")
        return []
    search = detection.candidates
    if search is None or not search.accepted:
        why = "; ".join(search.notes) if search is not None and search.notes else ""
        warnings_out.append("detection found no sclerotic-lesion candidate on the CT"
                            + (f" ({why})" if why else "") + ": measured with zero lesions")
        return []
    for note in search.notes:
        warnings_out.append(f"detection: {note}")
    return [c.lesion(study_instance_uid=study_instance_uid) for c in search.accepted]


def lesion_centre_lps(lesion: Lesion) -> tuple[float, float, float] | None:
    """Return a lesion's centre in LPS mm: sphere centre, mask centroid or contour mean."""
    if lesion.sphere is not None:
        c = lesion.sphere.centre_lps_mm
        return (float(c[0]), float(c[1]), float(c[2]))
    if lesion.mask is not None:
        idx = np.argwhere(np.asarray(lesion.mask.array) != 0)
        if not len(idx):
            return None
        p = lesion.mask.index_to_lps(idx.mean(axis=0)[None])[0]
        return (float(p[0]), float(p[1]), float(p[2]))
    if lesion.contours:
        pts = np.concatenate(lesion.contours)
        p = pts.mean(axis=0)
        return (float(p[0]), float(p[1]), float(p[2]))
    return None


def lesion_location(lesion: Lesion, detection: CtDetection | None,
                    config: DetectionConfig) -> dict[str, Any]:
    """Return a lesion's entry fields: its centre, level (with confidence), detection facts."""
    found = detection.candidate(lesion.lesion_id) if detection is not None and \
        lesion.mask is not None and dict(lesion.annotations).get("detected") is True else None
    if found is not None:
        return {
            "vertebra": found.vertebra,
            "vertebra_confidence": round(found.vertebra_confidence, 3) if found.vertebra
            else None,
            "center_lps_mm": [round(c, 2) for c in found.centre_lps_mm],
            "detected": True,
            "detection_score": round(found.score, 4),
            "detection": found.record(),
        }
    centre = lesion_centre_lps(lesion)
    vertebra, confidence = "", None
    if detection is not None and centre is not None:
        where = detection.labelling.locate(centre)
        vertebra = where.vertebra
        confidence = round(where.confidence, 3) if where.vertebra else None
    annotations = dict(lesion.annotations)
    detected = annotations.get("detected") in (True, "true")  # a candidates.csv given as ROIs
    score = annotations.get("detection_score", annotations.get("score"))
    try:
        score_value = float(score) if score not in (None, "") else None
    except (TypeError, ValueError):
        score_value = None
    return {
        "vertebra": vertebra,
        "vertebra_confidence": confidence,
        "center_lps_mm": [round(c, 2) for c in centre] if centre is not None else None,
        "detected": bool(detected),
        "detection_score": score_value if detected else None,
        "detection": None,
    }


def with_level(lesion: Lesion, location: Mapping[str, Any], config: DetectionConfig) -> Lesion:
    """Return the lesion with ``sins_location`` set from its level when not annotated.

    The level is used only at ``vertebrae.min_confidence_for_level`` or above; the SINS
    scorer maps a level such as "T12" to its location category (Fisher 2010).
    """
    import dataclasses

    annotations = dict(lesion.annotations)
    level = str(location.get("vertebra") or "")
    conf = location.get("vertebra_confidence")
    if (annotations.get("sins_location") in (None, "") and level and level[:1] in "CTLS"
            and level[1:].isdigit() and conf is not None
            and conf >= config.vertebrae.min_confidence_for_level):
        annotations["sins_location"] = level
        annotations["sins_location_from"] = (f"vertebra labelling: level {level}, confidence "
                                             f"{conf:.2f}")
        return dataclasses.replace(lesion, annotations=annotations)
    return lesion


def spine_section(detection: CtDetection | None, config: DetectionConfig) -> dict[str, Any]:
    """Build the study document's ``spine`` section: vertebrae, anchors, density, notes."""
    from bonelesion.report.detection import osteoporosis_category, vertebra_record

    ost = config.osteoporosis
    thresholds = {"level": ost.level, "highly_specific_hu": ost.highly_specific_hu,
                  "sensitive_hu": ost.sensitive_hu, "citation": ost.citation}
    if detection is None:
        return {"labeller": "", "series_instance_uid": "", "vertebrae": [], "anchors": [],
                "notes": ["no CT in the study: vertebrae not labelled"],
                "bone_density": {**thresholds, "trabecular_mean_hu": None, "category": "",
                                 "note": "no CT"}}
    lab = detection.labelling
    screening = lab.by_label(ost.level)
    if screening is None:
        density = {**thresholds, "trabecular_mean_hu": None, "category": "",
                   "note": f"{ost.level} not found on this CT"}
    elif screening.confidence < config.vertebrae.min_confidence_for_level:
        density = {**thresholds, "trabecular_mean_hu": screening.trabecular_mean_hu,
                   "category": "",
                   "note": f"{ost.level} labelled with confidence {screening.confidence:.2f} < "
                           f"{config.vertebrae.min_confidence_for_level:g}: not screened"}
    else:
        density = {**thresholds, "trabecular_mean_hu": screening.trabecular_mean_hu,
                   "category": osteoporosis_category(screening.trabecular_mean_hu, ost),
                   "note": ""}
    series = lab.analysis.ct.series.series_instance_uid if lab.analysis is not None else ""
    return {
        "labeller": lab.labeller,
        "series_instance_uid": series,
        "vertebrae": [vertebra_record(v, osteoporosis=ost, vertebrae=config.vertebrae)
                      for v in lab.vertebrae],
        "anchors": list(lab.anchors),
        "notes": list(lab.notes),
        "bone_density": density,
    }


# ------------------------------------------------------------------------------ detect
@dataclass(frozen=True, kw_only=True)
class DetectStudy:
    """One study of a ``detect`` run: its status, notes and files (relative to OUT)."""

    study_instance_uid: str
    status: str  # "ok" or "failed"
    stage: str = ""
    message: str = ""
    notes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    vertebrae: int = 0
    candidates: int = 0
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain form."""
        return {"study_instance_uid": self.study_instance_uid, "status": self.status,
                "stage": self.stage, "message": self.message, "notes": list(self.notes),
                "files": list(self.files), "vertebrae": self.vertebrae,
                "candidates": self.candidates, "duration_s": round(self.duration_s, 2)}


@dataclass(frozen=True, kw_only=True)
class DetectSummary:
    """A ``detect`` run: per study outcome, and the tables written."""

    out_dir: str
    studies: tuple[DetectStudy, ...]
    files: Mapping[str, str] = field(default_factory=dict)
    bad_files: int = 0

    @property
    def failed(self) -> int:
        """Studies that could not be analysed (no CT, refused CT, error)."""
        return sum(s.status != "ok" for s in self.studies)


def _write_study(folder: Path, study_uid: str, ct: Volume, detection: CtDetection,
                 config: DetectionConfig, notes: list[str]) -> list[Path]:
    """SEG of the vertebral bodies and the QC overview of one study (views: never fatal)."""
    from pydicom.sr.codedict import codes

    from bonelesion.report.detection import (
        CANDIDATE_COLOUR,
        SegmentMask,
        render_overview,
        write_label_seg,
    )
    from bonelesion.report.figures import OverviewMarker

    written: list[Path] = []
    lab = detection.labelling
    folder.mkdir(parents=True, exist_ok=True)
    if lab.analysis is not None and lab.analysis.axis is not None:
        marks = [OverviewMarker(centroid_lps_mm=c.centre_lps_mm, radius_mm=c.radius_mm,
                                label=f"{c.lesion_id} {c.score:.2f}", colour=CANDIDATE_COLOUR)
                 for c in (detection.candidates.accepted if detection.candidates else ())]
        try:
            written.append(render_overview(lab, folder / "overview.png", marks=marks,
                                           title=f"study {study_uid}"))
        except PipelineError as exc:
            notes.append(f"no QC overview: {exc}")
    segments = []
    for v in lab.vertebrae:
        if v.body_mask is None:
            continue
        name = f"{v.label} vertebral body" if v.label else f"vertebral body {v.index + 1}"
        prop = getattr(codes.SCT, f"{v.label}Vertebra", None) if v.label else None
        segments.append(SegmentMask(label=name, mask=v.body_mask,
                                    property_type=prop or codes.SCT.Vertebra,
                                    property_category=codes.SCT.AnatomicalStructure,
                                    tracking_id=f"vertebra {v.label or v.index + 1}"))
    accepted = detection.candidates.accepted if detection.candidates is not None else ()
    lesion_segments = [SegmentMask(label=f"{c.lesion_id} {c.kind} candidate"
                                   + (f" {c.vertebra}" if c.vertebra else ""),
                                   mask=c.mask, property_type=codes.SCT.Lesion,
                                   property_category=codes.SCT.MorphologicallyAbnormalStructure,
                                   tracking_id=f"candidate {c.lesion_id}")
                       for c in accepted]
    for what, masks, name, label, number in (
            ("vertebral bodies", segments, "vertebrae_seg.dcm", "VERTEBRAE", 9911),
            ("lesion candidates", lesion_segments, "candidates_seg.dcm", "CANDIDATES", 9912)):
        if not masks:
            continue
        try:
            written.append(write_label_seg(
                ct, masks, folder / name, series_description=f"bonelesion {what}",
                content_label=label, series_number=number))
        except InputError as exc:
            notes.append(f"no DICOM SEG of the {what}: {exc}")
    return written


def detect_export(
    export_dir: str | Path,
    out_dir: str | Path,
    *,
    pipeline: str | Path = "ct_sclerotic",
    detection_config: str | Path | None = None,
    force: bool = False,
    catalogue: str | Path | None = None,
    workers: int = 1,
    command: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> DetectSummary:
    """``bonelesion detect``: label the vertebrae on every study's CT and write the outputs.

    Parameters
    ----------
    export_dir, out_dir : path
        The DICOM export (read-only) and the output folder (created).
    pipeline : str or Path
        Pipeline whose ``ct`` role chooses the CT (default ``ct_sclerotic``) and whose
        ``tilt`` and ``detection`` settings apply.
    detection_config : path, optional
        A TOML of detection settings (``configs/detection.toml`` layout) laid over the
        pipeline's.
    force : bool
        Replace an earlier result in ``out_dir``.
    catalogue : path, optional
        Index catalogue (default ``OUT_DIR/catalogue.sqlite``).
    workers : int
        Processes for indexing.
    command : sequence of str
        The command line, recorded in ``detection.json``.
    progress : callable, optional
        Called with one line per study.

    Returns
    -------
    DetectSummary

    Raises
    ------
    ConfigError
        Invalid pipeline or detection configuration, or a pipeline without a ``ct`` role.
    InputError
        Missing export folder; ``out_dir`` inside the export; an earlier result in
        ``out_dir`` without ``force``.
    """
    from bonelesion.config import read_toml
    from bonelesion.errors import ConfigError
    from bonelesion.pipeline.definition import PipelineDefinition, load_pipeline
    from bonelesion.pipeline.inventory import build_inventory
    from bonelesion.pipeline.loading import load_study_volumes
    from bonelesion.pipeline.selection import plan_study
    from bonelesion.report.detection import (
        candidate_rows,
        vertebra_rows,
        write_candidates_csv,
        write_vertebrae_csv,
    )
    from bonelesion.report.document import run_record
    from bonelesion.report.result import safe_name

    definition = load_pipeline(pipeline)
    if "ct" not in definition.roles:
        raise ConfigError(f"Pipeline {definition.name}: detection needs a [roles.ct] table (the "
                          "CT to detect on). Potential fix: use --pipeline ct_sclerotic.")
    table = dict(definition.detection)
    if detection_config is not None:
        from bonelesion.pipeline.definition import _deep_merge

        extra = read_toml(detection_config)
        table = _deep_merge(table, extra.get("detection", extra))
    try:
        config = detection_config_from_mapping(table)
    except ConfigError as exc:
        raise ConfigError(f"Detection configuration ({detection_config or definition.name}): "
                          f"{exc}") from exc
    ct_only = PipelineDefinition(name=definition.name, stages=("ct_attenuation",),
                                 roles={"ct": definition.roles["ct"]}, tilt=definition.tilt)
    export = Path(export_dir)
    out = Path(out_dir)
    if not export.is_dir():
        raise InputError(f"Export folder {export} does not exist or is not a folder. "
                         "Potential fix: give the folder holding the DICOM export.")
    try:
        out.resolve().relative_to(export.resolve())
        raise InputError(f"Output folder {out} is inside the export {export}. Potential fix: "
                         "choose --out outside the export.")
    except ValueError:
        pass
    existing = [n for n in DETECTION_FILENAMES.values() if (out / n).exists()]
    if existing and not force:
        raise InputError(f"Output folder {out} already holds {', '.join(existing)}; refusing to "
                         "overwrite. Potential fix: pass --force or choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    catalogue_path = Path(catalogue) if catalogue else out / "catalogue.sqlite"
    inventory = build_inventory(export, catalogue_path, workers=workers)
    rows: list[dict[str, Any]] = []
    candidate_table: list[dict[str, Any]] = []
    studies: list[DetectStudy] = []
    for study in inventory.studies:
        uid = study.study_instance_uid
        start = time.perf_counter()
        notes: list[str] = []
        plan = plan_study(uid, study.candidates, ct_only)
        if plan.refusal:
            studies.append(DetectStudy(study_instance_uid=uid, status="failed", stage="plan",
                                       message=plan.refusal,
                                       duration_s=time.perf_counter() - start))
            _say(progress, f"{uid}: not analysed: {plan.refusal}")
            continue
        try:
            volumes = load_study_volumes(plan, tilt=definition.tilt)
            ct = volumes.one("ct")
            if ct is None:
                raise InputError(f"Study {uid}: the plan chose no CT volume.")
            detection = detect_on_ct(ct, config)
            notes.extend(detection.notes)
            folder = out / "studies" / safe_name(uid)
            written = _write_study(folder, uid, ct, detection, config, notes)
            rows.extend(vertebra_rows(uid, detection.labelling,
                                      osteoporosis=config.osteoporosis,
                                      vertebrae=config.vertebrae))
            if detection.candidates is not None:
                candidate_table.extend(candidate_rows(uid, detection.candidates.accepted,
                                                      ct.series.series_instance_uid))
            if not detection.labelling.vertebrae:
                notes.append("no vertebra found on this CT: no rows")
            studies.append(DetectStudy(
                study_instance_uid=uid, status="ok", notes=tuple(notes),
                files=tuple(str(p.relative_to(out)) for p in written),
                vertebrae=len(detection.labelling.vertebrae),
                candidates=len(detection.candidates.accepted) if detection.candidates else 0,
                duration_s=time.perf_counter() - start))
            n_cand = len(detection.candidates.accepted) if detection.candidates else 0
            _say(progress, f"{uid}: {len(detection.labelling.vertebrae)} vertebrae, {n_cand} "
                 "candidates"
                 + (f" ({'; '.join(notes)})" if notes else ""))
        except PipelineError as exc:
            studies.append(DetectStudy(study_instance_uid=uid, status="failed", stage="load",
                                       message=str(exc), notes=tuple(notes),
                                       duration_s=time.perf_counter() - start))
            _say(progress, f"{uid}: not analysed: {exc}")
        except Exception as exc:  # noqa: BLE001 - isolation: one study never stops the run
            logger.error("study %s: detection failed:\n%s", uid,
                         "".join(traceback.format_exception(exc)))
            studies.append(DetectStudy(
                study_instance_uid=uid, status="failed", stage="detect",
                message=(f"Study {uid}: unexpected {type(exc).__name__}: {exc}. Potential fix: "
                         "this is a bug; rerun with -v and report the traceback."),
                notes=tuple(notes), duration_s=time.perf_counter() - start))
    files = {"vertebrae": str(write_vertebrae_csv(out / DETECTION_FILENAMES["vertebrae"], rows)),
             "candidates": str(write_candidates_csv(out / DETECTION_FILENAMES["candidates"],
                                                    candidate_table))}
    summary = {
        "document": "detection",
        "pipeline": definition.name,
        "config": _config_dict(config),
        "studies": [s.to_dict() for s in studies],
        "bad_files": [{"path": b.path, "reason": b.reason} for b in inventory.bad_files
                      if b.is_failure],
        "run": run_record(list(command) if command else None),
    }
    path = out / DETECTION_FILENAMES["summary"]
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    files["summary"] = str(path)
    return DetectSummary(out_dir=str(out), studies=tuple(studies), files=files,
                         bad_files=sum(b.is_failure for b in inventory.bad_files))


def _config_dict(config: DetectionConfig) -> dict[str, Any]:
    from bonelesion.config import config_to_dict

    result: dict[str, Any] = config_to_dict(config)
    return result


def _say(progress: Callable[[str], None] | None, line: str) -> None:
    if progress is not None:
        progress(line)
