"""Discovery: the one walk over an export's folders, for the catalogue and the reader.

`walk_export` lists every entry under a folder, and `discover_files` the DICOM-looking files
under folders and files given by the user. Both the catalogue (`bonelesion.dicom.index`)
and the series reader (`bonelesion.dicom.series.load_series`, hence ``convert``) walk
through `walk_export`, so they see the same files:

* **iterative** (an explicit stack, no recursion limit: any folder depth);
* **symbolic links are followed**, real folders first and folder links afterwards, with the
  (device, inode) of every folder entered remembered: a file reachable both ways is found
  under its real path, and a link loop or a second path to a folder is reported, not
  followed; a broken link is reported;
* **only regular files are returned**: FIFOs (named pipes), sockets and devices are
  reported with a reason and never opened (opening a named pipe blocks forever);
* **file names that are not valid UTF-8** are carried as Python does
  (``surrogateescape``): they open as they are, and `bonelesion.dicom.catalogue.store`
  stores them reversibly;
* entries come back sorted by relative path (``/`` separators).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from bonelesion.dicom.structure import VR_BYTES
from bonelesion.errors import InputError

__all__ = [
    "EntryProblem",
    "ProblemKind",
    "WalkResult",
    "walk_export",
    "SkippedFile",
    "Discovery",
    "discover_files",
    "sniff_dicom",
]


class ProblemKind(str, Enum):
    """Why a walked entry is not a file to read."""

    NOT_REGULAR = "not_regular"
    """A FIFO, socket or device: never opened."""
    UNREADABLE = "unreadable"
    """A broken link, a link loop, an entry or folder that cannot be examined."""


@dataclass(frozen=True)
class EntryProblem:
    """An entry the walk did not return as a file, and why."""

    rel: str
    kind: ProblemKind
    reason: str


@dataclass
class WalkResult:
    """Regular files ``(relative path, size in bytes, mtime in ns)`` and problem entries."""

    files: list[tuple[str, int, int]] = field(default_factory=list)
    problems: list[EntryProblem] = field(default_factory=list)
    #: Relative paths of folders that could not be listed ("" for the root itself).
    unlisted_dirs: list[str] = field(default_factory=list)


def walk_export(root: str | os.PathLike[str], *, skip: Iterable[str] = ()) -> WalkResult:
    """List every entry under ``root``, following folder links but never in a loop.

    Parameters
    ----------
    root : path
        A folder.
    skip : iterable of str
        Relative paths to leave out (e.g. the catalogue's own files).

    Returns
    -------
    WalkResult
        Regular files and problem entries, each sorted by relative path.
    """
    skipped = set(skip)
    out = WalkResult()
    visited: set[tuple[int, int]] = set()
    folders: list[tuple[str, str]] = [(os.fspath(root), "")]
    links: list[tuple[str, str, str]] = []  # (path, relative path, link target)
    while folders or links:
        if folders:
            folder, rel_folder = folders.pop()
        else:
            folder, rel_folder, target = links.pop(0)
            try:
                st = os.stat(folder)
            except OSError as exc:
                out.problems.append(EntryProblem(
                    rel_folder, ProblemKind.UNREADABLE,
                    f"Folder link to {target} cannot be followed: {exc.strerror or exc}."))
                continue
            if (st.st_dev, st.st_ino) in visited:
                out.problems.append(EntryProblem(
                    rel_folder, ProblemKind.UNREADABLE,
                    f"Folder link to {target} leads to a folder already indexed (a link loop "
                    "or a second path to the same folder); not followed."))
                continue
        try:
            st = os.stat(folder)
            visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.unlisted_dirs.append(rel_folder)
            out.problems.append(EntryProblem(
                rel_folder or ".", ProblemKind.UNREADABLE,
                f"Folder cannot be listed: {exc.strerror or exc}; its files are not indexed "
                "(entries from earlier runs are kept). Potential fix: check folder "
                "permissions."))
            continue
        for entry in reversed(entries):  # a stack: popped in name order
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            if rel in skipped:
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    if entry.is_symlink():
                        links.append((entry.path, rel, os.readlink(entry.path)))
                    else:
                        folders.append((entry.path, rel))
                    continue
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                target = os.readlink(entry.path) if entry.is_symlink() else "?"
                out.problems.append(EntryProblem(
                    rel, ProblemKind.UNREADABLE,
                    f"Broken symbolic link to {target}: the target does not exist. "
                    "Potential fix: restore the target or remove the link."))
                continue
            except OSError as exc:
                out.problems.append(EntryProblem(
                    rel, ProblemKind.UNREADABLE,
                    f"Entry cannot be examined: {exc.strerror or exc}. Potential fix: check "
                    "permissions (or a loop of file links)."))
                continue
            if stat.S_ISREG(st.st_mode):
                out.files.append((rel, st.st_size, st.st_mtime_ns))
            else:
                out.problems.append(EntryProblem(
                    rel, ProblemKind.NOT_REGULAR,
                    f"Not a regular file ({_kind_of(st.st_mode)}); not read."))
    out.files.sort()
    out.problems.sort(key=lambda p: p.rel)
    return out


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "device, socket or pipe"


# ------------------------------------------------------------------- reader discovery
@dataclass(frozen=True)
class SkippedFile:
    """A file that discovery did not use, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """Files found under the input path(s)."""

    files: tuple[Path, ...]
    skipped: tuple[SkippedFile, ...]
    has_preamble: tuple[bool, ...] = ()


def sniff_dicom(path: str | os.PathLike[str]) -> tuple[bool, bool, str]:
    """Return (is_dicom, has_preamble, reason) from the first bytes of a regular file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(140)
    except OSError as exc:
        return False, False, f"cannot be read ({exc.strerror})"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True, True, ""
    if len(head) < 8:
        return False, False, "too short to be DICOM"
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group in (0x0002, 0x0008) and element < 0x0200:
        if head[4:6] in VR_BYTES:
            return True, False, ""
        length = int.from_bytes(head[4:8], "little")
        if length < 1024:  # implicit VR: a short first element (e.g. group length, UID)
            return True, False, ""
    return False, False, "not DICOM (no 'DICM' prefix and no plausible data set start)"


def discover_files(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                   ) -> Discovery:
    """Find the DICOM files under a folder (recursively), a file, or a list of both.

    Folders are walked by `walk_export` (links followed without loops, only regular files
    opened); a file given by name must be a regular file too (a named pipe is skipped with
    its reason, never opened).

    Parameters
    ----------
    source : path or iterable of paths

    Returns
    -------
    Discovery
        DICOM-looking files (each folder's files sorted by relative path) and the skipped
        entries with a reason.

    Raises
    ------
    InputError
        If a given path does not exist.
    """
    paths = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    candidates: list[Path] = []
    skipped: list[SkippedFile] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            raise InputError(
                f"Input path {p} does not exist (expected a DICOM file or folder). "
                "Potential fix: check the path and the mount."
            ) from None
        if stat.S_ISDIR(st.st_mode):
            walk = walk_export(p)
            candidates.extend(p / rel for rel, _, _ in walk.files)
            skipped.extend(SkippedFile(str(p / e.rel), e.reason) for e in walk.problems)
        elif stat.S_ISREG(st.st_mode):
            candidates.append(p)
        else:
            skipped.append(SkippedFile(str(p), f"Not a regular file ({_kind_of(st.st_mode)}); "
                                                "not read."))
    files: list[Path] = []
    preambles: list[bool] = []
    for path in candidates:
        if path.name.upper() == "DICOMDIR":
            skipped.append(SkippedFile(str(path), "DICOMDIR media directory, not an image"))
            continue
        ok, preamble, reason = sniff_dicom(path)
        if ok:
            files.append(path)
            preambles.append(preamble)
        else:
            skipped.append(SkippedFile(str(path), reason))
    return Discovery(files=tuple(files), skipped=tuple(skipped), has_preamble=tuple(preambles))
