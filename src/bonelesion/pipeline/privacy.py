"""Pseudonymised outputs: patient identifiers replaced in documents and DICOM objects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["pseudonymise_dicom", "scrub"]


def scrub(value: Any, replacements: Sequence[tuple[str, str]]) -> Any:
    """Replace each raw identifier by its pseudonym in every string of ``value``.

    ``value`` is a JSON-like structure (dicts, lists, strings, numbers); ``replacements``
    are (raw identifier, pseudonym) pairs, applied longest identifier first. Catches
    identifiers inside file paths of exports organised by patient (``export/<PatientID>/…``).
    """
    pairs = sorted(replacements, key=lambda p: (-len(p[0]), p[0]))
    if not pairs:
        return value

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for raw, pseudonym in pairs:
                v = v.replace(raw, pseudonym)
            return v
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    return walk(value)


#: Patient-identifying attributes replaced (ID, name) or removed in pseudonymised outputs
#: (DICOM PS3.15 Table E.1-1, Basic Profile: the Patient Module identifiers).
_REMOVE_KEYWORDS = (
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
    "IssuerOfPatientID",
    "PatientBirthName",
)


def pseudonymise_dicom(path: Path, pseudonym: str) -> None:
    """Replace PatientID and PatientName by ``pseudonym`` and drop other patient identifiers.

    Sets PatientIdentityRemoved = YES and records the method in DeidentificationMethod.
    """
    import pydicom

    ds = pydicom.dcmread(path)
    ds.PatientID = pseudonym
    ds.PatientName = pseudonym
    for keyword in _REMOVE_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = (
        "bonelesion: PatientID/PatientName replaced by HMAC-SHA256 pseudonym"
    )
    tmp = path.with_name(path.name + ".tmp")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
