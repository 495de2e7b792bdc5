"""Headers the index parsed, kept for the load that follows (each header parsed once a run).

A run that indexes an export and then loads some of its series (``bonelesion measure``,
the batch's per-study path) would otherwise parse every header twice: once for the
catalogue (`bonelesion.dicom.catalogue.read`), once for the volume
(`bonelesion.dicom.series.load_series`). When the index reads files in this process
(`bonelesion.dicom.index.index_export`, small exports), it keeps each readable header here;
`bonelesion.dicom.header.read_file_header` (``reuse=True``, the series reader) *takes* it
back instead of parsing the file again.

A kept header is handed back only for the same path string and the same file (device,
inode, size and modification time in ns, as the index's own re-read rule): a file changed
or replaced since is parsed again. It is taken once (the load owns it afterwards), and the
store is bounded (`MAX_KEPT_HEADERS` headers, `MAX_KEPT_BYTES` header bytes; the oldest go
first), so an index without a load holds little memory. Only headers whose file the index
found usable (status ``ok``) and whose UIDs it did not have to substitute are kept: the
load then sees exactly what a fresh parse gives (tests/dicom/test_kept_headers.py).
"""

from __future__ import annotations

import os
import threading

from bonelesion.dicom.fastheader import HeaderRead

__all__ = ["MAX_KEPT_HEADERS", "MAX_KEPT_BYTES", "keep", "take", "clear", "n_kept"]

#: At most this many headers are kept (the oldest are dropped first).
MAX_KEPT_HEADERS = 1024
#: At most this many header bytes (up to the pixel data) are kept.
MAX_KEPT_BYTES = 32 * 1024 * 1024

_FileId = tuple[int, int, int, int]
_kept: dict[str, tuple[_FileId, HeaderRead, int]] = {}
_kept_bytes = 0
_lock = threading.Lock()


def _file_id(st: os.stat_result) -> _FileId:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def keep(path: str, st: os.stat_result, header: HeaderRead) -> None:
    """Keep the parsed ``header`` of ``path`` (whose ``os.stat`` is ``st``) for the load."""
    global _kept_bytes
    size = header.pixel_data_offset or st.st_size
    if size > MAX_KEPT_BYTES:
        return
    with _lock:
        old = _kept.pop(path, None)
        if old is not None:
            _kept_bytes -= old[2]
        _kept[path] = (_file_id(st), header, size)
        _kept_bytes += size
        while len(_kept) > MAX_KEPT_HEADERS or _kept_bytes > MAX_KEPT_BYTES:
            _kept_bytes -= _kept.pop(next(iter(_kept)))[2]  # the oldest first


def take(path: str, st: os.stat_result) -> HeaderRead | None:
    """Take the header kept for ``path`` if the file is unchanged since (it leaves the store).

    Parameters
    ----------
    path : str
        The file, spelled as the index spelled it (root joined with the relative path).
    st : os.stat_result
        Its ``os.stat`` now.

    Returns
    -------
    HeaderRead or None
        None when nothing is kept for it or the file changed.
    """
    global _kept_bytes
    if not _kept:
        return None
    with _lock:
        found = _kept.pop(path, None)
        if found is None:
            return None
        _kept_bytes -= found[2]
    file_id, header, _ = found
    return header if file_id == _file_id(st) else None


def clear() -> None:
    """Drop every kept header."""
    global _kept_bytes
    with _lock:
        _kept.clear()
        _kept_bytes = 0


def n_kept() -> int:
    """Return the number of headers kept now."""
    return len(_kept)
