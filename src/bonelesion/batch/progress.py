r"""Progress display for batch runs: a bar with counts and ETA on a TTY, plain lines otherwise.

No dependency: the bar redraws one line with ``\\r``; when the stream is not a terminal
(a log file, CI, cron) it prints one line per finished study instead. Messages carry
StudyInstanceUIDs only, never patient identifiers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``"1h02m"``, ``"3m05s"`` or ``"42s"``.

    Examples
    --------
    >>> format_duration(3725), format_duration(185), format_duration(4.2)
    ('1h02m', '3m05s', '4s')
    """
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Count finished studies and show a bar (TTY) or lines (not a TTY).

    Parameters
    ----------
    total : int
        Studies to run in this invocation.
    skipped : int
        Studies already current in the store (shown, not counted in the ETA).
    stream : text stream
        Where to write (default ``sys.stderr``).
    tty : bool or None
        Force the bar (True) or lines (False); None asks ``stream.isatty()``.
    width : int
        Characters of the bar itself.
    """

    def __init__(
        self,
        total: int,
        *,
        skipped: int = 0,
        stream: TextIO | None = None,
        tty: bool | None = None,
        width: int = 30,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.total = total
        self.skipped = skipped
        self.done = 0
        self.failed = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.width = width
        self._clock = time.monotonic if clock is None else clock
        self._start = self._clock()

    def eta_s(self) -> float | None:
        """Seconds left at the mean rate so far (None before the first study)."""
        if self.done == 0:
            return None
        elapsed = self._clock() - self._start
        return elapsed / self.done * (self.total - self.done)

    def line(self) -> str:
        """Return the current status text."""
        eta = self.eta_s()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.done}/{self.total} studies ({pct:.0f}%)", f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        parts.append("ETA " + (format_duration(eta) if eta is not None else "?"))
        return ", ".join(parts)

    def indexing(self, files_done: int, files_to_read: int) -> None:
        """Show indexing progress (the ``progress`` callback of `index_export`)."""
        if files_to_read <= 0:
            return
        if self.tty:
            self.stream.write(f"\r[bonelesion] indexing: {files_done}/{files_to_read} files\x1b[K")
            if files_done >= files_to_read:
                self.stream.write("\n")
            self.stream.flush()
        elif files_done >= files_to_read:
            print(
                f"[bonelesion] indexed {files_to_read} new or changed files",
                file=self.stream,
                flush=True,
            )

    def start(self) -> None:
        """Start the clock of the ETA (indexing and planning before it do not count), show."""
        self._start = self._clock()
        if self.tty:
            self._draw()
        else:
            print(
                f"[bonelesion] {self.total} studies to run, {self.skipped} already done",
                file=self.stream,
                flush=True,
            )

    def update(self, study_instance_uid: str, status: str, detail: str = "") -> None:
        """Count one finished study (``status`` ``ok`` or ``failed``)."""
        self.done += 1
        if status != "ok":
            self.failed += 1
        if self.tty:
            self._draw()
        else:
            extra = f": {detail}" if detail else ""
            print(
                f"[bonelesion] {self.line()} | study {study_instance_uid} {status}{extra}",
                file=self.stream,
                flush=True,
            )

    def _draw(self) -> None:
        filled = int(self.width * self.done / self.total) if self.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.line()}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
