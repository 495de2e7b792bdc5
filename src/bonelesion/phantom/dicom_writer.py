"""Write image stacks as real DICOM: classic single-frame or enhanced multi-frame, CT or MR.

The writer is deliberately literal: every attribute is set from the stack description and
a `WriteContext`; nothing depends on the clock or the host, so the same input gives the
same bytes. UIDs are `pydicom.uid.generate_uid` hashes of the context key and a role path.

References
----------
DICOM PS3.3 A.3 (CT Image IOD), A.4 (MR Image IOD), A.36 (Enhanced MR), A.38 (Enhanced CT),
C.7.6.16 (Multi-frame Functional Groups), C.8.13 (Enhanced MR modules).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from bonelesion.phantom.anatomy import Grid
from bonelesion.phantom.vendor_style import VendorStyle

__all__ = [
    "CT_IMAGE_STORAGE",
    "MR_IMAGE_STORAGE",
    "ENHANCED_CT_IMAGE_STORAGE",
    "ENHANCED_MR_IMAGE_STORAGE",
    "UID_ROOT",
    "WriteContext",
    "StackSpec",
    "SeriesSpec",
    "write_series",
    "uid_prefix",
    "enhanced_image_type",
]

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")

#: pydicom's UID root (PS3.5 §9: a registered root; generate_uid hashes below it).
UID_ROOT = "1.2.826.0.1.3680043.8.498."

#: Fixed study date/time: the files must not depend on the clock.
_STUDY_DATE = "20260101"
_STUDY_TIME = "080000"


def uid_prefix(seed: int) -> str:
    """UID prefix for one seed: ``<pydicom root><seed mod 1e9>.``."""
    return f"{UID_ROOT}{seed % 1_000_000_000}."


def _ds(value: float) -> str:
    """Format a float as a DS string (≤ 16 characters)."""
    return format_number_as_ds(float(value))


@dataclass(frozen=True, kw_only=True)
class WriteContext:
    """What every file of one study shares.

    Parameters
    ----------
    key : str
        Everything that makes this study distinct (vendor, seed, variant, lesions); hashed
        into every UID.
    seed : int
    style : VendorStyle
    enhanced, compressed : bool
    study_instance_uid, frame_of_reference_uid : str
    study_description, body_part_examined : str
    """

    key: str
    seed: int
    style: VendorStyle
    enhanced: bool
    compressed: bool
    study_instance_uid: str
    frame_of_reference_uid: str
    study_description: str = "PHANTOM LUMBAR SPINE"
    body_part_examined: str = "LSPINE"

    def uid(self, *parts: str) -> str:
        """Deterministic UID for a role path (e.g. ``("series", "ct")``)."""
        return str(generate_uid(prefix=uid_prefix(self.seed), entropy_srcs=[self.key, *parts]))


@dataclass(frozen=True, kw_only=True)
class StackSpec:
    """One volume: stored pixel values on a grid, with its acquisition values.

    Parameters
    ----------
    pixels : (S, R, C) ndarray of uint16 or int16
        Stored values, indexed [slice, row, column] on `grid` (int16: signed pixels).
    grid : Grid
    image_type : tuple of str
    echo_time_ms : float
    b_value_s_per_mm2 : float or None
        Diffusion b-value (DWI stacks only).
    is_adc : bool
    window_center, window_width : float
    slice_thickness_mm : float or None
        Nominal slice thickness when it differs from the slice spacing (overlapping or
        gapped slices); the spacing otherwise.
    """

    pixels: NDArray[np.uint16] | NDArray[np.int16]
    grid: Grid
    image_type: tuple[str, ...]
    echo_time_ms: float = 0.0
    b_value_s_per_mm2: float | None = None
    is_adc: bool = False
    window_center: float = 0.0
    window_width: float = 0.0
    slice_thickness_mm: float | None = None


@dataclass(frozen=True, kw_only=True)
class SeriesSpec:
    """One series: one or more stacks sharing a SeriesInstanceUID.

    Parameters
    ----------
    role : str
    modality : str
        ``CT`` or ``MR``.
    series_number : int
    series_description : str
    stacks : sequence of StackSpec
    transfer_syntax_uid : str
        Used when the context says ``compressed``; Explicit VR Little Endian otherwise.
    repetition_time_ms, flip_angle_deg : float
    sequence : str
        ``GRE`` (Dixon), ``EPI`` (DWI) or ``CT``.
    patient_position : str
        PatientPosition (HFS, FFS, HFP, FFP).
    uncompressed_transfer_syntax_uid : str
        Transfer syntax when the context is not compressed (Explicit or Implicit VR LE).
    bits_stored : int or None
        BitsStored (default 12 for CT, 16 for MR); signed pixels follow the dtype of the
        stacks (int16 → PixelRepresentation 1).
    pixel_padding_value : int or None
        PixelPaddingValue (stored value of pixels outside the reconstruction circle).
    spacing_between_slices_mm : float or None
        Written for CT when given (overlapping reconstructions).
    """

    role: str
    modality: str
    series_number: int
    series_description: str
    stacks: Sequence[StackSpec]
    transfer_syntax_uid: str = ExplicitVRLittleEndian
    repetition_time_ms: float = 0.0
    flip_angle_deg: float = 0.0
    sequence: str = "CT"
    extra: dict[str, str] = field(default_factory=dict)
    patient_position: str = "HFS"
    uncompressed_transfer_syntax_uid: str = ExplicitVRLittleEndian
    bits_stored: int | None = None
    pixel_padding_value: int | None = None
    spacing_between_slices_mm: float | None = None


def enhanced_image_type(image_type: Sequence[str]) -> tuple[str, ...]:
    """ImageType of an enhanced object: exactly four values (PS3.3 C.8.16.1), padded "NONE"."""
    values = tuple(image_type[:4])
    return values + ("NONE",) * (4 - len(values))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def series_folder_name(spec: SeriesSpec) -> str:
    """Folder name of a series: ``<number>_<description slug>``."""
    return f"{spec.series_number:03d}_{_slug(spec.series_description)}"


# ------------------------------------------------------------------------------ modules
def _common(ctx: WriteContext, spec: SeriesSpec, series_uid: str) -> Dataset:
    """Patient, study, series, frame-of-reference, equipment and SOP-common attributes."""
    style = ctx.style
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = _STUDY_DATE
    ds.StudyTime = _STUDY_TIME
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = f"{8 + spec.series_number // 60:02d}" \
        f"{spec.series_number % 60:02d}00"
    ds.AccessionNumber = ""
    ds.Modality = spec.modality
    ct = spec.modality == "CT"
    ds.Manufacturer = style.ct_manufacturer if ct else style.mr_manufacturer
    ds.InstitutionName = "bonelesion digital phantom"
    ds.ReferringPhysicianName = ""
    ds.StationName = "PHANTOM"
    ds.StudyDescription = ctx.study_description
    ds.SeriesDescription = spec.series_description
    ds.ManufacturerModelName = style.ct_model if ct else style.mr_model
    ds.PatientName = "PHANTOM^SPINE"
    ds.PatientID = f"PHANTOM-{ctx.seed}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    # Type 1C with PatientIdentityRemoved = YES (PS3.3 C.7.1.1): say why there is no patient
    ds.DeidentificationMethod = "SYNTHETIC: bonelesion digital phantom, no patient data"
    ds.BodyPartExamined = ctx.body_part_examined
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = style.ct_software if ct else style.mr_software
    ds.PatientPosition = spec.patient_position
    ds.StudyInstanceUID = ctx.study_instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = spec.series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = spec.bits_stored or (12 if ct else 16)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if spec.stacks[0].pixels.dtype.kind == "i" else 0
    if spec.pixel_padding_value is not None:
        ds.PixelPaddingValue = int(spec.pixel_padding_value)
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def _mr_acquisition(ds: Dataset, ctx: WriteContext, spec: SeriesSpec, field_t: float,
                    enhanced: bool) -> None:
    epi = spec.sequence == "EPI"
    ds.MagneticFieldStrength = _ds(field_t)
    ds.ImagingFrequency = _ds(round(42.577478 * field_t, 6))
    ds.ImagedNucleus = "1H"
    ds.ProtocolName = spec.series_description
    if not enhanced:
        ds.ScanningSequence = ["SE", "EP"] if epi else ["GR"]
        ds.SequenceVariant = ["SK", "SP"] if epi else ["SP", "OSP"]
        ds.ScanOptions = ["FS"] if epi else ""
        ds.MRAcquisitionType = "2D" if epi else "3D"
        ds.SequenceName = ("*ep_b" if epi else "*fl3d2") if ctx.style.vendor == "siemens" else (
            "DWI" if epi else "LAVA-Flex" if ctx.style.vendor == "ge" else "FFE")
        ds.RepetitionTime = _ds(spec.repetition_time_ms)
        ds.NumberOfAverages = "1"
        ds.EchoTrainLength = 1
        ds.FlipAngle = _ds(spec.flip_angle_deg)
    ctx.style.decorate_mr(ds)


def _geometry_classic(ds: Dataset, grid: Grid, k: int) -> None:
    d = grid.direction_lps
    sp = grid.spacing_mm
    ipp = grid.index_to_lps([k, 0, 0])[0]
    ds.ImagePositionPatient = [_ds(v) for v in ipp]
    ds.ImageOrientationPatient = [_ds(v) for v in (*d[:, 2], *d[:, 1])]
    ds.PixelSpacing = [_ds(sp[1]), _ds(sp[2])]
    ds.SliceThickness = _ds(sp[0])
    ds.SliceLocation = _ds(float(ipp @ d[:, 0]))


def _file_meta(ds: Dataset, transfer_syntax_uid: str = ExplicitVRLittleEndian) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "BONELESION_PH1"
    ds.file_meta = meta


def _pixel_dtype(stack: StackSpec) -> str:
    return "<i2" if stack.pixels.dtype.kind == "i" else "<u2"


def _save(ds: Dataset, path: Path, ctx: WriteContext, spec: SeriesSpec) -> None:
    if ctx.compressed and spec.transfer_syntax_uid != ExplicitVRLittleEndian:
        ds.compress(spec.transfer_syntax_uid, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)


# ------------------------------------------------------------------------------ classic
def _write_classic(ctx: WriteContext, spec: SeriesSpec, folder: Path, series_uid: str) -> int:
    base = _common(ctx, spec, series_uid)
    ct = spec.modality == "CT"
    style = ctx.style
    base.SOPClassUID = CT_IMAGE_STORAGE if ct else MR_IMAGE_STORAGE
    if ct:
        base.KVP = "120"
        base.XRayTubeCurrent = 200
        base.ExposureTime = 500
        base.ConvolutionKernel = style.ct_kernel
        base.GantryDetectorTilt = "0"
        base.DataCollectionDiameter = "500"
        base.ReconstructionDiameter = _ds(spec.stacks[0].grid.spacing_mm[2]
                                          * spec.stacks[0].grid.shape[2])
        base.RescaleIntercept = "-1024"
        base.RescaleSlope = "1"
        base.RescaleType = "HU"
        if spec.spacing_between_slices_mm is not None:
            base.SpacingBetweenSlices = _ds(spec.spacing_between_slices_mm)
    else:
        _mr_acquisition(base, ctx, spec, float(spec.extra["field_strength_t"]), enhanced=False)
        if style.vendor == "philips":
            base.RescaleIntercept = "0"
            base.RescaleSlope = "1"
            base.RescaleType = "normalized"
    instance = 0
    n_files = 0
    for stack_index, stack in enumerate(spec.stacks):
        ds = base  # the header is built once and varied per slice (fast for big series)
        ds.ImageType = list(stack.image_type)
        n_slices, n_rows, n_cols = stack.pixels.shape
        ds.Rows, ds.Columns = n_rows, n_cols
        if not ct:
            ds.EchoTime = _ds(stack.echo_time_ms)
            ds.EchoNumbers = 1
            ds.SpacingBetweenSlices = _ds(stack.grid.spacing_mm[0])
            for tag in list(ds.keys()):  # drop the previous stack's diffusion tags
                if tag.group in (0x0019, 0x0021, 0x0043, 0x2001) or tag in (
                        0x00189087, 0x00189075):
                    del ds[tag]
            if stack.b_value_s_per_mm2 is not None:
                style.decorate_dwi(ds, b_value_s_per_mm2=stack.b_value_s_per_mm2)
        ds.WindowCenter = _ds(stack.window_center)
        ds.WindowWidth = _ds(stack.window_width)
        for k in range(n_slices):
            instance += 1
            # Instance numbers run from the last slice of the axis to the first (scanners
            # number from the first acquired slice; loaders must sort by position).
            number = instance if not ct else n_slices - k
            ds.InstanceNumber = number
            ds.SOPInstanceUID = ctx.uid("instance", spec.role, str(stack_index), str(k))
            _geometry_classic(ds, stack.grid, k)
            if stack.slice_thickness_mm is not None:
                ds.SliceThickness = _ds(stack.slice_thickness_mm)
            ds.PixelData = np.ascontiguousarray(stack.pixels[k], dtype=_pixel_dtype(stack)
                                                ).tobytes()
            if "PixelData" in ds:
                ds["PixelData"].VR = "OW"
            _file_meta(ds, spec.uncompressed_transfer_syntax_uid)
            _save(ds, folder / f"IM{instance:04d}.dcm", ctx, spec)
            if ctx.compressed and spec.transfer_syntax_uid != ExplicitVRLittleEndian:
                # compress() replaced PixelData and the transfer syntax: restore for the next
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            n_files += 1
    return n_files


# ----------------------------------------------------------------------------- enhanced
def _item(**kwargs: object) -> Dataset:
    item = Dataset()
    for key, value in kwargs.items():
        setattr(item, key, value)
    return item


#: Nominal acquisition durations of the enhanced objects (a phantom has no scanner).
_ACQUISITION_DURATION_S = 120.0
_FRAME_DURATION_MS = 100.0


def _mr_original_macros(shared: Dataset, spec: SeriesSpec, n_rows: int, n_cols: int, *,
                        field_t: float, epi: bool) -> None:
    """MR functional-group macros that are Type 1 for original images (PS3.3 C.8.13.5)."""
    shared.MRFOVGeometrySequence = DicomSequence([_item(
        InPlanePhaseEncodingDirection="COLUMN", MRAcquisitionFrequencyEncodingSteps=n_cols,
        MRAcquisitionPhaseEncodingStepsInPlane=n_rows, PercentSampling=100.0,
        PercentPhaseFieldOfView=100.0)])
    shared.MRAveragesSequence = DicomSequence([_item(NumberOfAverages=1.0)])
    shared.MRImagingModifierSequence = DicomSequence([_item(
        PixelBandwidth=1500.0 if epi else 400.0,
        TransmitterFrequency=round(42.577478 * field_t, 6),
        MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE")])
    shared.MRModifierSequence = DicomSequence([_item(
        InversionRecovery="NO", FlowCompensation="NONE", T2Preparation="NO",
        SpatialPresaturation="NONE", PartialFourier="NO", ParallelAcquisition="NO",
        SpectrallySelectedExcitation="NONE")])
    shared.MRReceiveCoilSequence = DicomSequence([_item(
        ReceiveCoilName="SPINE", ReceiveCoilManufacturerName="", ReceiveCoilType="MULTICOIL",
        QuadratureReceiveCoil="NO",
        MultiCoilDefinitionSequence=DicomSequence([_item(
            MultiCoilElementName="SP1", MultiCoilElementUsed="YES")]))])
    shared.MRTransmitCoilSequence = DicomSequence([_item(
        TransmitCoilName="BODY", TransmitCoilManufacturerName="", TransmitCoilType="BODY")])


def _write_enhanced(ctx: WriteContext, spec: SeriesSpec, folder: Path, series_uid: str) -> int:
    ct = spec.modality == "CT"
    style = ctx.style
    for stack_index, stack in enumerate(spec.stacks):
        ds = _common(ctx, spec, series_uid)
        ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE if ct else ENHANCED_MR_IMAGE_STORAGE
        ds.SOPInstanceUID = ctx.uid("instance", spec.role, str(stack_index), "enhanced")
        ds.InstanceNumber = stack_index + 1
        image_type = list(enhanced_image_type(stack.image_type))
        ds.ImageType = image_type
        ds.AcquisitionDateTime = _STUDY_DATE + ds.AcquisitionTime
        ds.ContentQualification = "RESEARCH"
        ds.PresentationLUTShape = "IDENTITY"
        ds.PixelPresentation = "MONOCHROME"
        ds.VolumetricProperties = "VOLUME"
        ds.VolumeBasedCalculationTechnique = "NONE"
        ds.ImageComments = "bonelesion digital phantom"
        ds.AcquisitionContextSequence = DicomSequence()  # Type 2: known to be empty
        original = image_type[0] in ("ORIGINAL", "MIXED")
        if original:  # Type 1C/2C when the image is (partly) original
            ds.AcquisitionDuration = _ACQUISITION_DURATION_S
        grid = stack.grid
        n_slices, n_rows, n_cols = stack.pixels.shape
        ds.Rows, ds.Columns = n_rows, n_cols
        ds.NumberOfFrames = n_slices
        d = grid.direction_lps
        sp = grid.spacing_mm

        shared = Dataset()
        thickness = sp[0] if stack.slice_thickness_mm is None else stack.slice_thickness_mm
        shared.PixelMeasuresSequence = DicomSequence([_item(
            PixelSpacing=[_ds(sp[1]), _ds(sp[2])], SliceThickness=_ds(thickness),
            SpacingBetweenSlices=_ds(sp[0]))])
        shared.PlaneOrientationSequence = DicomSequence([_item(
            ImageOrientationPatient=[_ds(v) for v in (*d[:, 2], *d[:, 1])])])
        shared.FrameVOILUTSequence = DicomSequence([_item(
            WindowCenter=_ds(stack.window_center), WindowWidth=_ds(stack.window_width))])
        shared.FrameAnatomySequence = DicomSequence([_item(
            AnatomicRegionSequence=DicomSequence([_item(
                CodeValue="122496007", CodingSchemeDesignator="SCT",
                CodeMeaning="Lumbar spine")]),
            FrameLaterality="U")])
        if ct:
            shared.PixelValueTransformationSequence = DicomSequence([_item(
                RescaleIntercept="-1024", RescaleSlope="1", RescaleType="HU")])
            shared.CTImageFrameTypeSequence = DicomSequence([_item(
                FrameType=image_type, PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE")])
            shared.CTAcquisitionTypeSequence = DicomSequence([_item(
                AcquisitionType="SPIRAL", ConstantVolumeFlag="NO", FluoroscopyFlag="NO")])
            shared.CTReconstructionSequence = DicomSequence([_item(
                ConvolutionKernel=style.ct_kernel, ConvolutionKernelGroup="BONE",
                ReconstructionAlgorithm="FILTER_BACK_PROJ",
                ReconstructionDiameter=_ds(sp[2] * n_cols),
                ReconstructionPixelSpacing=[float(sp[1]), float(sp[2])],
                ReconstructionAngle=360.0, ImageFilter="NONE")])
            shared.CTXRayDetailsSequence = DicomSequence([_item(
                KVP="120", FilterType="FLAT", FocalSpots=[1.2], FilterMaterial=["ALUMINUM"])])
            # a nominal spiral acquisition (the phantom has no scanner; plausible values)
            shared.CTAcquisitionDetailsSequence = DicomSequence([_item(
                DataCollectionDiameter=500.0, GantryDetectorTilt="0", TableHeight="150",
                RotationDirection="CW", RevolutionTime=0.5, SingleCollimationWidth=0.6,
                TotalCollimationWidth=38.4)])
            shared.CTTableDynamicsSequence = DicomSequence([_item(
                TableSpeed=76.8, TableFeedPerRotation=38.4, SpiralPitchFactor=1.0)])
            shared.CTGeometrySequence = DicomSequence([_item(
                DistanceSourceToDetector="1085.6", DistanceSourceToDataCollectionCenter=595.0)])
            shared.CTExposureSequence = DicomSequence([_item(
                ExposureTimeInms=500.0, XRayTubeCurrentInmA=200.0, ExposureInmAs=100.0,
                ExposureModulationType="NONE", CTDIvol=6.5,
                CTDIPhantomTypeCodeSequence=DicomSequence([_item(
                    CodeValue="113691", CodingSchemeDesignator="DCM",
                    CodeMeaning="IEC Body Dosimetry Phantom")]))])
            centre = grid.index_to_lps((np.asarray(stack.pixels.shape) - 1) / 2.0)[0]
            shared.CTPositionSequence = DicomSequence([_item(
                TablePosition=float(-centre[2]),
                DataCollectionCenterPatient=[float(v) for v in centre],
                ReconstructionTargetCenterPatient=[float(v) for v in centre])])
            shared.IrradiationEventIdentificationSequence = DicomSequence([_item(
                IrradiationEventUID=ctx.uid("irradiation", spec.role, str(stack_index)))])
            ds.KVP = "120"
            ds.ConvolutionKernel = style.ct_kernel
            ds.RescaleIntercept = "-1024"  # also top level: read by simple consumers
            ds.RescaleSlope = "1"
            ds.RescaleType = "HU"
        else:
            epi = spec.sequence == "EPI"
            _mr_acquisition(ds, ctx, spec, float(spec.extra["field_strength_t"]), enhanced=True)
            ds.ResonantNucleus = "1H"
            ds.KSpaceFiltering = "NONE"
            ds.ApplicableSafetyStandardAgency = "IEC"
            ds.ComplexImageComponent = "MAGNITUDE"
            ds.AcquisitionContrast = "DIFFUSION" if epi else "T1"
            if original:  # MR Pulse Sequence module: Type 1C, only for original images
                ds.PulseSequenceName = "ep_b" if epi else "fl3d_dixon"
                ds.MRAcquisitionType = "2D" if epi else "3D"
                ds.EchoPulseSequence = "SPIN" if epi else "GRADIENT"
                if epi:  # spin-echo sequences only
                    ds.MultipleSpinEcho = "NO"
                ds.MultiPlanarExcitation = "NO"
                ds.PhaseContrast = "NO"
                ds.TimeOfFlightContrast = "NO"
                ds.SteadyStatePulseSequence = "NONE"
                ds.EchoPlanarPulseSequence = "YES" if epi else "NO"
                ds.SaturationRecovery = "NO"
                ds.SpectrallySelectedSuppression = "FAT" if epi else "NONE"
                ds.OversamplingPhase = "NONE"
                ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
                ds.RectilinearPhaseEncodeReordering = "LINEAR"
                ds.SegmentedKSpaceTraversal = "SINGLE"
                if not epi:  # 3D acquisitions only
                    ds.CoverageOfKSpace = "FULL"
                ds.NumberOfKSpaceTrajectories = 1
                _mr_original_macros(shared, spec, n_rows, n_cols, field_t=float(
                    spec.extra["field_strength_t"]), epi=epi)
            shared.MRImageFrameTypeSequence = DicomSequence([_item(
                FrameType=image_type, PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast="DIFFUSION" if epi else "T1")])
            shared.MREchoSequence = DicomSequence([_item(
                EffectiveEchoTime=float(stack.echo_time_ms))])
            shared.MRTimingAndRelatedParametersSequence = DicomSequence([_item(
                RepetitionTime=_ds(spec.repetition_time_ms),
                FlipAngle=_ds(spec.flip_angle_deg), EchoTrainLength=1,
                RFEchoTrainLength=1, GradientEchoTrainLength=1,
                OperatingModeSequence=DicomSequence([
                    _item(OperatingModeType=kind, OperatingMode="IEC_NORMAL")
                    for kind in ("STATIC FIELD", "RF", "GRADIENT")]),
                SpecificAbsorptionRateSequence=DicomSequence([_item(
                    SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                    SpecificAbsorptionRateValue=0.5)]))])
            shared.PixelValueTransformationSequence = DicomSequence([_item(
                RescaleIntercept="0", RescaleSlope="1", RescaleType="US")])
            if stack.is_adc:  # as the Siemens XA ADC map: directionality, no b-value
                shared.MRDiffusionSequence = DicomSequence([_item(
                    DiffusionDirectionality="ISOTROPIC")])
            elif stack.b_value_s_per_mm2 is not None:
                b = float(stack.b_value_s_per_mm2)
                shared.MRDiffusionSequence = DicomSequence([_item(
                    DiffusionBValue=b, DiffusionDirectionality="ISOTROPIC" if b > 0 else "NONE")])
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

        dim_uid = ctx.uid("dimension", spec.role, str(stack_index))
        ds.DimensionOrganizationSequence = DicomSequence([_item(DimensionOrganizationUID=dim_uid)])
        ds.DimensionOrganizationType = "3D"
        ds.DimensionIndexSequence = DicomSequence([
            _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209056,
                  FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
            _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209057,
                  FunctionalGroupPointer=0x00209111,
                  DimensionDescriptionLabel="In-Stack Position Number"),
        ])
        frames = []
        for k in range(n_slices):
            ipp = grid.index_to_lps([k, 0, 0])[0]
            frames.append(_item(
                FrameContentSequence=DicomSequence([_item(
                    StackID="1", InStackPositionNumber=k + 1, DimensionIndexValues=[1, k + 1],
                    FrameAcquisitionNumber=1, FrameAcquisitionDateTime=ds.AcquisitionDateTime,
                    FrameReferenceDateTime=ds.AcquisitionDateTime,
                    FrameAcquisitionDuration=_FRAME_DURATION_MS)]),
                PlanePositionSequence=DicomSequence([_item(
                    ImagePositionPatient=[_ds(v) for v in ipp])]),
            ))
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
        ds.PixelData = np.ascontiguousarray(stack.pixels, dtype=_pixel_dtype(stack)).tobytes()
        ds["PixelData"].VR = "OW"
        _file_meta(ds, spec.uncompressed_transfer_syntax_uid)
        _save(ds, folder / f"IM{stack_index + 1:04d}.dcm", ctx, spec)
    return len(spec.stacks)


def write_series(ctx: WriteContext, spec: SeriesSpec, out_dir: Path) -> tuple[str, Path, int]:
    """Write one series below ``out_dir``.

    Returns
    -------
    series_instance_uid : str
    folder : Path
    n_files : int
    """
    series_uid = ctx.uid("series", spec.role)
    folder = out_dir / series_folder_name(spec)
    folder.mkdir(parents=True, exist_ok=True)
    if ctx.enhanced:
        n = _write_enhanced(ctx, spec, folder, series_uid)
    else:
        n = _write_classic(ctx, spec, folder, series_uid)
    return series_uid, folder, n
