"""`lrbench bench` as a script, for machines where lrbench is not installed:

    PYTHONPATH=. python benchmarks/bench.py --device cuda --pack 8 32 64 --json

Takes exactly the options of `lrbench bench` (see `--help`); the logic is lrbench.tools.bench.
"""

import sys

import lrbench.cli.bench_cmd  # noqa: F401  (registers `bench` even where lrbench.cli does not)
from lrbench.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
