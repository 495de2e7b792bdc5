"""What a PACS client does, whatever the transport, and the one retry rule of every call.

`PacsClient` is the protocol both transports implement (`bonelesion.pacs.dicomweb`,
`bonelesion.pacs.dimse`): list studies, list a study's instances, retrieve series into a
staging folder, store files. `call_with_retries` runs one network operation with bounded
retries: a transport raises `TransientError` for what may pass (no connection, a time-out,
HTTP 503 …); any other error is final at once; when the tries are used up it raises
`PacsUnavailableError`, which ends the pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from bonelesion.pacs.errors import PacsUnavailableError
from bonelesion.pacs.sources import NetworkPolicy

if TYPE_CHECKING:
    from bonelesion.pacs.inbox import Staging

__all__ = [
    "RemoteStudy",
    "RemoteInstance",
    "StoredInstance",
    "PacsClient",
    "TransientError",
    "call_with_retries",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RemoteStudy:
    """One study as the PACS lists it.

    ``instances`` is NumberOfStudyRelatedInstances (None when the PACS does not give it);
    ``study_date`` is StudyDate as ``YYYYMMDD`` ("" when absent). Nothing about the patient.
    """

    study_instance_uid: str
    instances: int | None
    study_date: str = ""


@dataclass(frozen=True, kw_only=True)
class RemoteInstance:
    """One instance of a study as the PACS lists it."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""


@dataclass(frozen=True, kw_only=True)
class StoredInstance:
    """One instance a push sent, as the PACS acknowledged it."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    modality: str
    path: Path


class TransientError(Exception):
    """A failure that may pass (no connection, time-out, server busy); retried."""


class PacsClient(Protocol):
    """A connection to one PACS (DICOMweb or DIMSE); close it after use."""

    @property
    def display(self) -> str:
        """The peer's text form (never holds a credential)."""

    def find_studies(self, *, since: dt.date | None = None) -> list[RemoteStudy]:
        """Every study (with StudyDate ≥ ``since``), with its instance count."""

    def find_instances(self, study_instance_uid: str) -> list[RemoteInstance]:
        """Every instance of one study."""

    def retrieve(self, study_instance_uid: str, series: Sequence[str],
                 expected: Sequence[RemoteInstance], staging: Staging) -> None:
        """Retrieve ``series`` of a study into ``staging`` (``expected`` lists their instances)."""

    def store(self, paths: Sequence[Path]) -> list[StoredInstance]:
        """Store DICOM files in the PACS; raise `PushError` if any is refused."""

    def close(self) -> None:
        """Release connections and listeners."""


def call_with_retries(
    operation: Callable[[], T],
    *,
    what: str,
    peer: str,
    policy: NetworkPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``; retry it on `TransientError`, at most ``policy.attempts`` times.

    Raises
    ------
    PacsUnavailableError
        The last try failed transiently too; the message names ``what`` and ``peer``.
    """
    last = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except TransientError as exc:
            last = str(exc)
            if attempt < policy.attempts:
                wait_s = policy.backoff_s * 2 ** (attempt - 1)
                logger.warning("%s: %s (try %d of %d); trying again in %.1f s",
                               what, last, attempt, policy.attempts, wait_s)
                sleep(wait_s)
    raise PacsUnavailableError(
        f"{what}: no answer from the PACS {peer} after {policy.attempts} tries (last: {last}). "
        "Potential fix: check that the PACS is running and reachable from this host (address, "
        "port, firewall) and rerun; work already done is kept and the next pass resumes."
    )
