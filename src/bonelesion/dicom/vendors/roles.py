"""Stack roles: CT, DWI, ADC, Dixon in/opposed phase, water, fat, localizer, other."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import (
    _SEP_L,
    _SEP_R,
    _image_type_tokens,
    _series_uid,
    _text,
)
from bonelesion.dicom.vendors.acquisition import (
    echo_time_ms,
    echo_time_phase,
    magnetic_field_strength_t,
)
from bonelesion.dicom.vendors.diffusion import DiffusionKind, diffusion_kind
from bonelesion.dicom.vendors.identify import Vendor, vendor_of
from bonelesion.dicom.vendors.philips import _PHILIPS_SHORT_ROLES
from bonelesion.model.roles import SeriesRole

__all__ = ["Role", "RoleCall", "classify_stack", "stack_role", "SECONDARY_CAPTURE_SOP_CLASSES"]

logger = logging.getLogger(__name__)

#: The stack-role vocabulary (one enum, in the model layer).
Role = SeriesRole


_CT_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
    }
)


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
    echo_train = values.get_float(ds, "EchoTrainLength", strict=False)
    echo_number = values.get_float(ds, "EchoNumbers", strict=False)
    if (echo_train is not None and echo_train >= 2) or (
        echo_number is not None and echo_number >= 2
    ):
        return True
    text = " ".join(_text(ds, k) for k in ("SeriesDescription", "ProtocolName"))
    return bool(_KEYWORD_IN_AND_OUT.search(text) or re.search(r"DUAL|MULTI[ _-]?ECHO", text))


def _content_role(ds: Dataset) -> Role:
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
    sop_class = values.get_text(ds, "SOPClassUID", strict=False) or ""
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


#: Secondary Capture SOP classes: screen captures, scanned documents, dose screens. They
#: are told apart by SOP Class, never by ImageType (a real reformatted CT may say
#: ``DERIVED\SECONDARY\AXIAL``).
SECONDARY_CAPTURE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image",
}
#: Objects that are not images of the patient at all (dose reports, documents).
_NON_IMAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.68": "Radiopharmaceutical Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
}
#: ImageType tokens of localizers: CT value 3 is AXIAL or LOCALIZER (PS3.3 C.8.2.1.1.1);
#: vendors also write SCOUT / TOPOGRAM / SURVIEW.
_LOCALIZER_TOKENS = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW"})
#: Series descriptions of localizers (GE "3-Plane Loc", Siemens "localizer" / "AAHead_Scout",
#: Philips "Survey" / "SURVIEW", CT "Topogram" / "Scout").
_KEYWORD_LOCALIZER = re.compile(
    rf"{_SEP_L}(LOCALI[SZ]ER|LOC|SCOUT|\w*_SCOUT|SURVEY|SURVIEW|TOPOGRAM|3[ -]?PLANE)"
    rf"{_SEP_R}"
)
#: Series descriptions of dose screens written as CT images (Siemens "Patient Protocol",
#: GE "Dose Report").
_KEYWORD_DOSE_REPORT = re.compile(r"DOSE[ _-]?(REPORT|INFO|SUMMARY)|PATIENT[ _-]PROTOCOL")


@dataclass(frozen=True)
class RoleCall:
    """A stack role and, for objects that are not volumes to measure, the reason."""

    role: Role
    reason: str = ""


def classify_stack(ds: Dataset) -> RoleCall:
    r"""Role of the stack this (representative) header belongs to, with a reason.

    Objects that are not volumes to measure are told apart first, each with a reason the
    series-selection policy and ``bonelesion series`` show:

    * Secondary Capture (by SOP Class, `SECONDARY_CAPTURE_SOP_CLASSES`), dose reports and
      documents → ``other``;
    * dose screens stored as CT images (SeriesDescription "Dose Report", "Patient
      Protocol") → ``other``;
    * localizers: ImageType LOCALIZER / SCOUT / TOPOGRAM / SURVIEW, or a SeriesDescription
      naming one ("localizer", "3-plane loc", "scout", "survey", "topogram") →
      ``localizer``.

    Everything else gets the role of its content (see `stack_role`) and no reason.

    Parameters
    ----------
    ds : Dataset
        Flat header of one image of the stack.

    Returns
    -------
    RoleCall

    Examples
    --------
    >>> ds = Dataset(); ds.Modality = "CT"; ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    >>> classify_stack(ds).role.value
    'localizer'
    >>> ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"; classify_stack(ds).role.value
    'other'
    """
    sop_class = _text(ds, "SOPClassUID")
    if sop_class in SECONDARY_CAPTURE_SOP_CLASSES:
        return RoleCall(Role.OTHER, f"{SECONDARY_CAPTURE_SOP_CLASSES[sop_class]} (SOP Class "
                                    f"{sop_class}): a screen capture or scanned document, "
                                    "not a volume")
    if sop_class in _NON_IMAGE_SOP_CLASSES:
        return RoleCall(Role.OTHER, f"{_NON_IMAGE_SOP_CLASSES[sop_class]}: not an image")
    description = _text(ds, "SeriesDescription")
    if _KEYWORD_DOSE_REPORT.search(description):
        return RoleCall(Role.OTHER, f"dose report (SeriesDescription {description!r}), not a "
                                    "volume")
    tokens = set(_image_type_tokens(ds))
    localizer = tokens & _LOCALIZER_TOKENS
    if localizer:
        return RoleCall(Role.LOCALIZER, f"localizer (ImageType {sorted(localizer)[0]})")
    if _KEYWORD_LOCALIZER.search(description):
        return RoleCall(Role.LOCALIZER, f"localizer (SeriesDescription {description!r})")
    return RoleCall(_content_role(ds))


def stack_role(ds: Dataset) -> Role:
    """Role of the stack this (representative) header belongs to.

    CT → ``ct``; scanner ADC map → ``adc``; b0/trace/directional DWI → ``dwi``; Dixon
    in/opposed-phase/water/fat from ImageType tokens, SeriesDescription/ProtocolName
    keywords, and echo time against field strength (one series may hold both echoes);
    localizers → ``localizer``; screen captures, dose reports and anything else →
    ``other``. `classify_stack` also gives the reason for ``localizer`` and ``other``.

    Parameters
    ----------
    ds : Dataset
        Flat header of one image of the stack.

    Returns
    -------
    Role
    """
    return classify_stack(ds).role
