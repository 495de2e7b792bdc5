"""How each vendor labels what the phantom writes (the *writing* side of vendor quirks).

Reading-side vendor knowledge lives in `bonelesion.dicom.vendors`; this module only makes
the phantom's headers look like the scanner's. Sources: CLINICAL_REFERENCE.md §C4 and §E,
the dcm2niix vendor notes, and the real headers in ../shared/data (GE SIGNA Pioneer,
Philips Achieva, Siemens Skyra). Tokens marked *unverified* in CLINICAL_REFERENCE (GE and
Philips ADC ImageType, GE Dixon in/opposed-phase tokens) are plausible choices, not copies.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset

__all__ = ["VendorStyle", "VENDOR_STYLES", "SUPPORTED_VENDORS", "GE_B_VALUE_OFFSET"]

#: GE adds this to the b-value in (0043,1039) on multi-b series (dcm2niix #149, #602).
GE_B_VALUE_OFFSET = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class VendorStyle:
    """Manufacturer strings, default field strength and labels of one vendor.

    The ``ct_spine_*`` and ``ct_*pixel*`` fields describe the vendor's bone-window spine CT
    as written by `bonelesion.phantom.spine_study` (the lumbar study ignores them):
    slice thickness and spacing (Philips: overlapping 2 mm slices every 1.5 mm), signed
    16-bit pixels with PixelPaddingValue −2000 outside the reconstruction circle and
    Implicit VR Little Endian (GE), unsigned 12-bit Explicit VR otherwise.
    ``ct_spine_description`` is a format string with ``thickness_mm`` and ``spacing_mm``.
    """

    vendor: str
    ct_manufacturer: str
    ct_model: str
    ct_software: str
    ct_kernel: str
    mr_manufacturer: str
    mr_model: str
    mr_software: str
    field_strength_t: float
    dixon_description: dict[str, str]
    dixon_image_type: dict[str, tuple[str, ...]]
    dwi_description: str
    adc_description: str
    dwi_b0_image_type: tuple[str, ...]
    dwi_trace_image_type: tuple[str, ...]
    adc_image_type: tuple[str, ...]
    ct_image_type: tuple[str, ...]
    ct_spine_description: str = "SPINE BONE {thickness_mm:g}"
    ct_spine_slice_thickness_mm: float = 1.5
    ct_spine_slice_spacing_mm: float = 1.5
    ct_signed_pixels: bool = False
    ct_bits_stored: int = 12
    ct_padding_value: int | None = None
    ct_implicit_vr: bool = False

    def decorate_dwi(self, ds: Dataset, *, b_value_s_per_mm2: float) -> None:
        """Add the vendor's diffusion tags to a classic single-frame DWI header (in place).

        Scanner ADC maps get none: like the Siemens XA ADC map in ../shared/data, they are
        recognised by ImageType, not by a b-value.
        """
        b = float(b_value_s_per_mm2)
        if self.vendor == "siemens":
            ds.DiffusionBValue = b
            block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            block.add_new(0x0C, "IS", str(int(round(b))))
            block.add_new(0x0D, "CS", "NONE" if b == 0 else "ISOTROPIC")
        elif self.vendor == "ge":
            # No standard (0018,9087): the b-value is only in GEMS_PARM_01 with the offset.
            parm = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
            parm.add_new(0x39, "IS", [GE_B_VALUE_OFFSET + int(round(b)), 8, 0, 0])
            parm.add_new(0x30, "SS", 14 if b == 0 else 16)  # Vas collapse: T2 / DW
            acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
            acq.add_new(0xE0, "DS", "3")  # number of directions
            rela = ds.private_block(0x0021, "GEMS_RELA_01", create=True)
            rela.add_new(0x5A, "SL", 64)  # 3-in-1 (trace) acquisition
        elif self.vendor == "philips":
            ds.DiffusionBValue = b
            ds.DiffusionDirectionality = "ISOTROPIC" if b > 0 else "NONE"
            block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
            block.add_new(0x03, "FL", b)
            block.add_new(0x04, "CS", "I" if b > 0 else "")
        else:  # pragma: no cover - guarded by SUPPORTED_VENDORS
            raise AssertionError(self.vendor)

    def decorate_mr(self, ds: Dataset) -> None:
        """Add the vendor's non-diffusion private tags to any MR header (in place)."""
        if self.vendor == "philips":
            block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            block.add_new(0x0E, "FL", 1.0)  # Scale Slope (2005,100E): FP = DV / (RS · SS)


VENDOR_STYLES: dict[str, VendorStyle] = {
    "siemens": VendorStyle(
        vendor="siemens",
        ct_manufacturer="SIEMENS",
        ct_model="SOMATOM Definition AS+",
        ct_software="syngo CT VA48A",
        ct_kernel="Br64",
        mr_manufacturer="SIEMENS",
        mr_model="MAGNETOM Aera",
        mr_software="syngo MR E11",
        field_strength_t=1.5,
        dixon_description={
            "dixon_in_phase": "t1_vibe_dixon_sag_in",
            "dixon_opposed_phase": "t1_vibe_dixon_sag_opp",
            "dixon_water": "t1_vibe_dixon_sag_W",
            "dixon_fat": "t1_vibe_dixon_sag_F",
        },
        dixon_image_type={
            "dixon_in_phase": ("ORIGINAL", "PRIMARY", "DIXON", "IN_PHASE"),
            "dixon_opposed_phase": ("ORIGINAL", "PRIMARY", "DIXON", "OUT_PHASE"),
            "dixon_water": ("DERIVED", "PRIMARY", "DIXON", "WATER"),
            "dixon_fat": ("DERIVED", "PRIMARY", "DIXON", "FAT"),
        },
        dwi_description="ep2d_diff_sag_p2_TRACEW",
        adc_description="ep2d_diff_sag_p2_ADC",
        dwi_b0_image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"),
        dwi_trace_image_type=("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW"),
        adc_image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"),
        ct_image_type=("ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"),
        ct_spine_description="T-L-SPINE PELVIS {thickness_mm:g} Br64",
        ct_spine_slice_thickness_mm=1.5,
        ct_spine_slice_spacing_mm=1.5,
    ),
    "ge": VendorStyle(
        vendor="ge",
        ct_manufacturer="GE MEDICAL SYSTEMS",
        ct_model="Revolution CT",
        ct_software="revo_ct_22ext.1",
        ct_kernel="BONE",
        mr_manufacturer="GE MEDICAL SYSTEMS",
        mr_model="SIGNA Premier",
        mr_software="29\\LX\\MR Software release:MR29.1",
        field_strength_t=3.0,
        dixon_description={
            "dixon_in_phase": "InPhase: SAG LAVA FLEX",
            "dixon_opposed_phase": "OutPhase: SAG LAVA FLEX",
            "dixon_water": "WATER: SAG LAVA FLEX",
            "dixon_fat": "FAT: SAG LAVA FLEX",
        },
        dixon_image_type={
            "dixon_in_phase": ("DERIVED", "PRIMARY", "DIXON", "IN_PHASE"),
            "dixon_opposed_phase": ("DERIVED", "PRIMARY", "DIXON", "OUT_PHASE"),
            "dixon_water": ("DERIVED", "PRIMARY", "DIXON", "WATER"),
            "dixon_fat": ("DERIVED", "PRIMARY", "DIXON", "FAT"),
        },
        dwi_description="SAG DWI b50-400-800",
        adc_description="Apparent Diffusion Coefficient (mm2/s)",
        dwi_b0_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        dwi_trace_image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        adc_image_type=("DERIVED", "PRIMARY", "ADC", "ADC"),
        ct_image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        ct_spine_description="T-L SPINE {thickness_mm:g} BONE",
        ct_spine_slice_thickness_mm=1.25,
        ct_spine_slice_spacing_mm=1.25,
        ct_signed_pixels=True,
        ct_bits_stored=16,
        ct_padding_value=-2000,
        ct_implicit_vr=True,
    ),
    "philips": VendorStyle(
        vendor="philips",
        ct_manufacturer="Philips",
        ct_model="IQon - Spectral CT",
        ct_software="4.7.5",
        ct_kernel="YC",
        mr_manufacturer="Philips Medical Systems",
        mr_model="Ingenia",
        mr_software="5.7.1\\5.7.1.2",
        field_strength_t=1.5,
        dixon_description={
            "dixon_in_phase": "sT1W_mDIXON_SAG_IP",
            "dixon_opposed_phase": "sT1W_mDIXON_SAG_OP",
            "dixon_water": "sT1W_mDIXON_SAG_W",
            "dixon_fat": "sT1W_mDIXON_SAG_F",
        },
        dixon_image_type={
            "dixon_in_phase": ("ORIGINAL", "PRIMARY", "IP", "IP", "FFE"),
            "dixon_opposed_phase": ("ORIGINAL", "PRIMARY", "OP", "OP", "FFE"),
            "dixon_water": ("DERIVED", "PRIMARY", "W", "W", "DERIVED"),
            "dixon_fat": ("DERIVED", "PRIMARY", "F", "F", "DERIVED"),
        },
        dwi_description="DWI_SAG_b50_400_800",
        adc_description="dADC_DWI_SAG",
        dwi_b0_image_type=("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"),
        dwi_trace_image_type=("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"),
        adc_image_type=("DERIVED", "PRIMARY", "ADC_UNSPECIFIED", "ADC", "UNSPECIFIED"),
        ct_image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        ct_spine_description="TL Spine {thickness_mm:g}/{spacing_mm:g} YC",
        ct_spine_slice_thickness_mm=2.0,
        ct_spine_slice_spacing_mm=1.5,
    ),
}

SUPPORTED_VENDORS: tuple[str, ...] = tuple(VENDOR_STYLES)
