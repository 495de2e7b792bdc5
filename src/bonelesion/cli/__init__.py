"""Command-line interface: argparse only; each command calls one library function.

One module per command group (`reader`, `measure`, `classify`, `batch`, `phantom`), each with
``register(sub)``; `main` builds the parser and maps errors to exit codes.

Exit codes
----------
0  success
1  unexpected error (a bug: please report it with the -v traceback)
2  configuration error (bad TOML, unknown key, out-of-range value)
3  input error (unreadable or refused DICOM, bad ROI file …)
4  completed with failures (a batch finished, but some studies or files failed)
5  the PACS did not answer (watch, pull, push): nothing is lost; rerun later
130, 143  stopped by SIGINT (Ctrl-C) or SIGTERM: what finished is stored; rerun to resume
"""

from __future__ import annotations

from bonelesion.cli._common import EXIT_CONFIG, EXIT_ERROR, EXIT_INPUT, EXIT_OK, EXIT_PARTIAL
from bonelesion.cli.main import build_parser, main

__all__ = [
    "build_parser", "main", "EXIT_OK", "EXIT_ERROR", "EXIT_CONFIG", "EXIT_INPUT", "EXIT_PARTIAL",
]
