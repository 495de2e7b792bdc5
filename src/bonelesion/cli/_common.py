"""What every command module shares: exit codes and argparse ``type=`` functions."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "EXIT_OK", "EXIT_ERROR", "EXIT_CONFIG", "EXIT_INPUT", "EXIT_PARTIAL", "EXIT_UNAVAILABLE",
    "Handler",
    "SubParsers", "existing_path", "int_at_least", "positive_int", "non_negative_int",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_INPUT = 3
EXIT_PARTIAL = 4
EXIT_UNAVAILABLE = 5

Handler = Callable[[argparse.Namespace], int]
SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


def existing_path(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value}: no such file or folder")
    return path


def int_at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse ``type=`` function accepting integers ≥ ``minimum``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from exc
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{value!r} must be ≥ {minimum}")
        return n

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
