"""CT reconstruction kernels: which ConvolutionKernel names are bone (sharp) kernels.

Each vendor module holds its own kernel names; this module joins them into the default
pattern the series-selection policy uses (``bone_kernel`` preference of
`bonelesion.pipeline.definition.RoleSpec`).
"""

from __future__ import annotations

from bonelesion.dicom.vendors.canon import CANON_BONE_KERNEL_PATTERN
from bonelesion.dicom.vendors.ge import GE_BONE_KERNEL_PATTERN
from bonelesion.dicom.vendors.philips import PHILIPS_BONE_KERNEL_PATTERN
from bonelesion.dicom.vendors.siemens import SIEMENS_BONE_KERNEL_PATTERN

__all__ = ["DEFAULT_BONE_KERNEL_PATTERN"]

#: Default bone-kernel pattern (case-insensitive ``re.search`` on ConvolutionKernel):
#: GE BONE/BONEPLUS/LUNG/EDGE and words like SHARP, Siemens B/Br60+ (Hr, Bf), Philips
#: D/E/YC/YD/L, Canon FC30+/FC8x.
DEFAULT_BONE_KERNEL_PATTERN = (
    "(?i)("
    + "|".join((
        GE_BONE_KERNEL_PATTERN,
        SIEMENS_BONE_KERNEL_PATTERN,
        PHILIPS_BONE_KERNEL_PATTERN,
        CANON_BONE_KERNEL_PATTERN,
    ))
    + ")"
)
