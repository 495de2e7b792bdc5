"""Vendor knowledge: the one module that knows how each manufacturer labels things.

Every function takes a *flat* header: a classic single-frame data set, or one frame of an
enhanced multi-frame object flattened by the reader (shared + per-frame functional group
item contents copied to the top level; FrameType copied to ImageType; EffectiveEchoTime
to EchoTime; the MR Diffusion macro contents — DiffusionBValue, DiffusionDirectionality,
DiffusionGradientDirectionSequence — at the top level).

What this module knows, by topic (sources in CLINICAL_REFERENCE.md §C4 and §E, and the
vendor notes of dcm2niix):

* **Manufacturer** from (0008,0070); when it was blanked by an anonymiser, from the private
  creator strings, then from the organisation root of the UIDs, then from the software
  version string.
* **b-value**: (0018,9087); Siemens CSA image header ``B_value`` / (0019,xx0C); GE
  (0043,xx39) first value modulo 10⁹; Philips (2001,xx03). Only images with *positive
  evidence* of a diffusion acquisition get a b-value; an ordinary MR image gets ``None``,
  never "b = 0".
* **Gradient direction** (LPS unit vector): (0018,9089); Siemens CSA
  ``DiffusionGradientDirection`` / (0019,xx0E) (patient coordinates); Philips
  (2005,xxB0–B2); GE (0019,xxBB–BD), which GE writes in the *logical* frequency / phase /
  slice frame and which is rotated here into LPS; Canon classic ImageComments
  ``b=1500(a,b,c)``, stored in the order [Y, X, −Z].
* **Philips floating-point scaling** (private scale slope, for signal ratios across
  images with different rescale slopes).
* **Diffusion kind** (b0, directional, trace, ADC map, other derived) and **stack role**
  (CT, DWI, ADC, Dixon in/opposed phase, water, fat, other).
* **Echo time, field strength**, and the fat–water in/opposed-phase echo times.
* **ADC scale**: the unit of a scanner ADC map, detected from its value range.

Private elements are looked up through their private creator (PS3.5 §7.8.1), so a block
that an exporter moved (e.g. to (0019,11xx)) is still found; when an anonymiser removed
every creator of a group, the conventional block (xx = 10) is used, but only for the
vendor the header belongs to.
"""

from __future__ import annotations

import logging
import math
import re
import struct
import warnings
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.tag import Tag

from bonelesion.dicom.fastheader import NUMBER_STRUCT_FORMATS
from bonelesion.errors import DataQualityWarning, UnsupportedInputError
from bonelesion.units import FAT_WATER_SHIFT_PPM, GYROMAGNETIC_RATIO_MHZ_PER_T

__all__ = [
    "Vendor",
    "DiffusionKind",
    "Role",
    "vendor_of",
    "b_value_s_per_mm2",
    "diffusion_direction_lps",
    "diffusion_kind",
    "echo_time_ms",
    "magnetic_field_strength_t",
    "stack_role",
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

logger = logging.getLogger(__name__)


class Vendor(str, Enum):  # noqa: UP042  (interface shared with reader/index)
    """Manufacturer family."""

    SIEMENS = "siemens"
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"
    HITACHI = "hitachi"
    OTHER = "other"


class DiffusionKind(str, Enum):  # noqa: UP042
    """What a diffusion image holds."""

    NONE = "none"  # not a diffusion image
    B0 = "b0"  # b = 0 (or unweighted) image of a diffusion acquisition
    DIRECTIONAL = "directional"  # one gradient direction, b > 0
    TRACE = "trace"  # isotropic / trace-weighted, b > 0
    ADC = "adc"  # a scanner-computed ADC map
    OTHER_DERIVED = "other_derived"  # FA, exponential ADC, eADC, computed-b …


class Role(str, Enum):  # noqa: UP042
    """Role of a stack in the pipeline (the `role` field of `bonelesion series`)."""

    CT = "ct"
    DWI = "dwi"
    ADC = "adc"
    DIXON_IN_PHASE = "dixon_in_phase"
    DIXON_OPPOSED_PHASE = "dixon_opposed_phase"
    DIXON_WATER = "dixon_water"
    DIXON_FAT = "dixon_fat"
    OTHER = "other"


# ---------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------

#: Largest b-value taken at face value. Clinical DWI stays below ~3 000 s/mm², research
#: high-b / q-space protocols reach ~20 000–30 000; anything above this is a parse error
#: (an un-removed GE offset, a misread private element …).
B_VALUE_MAX_S_PER_MM2 = 50_000.0

#: GE adds 10⁹ to the b-value in (0043,1039) on some software versions
#: (dcm2niix issues #149, #602); the true value is the remainder.
_GE_B_VALUE_OFFSET = 1_000_000_000

#: A gradient vector shorter than this is "no gradient" (b0 or isotropic image).
_ZERO_GRADIENT_NORM = 1e-3
#: GE scales the gradient vector to encode a lower b-value on multi-b series: a length in
#: this open interval means b_eff = b · |g|² (dcm2niix issue #163, geCorrectBvecs).
_GE_SCALED_GRADIENT_NORM = (0.03, 0.97)

#: How far (in fat–water phase cycles) an echo time may sit from an exact in-phase or
#: opposed-phase time and still count as one: 0.1 cycle ≈ ±0.46 ms at 1.5 T and ±0.23 ms
#: at 3 T, which contains the ranges of CLINICAL_REFERENCE.md default 10
#: (1.5 T: OP 2.0–2.5, IP 4.2–4.9 ms; 3 T: OP 1.0–1.3, IP 2.1–2.5 ms).
ECHO_PHASE_TOLERANCE_CYCLES = 0.1
#: Echoes later than this many fat–water cycles are not classed as in/opposed phase.
_ECHO_PHASE_MAX_CYCLES = 3.6

#: Headers storing MagneticFieldStrength above this are in gauss (e.g. 15000 = 1.5 T).
_FIELD_STRENGTH_GAUSS_THRESHOLD = 100.0
_GAUSS_PER_TESLA = 10_000.0
#: Field strengths above this (but not gauss) are not plausible for a clinical header.
_FIELD_STRENGTH_MAX_T = 25.0

#: Stored-unit → mm²/s factor, with the range of the median positive (tissue) value that
#: identifies it (CLINICAL_REFERENCE.md default 12).
ADC_SCALE_RANGES: tuple[tuple[float, float, float], ...] = (
    (1.0e-6, 100.0, 4000.0),  # µm²/s = 10⁻⁶ mm²/s integers (GE, Siemens)
    (1.0e-3, 0.1, 4.0),  # 10⁻³ mm²/s
    (1.0, 1.0e-4, 4.0e-3),  # already mm²/s
)

_UID_ROOTS: tuple[tuple[str, Vendor], ...] = (
    ("1.3.12.2.1107.5.", Vendor.SIEMENS),
    ("1.2.840.113619.", Vendor.GE),
    ("1.3.46.670589.", Vendor.PHILIPS),
    ("1.2.392.200036.9116.", Vendor.CANON),  # Toshiba / Canon Medical
    ("1.2.392.200036.9123.", Vendor.HITACHI),
)

_CREATOR_PREFIXES: tuple[tuple[str, Vendor], ...] = (
    ("SIEMENS", Vendor.SIEMENS),  # SIEMENS CSA HEADER, SIEMENS MR HEADER, SIEMENS MR SDI …
    ("GEMS_", Vendor.GE),  # GEMS_ACQU_01, GEMS_PARM_01 …
    ("GE_GENESIS", Vendor.GE),
    ("PHILIPS", Vendor.PHILIPS),  # Philips Imaging DD 001, Philips MR Imaging DD 001 …
    ("TOSHIBA_MEC", Vendor.CANON),
    ("CANON_MEC", Vendor.CANON),
)

# Private creators of the elements read here.
_SIEMENS_MR_HEADER = ("SIEMENS MR HEADER",)
_SIEMENS_CSA_HEADER = ("SIEMENS CSA HEADER",)
_GE_ACQU = ("GEMS_ACQU_01",)
_GE_PARM = ("GEMS_PARM_01",)
_GE_RELA = ("GEMS_RELA_01",)
_PHILIPS_IMAGING = ("Philips Imaging DD 001",)
_PHILIPS_MR_IMAGING = ("Philips MR Imaging DD 001",)

# ImageType tokens (CLINICAL_REFERENCE.md §C4; dcm2niix issue #503).
_ADC_TOKENS = frozenset({"ADC", "ADC_UNSPECIFIED"})
_TRACE_TOKENS = frozenset({"TRACEW", "TRACE", "ISOTROPIC", "ISODWI"})
#: Derived diffusion maps named unambiguously.
_OTHER_DERIVED_TOKENS = frozenset({"COLFA", "EADC", "EXPADC", "EXP_ADC", "CALC_BVALUE"})
#: Short map names that only mean a diffusion map next to a DIFFUSION token (Siemens
#: ``DERIVED\PRIMARY\DIFFUSION\FA``, ``…\EXP``, ``…\TENSOR``).
_OTHER_DERIVED_WITH_DIFFUSION_TOKENS = frozenset({"FA", "EXP", "TENSOR", "RA", "MD"})
_B0_TOKENS = frozenset({"TENSOR_B0"})
_DIFFUSION_TOKENS = frozenset({"DIFFUSION", "DWI"}) | _TRACE_TOKENS | _B0_TOKENS

# Dixon ImageType tokens (CLINICAL_REFERENCE.md §E).
#: Dixon outputs that are none of our four roles (fraction and relaxometry maps).
_FAT_FRACTION_TOKENS = frozenset(
    {
        "FAT_FRACTION",
        "FF",
        "FATFRACTION",
        "PDFF",
        "FAT_FRAC",
        "WATER_FRACTION",
        "R2STAR",
        "R2_STAR",
        "T2STAR",
        "T2_STAR",
    }
)
_DIXON_TOKEN_ROLES: dict[str, Role] = {
    "WATER": Role.DIXON_WATER,
    "FAT": Role.DIXON_FAT,
    "IN_PHASE": Role.DIXON_IN_PHASE,
    "INPHASE": Role.DIXON_IN_PHASE,
    "OUT_PHASE": Role.DIXON_OPPOSED_PHASE,
    "OPP_PHASE": Role.DIXON_OPPOSED_PHASE,
    "OPPOSED_PHASE": Role.DIXON_OPPOSED_PHASE,
    "OUTPHASE": Role.DIXON_OPPOSED_PHASE,
}
#: Philips mDIXON short forms, matched as ``_W_`` etc. in the joined ImageType (dcm2niix).
_PHILIPS_SHORT_ROLES: dict[str, Role] = {
    "W": Role.DIXON_WATER,
    "F": Role.DIXON_FAT,
    "IP": Role.DIXON_IN_PHASE,
    "OP": Role.DIXON_OPPOSED_PHASE,
}

# Description / protocol keywords; "separator" = start, end or a non-alphanumeric character.
_SEP_L = r"(?<![A-Z0-9])"
_SEP_R = r"(?![A-Z0-9])"
_KEYWORD_FAT_FRACTION = re.compile(
    rf"{_SEP_L}(FAT[ _-]?FRACTION|FF|PDFF|FATFRAC|FAT[ _-]?FRAC){_SEP_R}"
)
_KEYWORD_FAT_SUPPRESSION = re.compile(
    r"FAT[ _-]?(SAT|SUP|SUPP|SUPPRESS\w*)|FATSAT|\bSPAIR\b|\bSTIR\b"
)
#: Long forms match anywhere; the short suffixes (``_in``, ``_opp``, ``_W``, ``_F`` …) only
#: at the end of the text, where Siemens and Philips put them ("T1-W" is not "water").
_KEYWORD_ROLES: tuple[tuple[re.Pattern[str], Role], ...] = (
    (
        re.compile(
            rf"OUT[ _-]?OF[ _-]?PHASE|OUT[ _-]?PHASE|OPP(OSED)?[ _-]?PHASE|{_SEP_L}(OPP|OP)$"
        ),
        Role.DIXON_OPPOSED_PHASE,
    ),
    (re.compile(rf"{_SEP_L}IN[ _-]?PHASE|{_SEP_L}(IN|IP)$"), Role.DIXON_IN_PHASE),
    (re.compile(rf"{_SEP_L}WATER{_SEP_R}|_W$"), Role.DIXON_WATER),
    (re.compile(rf"{_SEP_L}FAT{_SEP_R}|_F$"), Role.DIXON_FAT),
)
#: One label naming both echoes of a dual-echo series ("T1 IN/OUT PHASE", "in-opp"): the
#: label cannot tell the echoes apart, the echo time must.
_KEYWORD_IN_AND_OUT = re.compile(
    rf"{_SEP_L}IN[ _/&+-]*(AND[ _-]*)?(OUT|OPP|OP){_SEP_R}|IN[ _-]?PHASE[ _/&+-]+(AND[ _-]*)?"
    r"(OUT|OPP)"
)
_KEYWORD_ADC = re.compile(rf"{_SEP_L}ADC{_SEP_R}")
_GE_MAP_ADC = re.compile(r"\s*ADC(?![A-Z0-9])")
_GE_MAP_OTHER_DERIVED = re.compile(r"\s*(EADC|EXP(ONENTIAL)?[ _-]?ADC|FA)(?![A-Z0-9])")
_KEYWORD_OTHER_DERIVED = re.compile(
    rf"{_SEP_L}(EADC|EXP(ONENTIAL)?[ _-]?ADC|FA|COLFA|CALC(ULATED)?[ _-]?B\w*){_SEP_R}"
)
_KEYWORD_DIFFUSION = re.compile(
    rf"{_SEP_L}(DWI|DTI|DIFF\w*|TENSOR|TRACEW?|EP2D_DIFF|RESOLVE|B\d{{2,4}}){_SEP_R}"
)
#: Siemens SequenceName of diffusion scans: ``*ep_b1000#1``, ``ep_b0``, ``ep_b2500t``,
#: ``re_b800`` (RESOLVE), ``ez_b0`` (ZOOMit).
_SIEMENS_DIFFUSION_SEQUENCE = re.compile(r"(^|\*)[a-z0-9]{2}_b(\d+)", re.IGNORECASE)
_SIEMENS_TRACE_SEQUENCE = re.compile(r"_b\d+t\b", re.IGNORECASE)

_CT_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
    }
)


# ---------------------------------------------------------------------------------------
# Small header helpers
# ---------------------------------------------------------------------------------------


def _text(ds: Dataset, keyword: str) -> str:
    """Return a string attribute upper-cased and stripped ("" when absent or empty)."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    if not isinstance(value, str) and isinstance(value, Iterable):
        value = "\\".join(str(v) for v in value)
    return str(value).strip().upper()


def _image_type_tokens(ds: Dataset) -> list[str]:
    """ImageType values, upper-case, stripped (FrameType for an unflattened frame)."""
    for keyword in ("ImageType", "FrameType"):
        value = ds.get(keyword)
        if value is None:
            continue
        if isinstance(value, str):
            values = value.split("\\")
        else:
            values = [str(v) for v in value]
        return [v.strip().upper() for v in values if v is not None]
    return []


def _series_uid(ds: Dataset) -> str:
    uid = ds.get("SeriesInstanceUID")
    return str(uid) if uid else "<unknown series>"


def _float_or_none(value: Any) -> float | None:
    """First numeric value of an attribute value (DS/IS/FD/MultiValue), None if unusable."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return None
    if not isinstance(value, str) and isinstance(value, Iterable):
        items = list(value)
        if not items:
            return None
        value = items[0]
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _quality_warning(message: str) -> None:
    """Report a data-quality issue: warn (DataQualityWarning) and log (STYLE.md §5)."""
    logger.warning(message)
    warnings.warn(message, DataQualityWarning, stacklevel=3)


def _element_numbers(elem: DataElement, vr: str) -> list[float]:
    """Numeric values of a (possibly VR UN, undecoded) element read as `vr`.

    Private elements arrive as raw bytes (VR UN) when their creator was removed or the file
    is implicit VR without a private dictionary entry; they are decoded here as the vendor
    writes them (little endian).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = elem.value
    for w in caught:
        logger.debug("reading %s: %s", elem.tag, w.message)
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
        if vr in NUMBER_STRUCT_FORMATS:
            code = NUMBER_STRUCT_FORMATS[vr]
            size = struct.calcsize("<" + code)
            count = len(raw) // size
            if count == 0:
                return []
            return [float(v) for v in struct.unpack("<" + code * count, raw[: count * size])]
        text = raw.decode("latin-1", errors="replace").strip("\x00 ")
        values: Iterable[Any] = text.split("\\")
    elif isinstance(value, str):
        values = value.split("\\")
    elif isinstance(value, Iterable):
        values = value
    else:
        values = [value]
    out: list[float] = []
    for v in values:
        try:
            if isinstance(v, bytes):
                v = v.decode("latin-1", errors="replace")
            number = float(v.strip()) if isinstance(v, str) else float(v)
        except (TypeError, ValueError):
            continue
        out.append(number)
    return out


def _private_element(
    ds: Dataset,
    group: int,
    creators: Sequence[str],
    element_offset: int,
    *,
    conventional_block: int = 0x10,
) -> DataElement | None:
    """Find the private element (group, BBxx) in the block reserved by one of `creators`.

    Parameters
    ----------
    ds : Dataset
        Flat header.
    group : int
        Odd group number.
    creators : sequence of str
        Private creator strings that own the element (compared case-insensitively).
    element_offset : int
        Low byte of the element number (``0x0C`` for (0019,100C)).
    conventional_block : int
        Block used when the header holds no private creator at all in `group` (creators
        removed by an anonymiser, as in the dicom2nifti test data).

    Returns
    -------
    DataElement or None
        None when absent, or when the group's creators name another owner.
    """
    wanted = {c.strip().upper() for c in creators}
    block: int | None = None
    any_creator = False
    for low in range(0x10, 0x100):
        tag = Tag(group, low)
        if tag not in ds:
            continue
        any_creator = True
        raw = ds[tag].value
        if isinstance(raw, bytes):
            raw = raw.decode("latin-1", errors="replace")
        if str(raw).strip("\x00 ").upper() in wanted:
            block = low
            break
    if block is None:
        if any_creator:
            return None
        block = conventional_block
    tag = Tag(group, (block << 8) | element_offset)
    return ds[tag] if tag in ds else None


def _private_numbers(
    ds: Dataset, group: int, creators: Sequence[str], element_offset: int, vr: str
) -> list[float]:
    elem = _private_element(ds, group, creators, element_offset)
    return [] if elem is None else _element_numbers(elem, vr)


def _private_creators(ds: Dataset) -> list[str]:
    """Every private creator string of the header (top level only)."""
    creators: list[str] = []
    for key in ds.keys():  # tags only: iterating the data set would decode every element
        tag = Tag(key)
        if tag.is_private and 0x10 <= tag.element <= 0xFF:
            value = ds[tag].value
            if isinstance(value, bytes):
                value = value.decode("latin-1", errors="replace")
            creators.append(str(value).strip("\x00 ").upper())
    return creators


# ---------------------------------------------------------------------------------------
# Vendor
# ---------------------------------------------------------------------------------------


def _vendor_from_manufacturer(manufacturer: str) -> Vendor | None:
    text = manufacturer.upper()
    if not text:
        return None
    if "SIEMENS" in text:
        return Vendor.SIEMENS
    if re.match(r"GE(\b|_)|GEMS|GENERAL ELECTRIC", text):  # GE MEDICAL SYSTEMS, GE Healthcare
        return Vendor.GE
    if "PHILIPS" in text:
        return Vendor.PHILIPS
    if "TOSHIBA" in text or "CANON" in text:
        return Vendor.CANON
    if "HITACHI" in text:
        return Vendor.HITACHI
    return Vendor.OTHER


def vendor_of(ds: Dataset) -> Vendor:
    """Manufacturer family from Manufacturer (and, when blanked, private creators).

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    Vendor
        ``Vendor.OTHER`` for a named manufacturer outside the five families, and for a
        header with no usable clue at all.

    Notes
    -----
    Order of evidence: Manufacturer (0008,0070); private creator strings ("SIEMENS …",
    "GEMS_…", "Philips …", "TOSHIBA_MEC…", "CANON_MEC…"); the registered UID root of the
    Study/Series/SOP/Frame of Reference UIDs (Siemens 1.3.12.2.1107.5, GE 1.2.840.113619,
    Philips 1.3.46.670589, Toshiba/Canon 1.2.392.200036.9116, Hitachi
    1.2.392.200036.9123); the SoftwareVersions string of Philips MR ("PMS", "Gyroscan").
    The CHAOS Philips set is recognised by its Philips UID root and software string.
    """
    named = _vendor_from_manufacturer(_text(ds, "Manufacturer"))
    if named is not None:
        return named
    for creator in _private_creators(ds):
        for prefix, vendor in _CREATOR_PREFIXES:
            if creator.startswith(prefix):
                return vendor
    uids: list[str] = []
    for keyword in (
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
    ):
        value = ds.get(keyword)
        if value:
            uids.append(str(value))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for keyword in ("MediaStorageSOPInstanceUID", "ImplementationClassUID"):
            value = meta.get(keyword)
            if value:
                uids.append(str(value))
    for uid in uids:
        for root, vendor in _UID_ROOTS:
            if uid.startswith(root):
                return vendor
    software = _text(ds, "SoftwareVersions")
    if "GYROSCAN" in software or re.search(rf"{_SEP_L}PMS{_SEP_R}", software):
        return Vendor.PHILIPS
    if "SYNGO" in software:
        return Vendor.SIEMENS
    return Vendor.OTHER


# ---------------------------------------------------------------------------------------
# Siemens CSA header
# ---------------------------------------------------------------------------------------


def _siemens_csa_image_header(ds: Dataset) -> dict[str, Any] | None:
    """Parse the Siemens CSA image header (0029,xx10); None when absent / unreadable."""
    elem = _private_element(ds, 0x0029, _SIEMENS_CSA_HEADER, 0x10)
    if elem is None:
        return None
    raw = elem.value
    if not isinstance(raw, bytes | bytearray) or len(raw) < 16:
        return None
    with warnings.catch_warnings():
        # nibabel.nicom warns on import that its DICOM *readers* are experimental; the CSA
        # parser used here is not part of them.
        warnings.filterwarnings("ignore", message="The DICOM readers are highly experimental")
        from nibabel.nicom import csareader

    try:
        header: dict[str, Any] = csareader.read(bytes(raw))
    except (csareader.CSAReadError, struct.error, ValueError, IndexError) as exc:
        logger.debug("series %s: unreadable CSA image header: %s", _series_uid(ds), exc)
        return None
    return header


def _csa_items(header: dict[str, Any] | None, name: str) -> list[Any]:
    if header is None:
        return []
    tag = header.get("tags", {}).get(name)
    if not tag:
        return []
    return list(tag.get("items", []))


#: Philips per-frame private item (2005,140F): a sequence in the Philips block at 0x14.
_PHILIPS_PRIVATE_PER_FRAME = 0x140F


def philips_private_frame_items(frame_item: Dataset) -> list[Dataset]:
    """Items of the Philips private per-frame sequence (2005,140F) of one per-frame item.

    They repeat standard attributes of the frame with vendor-specific values;
    `bonelesion.dicom.multiframe.flatten_frames` copies them below the standard groups.

    Parameters
    ----------
    frame_item : Dataset
        One item of PerFrameFunctionalGroupsSequence.

    Returns
    -------
    list of Dataset
        The first item of each such sequence (empty for other vendors).

    Examples
    --------
    >>> philips_private_frame_items(Dataset())
    []
    """
    return [elem.value[0] for elem in frame_item
            if elem.tag.group == 0x2005 and elem.tag.element == _PHILIPS_PRIVATE_PER_FRAME
            and elem.VR == "SQ" and elem.value]


# ---------------------------------------------------------------------------------------
# b-value and diffusion evidence
# ---------------------------------------------------------------------------------------


def _standard_b_value(ds: Dataset) -> float | None:
    """(0018,9087) at top level, or inside an unflattened MRDiffusionSequence.

    A present but unreadable or non-finite value comes back as NaN, so the sanity check
    reports it instead of silently falling through to a private element.
    """
    for item in (ds, *(ds.get("MRDiffusionSequence") or [])[:1]):
        raw = item.get("DiffusionBValue")
        if raw is None or (isinstance(raw, str | bytes | list) and len(raw) == 0):
            continue
        value = _float_or_none(raw)
        return math.nan if value is None else value
    return None


def _directionality(ds: Dataset) -> str:
    value = _text(ds, "DiffusionDirectionality")
    if not value:
        seq = ds.get("MRDiffusionSequence")
        if seq:
            value = _text(seq[0], "DiffusionDirectionality")
    return value


def _ge_raw_b_value(ds: Dataset) -> float | None:
    """GE (0043,xx39) first value, offset removed (no gradient-length scaling)."""
    values = _private_numbers(ds, 0x0043, _GE_PARM, 0x39, "IS")
    if not values:
        return None
    b_value = values[0]
    if b_value >= _GE_B_VALUE_OFFSET:
        b_value = math.fmod(b_value, _GE_B_VALUE_OFFSET)
    return b_value


def _ge_logical_gradient(ds: Dataset) -> NDArray[np.float64] | None:
    """GE (0019,xxBB/BC/BD): gradient in the logical (frequency, phase, slice) frame."""
    components = []
    for offset in (0xBB, 0xBC, 0xBD):
        values = _private_numbers(ds, 0x0019, _GE_ACQU, offset, "DS")
        if not values:
            return None
        components.append(values[0])
    return np.asarray(components, dtype=np.float64)


def _ge_strong_diffusion_tags(ds: Dataset) -> tuple[bool, bool]:
    """(present, says_diffusion) for GE's acquisition-level diffusion markers.

    (0043,xx30) "Vas collapse flag": 14 = T2/b0 of a DWI, 16 = diffusion weighted;
    (0021,xx5A) diffusion direction code (ALL 7, DTI 16, 3-in-1 64, tetra 128, none 0);
    (0019,xxE0) number of DTI directions (CLINICAL_REFERENCE.md §C4, GE).
    """
    vas = _private_numbers(ds, 0x0043, _GE_PARM, 0x30, "SS")
    code = _private_numbers(ds, 0x0021, _GE_RELA, 0x5A, "SL")
    n_dirs = _private_numbers(ds, 0x0019, _GE_ACQU, 0xE0, "DS")
    present = bool(vas or code or n_dirs)
    says = (bool(vas) and int(vas[0]) in (14, 16)) or (bool(code) and code[0] > 0)
    says = says or (bool(n_dirs) and n_dirs[0] > 0)
    return present, says


def _vendor_b_value(ds: Dataset, vendor: Vendor) -> tuple[float | None, str]:
    """b-value from the vendor's own elements, with a label of its source."""
    if vendor is Vendor.SIEMENS:
        items = _csa_items(_siemens_csa_image_header(ds), "B_value")
        if items:
            value = _float_or_none(items[0])
            if value is not None:
                return value, "Siemens CSA B_value"
        values = _private_numbers(ds, 0x0019, _SIEMENS_MR_HEADER, 0x0C, "IS")
        if values:
            return values[0], "Siemens (0019,100C)"
    elif vendor is Vendor.GE:
        value = _ge_raw_b_value(ds)
        if value is not None:
            gradient = _ge_logical_gradient(ds)
            if gradient is not None:
                norm = float(np.linalg.norm(gradient))
                low, high = _GE_SCALED_GRADIENT_NORM
                if low < norm < high:
                    logger.debug(
                        "series %s: GE gradient length %.3f scales b %g → %g",
                        _series_uid(ds),
                        norm,
                        value,
                        value * norm**2,
                    )
                    value = value * norm**2
            return value, "GE (0043,1039)"
    elif vendor is Vendor.PHILIPS:
        values = _private_numbers(ds, 0x2001, _PHILIPS_IMAGING, 0x03, "FL")
        if values:
            return values[0], "Philips (2001,1003)"
    return None, ""


def _stored_b_value(ds: Dataset) -> tuple[float | None, str]:
    """Return the b-value as stored (standard first, then vendor elements), unvalidated."""
    standard = _standard_b_value(ds)
    if standard is not None:
        if standard >= _GE_B_VALUE_OFFSET:
            standard = math.fmod(standard, _GE_B_VALUE_OFFSET)
        return standard, "(0018,9087)"
    return _vendor_b_value(ds, vendor_of(ds))


def _sane_b_value(value: float | None, source: str, ds: Dataset) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or value < 0.0 or value > B_VALUE_MAX_S_PER_MM2:
        _quality_warning(
            f"Series {_series_uid(ds)}: b-value {value!r} s/mm² read from {source} is outside "
            f"0–{B_VALUE_MAX_S_PER_MM2:g} s/mm²; treated as unknown. Potential fix: check the "
            "export (a vendor offset or a damaged private element) or supply the b-values "
            "in the pipeline configuration."
        )
        return None
    return value


def is_diffusion_acquisition(ds: Dataset) -> bool:
    """Whether the header shows positive evidence of a diffusion acquisition.

    An ordinary MR image must not be called "b = 0": a b-value of zero is only believed
    when something else says the image belongs to a diffusion scan.

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    bool

    Notes
    -----
    Evidence, any of: DiffusionDirectionality DIRECTIONAL / ISOTROPIC / BMATRIX;
    AcquisitionContrast DIFFUSION (enhanced frames); an ImageType token DIFFUSION, TRACEW,
    TENSOR_B0 …; (0018,9087) or (0018,9089) in a classic header without a directionality
    (only written to diffusion images); a stored b-value > 0; a Siemens SequenceName
    ``ep_b…``; a Siemens (0019,xx0C) or CSA ``B_value``; GE vas-collapse flag 14/16,
    direction code > 0 or direction count > 0 — or, when an anonymiser removed those, an
    echo-planar GE image carrying (0043,xx39) and the gradient elements (the dicom2nifti GE
    set); a Philips (2001,xx03) with the (2005,xxB0-B2) gradient elements and a diffusion
    word (DWI, DTI, DIFF…, TRACE, b800 …) in SeriesDescription / ProtocolName.
    """
    if _text(ds, "Modality") not in ("", "MR"):
        return False
    directionality = _directionality(ds)
    if directionality in ("DIRECTIONAL", "ISOTROPIC", "BMATRIX"):
        return True
    if _text(ds, "AcquisitionContrast") == "DIFFUSION":
        return True
    if set(_image_type_tokens(ds)) & (_DIFFUSION_TOKENS | _ADC_TOKENS):
        return True
    standard = _standard_b_value(ds)
    if standard is not None:
        if standard > 0.0 or not directionality:
            return True
    if not directionality and _standard_gradient(ds) is not None:
        return True  # (0018,9089) in a classic header: only written to diffusion images
    vendor = vendor_of(ds)
    value, _ = _vendor_b_value(ds, vendor)
    if vendor is Vendor.GE and value is not None:
        # (0043,xx39) exists on every GE MR image; its acquisition flags decide when present.
        present, says = _ge_strong_diffusion_tags(ds)
        if says:
            return True
        if present:
            return False
        if value > 0.0:
            return True
        # Flags removed by an anonymiser (the dicom2nifti GE set): an echo-planar image with
        # the gradient elements is taken as the b0 of a DWI.
        scanning = _text(ds, "ScanningSequence").split("\\")
        if "EP" in scanning and _ge_logical_gradient(ds) is not None:
            logger.debug(
                "series %s: GE EPI with (0043,1039) and no acquisition flags: taken as DWI",
                _series_uid(ds),
            )
            return True
        return False
    if value is not None and value > 0.0:
        return True
    if vendor is Vendor.SIEMENS:
        if _SIEMENS_DIFFUSION_SEQUENCE.search(_text(ds, "SequenceName")):
            return True
        if value is not None:  # (0019,100C) or CSA B_value present: only on DWI
            return True
    if vendor is Vendor.PHILIPS and value is not None:
        # Philips writes (2001,1003) on every MR image; b = 0 only counts with a gradient
        # element set or a diffusion word in the description.
        if _philips_gradient(ds) is not None and _description_says_diffusion(ds):
            return True
    return False


def b_values_of_series_s_per_mm2(headers: Sequence[Dataset]) -> list[float | None]:
    """b-values of the images of one series, using the series as context.

    `b_value_s_per_mm2` needs positive evidence before it calls an image "b = 0". Some
    exports strip that evidence from the b = 0 images (a Philips or GE b0 whose only
    diffusion clue is a private b-value of 0). Within a series that holds diffusion-weighted
    images (b > 0), an image whose own vendor element stores b = 0 is that series' b0 —
    the rule dicom2nifti applies to GE series.

    Parameters
    ----------
    headers : sequence of Dataset
        Flat headers of one series (or one acquisition).

    Returns
    -------
    list of float or None
        One entry per header, as `b_value_s_per_mm2`, with the b0 images filled in.
    """
    values = [b_value_s_per_mm2(ds) for ds in headers]
    if not any(b is not None and b > 0.0 for b in values):
        return values
    for index, ds in enumerate(headers):
        if values[index] is not None or _kind_from_tokens(ds) is not None:
            continue
        if _text(ds, "Modality") not in ("", "MR"):
            continue
        stored, _ = _vendor_b_value(ds, vendor_of(ds))
        if stored == 0.0:
            values[index] = 0.0
    return values


def _description_says_diffusion(ds: Dataset) -> bool:
    text = " ".join(_text(ds, k) for k in ("SeriesDescription", "ProtocolName"))
    return bool(_KEYWORD_DIFFUSION.search(text))


def b_value_s_per_mm2(ds: Dataset) -> float | None:
    """b-value of a diffusion image in s/mm², None when the image is not diffusion-weighted.

    Order: (0018,9087); Siemens CSA B_value / (0019,100C); GE (0043,1039) first value
    modulo 1e9; Philips (2001,1003); enhanced MR diffusion functional group (flattened).

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    float or None
        None for a non-diffusion image (no positive evidence of a diffusion acquisition,
        see `is_diffusion_acquisition`), for a derived map (ADC, FA, computed b …), and for
        a stored value that is negative, non-finite or above `B_VALUE_MAX_S_PER_MM2`
        (with a `DataQualityWarning`).

    Notes
    -----
    GE: values of 10⁹ and above carry GE's offset and are taken modulo 10⁹; a GE gradient
    vector of length 0.03–0.97 encodes a reduced b, b_eff = b·|g|² (as dcm2niix does).

    References
    ----------
    DICOM PS3.3 C.8.13.5.9 (MR Diffusion Macro); dcm2niix issues #149, #602, #690.
    """
    if _text(ds, "Modality") not in ("", "MR"):
        return None
    if not is_diffusion_acquisition(ds):
        return None
    if _kind_from_tokens(ds) in (DiffusionKind.ADC, DiffusionKind.OTHER_DERIVED):
        return None
    value, source = _stored_b_value(ds)
    return _sane_b_value(value, source, ds)


# ---------------------------------------------------------------------------------------
# Gradient direction
# ---------------------------------------------------------------------------------------


def _unit_or_none(
    vector: Sequence[float] | NDArray[np.float64] | None,
) -> NDArray[np.float64] | None:
    if vector is None:
        return None
    array = np.asarray(vector, dtype=np.float64).reshape(-1)
    if array.size != 3 or not np.all(np.isfinite(array)):
        return None
    norm = float(np.linalg.norm(array))
    if norm < _ZERO_GRADIENT_NORM:
        return None
    return array / norm


def _standard_gradient(ds: Dataset) -> list[float] | None:
    """Return (0018,9089) from the top level or a (flattened or not) diffusion sequence.

    None when absent.
    """
    candidates: list[Dataset] = [ds]
    seq = ds.get("DiffusionGradientDirectionSequence")
    if seq:
        candidates.append(seq[0])
    mr_diffusion = ds.get("MRDiffusionSequence")
    if mr_diffusion:
        inner = mr_diffusion[0].get("DiffusionGradientDirectionSequence")
        if inner:
            candidates.append(inner[0])
    for item in candidates:
        value = item.get("DiffusionGradientOrientation")
        if value is not None:
            values = [float(v) for v in value]
            if len(values) == 3:
                return values
    return None


def _philips_gradient(ds: Dataset) -> list[float] | None:
    """Philips (2005,xxB0/B1/B2) gradient components (RL, AP, FH = LPS x, y, z)."""
    components = []
    for offset in (0xB0, 0xB1, 0xB2):
        values = _private_numbers(ds, 0x2005, _PHILIPS_MR_IMAGING, offset, "FL")
        if not values:
            return None
        components.append(values[0])
    return components


def _ge_gradient_lps(ds: Dataset) -> NDArray[np.float64] | None:
    """GE logical-frame gradient rotated into LPS.

    Notes
    -----
    GE reports the gradient in the "MR physics" logical frame: x = frequency, y = phase,
    z = slice (dcm2niix GE notes, after J. Shin, GE). With column phase encoding the
    frequency axis is the ImageOrientationPatient row vector r and phase its column vector
    c (swapped for ROW phase encoding); n = r × c. The signs follow dcm2niix's
    ``geCorrectBvecs`` (validated by dicm2nii on axial, coronal and sagittal data):

    * axial and sagittal: g = x·r + y·c − z·n
    * coronal: g = x·r − y·c − z·n

    The overall sign of a gradient direction is irrelevant to diffusion weighting.
    """
    logical = _ge_logical_gradient(ds)
    if logical is None or float(np.linalg.norm(logical)) < _ZERO_GRADIENT_NORM:
        return None
    orientation = ds.get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        _quality_warning(
            f"Series {_series_uid(ds)}: GE gradient (0019,10BB-BD) present but "
            "ImageOrientationPatient (0020,0037) is missing, so the gradient cannot be rotated "
            "into LPS; direction treated as unknown. Potential fix: re-export the series "
            "with its image plane attributes."
        )
        return None
    row = np.asarray([float(v) for v in orientation[:3]])
    col = np.asarray([float(v) for v in orientation[3:]])
    normal = np.cross(row, col)
    x, y, z = (float(v) for v in logical)
    phase_dir = _text(ds, "InPlanePhaseEncodingDirection")
    if phase_dir == "ROW":
        # dcm2niix: swap x and y, then negate the new y ("untested" there; rare for DWI).
        x, y = y, -x
    elif phase_dir != "COL":
        _quality_warning(
            f"Series {_series_uid(ds)}: InPlanePhaseEncodingDirection (0018,1312) is "
            f"{phase_dir or 'missing'}, expected ROW or COL; GE gradients are rotated "
            "assuming COL (the usual DWI choice). Potential fix: check the gradient table "
            "against a reference conversion (e.g. dcm2niix)."
        )
    slice_axis = int(np.argmax(np.abs(normal)))  # 0 sagittal, 1 coronal, 2 axial
    if slice_axis == 1:
        vector = x * row - y * col - z * normal
    else:
        vector = x * row + y * col - z * normal
    return vector


def _raw_gradient_lps(
    ds: Dataset, *, rotate: bool = True
) -> NDArray[np.float64] | None | Literal[False]:
    """Gradient in LPS from any source; False when a source says "no gradient" (zeros).

    With ``rotate=False`` a GE gradient is returned in its logical frame: enough to tell
    zero from non-zero, without the warnings the rotation may raise.
    """
    standard = _standard_gradient(ds)
    if standard is not None:
        unit = _unit_or_none(standard)
        return False if unit is None else unit
    vendor = vendor_of(ds)
    if vendor is Vendor.SIEMENS:
        items = _csa_items(_siemens_csa_image_header(ds), "DiffusionGradientDirection")
        if len(items) == 3:
            unit = _unit_or_none([float(v) for v in items])
            return False if unit is None else unit
        values = _private_numbers(ds, 0x0019, _SIEMENS_MR_HEADER, 0x0E, "FD")
        if len(values) == 3:
            unit = _unit_or_none(values)
            return False if unit is None else unit
    elif vendor is Vendor.GE:
        logical = _ge_logical_gradient(ds)
        if logical is not None:
            if float(np.linalg.norm(logical)) < _ZERO_GRADIENT_NORM:
                return False
            return _unit_or_none(_ge_gradient_lps(ds) if rotate else logical)
    elif vendor is Vendor.PHILIPS:
        philips = _philips_gradient(ds)
        if philips is not None:
            unit = _unit_or_none(philips)
            return False if unit is None else unit
    elif vendor is Vendor.CANON:
        canon = _canon_comment_gradient(ds)
        if canon is not None:
            if _unit_or_none(canon) is None:
                return False
            if not rotate:
                return _unit_or_none(canon)
            return _canon_gradient_lps(ds, canon)
    return None


_CANON_COMMENT = re.compile(
    r"b\s*=\s*[\d.]+\s*\(\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*,\s*([-+\d.eE]+)\s*\)"
)


def _canon_comment_gradient(ds: Dataset) -> list[float] | None:
    """Canon classic DWI: the vector of ImageComments ``b=1500(0.445,0.000,0.895)``."""
    match = _CANON_COMMENT.search(str(ds.get("ImageComments", "")))
    if match is None:
        return None
    try:
        return [float(g) for g in match.groups()]
    except ValueError:
        return None


def _canon_gradient_lps(ds: Dataset, comment: list[float]) -> NDArray[np.float64] | None:
    """Canon ImageComments vector (a, b, c) → LPS (b, a, −c).

    dcm2niix issue #422: the components are stored in the order [Y, X, −Z]; validated on the
    dcm_qa_canon Galan 3T set (axial, COL phase encoding), which the tests reproduce. The
    phase-encoding polarity is not recorded (dcm2niix Canon notes) and ROW phase encoding
    was never validated, so a ROW image gets no direction.
    """
    if _text(ds, "InPlanePhaseEncodingDirection") == "ROW":
        _quality_warning(
            f"Series {_series_uid(ds)}: Canon ImageComments gradient with ROW phase encoding "
            "(0018,1312): the component order is only known for COL; direction treated as "
            "unknown. Potential fix: export as enhanced DICOM, which carries (0018,9089)."
        )
        return None
    a, b, c = comment
    return _unit_or_none([b, a, -c])


def diffusion_direction_lps(ds: Dataset) -> tuple[float, float, float] | None:
    """Return the unit gradient direction (LPS) of a directional DWI image, else None.

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    tuple of 3 float or None
        Unit vector in LPS patient coordinates. None for b0, trace/isotropic and derived
        images, for non-diffusion images, and when the direction cannot be recovered
        (e.g. a Canon classic ImageComments vector with ROW phase encoding).

    Notes
    -----
    Sources: (0018,9089) (standard, patient frame); Siemens CSA
    ``DiffusionGradientDirection`` or (0019,xx0E) (patient frame); Philips (2005,xxB0-B2)
    (RL, AP, FH); GE (0019,xxBB-BD) (logical frame, rotated, see `_ge_gradient_lps`);
    Canon classic ImageComments ``b=…(a,b,c)`` (reordered, see `_canon_gradient_lps`).
    """
    if diffusion_kind(ds) is not DiffusionKind.DIRECTIONAL:
        return None
    gradient = _raw_gradient_lps(ds)
    if gradient is None or gradient is False:
        return None
    return (float(gradient[0]), float(gradient[1]), float(gradient[2]))


# ---------------------------------------------------------------------------------------
# Diffusion kind
# ---------------------------------------------------------------------------------------


def _kind_from_tokens(ds: Dataset) -> DiffusionKind | None:
    """Kind decided by ImageType tokens or, for derived maps, the description."""
    tokens = set(_image_type_tokens(ds))
    if tokens & _ADC_TOKENS:
        return DiffusionKind.ADC
    if tokens & _OTHER_DERIVED_TOKENS:
        return DiffusionKind.OTHER_DERIVED
    if "DIFFUSION" in tokens and tokens & _OTHER_DERIVED_WITH_DIFFUSION_TOKENS:
        return DiffusionKind.OTHER_DERIVED
    if tokens & _B0_TOKENS:
        return DiffusionKind.B0
    description = _text(ds, "SeriesDescription")
    if bool(tokens) and _image_type_tokens(ds)[0] == "DERIVED":
        # A derived image named after its map ("…_ADC", "eADC", "FA").
        if _KEYWORD_OTHER_DERIVED.search(description):
            return DiffusionKind.OTHER_DERIVED
        if _KEYWORD_ADC.search(description):
            return DiffusionKind.ADC
    elif vendor_of(ds) is Vendor.GE:
        # GE names its maps at the start of SeriesDescription, "ADC (10^-6 mm^2/s):Nov 21 …",
        # "eADC …", whatever their ImageType; a raw DWI series merely *mentioning* ADC
        # ("DWI b1000 + ADC") is not a map.
        if _GE_MAP_OTHER_DERIVED.match(description):
            return DiffusionKind.OTHER_DERIVED
        if _GE_MAP_ADC.match(description):
            return DiffusionKind.ADC
    return None


def diffusion_kind(ds: Dataset) -> DiffusionKind:
    """Classify a diffusion image: b0, directional, trace, ADC map, other derived, none.

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    DiffusionKind

    Notes
    -----
    1. ImageType tokens: ADC / ADC_UNSPECIFIED → ADC; FA, EADC, EXP, CALC_BVALUE, TENSOR …
       → OTHER_DERIVED; TENSOR_B0 (Siemens tensor-fit b0) → B0. A GE (or any DERIVED)
       image whose SeriesDescription names "ADC" → ADC.
    2. No diffusion evidence (`is_diffusion_acquisition`) → NONE.
    3. b = 0 → B0; b unknown but diffusion → OTHER_DERIVED.
    4. b > 0: trace when DiffusionDirectionality is ISOTROPIC, ImageType says TRACEW /
       TRACE / ISOTROPIC, the Siemens SequenceName ends in ``t`` (``ep_b1000t``), GE
       reports 0 directions (0019,xxE0), or the stored gradient is zero (Philips isotropic
       images); directional otherwise.
    """
    if _text(ds, "Modality") not in ("", "MR"):
        return DiffusionKind.NONE
    by_tokens = _kind_from_tokens(ds)
    if by_tokens is not None and by_tokens is not DiffusionKind.B0:
        return by_tokens
    if not is_diffusion_acquisition(ds):
        return DiffusionKind.NONE
    if by_tokens is DiffusionKind.B0:
        return DiffusionKind.B0
    value, source = _stored_b_value(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)  # b_value_s_per_mm2 reports it
        b_value = _sane_b_value(value, source, ds)
    if b_value is None:
        # A diffusion-series image without a usable b-value: an unlabelled derived map
        # (e.g. an ISOTROPIC frame with no b) or a damaged header; not fit for fitting.
        return DiffusionKind.OTHER_DERIVED
    if b_value <= 0.0:
        return DiffusionKind.B0
    tokens = set(_image_type_tokens(ds))
    directionality = _directionality(ds)
    if directionality == "ISOTROPIC" or tokens & _TRACE_TOKENS:
        return DiffusionKind.TRACE
    if directionality in ("DIRECTIONAL", "BMATRIX"):
        return DiffusionKind.DIRECTIONAL
    vendor = vendor_of(ds)
    if vendor is Vendor.SIEMENS and _SIEMENS_TRACE_SEQUENCE.search(_text(ds, "SequenceName")):
        return DiffusionKind.TRACE
    if vendor is Vendor.GE:
        n_dirs = _private_numbers(ds, 0x0019, _GE_ACQU, 0xE0, "DS")
        if n_dirs and n_dirs[0] == 0:
            return DiffusionKind.TRACE
    gradient = _raw_gradient_lps(ds, rotate=False)
    if gradient is False:
        return DiffusionKind.TRACE
    return DiffusionKind.DIRECTIONAL


# ---------------------------------------------------------------------------------------
# Echo time, field strength, fat–water phase
# ---------------------------------------------------------------------------------------


def echo_time_ms(ds: Dataset) -> float | None:
    """Echo time in ms (EchoTime, or EffectiveEchoTime of a flattened enhanced frame).

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    float or None
        None when absent or not positive (derived frames such as field maps store 0).
    """
    for keyword in ("EchoTime", "EffectiveEchoTime"):
        value = _float_or_none(ds.get(keyword))
        if value is not None:
            return value if value > 0.0 else None
    seq = ds.get("MREchoSequence")
    if seq:
        value = _float_or_none(seq[0].get("EffectiveEchoTime"))
        if value is not None and value > 0.0:
            return value
    return None


def magnetic_field_strength_t(ds: Dataset) -> float | None:
    """Field strength in tesla (normalises headers that store it in gauss).

    Parameters
    ----------
    ds : Dataset
        Flat header.

    Returns
    -------
    float or None
        MagneticFieldStrength (0018,0087); values above 100 are gauss and divided by 10⁴.
        When absent (anonymised exports), the proton ImagingFrequency (0018,0084) divided
        by the gyromagnetic ratio, rounded to 0.01 T. None when neither is usable.
    """
    value = _float_or_none(ds.get("MagneticFieldStrength"))
    if value is not None and value > 0.0:
        if value > _FIELD_STRENGTH_GAUSS_THRESHOLD:
            return value / _GAUSS_PER_TESLA
        if value <= _FIELD_STRENGTH_MAX_T:
            return value
        _quality_warning(
            f"Series {_series_uid(ds)}: MagneticFieldStrength (0018,0087) = {value:g} is "
            f"neither tesla (≤ {_FIELD_STRENGTH_MAX_T:g}) nor gauss (> "
            f"{_FIELD_STRENGTH_GAUSS_THRESHOLD:g}); treated as unknown. Potential fix: set "
            "the field strength in the protocol configuration."
        )
        return None
    nucleus = _text(ds, "ImagedNucleus")
    frequency_mhz = _float_or_none(ds.get("ImagingFrequency"))
    if frequency_mhz is not None and frequency_mhz > 0.0 and nucleus in ("", "1H", "H1"):
        return round(frequency_mhz / GYROMAGNETIC_RATIO_MHZ_PER_T, 2)
    return None


def echo_phase_ms(field_strength_t: float) -> tuple[float, float]:
    """First opposed-phase and in-phase echo times of fat and water.

    Parameters
    ----------
    field_strength_t : float
        Main field in tesla (> 0).

    Returns
    -------
    (opposed_ms, in_phase_ms) : tuple of float

    Raises
    ------
    ValueError
        For a non-positive or non-finite field strength.

    Notes
    -----
    Δf = δ · γ̄ · B0 with δ = `FAT_WATER_SHIFT_PPM` (3.4 ppm) and γ̄ =
    `GYROMAGNETIC_RATIO_MHZ_PER_T`; fat and water are opposed after half a cycle,
    TE_OP = 1 / (2 Δf), and back in phase after a full cycle, TE_IP = 1 / Δf
    (CLINICAL_REFERENCE.md §B1). 1.5 T: 2.30 / 4.61 ms; 3 T: 1.15 / 2.30 ms.

    Examples
    --------
    >>> [round(t, 2) for t in echo_phase_ms(1.5)]
    [2.3, 4.61]
    """
    if not math.isfinite(field_strength_t) or field_strength_t <= 0.0:
        raise ValueError(
            f"field strength {field_strength_t!r} T: expected a positive number of tesla. "
            "Potential fix: pass magnetic_field_strength_t(header) and handle None first."
        )
    shift_hz = FAT_WATER_SHIFT_PPM * GYROMAGNETIC_RATIO_MHZ_PER_T * field_strength_t
    cycle_ms = 1000.0 / shift_hz
    return 0.5 * cycle_ms, cycle_ms


def echo_time_phase(te_ms: float, field_strength_t: float) -> str | None:
    """Whether an echo time puts fat and water in phase or opposed phase.

    Parameters
    ----------
    te_ms : float
        Echo time in ms.
    field_strength_t : float
        Main field in tesla.

    Returns
    -------
    {"in", "opposed"} or None
        None when TE is not within `ECHO_PHASE_TOLERANCE_CYCLES` of an in- or
        opposed-phase time, or is later than 3.6 fat–water cycles (long-TE images are not
        chemical-shift images), or an input is not positive.

    Examples
    --------
    >>> echo_time_phase(2.302, 1.5), echo_time_phase(4.635, 1.5), echo_time_phase(3.4, 1.5)
    ('opposed', 'in', None)
    """
    if not (math.isfinite(te_ms) and te_ms > 0.0):
        return None
    if not (math.isfinite(field_strength_t) and field_strength_t > 0.0):
        return None
    _, cycle_ms = echo_phase_ms(field_strength_t)
    cycles = te_ms / cycle_ms
    if cycles > _ECHO_PHASE_MAX_CYCLES:
        return None
    nearest_half = round(cycles * 2.0) / 2.0
    if nearest_half <= 0.0 or abs(cycles - nearest_half) > ECHO_PHASE_TOLERANCE_CYCLES:
        return None
    return "in" if float(nearest_half).is_integer() else "opposed"


# ---------------------------------------------------------------------------------------
# Stack role
# ---------------------------------------------------------------------------------------


def _dixon_role_from_tokens(ds: Dataset, vendor: Vendor) -> Role | None:
    """Dixon role from ImageType; Role.OTHER for a fat-fraction (or other Dixon) map."""
    tokens = _image_type_tokens(ds)
    token_set = set(tokens)
    if token_set & _FAT_FRACTION_TOKENS:
        return Role.OTHER
    roles = {_DIXON_TOKEN_ROLES[t] for t in tokens if t in _DIXON_TOKEN_ROLES}
    if vendor in (Vendor.PHILIPS, Vendor.OTHER) and not roles:
        # Philips mDIXON: W, F, IP, OP, alone or as the prefix of a token ("W_FFE").
        for token in tokens[2:] if len(tokens) > 2 else tokens:
            head = token.split("_")[0]
            if token in _PHILIPS_SHORT_ROLES:
                roles.add(_PHILIPS_SHORT_ROLES[token])
            elif head in _PHILIPS_SHORT_ROLES and head != token:
                roles.add(_PHILIPS_SHORT_ROLES[head])
    if len(roles) == 1:
        return roles.pop()
    if len(roles) > 1:
        logger.debug("series %s: conflicting Dixon ImageType tokens %s", _series_uid(ds), tokens)
    return None


def _dixon_role_from_keywords(ds: Dataset) -> Role | None:
    """Dixon role from SeriesDescription, then ProtocolName; OTHER for fat fraction."""
    for keyword in ("SeriesDescription", "ProtocolName"):
        text = _text(ds, keyword)
        if not text:
            continue
        if _KEYWORD_FAT_FRACTION.search(text):
            return Role.OTHER
        stripped = _KEYWORD_FAT_SUPPRESSION.sub(" ", text)
        if _KEYWORD_IN_AND_OUT.search(stripped):
            continue  # one name for both echoes
        roles = {role for pattern, role in _KEYWORD_ROLES if pattern.search(stripped)}
        if len(roles) == 1:
            return roles.pop()
    return None


def _is_multi_echo_gre(ds: Dataset) -> bool:
    """Tell whether the image is a gradient echo of a multi-echo (dual-echo) acquisition."""
    scanning = _text(ds, "ScanningSequence").split("\\")
    tokens = _image_type_tokens(ds)
    gradient_echo = "GR" in scanning or any("FFE" in t for t in tokens)
    if not gradient_echo:
        return False
    echo_train = _float_or_none(ds.get("EchoTrainLength"))
    echo_number = _float_or_none(ds.get("EchoNumbers"))
    if (echo_train is not None and echo_train >= 2) or (
        echo_number is not None and echo_number >= 2
    ):
        return True
    text = " ".join(_text(ds, k) for k in ("SeriesDescription", "ProtocolName"))
    return bool(_KEYWORD_IN_AND_OUT.search(text) or re.search(r"DUAL|MULTI[ _-]?ECHO", text))


def stack_role(ds: Dataset) -> Role:
    r"""Role of the stack this (representative) header belongs to.

    CT → ``ct``; scanner ADC map → ``adc``; b0/trace/directional DWI → ``dwi``; Dixon
    in/opposed-phase/water/fat from ImageType tokens, SeriesDescription/ProtocolName
    keywords, and echo time against field strength (one series may hold both echoes);
    anything else → ``other``.

    Parameters
    ----------
    ds : Dataset
        Flat header of one image of the stack.

    Returns
    -------
    Role

    Notes
    -----
    Dixon evidence, in order: ImageType tokens (Siemens ``DIXON\WATER``, ``\FAT``,
    ``IN_PHASE``, ``OUT_PHASE`` / ``OPP_PHASE``; Philips W/F/IP/OP and long forms;
    FAT_FRACTION → other); SeriesDescription, then ProtocolName keywords (``_W``, ``_F``,
    ``in``, ``opp``, ``InPhase``, ``OutPhase`` …; "fat sat" is fat *suppression*); then,
    for a multi-echo gradient echo only, the echo time against the field strength
    (`echo_time_phase`). Separated water/fat images share one TE, so TE never makes a
    water or fat image.
    """
    modality = _text(ds, "Modality")
    sop_class = str(ds.get("SOPClassUID", ""))
    if modality == "CT" or (not modality and sop_class in _CT_SOP_CLASSES):
        return Role.CT
    if modality not in ("MR", ""):
        return Role.OTHER
    kind = diffusion_kind(ds)
    if kind is DiffusionKind.ADC:
        return Role.ADC
    if kind in (DiffusionKind.B0, DiffusionKind.TRACE, DiffusionKind.DIRECTIONAL):
        return Role.DWI
    if kind is DiffusionKind.OTHER_DERIVED:
        return Role.OTHER
    vendor = vendor_of(ds)
    role = _dixon_role_from_tokens(ds, vendor)
    if role is not None:
        return role
    role = _dixon_role_from_keywords(ds)
    if role is not None:
        return role
    if _is_multi_echo_gre(ds):
        te_ms = echo_time_ms(ds)
        field_t = magnetic_field_strength_t(ds)
        if te_ms is not None and field_t is not None:
            phase = echo_time_phase(te_ms, field_t)
            if phase == "in":
                return Role.DIXON_IN_PHASE
            if phase == "opposed":
                return Role.DIXON_OPPOSED_PHASE
    return Role.OTHER


# ---------------------------------------------------------------------------------------
# Philips floating-point scaling
# ---------------------------------------------------------------------------------------


def philips_float_rescale(ds: Dataset) -> tuple[float, float] | None:
    """Slope and intercept from stored Philips pixel values to "floating point" values.

    Philips stores a private scale slope SS (2005,xx0E) besides the DICOM rescale
    (RS, RI). The displayed value is DV = PV·RS + RI; the value proportional to the MR
    signal, comparable between images with different RS, is FP = DV / (RS·SS)
    (dcm2niix Philips notes, "UsePhilipsFloatNotDisplayScaling").

    Parameters
    ----------
    ds : Dataset
        Flat header (the RescaleSlope/Intercept of a flattened enhanced frame come from its
        Pixel Value Transformation item, SS from the Philips private per-frame item).

    Returns
    -------
    (slope, intercept) or None
        FP = PV · slope + intercept, i.e. slope = 1 / SS and intercept = RI / (RS · SS).
        None for non-Philips headers and when SS or RS is absent or not positive (e.g. the
        CHAOS export, whose private elements were removed): use the DICOM rescale then.

    Notes
    -----
    Signal ratios taken within one image stack (SIR = OP / IP) are only valid on DV when
    both images share RS and SS; otherwise they need FP.
    """
    if vendor_of(ds) is not Vendor.PHILIPS:
        return None
    scale_slope = _private_numbers(ds, 0x2005, _PHILIPS_MR_IMAGING, 0x0E, "FL")
    rescale_slope = _float_or_none(ds.get("RescaleSlope"))
    rescale_intercept = _float_or_none(ds.get("RescaleIntercept")) or 0.0
    if not scale_slope or rescale_slope is None:
        return None
    ss = scale_slope[0]
    if not (math.isfinite(ss) and ss > 0.0 and rescale_slope > 0.0):
        return None
    return 1.0 / ss, rescale_intercept / (rescale_slope * ss)


# ---------------------------------------------------------------------------------------
# ADC scale
# ---------------------------------------------------------------------------------------


def adc_scale_to_mm2_per_s(ds: Dataset, values: NDArray[np.floating]) -> float:
    """Factor that converts a stored ADC map (after rescale) to mm²/s.

    Detected from the tissue value range (CLINICAL_REFERENCE.md default 12): a median of
    ~100–4000 means 1e-6 mm²/s units, ~0.1–4 means 1e-3, ~1e-4–4e-3 means mm²/s already.

    Parameters
    ----------
    ds : Dataset
        A header of the ADC series (for its vendor and its series UID in messages).
    values : ndarray of float
        ADC map values after the modality rescale, any shape. Zero, negative and
        non-finite values (background, masked voxels) are ignored.

    Returns
    -------
    float
        1e-6, 1e-3 or 1.0.

    Raises
    ------
    UnsupportedInputError
        When the scale is ambiguous; names the series and what was found.

    Notes
    -----
    The median of the positive values stands for tissue. Siemens and GE store integers in
    10⁻⁶ mm²/s; a Siemens map detected at another scale (a rescale slope was applied) is
    accepted with a `DataQualityWarning`.
    """
    array = np.asarray(values, dtype=np.float64)
    positive = array[np.isfinite(array) & (array > 0.0)]
    uid = _series_uid(ds)
    if positive.size == 0:
        raise UnsupportedInputError(
            f"Series {uid}: cannot determine the ADC unit: the map holds no positive finite "
            f"value (expected tissue ADC > 0, found {array.size} values, none positive). "
            "Potential fix: check that this is the ADC map and not an empty or derived series."
        )
    median = float(np.median(positive))
    matches = [factor for factor, low, high in ADC_SCALE_RANGES if low <= median <= high]
    if len(matches) != 1:
        ranges = "; ".join(
            f"×{factor:g}: {low:g}–{high:g}" for factor, low, high in ADC_SCALE_RANGES
        )
        raise UnsupportedInputError(
            f"Series {uid}: ADC map unit is ambiguous: median positive value {median:.4g} "
            f"(of {positive.size} voxels) fits {len(matches)} of the known scales "
            f"({ranges}). Potential fix: state the unit of this ADC series in the pipeline "
            "configuration, or check RescaleSlope (0028,1053) / RealWorldValueMapping."
        )
    factor = matches[0]
    if vendor_of(ds) is Vendor.SIEMENS and factor != 1.0e-6:
        _quality_warning(
            f"Series {uid}: Siemens ADC maps are stored in 10⁻⁶ mm²/s, but the values "
            f"(median {median:.4g}) indicate ×{factor:g}; using ×{factor:g}. Potential fix: "
            "check whether a rescale slope was applied to this export."
        )
    logger.debug("series %s: ADC median %.4g → ×%g mm²/s", uid, median, factor)
    return factor
