"""The PACS loop: find new studies in a PACS, retrieve, measure, send SEG and SR back.

Over DICOMweb (dicomweb-client: QIDO-RS, WADO-RS, STOW-RS) or DIMSE (pynetdicom: C-FIND,
C-MOVE with our own storage listener or C-GET, C-STORE). See `bonelesion.pacs.watch` for
one pass of the loop and README "The PACS loop" for wiring it at a site.

Public API
----------
parse_source(source, *, ae_title=..., port=..., ...) -> DicomWebPeer | DimsePeer
watch(peer, options, *, once=False, ...) -> PassSummary
pull(peer, dest, *, studies=(), since=None) -> PullSummary
push(peer, run_out) -> PushSummary
find_push_objects(out_dir, study_instance_uid=None) -> tuple[Path, ...]
"""

from __future__ import annotations

from bonelesion.pacs.errors import PacsError, PacsUnavailableError, PushError, RetrievalError
from bonelesion.pacs.push import find_push_objects
from bonelesion.pacs.sources import (
    DicomWebPeer,
    DimsePeer,
    NetworkPolicy,
    parse_since,
    parse_source,
)
from bonelesion.pacs.state import PacsState
from bonelesion.pacs.watch import (
    PassSummary,
    PullSummary,
    PushSummary,
    WatchOptions,
    connect,
    pull,
    push,
    run_pass,
    watch,
)

__all__ = [
    "parse_source",
    "parse_since",
    "DicomWebPeer",
    "DimsePeer",
    "NetworkPolicy",
    "WatchOptions",
    "PassSummary",
    "PullSummary",
    "PushSummary",
    "PacsState",
    "connect",
    "run_pass",
    "watch",
    "pull",
    "push",
    "find_push_objects",
    "PacsError",
    "PacsUnavailableError",
    "RetrievalError",
    "PushError",
]
