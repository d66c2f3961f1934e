"""Command line: thin commands that parse, call into the library and print.

Each command group lives in its own module; importing them registers them on `app`.
"""

from lrbench.cli import (  # noqa: F401  (registers commands)
    bench_cmd,
    lrfind_cmd,
    report_cmd,
    run_cmd,
    schedule_cmd,
    sweep_cmd,
    verify_cmd,
)
from lrbench.cli.app import app, main

__all__ = ["app", "main"]
