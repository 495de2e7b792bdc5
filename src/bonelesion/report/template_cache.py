"""A per-user cache of the report templates as Jinja2 compiled them.

Compiling ``study.html.j2`` costs ~30-70 ms of every process that writes a report.html
(``measure``, ``run``); loading its compiled code back costs ~1 ms. The cache is Jinja2's own
`jinja2.FileSystemBytecodeCache` in a directory of the user's cache home, never in the
installed package (which may be read-only, or shared by users):
``$XDG_CACHE_HOME/bonelesion/templates/<key>`` (``~/.cache`` when ``XDG_CACHE_HOME`` is unset).

Invalidation
    Each cached template carries the SHA-1 of the template source it was compiled from and
    the Python minor version (Jinja2 checks both at load), so an edited or upgraded template
    is compiled again. ``<key>`` digests Jinja2's version, the interpreter's bytecode tag and
    the environment options that shape the compiled code, so another Jinja2 or other options
    never read code compiled for the previous ones.
Sharing
    Two processes may fill the cache at once: each writes a temporary file and renames it
    into place, so a reader sees a whole file or none.
Failure
    The cache only saves time: a directory that cannot be created, that is not the user's own
    or is writable by others, a file that cannot be written or read, or a damaged file, means
    the template is compiled as without a cache (logged at debug level).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache

__all__ = ["template_cache_dir", "TemplateCache", "bytecode_cache"]

logger = logging.getLogger(__name__)


def _cache_home() -> Path | None:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative value is ignored
        return Path(xdg)
    try:
        return Path.home() / ".cache"
    except RuntimeError:  # no home directory to resolve
        return None


def _private_directory(path: Path) -> bool:
    """Create `path` (owner-only); True when it is a directory of this user's alone."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        logger.debug("template cache %s not usable: %s", path, exc)
        return False
    getuid = getattr(os, "getuid", None)
    if (not stat.S_ISDIR(info.st_mode) or (getuid is not None and info.st_uid != getuid())
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        logger.debug("template cache %s not used: not a directory of this user's alone", path)
        return False
    return True


def template_cache_dir(options: Mapping[str, Any]) -> Path | None:
    """Return the cache directory of templates compiled with `options` (None: unusable).

    Parameters
    ----------
    options : mapping
        The keyword arguments the `jinja2.Environment` is made with (values are keyed by
        their ``repr``; classes by their qualified name).
    """
    home = _cache_home()
    if home is None:
        return None
    shown = {k: (f"{v.__module__}.{v.__qualname__}" if isinstance(v, type) else repr(v))
             for k, v in sorted(options.items())}
    key = hashlib.sha256(repr((jinja2.__version__, jinja2.bccache.bc_version,
                               sys.implementation.cache_tag, shown)).encode()).hexdigest()[:16]
    path = home / "bonelesion" / "templates" / key
    return path if _private_directory(path) else None


class TemplateCache(jinja2.FileSystemBytecodeCache):
    """Jinja2's file-system bytecode cache whose failures only cost the time of a compile."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        """Read the bucket's code; a file that cannot be read or is damaged reads as none."""
        try:
            super().load_bytecode(bucket)
        except Exception as exc:  # unreadable or damaged (the checksum is a pickle): no code
            logger.debug("compiled template %s not read: %s", bucket.key, exc)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        """Write the bucket's code atomically; a cache that cannot be written is skipped."""
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:
            logger.debug("compiled template %s not cached: %s", bucket.key, exc)


def bytecode_cache(options: Mapping[str, Any]) -> TemplateCache | None:
    """Return the compiled-template cache of an environment made with `options` (or None)."""
    path = template_cache_dir(options)
    return None if path is None else TemplateCache(str(path))
