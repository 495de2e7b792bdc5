"""Which manufacturer wrote a header (`vendor_of`), also when Manufacturer was blanked."""

from __future__ import annotations

import logging
import re
from enum import Enum

from pydicom import Dataset

from bonelesion.dicom import values
from bonelesion.dicom.vendors._elements import _SEP_L, _SEP_R, _private_creators, _text

__all__ = ["Vendor", "vendor_of"]

logger = logging.getLogger(__name__)


class Vendor(str, Enum):  # noqa: UP042  (interface shared with reader/index)
    """Manufacturer family."""

    SIEMENS = "siemens"
    GE = "ge"
    PHILIPS = "philips"
    CANON = "canon"
    HITACHI = "hitachi"
    UIH = "uih"
    OTHER = "other"


_UID_ROOTS: tuple[tuple[str, Vendor], ...] = (
    ("1.3.12.2.1107.5.", Vendor.SIEMENS),
    ("1.2.840.113619.", Vendor.GE),
    ("1.3.46.670589.", Vendor.PHILIPS),
    ("1.2.392.200036.9116.", Vendor.CANON),  # Toshiba / Canon Medical
    ("1.2.392.200036.9123.", Vendor.HITACHI),
    ("1.2.156.112605.", Vendor.UIH),  # United Imaging Healthcare
)


_CREATOR_PREFIXES: tuple[tuple[str, Vendor], ...] = (
    ("SIEMENS", Vendor.SIEMENS),  # SIEMENS CSA HEADER, SIEMENS MR HEADER, SIEMENS MR SDI …
    ("GEMS_", Vendor.GE),  # GEMS_ACQU_01, GEMS_PARM_01 …
    ("GE_GENESIS", Vendor.GE),
    ("PHILIPS", Vendor.PHILIPS),  # Philips Imaging DD 001, Philips MR Imaging DD 001 …
    ("TOSHIBA_MEC", Vendor.CANON),
    ("CANON_MEC", Vendor.CANON),
)


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
    if text == "UIH" or "UNITED IMAGING" in text:
        return Vendor.UIH
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
        value = values.get_text(ds, keyword, strict=False)
        if value:
            uids.append(value)
    meta = ds.__dict__.get("file_meta")
    if meta is not None:
        for keyword in ("MediaStorageSOPInstanceUID", "ImplementationClassUID"):
            value = values.get_text(meta, keyword, strict=False)
            if value:
                uids.append(value)
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
