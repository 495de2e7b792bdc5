"""Delta debugging (Zeller's ddmin) over the bytes of a failing file."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["ddmin"]


def ddmin(data: bytes, fails: Callable[[bytes], bool], *, budget: int = 150) -> tuple[bytes, int]:
    """Smallest ``data`` (1-minimal within ``budget`` tests) for which ``fails`` holds.

    Parameters
    ----------
    data : bytes
        A failing input (``fails(data)`` is assumed true).
    fails : callable
        Re-runs the failing entry point on a candidate; True when it fails the same way.
    budget : int
        Most candidates tested.

    Returns
    -------
    (bytes, int)
        The reduced input and the number of tests run.
    """
    n = 2
    runs = 0
    while len(data) >= 2 and runs < budget:
        chunk = math.ceil(len(data) / n)
        reduced = False
        for i in range(n):
            candidate = data[:i * chunk] + data[(i + 1) * chunk:]
            if not candidate:
                continue
            runs += 1
            if fails(candidate):
                data = candidate
                n = max(n - 1, 2)
                reduced = True
                break
            if runs >= budget:
                break
        if not reduced:
            if n >= len(data):
                break
            n = min(len(data), n * 2)
    return data, runs
