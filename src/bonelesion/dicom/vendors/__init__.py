"""Vendor knowledge: the one package that knows how each manufacturer labels things.

Every function takes a *flat* header: a classic single-frame data set, or one frame of an
enhanced multi-frame object flattened by `bonelesion.dicom.multiframe.flatten_frames`
(shared + per-frame functional group item contents copied to the top level; FrameType
copied to ImageType; EffectiveEchoTime to EchoTime; the MR Diffusion macro contents —
DiffusionBValue, DiffusionDirectionality, DiffusionGradientDirectionSequence — at the top
level).

Modules, by vendor and by topic (sources in CLINICAL_REFERENCE.md §C4 and §E, and the
vendor notes of dcm2niix):

* `identify` — the manufacturer family (`vendor_of`), also when Manufacturer was blanked.
* `siemens`, `ge`, `philips`, `canon`, `uih` — each vendor's private elements: b-values,
  gradient directions, the Siemens CSA header and mosaic layout, GE logical-frame
  gradients, Philips private per-frame items and float scaling, Canon ImageComments
  gradients, United Imaging mosaics; each vendor's CT bone-kernel names.
* `diffusion` — b-value, gradient direction (LPS) and diffusion kind across vendors.
* `acquisition` — echo time, field strength, fat–water in/opposed-phase echo times.
* `roles` — the stack role (`bonelesion.model.roles.SeriesRole`), including localizers,
  screen captures and other objects that are not volumes.
* `adc` — the unit of a scanner ADC map.
* `ct` — CT reconstruction kernels: the bone-kernel pattern of every vendor.

This module re-exports the public functions, so ``from bonelesion.dicom import vendors;
vendors.stack_role(ds)`` keeps working.
"""

from bonelesion.dicom.vendors import uih
from bonelesion.dicom.vendors.acquisition import (
    ECHO_PHASE_TOLERANCE_CYCLES,
    echo_phase_ms,
    echo_time_ms,
    echo_time_phase,
    magnetic_field_strength_t,
)
from bonelesion.dicom.vendors.adc import ADC_SCALE_RANGES, adc_scale_to_mm2_per_s
from bonelesion.dicom.vendors.diffusion import (
    B_VALUE_MAX_S_PER_MM2,
    DiffusionKind,
    b_value_s_per_mm2,
    b_values_of_series_s_per_mm2,
    diffusion_direction_lps,
    diffusion_facts,
    diffusion_kind,
    is_diffusion_acquisition,
)
from bonelesion.dicom.vendors.identify import Vendor, vendor_of
from bonelesion.dicom.vendors.philips import philips_float_rescale, philips_private_frame_items
from bonelesion.dicom.vendors.roles import (
    SECONDARY_CAPTURE_SOP_CLASSES,
    Role,
    RoleCall,
    classify_stack,
    stack_role,
)
from bonelesion.model.roles import SeriesRole

__all__ = [
    "MOSAIC_IMAGE_TYPES",
    "uih",
    "Vendor",
    "DiffusionKind",
    "Role",
    "SeriesRole",
    "vendor_of",
    "b_value_s_per_mm2",
    "diffusion_direction_lps",
    "diffusion_kind",
    "diffusion_facts",
    "echo_time_ms",
    "magnetic_field_strength_t",
    "stack_role",
    "classify_stack",
    "RoleCall",
    "SECONDARY_CAPTURE_SOP_CLASSES",
    "adc_scale_to_mm2_per_s",
    "echo_phase_ms",
    "echo_time_phase",
    "is_diffusion_acquisition",
    "b_values_of_series_s_per_mm2",
    "philips_float_rescale",
    "philips_private_frame_items",
    "B_VALUE_MAX_S_PER_MM2",
    "ECHO_PHASE_TOLERANCE_CYCLES",
    "ADC_SCALE_RANGES",
]


#: ImageType values of mosaics: one image holding a whole volume of tiled slices (Siemens
#: ``MOSAIC``; United Imaging ``VFRAME`` with the slice count in (0065,xx50)). A one-image
#: stack carrying one of these is a volume, not a localizer or a screen capture.
MOSAIC_IMAGE_TYPES = frozenset({"MOSAIC", "VFRAME"})
