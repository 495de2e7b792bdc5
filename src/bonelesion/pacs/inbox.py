"""The inbox: retrieved studies, each complete or absent, one folder per study.

A retrieval writes into a *staging* folder outside the inbox (`Inbox.staging`); each file is
written under a temporary name, flushed to disk and renamed to ``<SOPInstanceUID>.dcm``.
Only when every expected instance is there does `Inbox.commit` move the staging folder into
``<inbox>/<study>/`` (a rename; an older copy of the study is renamed away first and then
deleted). A partial retrieval is never visible in the inbox, so it is never measured; a
process killed meanwhile leaves a staging folder that the next pass deletes.

The files in ``<inbox>/<study>/`` are named by their SOP Instance UID, so the folder itself
tells which instances it holds (`Inbox.instances`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from bonelesion.batch.names import safe_component
from bonelesion.pacs.errors import RetrievalError

__all__ = ["Inbox", "Staging", "instance_file_name"]

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SUFFIX = ".dcm"


def instance_file_name(sop_instance_uid: str) -> str:
    """File name of one instance: ``<SOPInstanceUID>.dcm`` (a safe name for odd UIDs)."""
    if _UID.match(sop_instance_uid) and len(sop_instance_uid) <= 64:
        return sop_instance_uid + _SUFFIX
    return safe_component(sop_instance_uid, fallback="instance") + _SUFFIX


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on every platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Staging:
    """A study being retrieved: files land here, one by one, from any thread.

    Parameters
    ----------
    path : Path
        The staging folder (created by `Inbox.staging`).
    study_instance_uid : str
        The study; an instance of another study is refused.
    ignore : iterable of str
        SOP Instance UIDs to drop if they arrive (our own pushed objects).
    """

    def __init__(self, path: Path, study_instance_uid: str, *, ignore: Iterable[str] = ()) -> None:
        self.path = path
        self.study_instance_uid = study_instance_uid
        self._ignore = frozenset(ignore)
        self._lock = threading.Lock()
        self._sops: set[str] = set()
        self.dropped = 0

    @property
    def sop_instance_uids(self) -> frozenset[str]:
        """SOP Instance UIDs written so far."""
        with self._lock:
            return frozenset(self._sops)

    def _check(self, sop_uid: str, study_uid: str) -> bool:
        if study_uid != self.study_instance_uid:
            raise RetrievalError(
                f"Study {self.study_instance_uid}: the PACS sent instance {sop_uid} of another "
                f"study ({study_uid}). Potential fix: check the PACS's query/retrieve answers."
            )
        if sop_uid in self._ignore:
            with self._lock:
                self.dropped += 1
            return False
        return True

    def add_bytes(self, sop_instance_uid: str, study_instance_uid: str, data: bytes) -> None:
        """Write one encoded Part 10 file (as a DIMSE storage handler receives it)."""
        if not self._check(sop_instance_uid, study_instance_uid):
            return
        final = self.path / instance_file_name(sop_instance_uid)
        tmp = self.path / f".{uuid.uuid4().hex}.part"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(final)
        with self._lock:
            self._sops.add(sop_instance_uid)

    def add_dataset(self, ds: Dataset) -> None:
        """Write one data set with its file meta information (as WADO-RS returns it)."""
        sop = str(ds.get("SOPInstanceUID", ""))
        if not self._check(sop, str(ds.get("StudyInstanceUID", ""))):
            return
        final = self.path / instance_file_name(sop)
        tmp = self.path / f".{uuid.uuid4().hex}.part"
        with open(tmp, "wb") as fh:
            dcmwrite(fh, ds, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(final)
        with self._lock:
            self._sops.add(sop)

    def link_from(self, folder: Path, sop_instance_uids: Iterable[str]) -> int:
        """Hard-link (or copy) already retrieved instances from ``folder``; return how many."""
        n = 0
        for sop in sop_instance_uids:
            name = instance_file_name(sop)
            src, dst = folder / name, self.path / name
            try:
                os.link(src, dst)
            except FileExistsError:
                pass
            except OSError:
                shutil.copy2(src, dst)
            with self._lock:
                self._sops.add(sop)
            n += 1
        return n


class Inbox:
    """Folders of complete studies under ``root``; staging under ``staging_root``.

    ``staging_root`` must be outside ``root`` (so an index of the inbox never sees a partial
    study) and on the same filesystem (so a commit is a rename).
    """

    def __init__(self, root: str | Path, staging_root: str | Path) -> None:
        self.root = Path(root)
        self.staging_root = Path(staging_root)

    def study_dir(self, study_instance_uid: str) -> Path:
        """Folder of one study (it may not exist)."""
        return self.root / safe_component(study_instance_uid, fallback="study")

    def instances(self, study_instance_uid: str) -> frozenset[str]:
        """SOP Instance UIDs of the study's committed files (empty when absent)."""
        folder = self.study_dir(study_instance_uid)
        if not folder.is_dir():
            return frozenset()
        return frozenset(p.name[: -len(_SUFFIX)] for p in folder.iterdir()
                         if p.name.endswith(_SUFFIX) and not p.name.startswith("."))

    def clean_staging(self) -> int:
        """Delete staging folders left by a killed process; return how many."""
        if not self.staging_root.is_dir():
            return 0
        n = 0
        for leftover in self.staging_root.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
            n += 1
        if n:
            logger.info("removed %d partial retrieval(s) left by an interrupted run", n)
        return n

    def staging(self, study_instance_uid: str, *, ignore: Iterable[str] = ()) -> Staging:
        """Create a new, empty staging folder for one study."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        path = self.staging_root / (
            f"{safe_component(study_instance_uid, fallback='study')}-{uuid.uuid4().hex[:8]}")
        path.mkdir()
        return Staging(path, study_instance_uid, ignore=ignore)

    def discard(self, staging: Staging) -> None:
        """Delete a staging folder (a failed or abandoned retrieval)."""
        shutil.rmtree(staging.path, ignore_errors=True)

    def commit(self, staging: Staging) -> Path:
        """Make a complete staging folder the study's inbox folder (each step a rename)."""
        final = self.study_dir(staging.study_instance_uid)
        final.parent.mkdir(parents=True, exist_ok=True)
        _fsync_dir(staging.path)
        if final.exists():
            trash = self.staging_root / f"old-{uuid.uuid4().hex}"
            final.rename(trash)
            staging.path.rename(final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.path.rename(final)
        _fsync_dir(final.parent)
        return final
