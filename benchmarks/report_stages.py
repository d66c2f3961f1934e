"""CPU seconds of the report's reading and anytime analysis over a results root, and peak memory.

    PYTHONPATH=. python benchmarks/report_stages.py RESULTS_ROOT   # as make_results.py wrote it

Set PYTHONPATH to another checkout to time its code on the same folder (the stages' functions
keep their names and arguments).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import lrbench.report as report
from lrbench.report.anytime import analyse_anytime
from lrbench.report.load import load_runs
from lrbench.report.rank import choose_lr, summarize
from lrbench.report.variants import assign_variants, named_rows


def main() -> None:
    sweep = next(p for p in sorted(Path(sys.argv[1]).iterdir()) if p.is_dir())
    start = time.process_time()
    loaded = load_runs([sweep])
    reading = time.process_time() - start
    runs, _ = assign_variants(loaded.runs)
    chosen, _ = choose_lr(runs)
    summary = summarize(chosen)
    start = time.process_time()
    analyse_anytime(named_rows(chosen), loaded.curves, named_rows(summary))
    anytime = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"{report.__file__}: {len(loaded.runs)} runs: reading {reading:.1f} s CPU, "
        f"anytime {anytime:.1f} s CPU, peak {peak:.2f} GB"
    )


if __name__ == "__main__":
    main()
