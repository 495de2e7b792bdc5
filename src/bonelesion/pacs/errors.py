"""Errors of the PACS loop, in the package's one exception tree (`bonelesion.errors`)."""

from __future__ import annotations

from bonelesion.errors import PipelineError

__all__ = ["PacsError", "PacsUnavailableError", "RetrievalError", "PushError"]


class PacsError(PipelineError):
    """A PACS refused or failed an operation (the message names the peer and the study)."""


class PacsUnavailableError(PacsError):
    """The PACS did not answer, after every retry: nothing more can be done in this pass."""


class RetrievalError(PacsError):
    """One study could not be retrieved completely (it is not measured; the pass goes on)."""


class PushError(PacsError):
    """Results of one study could not be stored in the PACS (they are pushed next pass)."""
