"""Safe output names from DICOM values, and keyed pseudonyms for patient identifiers.

DICOM values (PatientID, SeriesDescription …) are written by scanners and people; they can
hold ``../``, ``/``, drive letters, control characters, reserved device names or thousands
of characters. `safe_component` turns any such value into one path component that cannot
leave its parent folder, and appends a short hash of the original so two different values
never collide after cleaning.

`Pseudonymiser` replaces patient identifiers with a stable keyed hash (HMAC-SHA256). The key
comes from the environment variable ``BONELESION_PSEUDONYM_KEY`` or from the file named by
``BONELESION_PSEUDONYM_KEY_FILE`` (or ``--pseudonym-key-file``); the same key gives the same
pseudonym on every run and machine, and without the key the mapping cannot be reversed or
recomputed from a guessed ID.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from pathlib import Path

from bonelesion.errors import ConfigError, InputError

__all__ = [
    "safe_component",
    "safe_join",
    "Pseudonymiser",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "MAX_COMPONENT_CHARS",
]

KEY_ENV = "BONELESION_PSEUDONYM_KEY"
KEY_FILE_ENV = "BONELESION_PSEUDONYM_KEY_FILE"
#: Longest component we write (well under the 255-byte limit of common file systems).
MAX_COMPONENT_CHARS = 64
#: Hex digits of the hash suffix: 10 hex = 40 bits, collisions negligible per export.
_HASH_HEX = 10
_MIN_KEY_BYTES = 16
_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}


def safe_component(
    value: str, *, fallback: str = "unnamed", max_chars: int = MAX_COMPONENT_CHARS
) -> str:
    """One safe path component for an arbitrary (DICOM) string.

    Keeps ASCII letters, digits, ``.``, ``-`` and ``_``; everything else becomes ``_``;
    leading dots are removed (no ``..``, no hidden files); the result is cut to
    ``max_chars`` and always ends with ``-<hash>`` of the original value, so distinct
    values stay distinct.

    Examples
    --------
    >>> safe_component("../../etc/passwd").startswith("etc_passwd-")
    True
    >>> safe_component("ABC") == safe_component("ABC")
    True
    """
    text = "" if value is None else str(value)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text)
    cleaned = re.sub(r"_+", "_", cleaned).strip("._- ")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    if not cleaned or cleaned.upper().split(".")[0] in _WINDOWS_RESERVED:
        cleaned = f"{fallback}_{cleaned}" if cleaned else fallback
    room = max(1, max_chars - _HASH_HEX - 1)
    return f"{cleaned[:room].rstrip('._-') or fallback}-{digest}"


def safe_join(root: str | Path, *components: str) -> Path:
    """``root`` joined with `safe_component` of each value, checked to stay under ``root``.

    Raises
    ------
    InputError
        If the result would leave ``root`` (cannot happen with `safe_component`; the check
        guards against future changes).
    """
    root_path = Path(root).resolve()
    path = root_path.joinpath(*(safe_component(c) for c in components))
    resolved = path.resolve()
    if root_path != resolved and root_path not in resolved.parents:
        raise InputError(
            f"Output path {resolved} is outside the output folder {root_path}. "
            "Potential fix: report this as a bug; output names are built from DICOM values."
        )
    return path


class Pseudonymiser:
    """Stable keyed pseudonyms (HMAC-SHA256) for patient identifiers.

    Parameters
    ----------
    key : bytes
        The secret key, at least 16 bytes.

    Examples
    --------
    >>> p = Pseudonymiser(b"0123456789abcdef-secret")
    >>> p("PAT-001") == p("PAT-001"), p("PAT-001") != p("PAT-002")
    (True, True)
    >>> p("PAT-001")[:4]
    'PSN-'
    """

    PREFIX = "PSN-"

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ConfigError(
                f"Pseudonym key: too short ({len(key)} bytes, need ≥ {_MIN_KEY_BYTES}). "
                "Potential fix: generate one with `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`."
            )
        self._key = key

    @classmethod
    def from_environment(cls, key_file: str | Path | None = None) -> Pseudonymiser:
        """Read the key from ``key_file``, ``$BONELESION_PSEUDONYM_KEY_FILE`` or ``$..._KEY``.

        The first one set wins: the file argument, the file named by the variable, then the
        key itself in ``$BONELESION_PSEUDONYM_KEY``.

        Raises
        ------
        ConfigError
            When no key is configured, the key file cannot be read, or the key is too short.
        """
        file_name = str(key_file) if key_file else os.environ.get(KEY_FILE_ENV, "")
        if file_name:
            try:
                key = Path(file_name).read_bytes().strip()
            except OSError as exc:
                raise ConfigError(
                    f"Pseudonym key file {file_name} cannot be read ({exc.strerror}). "
                    "Potential fix: check the path and its permissions."
                ) from exc
            return cls(key)
        env_key = os.environ.get(KEY_ENV, "")
        if env_key:
            return cls(env_key.encode())
        raise ConfigError(
            f"--pseudonymise needs a key: none in ${KEY_ENV}, ${KEY_FILE_ENV} or "
            "--pseudonym-key-file. "
            f"Potential fix: export {KEY_ENV}=<secret of ≥ {_MIN_KEY_BYTES} characters> "
            "and keep it "
            "safe; the same key gives the same pseudonyms."
        )

    def __call__(self, value: str) -> str:
        """Pseudonym of ``value`` ("" stays "")."""
        if not value:
            return ""
        mac = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{self.PREFIX}{mac[:20]}"

    def __repr__(self) -> str:
        return "Pseudonymiser(key=<hidden>)"
