"""TID 1500 Comprehensive 3D SR (highdicom): one volumetric measurement group per lesion.

Its measurements in UCUM units ([hnsf'U], um2/s, %, 1), the call and spine scores as
qualitative evaluations, referencing the SEG segment (and through it the source images).

References
----------
DICOM PS3.16 TID 1500 (Measurement Report) and TID 1411 (Volumetric ROI Measurements and
Qualitative Evaluations).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from bonelesion.classify.call import LesionCall
from bonelesion.errors import (
    InputError,
    UnsupportedInputError,
)
from bonelesion.model.results import LesionMeasurements
from bonelesion.report.dicom_sources import (
    HIGHDICOM_FAILURES,
    copy_deidentification,
    describe_source,
    log_warnings,
    safe_text,
)
from bonelesion.report.result import StudyResult
from bonelesion.units import ADC_UM2_PER_S_PER_MM2_PER_S

__all__ = ["PRIVATE_SCHEME", "PRIVATE_CONCEPTS", "CODES", "write_measurement_report"]

logger = logging.getLogger(__name__)



#: Coding scheme of the concepts no public vocabulary holds (PS3.16 8.2: "99" prefix).
PRIVATE_SCHEME = "99BONELESION"


def _private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


#: Concept names and units used in the SR. Standard codes (DCM, SCT, UCUM; every one is in
#: the PS3.16 tables shipped with pydicom) wherever one exists; `PRIVATE_SCHEME` only for
#: the concepts in `PRIVATE_CONCEPTS`.
CODES = {
    "unit_hu": codes.UCUM.HounsfieldUnit,
    "unit_um2_per_s": hd.sr.CodedConcept("um2/s", "UCUM", "um2/s"),
    "unit_pct": codes.UCUM.Percent,
    "unit_one": hd.sr.CodedConcept("1", "UCUM", "no units"),
    "attenuation": codes.DCM.AttenuationCoefficient,  # DCM 112031
    "adc": codes.DCM.ApparentDiffusionCoefficient,  # DCM 113041 (CID 7180)
    "fat_fraction": codes.DCM.FatFraction,  # DCM 129100 (CID 7180 MR quantities)
    "probability": codes.DCM.ProbabilityOfCancer,  # DCM 111047
    "call": codes.SCT.Classification,  # SCT 278201002
    "malignant": codes.SCT.Malignant,  # SCT 21594007 (CID 6063)
    "benign": codes.SCT.Benign,  # SCT 30807003 (CID 6063)
    "indeterminate": codes.SCT.IndeterminateResult,  # SCT 280416009 (CID 6063)
    # no standard concept: the chemical-shift ratio and drop of opposed- vs in-phase signal
    # (DCM "Signal change" has no defined direction or reference image), SINS and ESCC
    "sir": _private("SIR", "Chemical shift signal intensity ratio"),
    "signal_drop": _private("SIGDROP", "Chemical shift signal drop"),
    "sins_total": _private("SINS", "Spinal Instability Neoplastic Score"),
    "sins_band": _private("SINSBAND", "SINS stability band"),
    "escc": _private("ESCC", "Epidural spinal cord compression grade"),
}

#: Keys of `CODES` that have no standard code (``99BONELESION``); the values of the SINS
#: band (``STABLE``, ``POTENTIALLY_UNSTABLE``, ``UNSTABLE``) and Bilsky ESCC grade (``ESCC0``,
#: ``ESCC1A`` … ``ESCC3``) evaluations are private too.
PRIVATE_CONCEPTS = ("sir", "signal_drop", "sins_total", "sins_band", "escc")



def _referenced_segment(seg: Dataset, segment_number: int) -> hd.sr.ReferencedSegment:
    """Build the reference to one segment and its source images (TID 1411 row 9).

    Like ``ReferencedSegment.from_segmentation``, but also for a SEG with a single segment,
    whose Segment Identification highdicom puts in the *shared* functional groups (where
    ``from_segmentation`` of highdicom 0.28 looks only per frame).
    """
    shared = seg.SharedFunctionalGroupsSequence[0]
    sources: dict[str, hd.sr.SourceImageForSegmentation] = {}
    for item in seg.PerFrameFunctionalGroupsSequence:
        ident = item.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence")
        if ident is None or int(ident[0].ReferencedSegmentNumber) != segment_number:
            continue
        for derivation in item.get("DerivationImageSequence", []):
            for src in derivation.get("SourceImageSequence", []):
                uid = str(src.ReferencedSOPInstanceUID)
                frames = src.get("ReferencedFrameNumber")
                frame_list = None if frames is None else [int(f) for f in (
                    frames if src["ReferencedFrameNumber"].VM > 1 else [frames])]
                if uid in sources and frame_list is not None:
                    old = sources[uid].ReferencedSOPSequence[0].get("ReferencedFrameNumber")
                    old_list = [] if old is None else [int(f) for f in (
                        old if isinstance(old, (list, pydicom.multival.MultiValue)) else [old])]
                    frame_list = sorted(set(old_list) | set(frame_list))
                if uid not in sources or frame_list is not None:
                    sources[uid] = hd.sr.SourceImageForSegmentation(
                        referenced_sop_class_uid=str(src.ReferencedSOPClassUID),
                        referenced_sop_instance_uid=uid, referenced_frame_numbers=frame_list)
    if not sources:
        raise InputError(
            f"DICOM SR: segment {segment_number} of SEG {seg.SOPInstanceUID} references no "
            "source image. Potential fix: write the SEG with write_segmentation.")
    return hd.sr.ReferencedSegment(
        sop_class_uid=str(seg.SOPClassUID), sop_instance_uid=str(seg.SOPInstanceUID),
        segment_number=segment_number, source_images=list(sources.values()))


def _measurements(m: LesionMeasurements, call: LesionCall) -> list[hd.sr.Measurement]:
    out: list[hd.sr.Measurement] = []

    def add(name: hd.sr.CodedConcept, value: float | None, unit: hd.sr.CodedConcept,
            derivation: hd.sr.CodedConcept | None = None) -> None:
        if value is None or not np.isfinite(value):
            return
        out.append(hd.sr.Measurement(name=name, value=float(np.round(value, 6)), unit=unit,
                                     derivation=derivation))

    if m.ct is not None:
        add(CODES["attenuation"], m.ct.attenuation_mean_hu, CODES["unit_hu"], codes.SCT.Mean)
        add(CODES["attenuation"], m.ct.attenuation_max_hu, CODES["unit_hu"], codes.SCT.Maximum)
    if m.chemical_shift is not None:
        add(CODES["sir"], m.chemical_shift.chemical_shift_ratio, CODES["unit_one"])
        add(CODES["signal_drop"], m.chemical_shift.signal_drop_pct, CODES["unit_pct"])
        add(CODES["fat_fraction"], m.chemical_shift.fat_fraction, CODES["unit_one"])
    if m.adc is not None:
        add(CODES["adc"], m.adc.adc_mean_mm2_per_s * ADC_UM2_PER_S_PER_MM2_PER_S,
            CODES["unit_um2_per_s"], codes.SCT.Mean)
    add(CODES["probability"], call.probability_malignant, CODES["unit_one"])
    if call.sins is not None and call.sins.complete:
        add(CODES["sins_total"], float(call.sins.total_min_points), CODES["unit_one"])
    return out


def _evaluations(call: LesionCall) -> list[hd.sr.QualitativeEvaluation]:
    out = [hd.sr.QualitativeEvaluation(name=CODES["call"], value=CODES[call.label.value])]
    if call.sins is not None:
        out.append(hd.sr.QualitativeEvaluation(
            name=CODES["sins_band"], value=_private(call.sins.band.value.upper(),
                                                    call.sins.band.value.replace("_", " "))))
    if call.escc is not None:
        meaning = f"Bilsky grade {call.escc.grade}" + (" (borderline)" if call.escc.borderline
                                                       else "")
        out.append(hd.sr.QualitativeEvaluation(
            name=CODES["escc"], value=_private(f"ESCC{call.escc.grade.upper()}", meaning)))
    return out


def write_measurement_report(
    study: StudyResult,
    seg: Dataset,
    segment_numbers: Mapping[str, int],
    source_datasets: Sequence[Dataset],
    path: str | Path,
    *,
    series_number: int = 9902,
) -> Dataset:
    """Write a Comprehensive 3D SR (TID 1500) with one measurement group per lesion.

    Lesions without a segment in ``seg`` are reported without a segment reference.

    Returns
    -------
    Dataset
        The SR dataset (also saved to ``path``).
    """
    from bonelesion import __version__

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="bonelesion", manufacturer_name="bonelesion",
            model_name=f"bonelesion {__version__}"),
    )
    context = hd.sr.ObservationContext(observer_device_context=observer)
    modalities = {v.series.modality for v in study.volumes.values()} | {
        str(source_datasets[0].Modality)}
    procedures = [c for mod, c in (("CT", codes.LN.CTUnspecifiedBodyRegion),
                                   ("MR", codes.LN.MRIUnspecifiedBodyRegion)) if mod in modalities]
    groups = []
    for m, call in zip(study.lesions, study.calls, strict=True):
        ref = None
        if m.lesion_id in segment_numbers:
            ref = _referenced_segment(seg, segment_numbers[m.lesion_id])
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                         identifier=f"lesion {m.lesion_id}"[:64]),
            referenced_segment=ref, finding_type=codes.SCT.Lesion,
            finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Bone)],
            measurements=_measurements(m, call), qualitative_evaluations=_evaluations(call),
        ) if ref is not None else hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                         identifier=f"lesion {m.lesion_id}"[:64]),
            finding_type=codes.SCT.Lesion,
            finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Bone)],
            measurements=_measurements(m, call), qualitative_evaluations=_evaluations(call),
        ))
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=procedures or [codes.LN.CTUnspecifiedBodyRegion],
        imaging_measurements=groups, title=codes.cid7021.ImagingMeasurementReport,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sr = hd.sr.Comprehensive3DSR(
                evidence=[*source_datasets, seg], content=report,
                series_instance_uid=generate_uid(), series_number=series_number,
                sop_instance_uid=generate_uid(), instance_number=1, manufacturer="bonelesion",
                is_complete=True, series_description="bonelesion report",
            )
        except HIGHDICOM_FAILURES as exc:
            series = source_datasets[0].get("SeriesInstanceUID", "(no UID)")
            raise UnsupportedInputError(
                f"DICOM SR of study {study.study_instance_uid} on series {series} "
                f"({describe_source(source_datasets)}): highdicom {hd.__version__} cannot "
                f"build the Comprehensive 3D SR ({safe_text(exc)}); expected source images "
                "and a SEG with complete study/series identification. Potential fix: skip "
                "DICOM output (--no-dicom); the measurements are unaffected.") from exc
    log_warnings(caught, "DICOM SR")
    copy_deidentification(source_datasets[0], sr)
    sr.save_as(Path(path))
    return sr


