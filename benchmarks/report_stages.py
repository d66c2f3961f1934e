"""CPU seconds of the report's reading and anytime analysis over a results root, and peak memory.

    PYTHONPATH=. python benchmarks/report_stages.py RESULTS_ROOT   # as benchmarks/make_results.py wrote it

Set PYTHONPATH to another checkout to time its code on the same folder.
"""

import glob, sys, time, resource
from pathlib import Path
import lrbench.report as rep
from lrbench.report.load import load_runs
from lrbench.report.anytime import analyse_anytime
from lrbench.report.rank import choose_lr, summarize
from lrbench.report.variants import assign_variants, named_rows

d = Path(glob.glob(sys.argv[1] + "/*")[0])
t = time.process_time()
loaded = load_runs([d])
t_load = time.process_time() - t
runs, _ = assign_variants(loaded.runs)
chosen, _ = choose_lr(runs)
summary = summarize(chosen)
t = time.process_time()
analyse_anytime(named_rows(chosen), loaded.curves, named_rows(summary))
t_any = time.process_time() - t
print(
    f"{rep.__file__}: {len(loaded.runs)} runs: load {t_load:.1f} s CPU, anytime {t_any:.1f} s CPU, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB"
)
