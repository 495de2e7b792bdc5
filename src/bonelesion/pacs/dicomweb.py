"""DICOMweb transport: QIDO-RS to list, WADO-RS to retrieve, STOW-RS to store (dicomweb-client).

Every request carries a (connect, read) time-out; dicomweb-client's own retrying is turned
off so that one rule (`call_with_retries`) bounds every call. Credentials go into the
``requests`` session's ``auth`` (never a header dicomweb-client might log, never a URL).

References
----------
DICOM PS3.18 §10.4 (WADO-RS), §10.5 (STOW-RS), §10.6 (QIDO-RS).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from bonelesion.pacs.client import (
    RemoteInstance,
    RemoteStudy,
    StoredInstance,
    TransientError,
    call_with_retries,
)
from bonelesion.pacs.errors import PacsError, PushError, RetrievalError
from bonelesion.pacs.inbox import Staging
from bonelesion.pacs.sources import AuthKind, Credentials, DicomWebPeer, NetworkPolicy

__all__ = ["DicomWebPacs"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: HTTP statuses that may pass: time-out, too many requests, bad gateway, busy, gateway time-out.
_TRANSIENT_HTTP = frozenset({408, 429, 502, 503, 504})
#: Accept any transfer syntax: instances arrive as the PACS stores them (no transcoding).
_AS_STORED = (("application/dicom", "*"),)

_STUDY_UID, _SERIES_UID, _SOP_UID, _SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"
_STUDY_DATE, _N_INSTANCES = "00080020", "00201208"


class _BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` added to each request (kept out of session headers)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_BearerAuth(<token>)"


def _session(credentials: Credentials | None) -> requests.Session:
    session = requests.Session()
    if credentials is not None:
        if credentials.kind is AuthKind.BEARER:
            session.auth = _BearerAuth(credentials.secret)
        else:
            session.auth = requests.auth.HTTPBasicAuth(credentials.user, credentials.secret)
    return session


def _first(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


class DicomWebPacs:
    """A DICOMweb service (see module docstring).

    Parameters
    ----------
    peer : DicomWebPeer
        Base URL and credentials.
    policy : NetworkPolicy
        Time-outs and retries.
    """

    def __init__(self, peer: DicomWebPeer, *, policy: NetworkPolicy) -> None:
        self.peer = peer
        self.policy = policy
        self._client = DICOMwebClient(
            peer.url, session=_session(peer.credentials),
            timeout=(policy.connect_timeout_s, policy.timeout_s),
        )
        self._client.set_http_retry_params(retry=False)
        if (peer.credentials is not None and peer.url.startswith("http://")
                and not peer.is_loopback):
            logger.warning("%s: credentials go over plain HTTP to another host; Potential fix: "
                           "use https://", peer.display)

    @property
    def display(self) -> str:
        """The service's URL (never holds a credential)."""
        return self.peer.display

    def close(self) -> None:
        """Close the HTTP session."""
        self._client._session.close()

    # ---- error mapping and retries ----

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return operation()
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                raise TransientError(_short(exc)) from exc
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in _TRANSIENT_HTTP:
                    raise TransientError(f"HTTP {status}") from exc
                raise self._final_http_error(what, status) from exc
            except requests.RequestException as exc:
                raise PacsError(f"{what}: {self.display}: {_short(exc)}. Potential fix: check "
                                "the base URL and the PACS's log.") from exc

        return call_with_retries(attempt, what=what, peer=self.display, policy=self.policy)

    def _final_http_error(self, what: str, status: int) -> PacsError:
        if status in (401, 403):
            how = (str(self.peer.credentials) if self.peer.credentials else "no credentials")
            return PacsError(
                f"{what}: {self.display} refused the request (HTTP {status}) with {how}. "
                "Potential fix: set $BONELESION_DICOMWEB_TOKEN, or $BONELESION_DICOMWEB_USER and "
                "$BONELESION_DICOMWEB_PASSWORD, or a credentials file, to an account that may "
                "query, retrieve and store."
            )
        if status == 404:
            return RetrievalError(
                f"{what}: {self.display} answered HTTP 404 (not found; deleted since it was "
                "listed?). Potential fix: none needed if it was deleted; else check the base URL."
            )
        return PacsError(
            f"{what}: {self.display} answered HTTP {status}. Potential fix: see the PACS's log "
            "for this request."
        )

    # ---- QIDO-RS ----

    def find_studies(self, *, since: dt.date | None = None) -> list[RemoteStudy]:
        """QIDO-RS: every study (StudyDate ≥ ``since``) with NumberOfStudyRelatedInstances."""
        filters = {"StudyDate": f"{since:%Y%m%d}-"} if since else None
        found = self._call("list studies (QIDO-RS)", lambda: self._client.search_for_studies(
            fields=["StudyDate", "NumberOfStudyRelatedInstances"], search_filters=filters,
            get_remaining=True))
        studies = []
        for item in found:
            uid = _first(item, _STUDY_UID)
            if not uid:
                continue
            n = _first(item, _N_INSTANCES)
            studies.append(RemoteStudy(study_instance_uid=str(uid),
                                       instances=None if n is None else int(n),
                                       study_date=str(_first(item, _STUDY_DATE) or "")))
        return studies

    def find_instances(self, study_instance_uid: str) -> list[RemoteInstance]:
        """QIDO-RS: every instance of one study (series, SOP instance and class UIDs)."""
        found = self._call(
            f"list instances of study {study_instance_uid} (QIDO-RS)",
            lambda: self._client.search_for_instances(
                study_instance_uid=study_instance_uid,
                fields=["SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"],
                get_remaining=True))
        return [
            RemoteInstance(study_instance_uid=study_instance_uid,
                           series_instance_uid=str(_first(i, _SERIES_UID) or ""),
                           sop_instance_uid=str(_first(i, _SOP_UID)),
                           sop_class_uid=str(_first(i, _SOP_CLASS) or ""))
            for i in found if _first(i, _SOP_UID)
        ]

    # ---- WADO-RS ----

    def retrieve(self, study_instance_uid: str, series: Sequence[str],
                 expected: Sequence[RemoteInstance], staging: Staging) -> None:
        """WADO-RS: retrieve each series, as stored, into ``staging``."""
        for series_uid in series:
            def fetch(series_uid: str = series_uid) -> None:
                try:
                    for ds in self._client.iter_series(study_instance_uid, series_uid,
                                                       media_types=_AS_STORED):
                        staging.add_dataset(ds)
                except ValueError as exc:  # a multipart body or a data set that cannot be read
                    raise RetrievalError(
                        f"Study {study_instance_uid}, series {series_uid}: the WADO-RS answer of "
                        f"{self.display} cannot be read ({exc}). Potential fix: see the PACS's "
                        "log; the study is tried again next pass."
                    ) from exc

            self._call(f"retrieve series {series_uid} of study {study_instance_uid} (WADO-RS)",
                       fetch)

    # ---- STOW-RS ----

    def store(self, paths: Sequence[Path]) -> list[StoredInstance]:
        """STOW-RS: store the files, one request per study; raise `PushError` on refusal."""
        by_study: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
        for path in paths:
            one = pydicom.dcmread(path)
            by_study.setdefault(str(one.StudyInstanceUID), []).append((path, one))
        stored: list[StoredInstance] = []
        for study_uid, items in by_study.items():
            what = f"store {len(items)} instance(s) of study {study_uid} (STOW-RS)"
            answer = self._call(what, partial(self._client.store_instances,
                                              [d for _, d in items],
                                              study_instance_uid=study_uid))
            failed = {str(item.get("ReferencedSOPInstanceUID", "")):
                      int(item.get("FailureReason", 0))
                      for item in answer.get("FailedSOPSequence", [])}
            accepted = {str(item.get("ReferencedSOPInstanceUID", ""))
                        for item in answer.get("ReferencedSOPSequence", [])}
            for path, ds in items:
                sop = str(ds.SOPInstanceUID)
                if sop in failed or sop not in accepted:
                    reason = f"failure reason 0x{failed[sop]:04X}" if sop in failed else (
                        "not acknowledged")
                    raise PushError(
                        f"{what}: {self.display} refused {path.name} (SOP instance {sop}, "
                        f"{reason}). Potential fix: see the PACS's log; the push is tried again "
                        "next pass."
                    )
                stored.append(StoredInstance(
                    study_instance_uid=study_uid, series_instance_uid=str(ds.SeriesInstanceUID),
                    sop_instance_uid=sop, modality=str(ds.get("Modality", "")), path=path))
        return stored


def _short(exc: BaseException) -> str:
    """One line about a connection error (no URL query, no credentials are in it)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return f"{type(exc).__name__}: {text[:200]}"
