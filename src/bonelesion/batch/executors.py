"""Where each study runs: in this process, a process pool, or a Dask cluster.

All three run the same top-level, picklable per-study function over plain-data tasks and
yield ``(task, outcome)`` pairs as studies finish, in completion order. An exception that
escapes the study function (it should not: `run_study` isolates its own failures), a
worker process that dies (segfault, out of memory) or a task the cluster loses becomes a
failed outcome for that study via ``on_error``; the other studies go on.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any, TypeVar

from bonelesion.errors import ConfigError

if TYPE_CHECKING:  # multiprocessing (~4 ms) is imported by the executor that uses it
    import multiprocessing.context
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["EXECUTORS", "execute", "check_executor", "RunInterrupted", "stop_on_signals"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "process", "dask")
#: How many pool breakdowns a task may be caught in before it is failed as the likely cause.
_MAX_BREAKS_PER_TASK = 2
#: Seconds a terminated worker process is given to exit before it is killed.
_WORKER_EXIT_TIMEOUT_S = 5.0
#: Linux prctl option: the signal a process receives when its parent dies.
_PR_SET_PDEATHSIG = 1


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM (not an error of any study).

    ``signum`` is the signal; ``stored`` and ``remaining`` count the studies stored in this
    run and those left for the rerun (filled in by the batch runner).
    """

    def __init__(self, signum: int, *, stored: int = 0, remaining: int = 0) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.stored = stored
        self.remaining = remaining


class stop_on_signals:  # noqa: N801 - used as a context manager, named for what it does
    """Turn SIGINT and SIGTERM into `RunInterrupted` in this (main) thread while active.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}

    def __enter__(self) -> stop_on_signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old[signum] = signal.signal(signum, self._raise)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)

    @staticmethod
    def _raise(signum: int, _frame: object) -> None:
        raise RunInterrupted(signum)


def _worker_init() -> None:
    """Pool worker set-up: the parent alone handles Ctrl-C; a worker dies with its parent.

    SIGINT is ignored (the parent stops the pool), and on Linux the worker asks the kernel
    for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so a ``kill -9`` of the
    run leaves no orphan computing on.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # no prctl: orphans are then possible after kill -9
            logger.debug("prctl(PR_SET_PDEATHSIG) unavailable")


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's worker processes now (they hold no state worth keeping)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(_WORKER_EXIT_TIMEOUT_S)
        if proc.is_alive():
            proc.kill()
            proc.join(_WORKER_EXIT_TIMEOUT_S)


def execute(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    executor: str = "local",
    workers: int = 1,
    scheduler: str | None = None,
    on_error: Callable[[T, BaseException | str], R],
) -> Iterator[tuple[T, R]]:
    """Run ``fn`` over ``tasks``; yield ``(task, result)`` as each finishes.

    Parameters
    ----------
    fn : callable
        Top-level (importable) function of one task.
    tasks : sequence
        Plain-data, picklable tasks.
    executor : {"local", "process", "dask"}
        ``local`` runs in this process, one after another; ``process`` uses a pool of
        ``workers`` processes (forked when this process is single-threaded, else spawned);
        ``dask`` submits to the dask.distributed scheduler at ``scheduler``, or to a new
        LocalCluster (processes, ``workers`` workers, one thread each).
    on_error : callable
        Turns ``(task, exception or message)`` into a failed result.

    Raises
    ------
    ConfigError
        On an unknown executor, or a scheduler given without ``executor="dask"``.
    """
    check_executor(executor, scheduler)
    if not tasks:
        return iter(())
    if executor == "local":
        return _run_local(fn, tasks, on_error)
    if executor == "process":
        return _run_process(fn, tasks, workers, on_error)
    return _run_dask(fn, tasks, workers, scheduler, on_error)


def check_executor(executor: str, scheduler: str | None) -> None:
    """Refuse an unknown executor, or a scheduler address without ``executor="dask"``.

    Raises
    ------
    ConfigError
        With the flag named and a fix.
    """
    if executor not in EXECUTORS:
        raise ConfigError(
            f"--executor: {executor!r} is not one of {', '.join(EXECUTORS)}. "
            "Potential fix: use local, process or dask."
        )
    if scheduler and executor != "dask":
        raise ConfigError(
            f"--scheduler {scheduler} given with --executor {executor}; a scheduler address only "
            "applies to dask. Potential fix: add --executor dask."
        )


def _run_local(
    fn: Callable[[T], R], tasks: Sequence[T], on_error: Callable[[T, BaseException | str], R]
) -> Iterator[tuple[T, R]]:
    for task in tasks:
        try:
            result = fn(task)
        except Exception as exc:  # noqa: BLE001 - isolation: one study never stops the batch
            logger.error("study function raised: %s", traceback.format_exc())
            result = on_error(task, exc)
        yield task, result


#: Modules every study needs: imported once in the parent, inherited by forked workers.
_PRELOAD = (
    "bonelesion.pipeline.per_study",
    "bonelesion.pipeline.loading",
    "bonelesion.pipeline.measurement",
    "bonelesion.dicom.series",
    "bonelesion.report.outputs",
    "bonelesion.roi.sources",
)


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` when this process is single-threaded (Linux), else ``spawn``.

    Forked workers inherit the already imported numpy, pydicom, highdicom and bonelesion
    (and ``sys.path``) instead of importing them each, which is most of a worker's start-up.
    Forking a process that runs other threads can deadlock, so then workers are spawned.
    """
    import multiprocessing

    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        for name in _PRELOAD:
            importlib.import_module(name)
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _run_process(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    on_error: Callable[[T, BaseException | str], R],
) -> Iterator[tuple[T, R]]:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pending = list(range(len(tasks)))
    breaks = [0] * len(tasks)
    ctx = _pool_context()
    while pending:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                   initializer=_worker_init)
        futures: dict[Future[R], int] = {}
        queue = list(pending)
        pending = []
        broken = False
        try:
            # Keep at most 2×workers tasks in flight, so a pool breakdown loses little.
            while queue or futures:
                while queue and len(futures) < 2 * workers and not broken:
                    i = queue.pop(0)
                    futures[pool.submit(fn, tasks[i])] = i
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    i = futures.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        breaks[i] += 1
                        if breaks[i] >= _MAX_BREAKS_PER_TASK:
                            yield (
                                tasks[i],
                                on_error(
                                    tasks[i],
                                    "worker process died (killed, "
                                    "segfault or out of memory) while running it",
                                ),
                            )
                        else:
                            pending.append(i)
                        continue
                    except Exception as exc:  # noqa: BLE001 - isolation
                        result = on_error(tasks[i], exc)
                    yield tasks[i], result
                if broken:
                    pending.extend(queue)
                    queue = []
        except BaseException:
            # interrupted (signal) or the consumer stopped: stop the workers, do not wait
            _terminate(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if broken:
            logger.warning(
                "process pool broke; restarting it for %d unfinished studies", len(pending)
            )


def _run_dask(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    scheduler: str | None,
    on_error: Callable[[T, BaseException | str], R],
) -> Iterator[tuple[T, R]]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    try:
        futures: dict[Any, int] = {}
        for i, task in enumerate(tasks):
            futures[client.submit(fn, task, pure=False, retries=1)] = i
        for fut in as_completed(list(futures)):
            i = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - isolation: a lost or failed task
                result = on_error(tasks[i], exc)
            yield tasks[i], result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
