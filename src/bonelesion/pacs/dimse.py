"""DIMSE transport (pynetdicom): C-FIND to list, C-MOVE or C-GET to retrieve, C-STORE to push.

Retrieval
---------
With a listener port (``--port``), each series is C-MOVEd to our own storage SCP, which
the peer must know as our AE title at our host and that port. If the peer refuses the
C-MOVE (an unknown destination, a move not allowed for our AE title …) and nothing arrived,
the series is retrieved with C-GET on the same terms, and the refusal is logged once with
its fix; if C-GET is refused too, the study is reported. Without a listener port, C-GET is
used from the start.

Our listener accepts instances only from the peer's AE title and only for a study being
retrieved; it writes each one straight into that study's staging folder.

Our sockets send without Nagle's delay (`_no_delay`): a peer's delayed ACKs would otherwise
cost ~40 ms per instance. (The peer's side matters too: DCMTK-based servers such as
Orthanc read ``TCP_NODELAY=1`` from their environment.)

Every association and every DIMSE message has a time-out; an association that cannot be
opened, a message that times out, or an association the peer drops is tried again
(`call_with_retries`). A peer that rejects the association has refused it: that is reported
at once. A C-MOVE dropped or failed before anything arrived counts as refused (C-GET next).

References
----------
DICOM PS3.4 Annex C (Query/Retrieve), PS3.7 §9.1 (DIMSE-C), PS3.7 Annex C (status codes).
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context, build_role
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import code_to_category

from bonelesion.errors import ConfigError
from bonelesion.pacs.client import (
    RemoteInstance,
    RemoteStudy,
    StoredInstance,
    TransientError,
    call_with_retries,
)
from bonelesion.pacs.errors import PacsError, PushError, RetrievalError
from bonelesion.pacs.inbox import Staging
from bonelesion.pacs.sources import DimsePeer, NetworkPolicy

__all__ = ["DimsePacs"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FIND = StudyRootQueryRetrieveInformationModelFind
_MOVE = StudyRootQueryRetrieveInformationModelMove
_GET = StudyRootQueryRetrieveInformationModelGet
#: Most presentation contexts one association may propose (PS3.8 §9.3.2.2: odd IDs 1-255).
_MAX_CONTEXTS = 128
_UNCOMPRESSED: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
#: Lossless syntaxes proposed for C-GET one context each, so the peer can send as stored.
_LOSSLESS = [JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless,
             DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
_STATUS_CANNOT_UNDERSTAND = 0xC000
_STATUS_OUT_OF_RESOURCES = 0xA700


def _no_delay(event: Any) -> None:
    """Turn Nagle's algorithm off on a new connection (EVT_CONN_OPEN).

    A DIMSE message goes out as several small writes; with Nagle on, the last one waits for
    the peer's delayed ACK (~40 ms), once per instance: C-STOREs run ~10 times slower.
    """
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as exc:  # not a TCP socket: nothing to tune
        logger.debug("TCP_NODELAY not set: %s", exc)


def _status_text(code: int) -> str:
    return f"status 0x{code:04X} ({code_to_category(code)})"


class DimsePacs:
    """A DIMSE peer (see module docstring).

    Parameters
    ----------
    peer : DimsePeer
        The peer, our AE title and our listener's port.
    policy : NetworkPolicy
        Time-outs and retries.
    """

    def __init__(self, peer: DimsePeer, *, policy: NetworkPolicy) -> None:
        self.peer = peer
        self.policy = policy
        self._lock = threading.Lock()
        self._receiving: dict[str, Staging] = {}
        self._scp: Any = None
        self._move_refused: str | None = None

    @property
    def display(self) -> str:
        """The peer's text form."""
        return self.peer.display

    def close(self) -> None:
        """Stop our storage listener (if it runs)."""
        if self._scp is not None:
            self._scp.shutdown()
            self._scp = None

    # ---- associations ----

    def _ae(self) -> AE:
        ae = AE(ae_title=self.peer.calling_ae_title)
        ae.connection_timeout = self.policy.connect_timeout_s
        ae.acse_timeout = self.policy.connect_timeout_s
        ae.dimse_timeout = self.policy.timeout_s
        ae.network_timeout = self.policy.timeout_s
        return ae

    @contextmanager
    def _association(self, what: str, contexts: Sequence[PresentationContext], *,
                     ext_neg: Sequence[Any] | None = None,
                     handlers: Sequence[Any] | None = None) -> Iterator[Association]:
        assoc = self._ae().associate(
            self.peer.host, self.peer.port, contexts=list(contexts),
            ae_title=self.peer.ae_title, ext_neg=list(ext_neg or []) or None,
            evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay), *(handlers or [])])
        if not assoc.is_established:
            if assoc.is_rejected:
                raise PacsError(
                    f"{what}: {self.display} rejected the association from our AE title "
                    f"{self.peer.calling_ae_title!r}. Potential fix: register that AE title (this "
                    "host) in the PACS, or give the AE title it knows with --ae-title; check the "
                    "called AE title in SOURCE."
                )
            raise TransientError("no association (connection refused, or no answer in "
                                 f"{self.policy.connect_timeout_s:g} s)")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        return call_with_retries(operation, what=what, peer=self.display, policy=self.policy)

    def _no_answer(self, started: float) -> TransientError:
        """Return the error for a request that got no final response (retried)."""
        if self._timed_out(started):
            return TransientError(f"no answer in {self.policy.timeout_s:g} s")
        return TransientError(
            "the PACS dropped the association in answer to our request (it may not allow it "
            f"from AE title {self.peer.calling_ae_title!r}: see its log; or it stopped)")

    def _timed_out(self, started: float) -> bool:
        return time.monotonic() - started >= 0.9 * self.policy.timeout_s

    # ---- C-FIND ----

    def _find(self, assoc: Association, query: Dataset, what: str) -> list[Dataset]:
        started = time.monotonic()
        found: list[Dataset] = []
        for status, identifier in assoc.send_c_find(query, _FIND):
            if not status:
                raise self._no_answer(started)
            category = code_to_category(int(status.Status))
            if category == "Pending":
                if identifier is not None:
                    found.append(identifier)
            elif category != "Success":
                raise PacsError(
                    f"{what}: {self.display} answered C-FIND with "
                    f"{_status_text(int(status.Status))}. Potential fix: see the PACS's log."
                )
        return found

    def find_studies(self, *, since: dt.date | None = None) -> list[RemoteStudy]:
        """C-FIND (Study Root, STUDY level): every study with its instance count."""
        what = "list studies (C-FIND)"
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.StudyDate = f"{since:%Y%m%d}-" if since else ""
        query.NumberOfStudyRelatedInstances = ""

        def run() -> list[Dataset]:
            with self._association(what, [build_context(_FIND)]) as assoc:
                return self._find(assoc, query, what)

        studies = []
        for ds in self._call(what, run):
            uid = str(ds.get("StudyInstanceUID", "") or "")
            if not uid:
                continue
            n = ds.get("NumberOfStudyRelatedInstances", None)
            studies.append(RemoteStudy(study_instance_uid=uid,
                                       instances=int(n) if n not in (None, "") else None,
                                       study_date=str(ds.get("StudyDate", "") or "")))
        return studies

    def find_instances(self, study_instance_uid: str) -> list[RemoteInstance]:
        """C-FIND: the study's series (SERIES level), then each one's instances (IMAGE level)."""
        what = f"list instances of study {study_instance_uid} (C-FIND)"

        def run() -> list[RemoteInstance]:
            with self._association(what, [build_context(_FIND)]) as assoc:
                q = Dataset()
                q.QueryRetrieveLevel = "SERIES"
                q.StudyInstanceUID = study_instance_uid
                q.SeriesInstanceUID = ""
                series = sorted({str(s.SeriesInstanceUID) for s in self._find(assoc, q, what)
                                 if s.get("SeriesInstanceUID")})
                out: list[RemoteInstance] = []
                for series_uid in series:
                    q = Dataset()
                    q.QueryRetrieveLevel = "IMAGE"
                    q.StudyInstanceUID = study_instance_uid
                    q.SeriesInstanceUID = series_uid
                    q.SOPInstanceUID = ""
                    q.SOPClassUID = ""
                    out += [RemoteInstance(study_instance_uid=study_instance_uid,
                                           series_instance_uid=series_uid,
                                           sop_instance_uid=str(i.SOPInstanceUID),
                                           sop_class_uid=str(i.get("SOPClassUID", "") or ""))
                            for i in self._find(assoc, q, what) if i.get("SOPInstanceUID")]
                return out

        return self._call(what, run)

    # ---- receiving (our storage SCP for C-MOVE, and C-GET's sub-operations) ----

    def _on_store(self, event: Any) -> int:
        sop = str(event.request.AffectedSOPInstanceUID)
        try:
            study = str(event.dataset.get("StudyInstanceUID", ""))
        except Exception as exc:  # noqa: BLE001 - a data set we cannot decode: refuse it
            logger.warning("received instance %s cannot be decoded (%s); refused", sop, exc)
            return _STATUS_CANNOT_UNDERSTAND
        with self._lock:
            staging = self._receiving.get(study)
        if staging is None:
            logger.warning("received instance %s of study %s, which is not being retrieved; "
                           "refused", sop, study)
            return _STATUS_CANNOT_UNDERSTAND
        try:
            staging.add_bytes(sop, study, event.encoded_dataset(include_meta=True))
        except OSError as exc:
            logger.error("study %s: instance %s cannot be written (%s)", study, sop, exc.strerror)
            return _STATUS_OUT_OF_RESOURCES
        except PacsError as exc:
            logger.error("%s", exc)
            return _STATUS_CANNOT_UNDERSTAND
        return 0x0000

    def _ensure_listener(self) -> None:
        if self._scp is not None or self.peer.listen_port is None:
            return
        ae = self._ae()
        ae.require_calling_aet = [self.peer.ae_title]
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        address = (self.peer.listen_address, self.peer.listen_port)
        try:
            self._scp = ae.start_server(address, block=False,
                                        evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay),
                                                      (evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            raise ConfigError(
                f"Our storage listener cannot listen on {address[0] or 'all interfaces'} port "
                f"{address[1]} ({exc.strerror}). Potential fix: choose a free --port (the one the "
                "PACS knows for our AE title)."
            ) from exc
        logger.info("storage listener for C-MOVE: AE %s on %s:%d", self.peer.calling_ae_title,
                    address[0] or "*", address[1])

    @contextmanager
    def _receive(self, staging: Staging) -> Iterator[None]:
        with self._lock:
            self._receiving[staging.study_instance_uid] = staging
        try:
            yield
        finally:
            with self._lock:
                self._receiving.pop(staging.study_instance_uid, None)

    # ---- C-MOVE / C-GET ----

    def retrieve(self, study_instance_uid: str, series: Sequence[str],
                 expected: Sequence[RemoteInstance], staging: Staging) -> None:
        """Retrieve each series into ``staging``: C-MOVE, else (or when refused) C-GET."""
        self._ensure_listener()
        with self._receive(staging):
            for series_uid in series:
                what = f"retrieve series {series_uid} of study {study_instance_uid}"
                if self.peer.listen_port is not None and self._move_refused is None:
                    before = len(staging.sop_instance_uids)
                    refusal = self._call(what + " (C-MOVE)",
                                         partial(self._move, study_instance_uid, series_uid, what))
                    if refusal is None:
                        continue
                    if len(staging.sop_instance_uids) > before:
                        raise RetrievalError(f"{what}: C-MOVE stopped part-way ({refusal}). "
                                             "Potential fix: see the PACS's log.")
                    self._move_refused = refusal
                    logger.warning(
                        "%s refused C-MOVE to our AE title %r (%s); retrieving with C-GET "
                        "instead. Potential fix: register AE %r (this host, port %s) as a "
                        "destination in the PACS.", self.display, self.peer.calling_ae_title,
                        refusal, self.peer.calling_ae_title, self.peer.listen_port)
                classes = sorted({i.sop_class_uid for i in expected
                                  if i.series_instance_uid == series_uid and i.sop_class_uid})
                self._call(what + " (C-GET)",
                           partial(self._get, study_instance_uid, series_uid, classes, what))

    @staticmethod
    def _series_query(study_instance_uid: str, series_uid: str) -> Dataset:
        q = Dataset()
        q.QueryRetrieveLevel = "SERIES"
        q.StudyInstanceUID = study_instance_uid
        q.SeriesInstanceUID = series_uid
        return q

    def _move(self, study_instance_uid: str, series_uid: str, what: str) -> str | None:
        """One C-MOVE; None on success, else why the peer refused it."""
        with self._association(what + " (C-MOVE)", [build_context(_MOVE)]) as assoc:
            started = time.monotonic()
            final = None
            pending = 0
            for status, _ in assoc.send_c_move(self._series_query(study_instance_uid, series_uid),
                                               self.peer.calling_ae_title, _MOVE):
                if not status:
                    if final is None and not pending and not self._timed_out(started):
                        return "it dropped the association in answer to the C-MOVE request"
                    raise self._no_answer(started)
                if code_to_category(int(status.Status)) == "Pending":
                    pending += 1
                else:
                    final = status
        if final is None:
            raise TransientError("C-MOVE ended without a final status")
        code = int(final.Status)
        if code_to_category(code) in ("Success", "Warning"):
            return None
        failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
        comment = str(final.get("ErrorComment", "") or "")
        return f"{_status_text(code)}{', ' + comment if comment else ''}" + (
            f", {failed} sub-operations failed" if failed else "")

    def _get(self, study_instance_uid: str, series_uid: str, sop_classes: Sequence[str],
             what: str) -> None:
        contexts = [build_context(_GET)]
        per_class = 1 + len(_LOSSLESS)
        for sop_class in sop_classes:
            if len(contexts) + per_class <= _MAX_CONTEXTS:
                contexts.append(build_context(sop_class, _UNCOMPRESSED))
                contexts += [build_context(sop_class, ts) for ts in _LOSSLESS]
            elif len(contexts) < _MAX_CONTEXTS:
                contexts.append(build_context(sop_class, _UNCOMPRESSED))
        roles = [build_role(c, scp_role=True) for c in sop_classes]
        with self._association(what + " (C-GET)", contexts, ext_neg=roles,
                               handlers=[(evt.EVT_C_STORE, self._on_store)]) as assoc:
            if not any(cx.abstract_syntax == _GET for cx in assoc.accepted_contexts):
                raise RetrievalError(
                    f"{what}: {self.display} does not accept C-GET"
                    + (f", and refused C-MOVE ({self._move_refused})" if self._move_refused
                       else "") + ". Potential fix: register our AE title "
                    f"{self.peer.calling_ae_title!r} (this host, --port) as a C-MOVE destination "
                    "in the PACS, and give --port."
                )
            started = time.monotonic()
            final = None
            received = False
            for status, _ in assoc.send_c_get(self._series_query(study_instance_uid, series_uid),
                                              _GET):
                if not status:
                    if self._timed_out(started) or received:
                        raise self._no_answer(started)
                    raise RetrievalError(
                        f"{what}: {self.display} refused C-GET (dropped the association in "
                        "answer to the request)"
                        + (f"; C-MOVE was refused too ({self._move_refused})"
                           if self._move_refused else "")
                        + ". Potential fix: in the PACS, register our AE title "
                        f"{self.peer.calling_ae_title!r} with this host and --port as a C-MOVE "
                        "destination, or allow it C-GET.")
                if code_to_category(int(status.Status)) == "Pending":
                    received = True
                else:
                    final = status
        if final is None:
            raise TransientError("C-GET ended without a final status")
        code = int(final.Status)
        if code_to_category(code) not in ("Success", "Warning"):
            raise RetrievalError(
                f"{what}: {self.display} answered C-GET with {_status_text(code)}"
                + (f" (C-MOVE was refused too: {self._move_refused})" if self._move_refused
                   else "") + ". Potential fix: see the PACS's log."
            )

    # ---- C-STORE ----

    def store(self, paths: Sequence[Path]) -> list[StoredInstance]:
        """C-STORE each file, in one association; raise `PushError` if any is refused."""
        if not paths:
            return []
        headers = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in paths]
        pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                        for _, ds in headers})
        contexts = [build_context(sop_class, [ts]) for sop_class, ts in pairs]
        what = f"store {len(paths)} instance(s) (C-STORE)"

        def run() -> list[StoredInstance]:
            stored = []
            with self._association(what, contexts) as assoc:
                accepted = {(str(cx.abstract_syntax), str(ts)) for cx in assoc.accepted_contexts
                            for ts in cx.transfer_syntax}
                refused = sorted({pair for pair in pairs if pair not in accepted})
                if refused:
                    raise PushError(
                        f"{what}: {self.display} does not accept "
                        + ", ".join(f"SOP class {c} in transfer syntax {t}" for c, t in refused)
                        + ". Potential fix: allow these storage SOP classes (DICOM SEG, "
                        "Comprehensive 3D SR) in the PACS, or push over DICOMweb.")
                for path, ds in headers:
                    started = time.monotonic()
                    status = assoc.send_c_store(path)
                    if not status:
                        raise self._no_answer(started)
                    code = int(status.Status)
                    if code_to_category(code) not in ("Success", "Warning"):
                        raise PushError(
                            f"{what}: {self.display} refused {path.name} (SOP instance "
                            f"{ds.SOPInstanceUID}) with {_status_text(code)}. Potential fix: "
                            "see the PACS's log; the push is tried again next pass."
                        )
                    stored.append(StoredInstance(
                        study_instance_uid=str(ds.StudyInstanceUID),
                        series_instance_uid=str(ds.SeriesInstanceUID),
                        sop_instance_uid=str(ds.SOPInstanceUID),
                        modality=str(ds.get("Modality", "")), path=path))
            return stored

        return self._call(what, run)
