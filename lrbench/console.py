"""The `lrbench` console script: Ctrl-C or SIGTERM is exit 130 from the first instant.

The commands import torch and more (seconds); a signal during those imports must not print a
KeyboardInterrupt traceback or end the process by the signal (exit -2, -15), so the handlers are
set before anything heavy is imported.
"""

from __future__ import annotations

import signal
import sys


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    try:
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        from lrbench.cli import main as run

        run()
    except KeyboardInterrupt:  # before a command took over its signals, or where none does
        print("interrupted", file=sys.stderr)
        sys.exit(130)
