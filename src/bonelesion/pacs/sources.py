"""Where the PACS is: ``SOURCE`` parsed into a DICOMweb or a DIMSE peer, with credentials.

Two spellings of ``SOURCE`` (and of ``DEST`` for ``push``):

* ``http://host:port/dicom-web`` (or ``https://…``): a DICOMweb service (QIDO-RS, WADO-RS,
  STOW-RS);
* ``dimse://AET@host:port``: a DIMSE peer (C-FIND, C-MOVE/C-GET, C-STORE) whose AE title is
  ``AET``; our own (calling) AE title and the port of our storage listener for C-MOVE are
  options.

Credentials for DICOMweb never come from the command line (other users see it in ``ps``;
shells keep it in their history): a bearer token or a user and password are read from

1. the JSON file named by ``credentials_file`` or ``$BONELESION_DICOMWEB_CREDENTIALS``:
   ``{"token": "…"}`` or ``{"user": "…", "password": "…"}``, or
2. ``$BONELESION_DICOMWEB_TOKEN``, or ``$BONELESION_DICOMWEB_USER`` with
   ``$BONELESION_DICOMWEB_PASSWORD``.

No credential is ever part of a peer's text form (`DicomWebPeer.display`), of a log line or
of an error message.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bonelesion.errors import ConfigError

__all__ = [
    "AuthKind",
    "Credentials",
    "DicomWebPeer",
    "DimsePeer",
    "NetworkPolicy",
    "Peer",
    "parse_source",
    "parse_since",
    "load_credentials",
    "ENV_TOKEN",
    "ENV_USER",
    "ENV_PASSWORD",
    "ENV_CREDENTIALS_FILE",
    "DEFAULT_AE_TITLE",
]

logger = logging.getLogger(__name__)

ENV_TOKEN = "BONELESION_DICOMWEB_TOKEN"
ENV_USER = "BONELESION_DICOMWEB_USER"
ENV_PASSWORD = "BONELESION_DICOMWEB_PASSWORD"
ENV_CREDENTIALS_FILE = "BONELESION_DICOMWEB_CREDENTIALS"

#: Our calling AE title when none is given.
DEFAULT_AE_TITLE = "BONELESION"

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 §6.2 AE: no backslash, ≤16
_DIMSE = re.compile(r"^dimse://(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?P<port>\d+)/?$")
_RELATIVE_DAYS = re.compile(r"^(?P<n>\d{1,5})d$")


@dataclass(frozen=True, kw_only=True)
class NetworkPolicy:
    """Time-outs and bounded retries, applied to every network call.

    Parameters
    ----------
    timeout_s : float
        Longest wait for one answer: an HTTP response (read time-out) or one DIMSE message.
    connect_timeout_s : float
        Longest wait to open a TCP connection (and, for DIMSE, for the association).
    attempts : int
        Tries of one operation when the PACS does not answer (≥ 1); the last failure ends
        the pass with `PacsUnavailableError`.
    backoff_s : float
        Wait before the second try; it doubles before each further one.
    """

    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.connect_timeout_s > 0):
            raise ConfigError(
                f"network time-outs must be > 0 s, found timeout {self.timeout_s} s and "
                f"connect time-out {self.connect_timeout_s} s. Potential fix: --timeout 60."
            )
        if self.attempts < 1 or self.backoff_s < 0:
            raise ConfigError(
                f"retries: need attempts ≥ 1 and backoff ≥ 0 s, found {self.attempts} and "
                f"{self.backoff_s} s. Potential fix: --retries 3."
            )


class AuthKind(str, Enum):
    """How DICOMweb requests authenticate."""

    BASIC = "basic"
    BEARER = "bearer"


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A DICOMweb credential; its text form never shows the secret.

    ``origin`` says where it came from (an environment variable or a file), for messages.
    """

    kind: AuthKind
    secret: str = field(repr=False)
    user: str = ""
    origin: str = ""

    def __str__(self) -> str:
        who = f" user {self.user!r}" if self.user else ""
        return f"{self.kind.value} credentials{who} from {self.origin}"


@dataclass(frozen=True, kw_only=True)
class DicomWebPeer:
    """A DICOMweb service at ``url`` (no user information, query or fragment)."""

    url: str
    credentials: Credentials | None = None

    @property
    def display(self) -> str:
        """Text form for logs and messages (never holds a credential)."""
        return self.url

    @property
    def is_loopback(self) -> bool:
        """True when the service is on this host's loopback interface."""
        return _is_loopback(urlsplit(self.url).hostname or "")


@dataclass(frozen=True, kw_only=True)
class DimsePeer:
    """A DIMSE peer, and how we talk to it.

    Parameters
    ----------
    ae_title, host, port
        The peer's (called) AE title and its address.
    calling_ae_title : str
        Our AE title; also the C-MOVE destination, which the peer must know with our host
        and ``listen_port``.
    listen_port : int or None
        Port of our storage listener for C-MOVE; None retrieves with C-GET only.
    listen_address : str
        Interface our listener binds to: loopback when the peer is on loopback, else all.
    """

    ae_title: str
    host: str
    port: int
    calling_ae_title: str = DEFAULT_AE_TITLE
    listen_port: int | None = None
    listen_address: str = ""

    @property
    def display(self) -> str:
        """Text form for logs and messages."""
        return f"dimse://{self.ae_title}@{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True when the peer is on this host's loopback interface."""
        return _is_loopback(self.host)


Peer = DicomWebPeer | DimsePeer


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_ae_title(value: str, what: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ConfigError(
            f"{what} {value!r} is not a DICOM AE title: expected 1 to 16 printable characters "
            "without backslash, not only spaces. Potential fix: e.g. BONELESION."
        )
    return value.strip()


def _check_port(value: int, what: str) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{what} {value} is not a TCP port (1-65535). Potential fix: e.g. 11112.")
    return value


def parse_source(
    source: str,
    *,
    ae_title: str = DEFAULT_AE_TITLE,
    port: int | None = None,
    listen_address: str | None = None,
    credentials_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Peer:
    """Parse ``SOURCE`` (or ``DEST``) into a peer.

    Parameters
    ----------
    source : str
        ``http(s)://host[:port]/path`` (DICOMweb) or ``dimse://AET@host:port``.
    ae_title : str
        Our calling AE title (DIMSE only).
    port : int, optional
        Port of our storage listener for C-MOVE (DIMSE only); None uses C-GET.
    listen_address : str, optional
        Interface of that listener; default loopback for a peer on loopback, else all.
    credentials_file : path, optional
        DICOMweb credentials file (see module docstring); default
        ``$BONELESION_DICOMWEB_CREDENTIALS``.
    environ : mapping, optional
        Environment to read (default ``os.environ``).

    Raises
    ------
    ConfigError
        An unknown scheme, a malformed AE title, host or port, credentials written into
        the URL, or an unreadable or ambiguous credentials source.
    """
    env = os.environ if environ is None else environ
    text = source.strip()
    if text.lower().startswith(("http://", "https://")):
        parts = urlsplit(text)
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"SOURCE {urlunsplit(parts._replace(netloc=parts.hostname or ''))}: holds a "
                "user name or password in the URL; anything on the command line is visible to "
                f"other users. Potential fix: remove it and set ${ENV_USER}/${ENV_PASSWORD}, "
                f"${ENV_TOKEN}, or a credentials file (${ENV_CREDENTIALS_FILE})."
            )
        if not parts.hostname:
            raise ConfigError(f"SOURCE {text!r}: no host. Potential fix: http://host:8042/dicom-web.")
        if parts.query or parts.fragment:
            raise ConfigError(
                f"SOURCE {parts.scheme}://{parts.netloc}{parts.path}: a DICOMweb base URL has no "
                "query or fragment (tokens in URLs end up in server logs). Potential fix: drop "
                f"everything from '?' and give a token through ${ENV_TOKEN}."
            )
        try:
            _ = parts.port
        except ValueError as exc:
            raise ConfigError(f"SOURCE {text!r}: {exc}. Potential fix: a port 1-65535.") from exc
        url = urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))
        return DicomWebPeer(url=url, credentials=load_credentials(credentials_file, environ=env))
    match = _DIMSE.match(text)
    if match is None:
        raise ConfigError(
            f"SOURCE {text!r}: not a DICOMweb URL nor a DIMSE peer. Potential fix: "
            "http://host:8042/dicom-web or dimse://ORTHANC@host:4242."
        )
    host = match["host"].strip("[]")
    peer_port = _check_port(int(match["port"]), "SOURCE port")
    calling = _check_ae_title(ae_title, "--ae-title")
    if port is not None:
        _check_port(port, "--port")
    address = listen_address if listen_address is not None else (
        "127.0.0.1" if _is_loopback(host) else "")
    return DimsePeer(
        ae_title=_check_ae_title(match["aet"], "SOURCE AE title"),
        host=host,
        port=peer_port,
        calling_ae_title=calling,
        listen_port=port,
        listen_address=address,
    )


def load_credentials(
    credentials_file: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """DICOMweb credentials from a file or the environment (module docstring), or None.

    Raises
    ------
    ConfigError
        Unreadable or malformed file; a token and a user/password given together; a user
        without a password.
    """
    env = os.environ if environ is None else environ
    path = credentials_file if credentials_file is not None else env.get(ENV_CREDENTIALS_FILE)
    if path:
        return _credentials_from_file(Path(path))
    token = env.get(ENV_TOKEN, "")
    user = env.get(ENV_USER, "")
    password = env.get(ENV_PASSWORD, "")
    if token and (user or password):
        raise ConfigError(
            f"DICOMweb credentials: both ${ENV_TOKEN} and ${ENV_USER}/${ENV_PASSWORD} are "
            "set; which one is meant is unclear. Potential fix: unset one of them."
        )
    if token:
        return Credentials(kind=AuthKind.BEARER, secret=token, origin=f"${ENV_TOKEN}")
    if user or password:
        if not (user and password):
            raise ConfigError(
                f"DICOMweb credentials: ${ENV_USER} and ${ENV_PASSWORD} go together; only one "
                "is set. Potential fix: set both, or neither."
            )
        return Credentials(kind=AuthKind.BASIC, secret=password, user=user,
                           origin=f"${ENV_USER}/${ENV_PASSWORD}")
    return None


def _credentials_from_file(path: Path) -> Credentials:
    where = f"DICOMweb credentials file {path}"
    try:
        mode = path.stat().st_mode
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot be read ({exc.strerror}). Potential fix: check the path and that "
            "this user may read it."
        ) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}: not JSON (line {exc.lineno}). Potential fix: write "
            '{"token": "…"} or {"user": "…", "password": "…"}.'
        ) from None  # the decoder's message may quote the secret
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("%s can be read by other users; Potential fix: chmod 600 %s", where, path)
    if not isinstance(data, dict) or set(data) - {"token", "user", "password"}:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(
            f"{where}: expected an object with 'token', or 'user' and 'password'; found {keys}. "
            'Potential fix: {"token": "…"} or {"user": "…", "password": "…"}.'
        )
    values = {k: v for k, v in data.items() if isinstance(v, str) and v}
    if "token" in values and set(values) == {"token"}:
        return Credentials(kind=AuthKind.BEARER, secret=values["token"], origin=str(path))
    if set(values) == {"user", "password"}:
        return Credentials(kind=AuthKind.BASIC, secret=values["password"], user=values["user"],
                           origin=str(path))
    raise ConfigError(
        f"{where}: needs a non-empty 'token' alone, or both 'user' and 'password' (found keys "
        f"{sorted(data)}). Potential fix: fix the file."
    )


def parse_since(value: str, *, today: dt.date | None = None) -> dt.date:
    """``--since``: ``YYYY-MM-DD``, ``YYYYMMDD``, or ``Nd`` (N days before today).

    Examples
    --------
    >>> parse_since("2026-01-31"), parse_since("20260131")
    (datetime.date(2026, 1, 31), datetime.date(2026, 1, 31))
    >>> parse_since("2d", today=dt.date(2026, 3, 1))
    datetime.date(2026, 2, 27)

    Raises
    ------
    ConfigError
        Any other text.
    """
    text = value.strip()
    rel = _RELATIVE_DAYS.match(text)
    if rel:
        return (today or dt.date.today()) - dt.timedelta(days=int(rel["n"]))
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ConfigError(
        f"--since {value!r}: expected a date YYYY-MM-DD or YYYYMMDD, or Nd for the last N days. "
        "Potential fix: --since 2026-01-31 or --since 2d."
    )
