"""A helper process beside a run's main process: each study's labelling, on the other core.

It also hashes the study's source files while the main process reads its series.

Why a process: the labelling (scipy.ndimage, mostly holding the GIL) and the main thread's
measuring, hashing and report preparation (Python) each hold the GIL; on two threads they
take turns on one core. A process forked at the start of the run works on the other core,
and imports scipy.ndimage and the labelling modules while the main process indexes the
export, so neither import nor labelling waits for the main thread.

Nothing large is copied to it: the main process reads the study's volumes into shared memory
(`SideProcess.shared_array`, a Linux ``memfd``, passed as a file descriptor) and the helper
maps them read-only, so a labelling that tried to write into the CT would fail rather than
change it. The result comes back pickled; a reference in it to one of the call's arguments
(the CT `Volume` the labelling keeps) comes back as the caller's own object.

A call the helper cannot answer (it died, or its result or error cannot be pickled) raises
`SideProcessLost`; the caller then computes in its own process, so the run's outcome never
depends on the helper, only its speed does. Warnings the function raised are raised again
in the caller, where the study records them.

`start` returns None (the caller uses a thread) off Linux, without ``memfd_create`` or file
descriptor passing, and when the process runs other threads: forking a process while
another thread holds a lock can deadlock the child.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import io
import logging
import mmap
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SideProcess", "SideProcessLost", "PendingCall", "started", "current",
           "call_waiting"]

logger = logging.getLogger(__name__)

#: Message header: payload length and number of file descriptors sent with it.
_HEADER = struct.Struct("<QI")
_MAX_FDS = 64
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class SideProcessLost(Exception):
    """The helper process did not answer a call (the caller computes it itself)."""


def _root_buffer(array: NDArray[Any]) -> Any:
    """Return the object that owns ``array``'s memory (a memoryview's, through it)."""
    base: Any = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


class _ArgsPickler(pickle.Pickler):
    """Pickles a call; arrays in the run's shared memory go as references to their fd."""

    def __init__(self, file: io.BytesIO, side: SideProcess) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.side = side
        self.fds: list[int] = []

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, np.ndarray):
            return None
        root = _root_buffer(obj)
        fd = self.side._shared_fds.get(id(root)) if isinstance(root, mmap.mmap) else None
        if fd is None:
            return None
        start = np.frombuffer(root, dtype=np.uint8, count=0).__array_interface__["data"][0]
        offset = obj.__array_interface__["data"][0] - start
        if fd not in self.fds:
            self.fds.append(fd)
        return ("shared", self.fds.index(fd), offset, obj.shape, obj.dtype.str, obj.strides)


class _ArgsUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes | bytearray, maps: Sequence[mmap.mmap]) -> None:
        super().__init__(io.BytesIO(data))
        self.maps = maps

    def persistent_load(self, pid: Any) -> Any:
        _, index, offset, shape, dtype, strides = pid
        return np.ndarray(shape, dtype=np.dtype(dtype), buffer=self.maps[index], offset=offset,
                          strides=strides)


class _ResultPickler(pickle.Pickler):
    """Pickles a result; the call's own arguments go as references to the caller's.

    Large contiguous arrays go out of band (``buffers``): `_answer` puts them in one shared
    file the caller maps, instead of two copies through the socket.
    """

    def __init__(self, file: io.BytesIO, args: Sequence[Any],
                 buffers: list[pickle.PickleBuffer]) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self.args = {id(a): k for k, a in enumerate(args)}

    def persistent_id(self, obj: Any) -> Any:
        k = self.args.get(id(obj))
        return None if k is None else ("argument", k)


class _ResultUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes | bytearray, args: Sequence[Any],
                 buffers: Sequence[memoryview]) -> None:
        super().__init__(io.BytesIO(data), buffers=buffers)
        self.args = args

    def persistent_load(self, pid: Any) -> Any:
        return self.args[pid[1]]


def _buffers_file(buffers: Sequence[pickle.PickleBuffer]) -> tuple[int | None, list[int]]:
    """Copy ``buffers`` into a new shared file; return its descriptor and their sizes."""
    sizes = [b.raw().nbytes for b in buffers]
    total = sum(sizes)
    if not total:
        return None, sizes
    fd = os.memfd_create("bonelesion-result", os.MFD_CLOEXEC)
    os.ftruncate(fd, total)
    with mmap.mmap(fd, total, flags=mmap.MAP_SHARED | _POPULATE) as out:
        at = 0
        for b, n in zip(buffers, sizes, strict=True):
            out[at:at + n] = b.raw()
            at += n
    return fd, sizes


def _mapped_buffers(fd: int, sizes: Sequence[int]) -> list[memoryview]:
    """Map the buffers `_buffers_file` wrote, copy-on-write (the arrays stay writable)."""
    try:
        # not populated: that would copy every page now (private, writable); pages are
        # mapped as they are read, copied only if written
        mapping = mmap.mmap(fd, sum(sizes), flags=mmap.MAP_PRIVATE,
                            prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    whole = memoryview(mapping)
    views, at = [], 0
    for n in sizes:
        views.append(whole[at:at + n])
        at += n
    return views


def _send(sock: socket.socket, payload: bytes, fds: Sequence[int] = ()) -> None:
    socket.send_fds(sock, [_HEADER.pack(len(payload), len(fds))], list(fds))
    sock.sendall(payload)


def _receive(sock: socket.socket) -> tuple[bytearray, list[int]] | None:
    """One message and its file descriptors; None at the end of the stream."""
    head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, _MAX_FDS)
    if not head:
        return None
    while len(head) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(head))
        if not more:
            raise EOFError("the stream ended inside a message header")
        head += more
    length, n_fds = _HEADER.unpack(head)
    if len(fds) != n_fds:
        raise EOFError(f"{len(fds)} of {n_fds} file descriptors arrived")
    payload = bytearray(length)
    view = memoryview(payload)
    got = 0
    while got < length:
        n = sock.recv_into(view[got:])
        if not n:
            raise EOFError(f"the stream ended after {got} of {length} bytes")
        got += n
    return payload, fds


#: In the helper: its end of the socket (`call_waiting` looks at it).
_serving: socket.socket | None = None


def call_waiting() -> bool:
    """In the helper: True when another call waits behind the one running, else False.

    A function that only fills the helper's idle time (hashing files before the CT
    arrives) stops there and returns what it has; the caller does the rest. Outside the
    helper, always False.
    """
    if _serving is None:
        return False
    import select

    return bool(select.select([_serving], [], [], 0)[0])


def _serve(sock: socket.socket, modules: Sequence[str]) -> None:
    """Import ``modules``, then answer calls until the stream ends (the helper's life)."""
    global _serving
    _serving = sock
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for name in modules:
        with contextlib.suppress(Exception):  # a call that needs it fails with its message
            importlib.import_module(name)
    while True:
        message = _receive(sock)
        if message is None:
            return
        payload, fds = message
        maps = []
        for fd in fds:
            # mapped in one go: page by page, first touches cost ≈ 0.2 s per 150 MB
            maps.append(mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | _POPULATE,
                                  prot=mmap.PROT_READ))
            os.close(fd)
        answer, answer_fds = _answer(payload, maps)
        del maps  # the arrays of the call are gone; the mappings close with them
        try:
            _send(sock, answer, answer_fds)
        finally:
            for fd in answer_fds:
                os.close(fd)


def _answer(payload: bytearray, maps: Sequence[mmap.mmap]) -> tuple[bytes, list[int]]:
    """Run one pickled call; return its pickled ``(status, value, warnings)`` and fds.

    The message is ``(sizes, pickle)``: the pickle's out-of-band buffers are in the file
    sent with it, one after the other, of these sizes.
    """
    args: tuple[Any, ...] = ()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            target, args, kwargs = _ArgsUnpickler(payload, maps).load()
            module, _, name = target.partition(":")
            outcome: tuple[str, Any] = ("ok", getattr(importlib.import_module(module), name)(
                *args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - sent to the caller, which raises it
            outcome = ("error", exc)
    said = [(w.category, str(w.message)) for w in caught]
    buffer = io.BytesIO()
    buffers: list[pickle.PickleBuffer] = []
    try:
        _ResultPickler(buffer, args, buffers).dump((*outcome, said))
        fd, sizes = _buffers_file(buffers)
    except Exception as exc:  # noqa: BLE001 - the caller computes it itself
        buffer = io.BytesIO()
        pickle.dump(("lost", f"{type(exc).__name__}: {exc}", []), buffer)
        fd, sizes = None, []
    message = pickle.dumps((sizes, buffer.getvalue()))
    return message, [] if fd is None else [fd]


class PendingCall:
    """A call sent to the helper; `result` waits for its answer.

    The helper answers calls in the order they were sent; taking one answer first reads
    (and keeps) the answers of the calls sent before it.
    """

    def __init__(self, side: SideProcess, args: Sequence[Any]) -> None:
        self._side = side
        self._args = args
        self._answer: tuple[str, Any, list[Any]] | None = None
        self.collected = False

    def _take(self, message: tuple[bytearray, list[int]]) -> None:
        """Read this call's answer from its message."""
        payload, fds = message
        try:
            sizes, data = pickle.loads(payload)
            views = (_mapped_buffers(fds[0], sizes) if fds
                     else [memoryview(b"")] * len(sizes))
            self._answer = _ResultUnpickler(data, self._args, views).load()
        except Exception as exc:  # noqa: BLE001 - this answer only; the helper serves on
            self._answer = ("lost", f"{type(exc).__name__}: {exc}", [])

    def result(self) -> Any:
        """Return the function's value, or raise its exception.

        Raises
        ------
        SideProcessLost
            The helper died, or its answer could not be read: compute it here instead.
        """
        if self.collected:
            raise SideProcessLost("this call's answer was taken already")
        self.collected = True
        side = self._side
        while self._answer is None:
            if not side._sent or not side.usable:
                raise SideProcessLost("the helper process ended before answering")
            try:
                message = _receive(side._sock)
                if message is None:
                    raise EOFError("the helper process ended")
            except Exception as exc:  # noqa: BLE001 - the stream is broken: no further calls
                side._broken(f"{type(exc).__name__}: {exc}")
                raise SideProcessLost(str(exc)) from exc
            side._sent.popleft()._take(message)
        status, value, said = self._answer
        if status == "lost":
            logger.warning("the helper process could not return its answer (%s); it is "
                           "computed in this process", value)
            raise SideProcessLost(value)
        for category, text in said:
            warnings.warn(text, category, stacklevel=2)
        if status == "error":
            raise value
        return value


class SideProcess:
    """A helper process forked at the start of a run (see the module docstring)."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.owner = os.getpid()
        self._sock = sock
        self._sent: collections.deque[PendingCall] = collections.deque()  # not answered yet
        self._alive = True
        self._shared_fds: dict[int, int] = {}

    @classmethod
    def start(cls, modules: Sequence[str] = ()) -> SideProcess | None:
        """Fork the helper, which imports ``modules`` at once; None where one cannot be used."""
        if not (sys.platform.startswith("linux") and hasattr(os, "memfd_create")
                and hasattr(socket, "send_fds") and threading.active_count() == 1):
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the helper: never returns into the caller's code
            code = 0
            try:
                ours.close()
                _serve(theirs, modules)
            except BaseException:  # noqa: BLE001 - the main process sees the stream end
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours)

    @property
    def usable(self) -> bool:
        """True while the helper answers and this is the process that started it."""
        return self._alive and os.getpid() == self.owner

    def shared_array(self, shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
        """Return a new array (zeros) in memory the helper can map: pass it in a `call`.

        Where the system refuses the shared file (no memory, too many open files), a plain
        array: a call then sends its values through the socket instead, slower but alike.
        """
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = max(count * dt.itemsize, 1)
        try:
            fd = os.memfd_create("bonelesion-array", os.MFD_CLOEXEC)
        except OSError as exc:
            logger.debug("no shared memory for a %s array (%s)", shape, exc)
            return np.zeros(shape, dtype=dt)
        try:
            os.ftruncate(fd, nbytes)
            mapping = mmap.mmap(fd, nbytes)
        except OSError as exc:
            os.close(fd)
            logger.debug("no shared memory for a %s array (%s)", shape, exc)
            return np.zeros(shape, dtype=dt)
        except BaseException:
            os.close(fd)
            raise
        self._shared_fds[id(mapping)] = fd
        weakref.finalize(mapping, self._release, id(mapping), fd)
        return np.frombuffer(mapping, dtype=dt, count=count).reshape(shape)

    def ct_array(self, shape: tuple[int, ...], dtype: Any, ct: bool) -> NDArray[Any] | None:
        """`shared_array` for a CT (what the helper labels), None (a plain array) otherwise.

        The allocator `bonelesion.dicom.decode.output_arrays` takes.
        """
        return self.shared_array(shape, dtype) if ct else None

    def _release(self, key: int, fd: int) -> None:
        self._shared_fds.pop(key, None)
        with contextlib.suppress(OSError):
            os.close(fd)

    def call(self, target: str, *args: Any, **kwargs: Any) -> PendingCall:
        """Send ``module:function(*args, **kwargs)`` to the helper (answered in order).

        ``target`` is named, not passed, so the caller need not import it (the labelling
        modules import scipy.ndimage: the main process then does not wait for that).

        Raises
        ------
        SideProcessLost
            The helper is gone, or the call could not be sent.
        """
        if not self.usable:
            raise SideProcessLost("no helper process")
        buffer = io.BytesIO()
        pickler = _ArgsPickler(buffer, self)
        try:
            pickler.dump((target, args, kwargs))
        except Exception as exc:  # noqa: BLE001 - an argument that cannot be pickled
            raise SideProcessLost(f"the call cannot be sent: {exc}") from exc
        try:
            _send(self._sock, buffer.getvalue(), pickler.fds)
        except OSError as exc:  # the stream may hold half a message: no further calls
            self._broken(f"{type(exc).__name__}: {exc}")
            raise SideProcessLost(str(exc)) from exc
        pending = PendingCall(self, args)
        self._sent.append(pending)
        return pending

    def _broken(self, why: str) -> None:
        if self._alive:
            logger.warning("the labelling helper process stopped answering (%s); the run "
                           "goes on in this process", why)
        self.close()

    def close(self) -> None:
        """End the helper and wait for it.

        It is killed, whatever it is doing: it keeps nothing (its answers come back over
        the socket, it writes no file), and a run with nothing left to do then does not
        wait for the helper's imports to finish.
        """
        if os.getpid() != self.owner or not self._alive and self._sock.fileno() < 0:
            return
        self._alive = False
        self._sent.clear()
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


_current: SideProcess | None = None


def current() -> SideProcess | None:
    """Return the helper of the run in progress here, if it started one and it answers."""
    side = _current
    return side if side is not None and side.usable else None


@contextlib.contextmanager
def started(modules: Sequence[str]) -> Iterator[SideProcess | None]:
    """Start a helper for the duration of a run (None where none can be used)."""
    global _current
    side = SideProcess.start(modules)
    previous, _current = _current, side
    try:
        yield side
    finally:
        _current = previous
        if side is not None:
            side.close()
