"""The PACS loop: ``watch`` (find what is new, retrieve, measure, push back), ``pull``, ``push``.

One pass of `watch` (`run_pass`)::

    list studies (QIDO-RS / C-FIND) ─▶ per study, oldest first:
        unchanged instance count and done?  ─▶ skip (no further request)
        polling: count not steady for --settle s?  ─▶ wait for a later pass
        list its instances; leave out our own pushed objects ─▶ signature
        signature as retrieved and done?  ─▶ skip
        retrieve the series not yet in the inbox (WADO-RS / C-MOVE / C-GET) into staging
            ─▶ every listed instance arrived? ─▶ commit to OUT/inbox/<study>/  (else: report)
        run the pipeline over that folder (`bonelesion.batch.run_export`, the one path)
        --push: send its SEG and SR (STOW-RS / C-STORE), recording their UIDs first
    rebuild OUT's tables over the whole inbox (nothing is measured again)

A study that fails to be retrieved, measured or pushed is reported and the pass goes on;
a PACS that stops answering ends the pass (`PacsUnavailableError`, exit code 5 with
``--once``; the polling loop tries again next poll). A second pass over unchanged studies
retrieves, measures and pushes nothing.

Stopping: the first SIGINT or SIGTERM lets the study in hand finish (retrieve, measure,
push) and then stops; a second one abandons it at once. Either way the results store and
the state file hold the last committed state (each update is one SQLite transaction), and
a half-retrieved study stays in staging, which the next pass deletes.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bonelesion.batch import Progress, ResultsStore, run_export
from bonelesion.batch.names import safe_component
from bonelesion.errors import ConfigError, InputError
from bonelesion.pacs.client import PacsClient, RemoteInstance, RemoteStudy
from bonelesion.pacs.dicomweb import DicomWebPacs
from bonelesion.pacs.dimse import DimsePacs
from bonelesion.pacs.errors import PacsError, PacsUnavailableError, RetrievalError
from bonelesion.pacs.inbox import Inbox
from bonelesion.pacs.push import find_push_objects, push_files, study_of
from bonelesion.pacs.sources import DicomWebPeer, NetworkPolicy, Peer
from bonelesion.pacs.state import STATE_NAME, PacsState, Phase, StudyState, signature
from bonelesion.pipeline.definition import load_pipeline

__all__ = [
    "WatchOptions",
    "PassSummary",
    "PullSummary",
    "PushSummary",
    "StudyProblem",
    "SettleTracker",
    "connect",
    "run_pass",
    "watch",
    "pull",
    "push",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_UNAVAILABLE",
    "EXIT_ABANDONED",
    "INBOX_DIR",
]

logger = logging.getLogger(__name__)

#: Exit codes of the PACS commands (besides the CLI's 1, 2, 3 for errors before any work).
EXIT_OK = 0
EXIT_PROBLEMS = 4  # some study failed to be retrieved, measured or pushed
EXIT_UNAVAILABLE = 5  # the PACS stopped answering; rerun later, nothing is lost
EXIT_ABANDONED = 130  # a second signal abandoned the study in hand

INBOX_DIR = "inbox"
_PRIVATE_DIR = ".pacs"
_STORE_NAME = "results.sqlite"  # bonelesion.batch.runner.STORE_NAME


@dataclass(frozen=True, kw_only=True)
class WatchOptions:
    """What ``watch`` does with the studies it finds (see ``bonelesion watch --help``).

    Parameters
    ----------
    pipeline : str or Path
        Shipped pipeline name or pipeline TOML.
    out_dir : Path
        Output folder: inbox, results store, state file, tables, per-study outputs.
    rois : Path or None
        ROI file; None leaves the ROIs to the pipeline's own source (automatic detection).
    push : bool
        Send each measured study's SEG and SR back to the PACS.
    since : date or None
        Only studies with StudyDate ≥ since.
    settle_s : float
        Polling loop only: a study is taken once its instance count has not changed for
        this long.
    poll_s : float
        Polling loop only: seconds between passes.
    """

    pipeline: str | Path
    out_dir: Path
    rois: Path | None = None
    push: bool = False
    since: dt.date | None = None
    settle_s: float = 60.0
    poll_s: float = 60.0

    def __post_init__(self) -> None:
        if self.settle_s < 0 or self.poll_s <= 0:
            raise ConfigError(
                f"--settle must be ≥ 0 s and --poll > 0 s, found {self.settle_s} and "
                f"{self.poll_s}. Potential fix: --poll 60 --settle 60."
            )


@dataclass(frozen=True, kw_only=True)
class StudyProblem:
    """A study that failed at one step (``list``, ``retrieve``, ``measure`` or ``push``)."""

    study_instance_uid: str
    step: str
    message: str


@dataclass(kw_only=True)
class _Outcome:
    """What every command of the loop reports: the studies that failed, an unreachable PACS."""

    problems: list[StudyProblem] = field(default_factory=list)
    unavailable: str = ""

    @property
    def exit_code(self) -> int:
        """5 PACS unavailable, 4 some study failed, else 0."""
        if self.unavailable:
            return EXIT_UNAVAILABLE
        return EXIT_PROBLEMS if self.problems else EXIT_OK

    def problem(self, uid: str, step: str, message: str) -> None:
        """Record and log a study's failure."""
        self.problems.append(StudyProblem(study_instance_uid=uid, step=step, message=message))
        logger.error("study %s: %s failed: %s", uid, step, message)


@dataclass(kw_only=True)
class PassSummary(_Outcome):
    """What one pass did (the polling loop returns the last one)."""

    listed: int = 0
    unchanged: int = 0
    settling: int = 0
    retrieved: list[str] = field(default_factory=list)
    instances_retrieved: int = 0
    measured: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    instances_pushed: int = 0
    stopped: bool = False
    abandoned: bool = False
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """130 abandoned, 5 PACS unavailable, 4 some study failed, else 0."""
        return EXIT_ABANDONED if self.abandoned else super().exit_code


@dataclass(kw_only=True)
class PullSummary(_Outcome):
    """What ``pull`` did."""

    listed: int = 0
    retrieved: list[str] = field(default_factory=list)
    instances_retrieved: int = 0
    present: int = 0


@dataclass(kw_only=True)
class PushSummary(_Outcome):
    """What ``push`` did."""

    found: int = 0
    pushed: int = 0
    already: int = 0
    studies: int = 0


class SettleTracker:
    """Tell when a study's instance count has been steady for ``settle_s`` seconds.

    Examples
    --------
    >>> now = [0.0]
    >>> t = SettleTracker(60, clock=lambda: now[0])
    >>> t.settled("1.2", 10), (now.__setitem__(0, 61.0), t.settled("1.2", 10))[1]
    (False, True)
    >>> t.settled("1.2", 11)  # it grew: the clock starts again
    False
    """

    def __init__(self, settle_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_s = settle_s
        self._clock = clock
        self._seen: dict[str, tuple[int, float]] = {}

    def settled(self, study_instance_uid: str, instances: int) -> bool:
        """Record the count seen now; True when it has not changed for ``settle_s``."""
        now = self._clock()
        count, since = self._seen.get(study_instance_uid, (-1, now))
        if count != instances:
            self._seen[study_instance_uid] = (instances, now)
            since = now
        return now - since >= self.settle_s


def connect(peer: Peer, *, policy: NetworkPolicy) -> PacsClient:
    """Open a client for ``peer`` (DICOMweb or DIMSE)."""
    if isinstance(peer, DicomWebPeer):
        return DicomWebPacs(peer, policy=policy)
    return DimsePacs(peer, policy=policy)


# ---- retrieval shared by watch and pull ----


def _retrieve_study(client: PacsClient, inbox: Inbox, uid: str,
                    theirs: Sequence[RemoteInstance], *, ignore: frozenset[str]) -> frozenset[str]:
    """Retrieve a complete study into the inbox; return the SOP UIDs committed.

    Series whose every instance is already in the study's inbox folder are linked, not
    retrieved again.

    Raises
    ------
    RetrievalError
        Some listed instance did not arrive (nothing is committed).
    """
    started = time.monotonic()
    present = inbox.instances(uid)
    by_series: dict[str, set[str]] = {}
    for inst in theirs:
        by_series.setdefault(inst.series_instance_uid, set()).add(inst.sop_instance_uid)
    keep = sorted(s for s, sops in by_series.items() if sops <= present)
    fetch = sorted(s for s in by_series if s not in keep)
    staging = inbox.staging(uid, ignore=ignore)
    try:
        staging.link_from(inbox.study_dir(uid), [sop for s in keep for sop in by_series[s]])
        client.retrieve(uid, fetch, theirs, staging)
        got = staging.sop_instance_uids
        expected = {i.sop_instance_uid for i in theirs}
        missing = expected - got
        if missing:
            series = sorted({i.series_instance_uid for i in theirs
                             if i.sop_instance_uid in missing})
            raise RetrievalError(
                f"Study {uid}: {len(missing)} of {len(expected)} listed instances did not "
                f"arrive (series {', '.join(series[:3])}{' …' if len(series) > 3 else ''}); "
                "the partial retrieval is discarded and not measured. Potential fix: see the "
                "PACS's log; the next pass tries again."
            )
        inbox.commit(staging)
    except BaseException:
        inbox.discard(staging)
        raise
    logger.info("study %s: %d instances in %d series (%d series already here) in %.1f s",
                uid, len(got), len(by_series), len(keep), time.monotonic() - started)
    return got


# ---- watch ----


class _Pass:
    """One pass over the PACS (see `run_pass`)."""

    def __init__(self, client: PacsClient, options: WatchOptions, *, state: PacsState,
                 inbox: Inbox, settle: SettleTracker | None, stop: threading.Event) -> None:
        self.client = client
        self.options = options
        self.state = state
        self.inbox = inbox
        self.settle = settle
        self.stop = stop
        self.summary = PassSummary()
        self.out = Path(options.out_dir)

    def _done(self, known: StudyState) -> bool:
        if known.phase is Phase.PUSHED:
            return True
        return known.phase is Phase.MEASURED and not (self.options.push and known.status == "ok")

    def run(self) -> PassSummary:
        started = time.monotonic()
        self.inbox.clean_staging()
        try:
            remote = self.client.find_studies(since=self.options.since)
        except PacsUnavailableError as exc:
            self.summary.unavailable = str(exc)
            logger.error("%s", exc)
            remote = []
        self.summary.listed = len(remote)
        for study in sorted(remote, key=lambda s: (s.study_date, s.study_instance_uid)):
            if self.stop.is_set():
                self.summary.stopped = True
                break
            try:
                self._study(study)
            except PacsUnavailableError as exc:
                self.summary.unavailable = str(exc)
                logger.error("%s", exc)
                break
        if not self.summary.stopped and not self.state.tables_current():
            self._rebuild_tables()
        self.summary.duration_s = time.monotonic() - started
        return self.summary

    def _study(self, study: RemoteStudy) -> None:
        uid = study.study_instance_uid
        known = self.state.study(uid)
        if (known is not None and self._done(known) and study.instances is not None
                and known.remote_instances == study.instances):
            self.summary.unchanged += 1
            return
        if (self.settle is not None and study.instances is not None
                and not self.settle.settled(uid, study.instances)):
            self.summary.settling += 1
            logger.info("study %s: waiting until its %d instances stay unchanged for %g s",
                        uid, study.instances, self.settle.settle_s)
            return
        try:
            instances = self.client.find_instances(uid)
        except PacsUnavailableError:
            raise
        except PacsError as exc:
            self.summary.problem(uid, "list", str(exc))
            return
        if (self.settle is not None and study.instances is None
                and not self.settle.settled(uid, len(instances))):
            self.summary.settling += 1  # the PACS gives no count: settle on the listing
            return
        ours = self.state.ours(uid)
        theirs = [i for i in instances if i.sop_instance_uid not in ours]
        sig = signature(i.sop_instance_uid for i in theirs)
        if known is not None and known.signature == sig:
            if known.remote_instances != study.instances:
                self.state.set_remote_instances(uid, study.instances)
            if self._done(known):
                self.summary.unchanged += 1
                return
            phase, status = known.phase, known.status  # resume an interrupted study
        else:
            if not theirs:
                self.summary.unchanged += 1
                return
            if known is not None:
                self._log_change(uid, known, len(theirs))
            try:
                got = _retrieve_study(self.client, self.inbox, uid, theirs, ignore=ours)
            except PacsUnavailableError:
                raise
            except PacsError as exc:
                self.summary.problem(uid, "retrieve", str(exc))
                return
            except OSError as exc:
                self.summary.problem(uid, "retrieve", (
                    f"Study {uid}: cannot write to {self.inbox.staging_root} ({exc.strerror}). "
                    "Potential fix: free disk space, or check the permissions of --out."))
                return
            self.state.set_retrieved(uid, source=self.client.display, signature=signature(got),
                                     instances=len(got), remote_instances=study.instances)
            self.summary.retrieved.append(uid)
            self.summary.instances_retrieved += len(got)
            phase, status = Phase.RETRIEVED, ""
        if phase is Phase.RETRIEVED:
            status = self._measure(uid)
        if self.options.push and status == "ok":
            self._push(uid, study.instances)

    def _log_change(self, uid: str, known: StudyState, now: int) -> None:
        earlier = self.state.pushed_series(uid)
        where = "; ".join(f"{p.modality} series {p.series_instance_uid} (pushed {p.pushed_at})"
                          for p in earlier)
        logger.warning(
            "study %s changed since it was measured (%d instances then, %d now, ours left out): "
            "measuring it again%s", uid, known.instances, now,
            f". Earlier results stay in the PACS: {where}; the new SEG and SR go out as new "
            "series" if earlier else "")

    def _measure(self, uid: str) -> str:
        started = time.monotonic()
        catalogues = self.out / _PRIVATE_DIR / "catalogues"
        catalogues.mkdir(parents=True, exist_ok=True)
        catalogue = catalogues / f"{safe_component(uid, fallback='study')}.sqlite"
        self.state.set_tables_current(False)
        logger.info("study %s: measuring", uid)
        with ResultsStore(self.out / _STORE_NAME) as store:  # measure again: inputs changed
            store.forget([uid])
        try:
            result = run_export(self.options.pipeline, self.inbox.study_dir(uid), self.out,
                                rois=self.options.rois, catalogue=catalogue,
                                progress=Progress(0, stream=io.StringIO()),
                                rois_cover_other_studies=True)
        except InputError as exc:
            message = str(exc)
            self.state.set_measured(uid, status="failed", message=message)
            self.summary.problem(uid, "measure", message)
            return "failed"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{catalogue}{suffix}").unlink(missing_ok=True)
        damaged = [b for b in result.bad_files if b.is_failure]
        if result.studies_ok == 1:
            status, message = "ok", ""
        elif result.failures:
            f = result.failures[0]
            status = "failed"
            message = (f"at {f.get('stage', '?')} (series {f.get('series_instance_uid') or '-'}):"
                       f" {f.get('message', '')}")
        else:
            status = "failed"
            message = ("no usable study in the retrieved instances"
                       + (f" ({damaged[0].reason})" if damaged else ""))
        self.state.set_measured(uid, status=status, message=message)
        if status == "ok":
            self.summary.measured.append(uid)
            logger.info("study %s: measured, %d lesion(s), in %.1f s", uid, result.lesions,
                        time.monotonic() - started)
        else:
            self.summary.problem(uid, "measure", message)
        if damaged:
            reasons = "; ".join(f"instance {Path(b.path).stem}: {b.reason}" for b in damaged[:3])
            self.summary.problem(uid, "measure", (
                f"{len(damaged)} retrieved instance(s) are damaged and were not used ({reasons}"
                f"{' …' if len(damaged) > 3 else ''}). Potential fix: see bad_files.csv; "
                "resend the study to the PACS from the modality."))
        return status

    def _push(self, uid: str, remote_instances: int | None) -> None:
        paths = find_push_objects(self.out, uid)
        if not paths:
            self.summary.problem(uid, "push", (
                "the run wrote no DICOM SEG/SR for this study (see its warnings in "
                "results.json); nothing to send"))
            self.state.set_pushed(uid)
            return
        try:
            stored, skipped = push_files(self.client, self.state, paths)
        except PacsUnavailableError:
            raise
        except PacsError as exc:
            self.summary.problem(uid, "push", str(exc))
            return
        self.state.set_pushed(uid)
        if remote_instances is not None:  # the PACS's count now includes ours: next pass skips
            self.state.set_remote_instances(uid, remote_instances + len(stored))
        self.summary.pushed.append(uid)
        self.summary.instances_pushed += len(stored)
        logger.info("study %s: sent %s to %s%s", uid,
                    " and ".join(sorted({f"{s.modality} series {s.series_instance_uid}"
                                         for s in stored})) or "nothing new",
                    self.client.display, f" ({skipped} sent before)" if skipped else "")

    def _rebuild_tables(self) -> None:
        if not self.inbox.root.is_dir() or not any(self.inbox.root.iterdir()):
            self.state.set_tables_current(True)
            return
        started = time.monotonic()
        try:
            run_export(self.options.pipeline, self.inbox.root, self.out, rois=self.options.rois,
                       progress=Progress(0, stream=io.StringIO()), rois_cover_other_studies=True)
        except InputError as exc:
            logger.error("tables of %s not rebuilt (the next pass tries again): %s", self.out,
                         exc)
            return
        self.state.set_tables_current(True)
        logger.info("tables of %s rebuilt over the whole inbox in %.1f s", self.out,
                    time.monotonic() - started)


def run_pass(client: PacsClient, options: WatchOptions, *, state: PacsState, inbox: Inbox,
             settle: SettleTracker | None = None, stop: threading.Event | None = None
             ) -> PassSummary:
    """One pass of the loop (module docstring); never raises for one study's failure."""
    return _Pass(client, options, state=state, inbox=inbox, settle=settle,
                 stop=stop or threading.Event()).run()


@contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: set ``stop``; a second one: KeyboardInterrupt (abandon)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        logger.warning("%s: finishing the study in hand, then stopping (send it again to "
                       "abandon that study)", signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _check_options(options: WatchOptions) -> None:
    load_pipeline(options.pipeline)  # ConfigError now, not once per study
    if options.rois is not None and not Path(options.rois).is_file():
        raise InputError(f"ROI file {options.rois} does not exist. Potential fix: check --rois.")


def watch(peer: Peer, options: WatchOptions, *, policy: NetworkPolicy | None = None,
          once: bool = False, stop: threading.Event | None = None, handle_signals: bool = False,
          on_pass: Callable[[PassSummary], None] | None = None) -> PassSummary:
    """Run passes over ``peer`` until stopped (or one pass with ``once``).

    Parameters
    ----------
    peer : Peer
        The PACS (`bonelesion.pacs.sources.parse_source`).
    options : WatchOptions
        Pipeline, output folder, ROIs, push, polling.
    policy : NetworkPolicy, optional
        Time-outs and retries.
    once : bool
        One pass, taking every study as listed now (no settling), then return.
    stop : threading.Event, optional
        Set it to stop after the study in hand.
    handle_signals : bool
        SIGINT/SIGTERM set ``stop`` (a second one abandons the study in hand).
    on_pass : callable, optional
        Called with each pass's summary.

    Returns
    -------
    PassSummary
        The last pass; its ``exit_code`` is the command's. The polling loop survives a PACS
        that is down (it tries again next poll) and returns 0 when stopped by a signal.

    Raises
    ------
    ConfigError, InputError
        Invalid pipeline, missing ROI file, unusable output folder.
    """
    _check_options(options)
    stop = stop or threading.Event()
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settle = None if once else SettleTracker(options.settle_s)
    summary = PassSummary()
    with ExitStack() as stack:
        if handle_signals:
            stack.enter_context(_signals_stop(stop))
        state = stack.enter_context(PacsState(out / STATE_NAME))
        client = connect(peer, policy=policy or NetworkPolicy())
        stack.callback(client.close)
        inbox = Inbox(out / INBOX_DIR, out / _PRIVATE_DIR / "staging")
        try:
            while True:
                summary = run_pass(client, options, state=state, inbox=inbox, settle=settle,
                                   stop=stop)
                if on_pass is not None:
                    on_pass(summary)
                if once or stop.is_set() or stop.wait(options.poll_s):
                    break
        except KeyboardInterrupt:
            logger.warning("abandoned the study in hand; the next pass does it again")
            summary.stopped = summary.abandoned = True
            return summary
    if stop.is_set() and not once:
        summary.stopped = True
        summary.unavailable = ""  # the loop was stopped on purpose: a clean exit
        summary.problems = []
    return summary


# ---- pull and push ----


def pull(peer: Peer, dest: str | Path, *, studies: Sequence[str] = (),
         since: dt.date | None = None, policy: NetworkPolicy | None = None) -> PullSummary:
    """Retrieve studies into ``dest/<study>/`` (each complete or not at all).

    Parameters
    ----------
    peer : Peer
        The PACS.
    dest : path
        Destination folder; partial retrievals stay in ``.<dest name>.partial`` beside it.
    studies : sequence of str
        StudyInstanceUIDs to retrieve; empty: every study listed (StudyDate ≥ ``since``).
    since : date, optional
        Only studies with StudyDate ≥ since (when ``studies`` is empty).
    policy : NetworkPolicy, optional
        Time-outs and retries.

    Returns
    -------
    PullSummary
        A study already complete in ``dest`` is not retrieved again.
    """
    if studies and since is not None:
        raise ConfigError("pull: --study and --since cannot be combined. Potential fix: give one.")
    dest_path = Path(dest)
    summary = PullSummary()
    inbox = Inbox(dest_path, dest_path.parent / f".{dest_path.name}.partial")
    inbox.clean_staging()
    client = connect(peer, policy=policy or NetworkPolicy())
    try:
        uids = list(studies) or [s.study_instance_uid for s in sorted(
            client.find_studies(since=since), key=lambda s: (s.study_date, s.study_instance_uid))]
        summary.listed = len(uids)
        for uid in uids:
            try:
                instances = client.find_instances(uid)
                if not instances:
                    raise RetrievalError(
                        f"Study {uid}: {client.display} lists no instance of it. Potential fix: "
                        "check the StudyInstanceUID.")
                if inbox.instances(uid) == {i.sop_instance_uid for i in instances}:
                    summary.present += 1
                    continue
                got = _retrieve_study(client, inbox, uid, instances, ignore=frozenset())
            except PacsUnavailableError:
                raise
            except PacsError as exc:
                summary.problem(uid, "retrieve", str(exc))
                continue
            summary.retrieved.append(uid)
            summary.instances_retrieved += len(got)
    except PacsUnavailableError as exc:
        summary.unavailable = str(exc)
        logger.error("%s", exc)
    finally:
        client.close()
    return summary


def push(peer: Peer, run_out: str | Path, *, policy: NetworkPolicy | None = None) -> PushSummary:
    """Send every DICOM SEG and SR of the run in ``run_out`` that ``peer`` does not have yet.

    The SOP Instance UIDs sent are recorded in ``run_out/pacs.sqlite``, so a ``watch`` with
    the same ``--out`` never takes them for new instances, and a second ``push`` sends nothing.
    """
    out = Path(run_out)
    if not (out / "studies").is_dir():
        raise InputError(f"RUN_OUT {out}: no studies/ folder; expected the --out folder of a run. "
                         "Potential fix: give the folder that holds lesions.csv and studies/.")
    summary = PushSummary()
    paths = find_push_objects(out)
    summary.found = len(paths)
    by_study: dict[str, list[Path]] = {}
    for path in paths:
        by_study.setdefault(study_of(path), []).append(path)
    client = connect(peer, policy=policy or NetworkPolicy())
    try:
        with PacsState(out / STATE_NAME) as state:
            for group, files in sorted(by_study.items()):
                try:
                    stored, skipped = push_files(client, state, files)
                except PacsUnavailableError:
                    raise
                except PacsError as exc:
                    summary.problem(group, "push", str(exc))
                    continue
                summary.pushed += len(stored)
                summary.already += skipped
                summary.studies += bool(stored)
    except PacsUnavailableError as exc:
        summary.unavailable = str(exc)
        logger.error("%s", exc)
    finally:
        client.close()
    return summary
