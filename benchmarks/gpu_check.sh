#!/usr/bin/env bash
# One prepared GPU check for issue #6 (packed training), sized for ~10 minutes of one H200.
#
#   PYTHONPATH=. bash benchmarks/gpu_check.sh            # from the repository root
#
# Needs: python3 with torch (CUDA), torchvision, typer, rich, pyyaml, filelock, pillow, numpy,
# pytest; pydantic (+ pydantic_core, annotated_types, typing_inspection) as wheels in .whl/ when
# the machine lacks them (see benchmarks/README.md). No network. Real CIFAR-10: copy the archive
# to .data/cifar10_jpeg_train_test.tar.xz (ignored by git); without it the bench uses synthetic
# images and the sweep stage is skipped.
#
# Stages, each under `timeout`, each skipped when the time left ($BUDGET_S, default 560 s) is
# too short for it; everything goes to $OUT (or /tmp/gpu_check_out) as at most 8 files:
#   1. pytest -m cuda tests/test_packed.py     -> pytest_cuda.txt
#   2. bench, eager  (LRBENCH_COMPILE=off)      -> bench_eager.json
#   3. bench, torch.compile (the default path)  -> bench_compiled.json
#   4. vmap vs grouped vs loop, fwd+bwd         -> vmap.txt
#   5. a short real packed sweep (8 runs, 1 pack, 2 epochs of CIFAR-10) -> sweep.txt
# plus gpu_check.log (the whole console) and env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-.}
export PYTHONUNBUFFERED=1
export LRBENCH_DATA=${LRBENCH_DATA:-/tmp/lrbench-data}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-560}
START=$(date +%s)
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
stage() {  # stage NAME NEEDED_S LIMIT_S OUTFILE COMMAND...   (stdout -> $OUT/OUTFILE)
  local name=$1 need=$2 limit=$3 file=$4; shift 4
  if (($(left) < need)); then echo "== $name: skipped ($(left)s left, needs ${need}s)"; return; fi
  echo "== $name (limit ${limit}s, $(left)s left) -> $OUT/$file"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$file"
  echo "== $name: exit $? after $(($(date +%s) - t0))s"
  tail -n 25 "$OUT/$file"
}

if [[ -d .whl ]] && ! $PY -c "import pydantic" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  $PY -c "import lrbench, pydantic, typer; print('lrbench', lrbench.__version__)"
  nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

DATA=synthetic
ARCHIVE=.data/cifar10_jpeg_train_test.tar.xz
if [[ -f $ARCHIVE ]]; then
  DATA=$ARCHIVE
  echo "== decoding $ARCHIVE once (cached in $LRBENCH_DATA)"
  timeout 120 $PY -c "from lrbench.bench import dataset_spec; from lrbench.data import load_splits; s = load_splits(dataset_spec('$ARCHIVE')); print(len(s.train_y), 'train images')"
fi
BENCH=(benchmarks/bench.py --device cuda --model resnet20 --batch-size 128 --pack 8 32 64 --data "$DATA" --json)

stage "pytest -m cuda" 150 200 pytest_cuda.txt \
  $PY -m pytest -m cuda -q -p no:cacheprovider --noconftest -s tests/test_packed.py
stage "bench eager" 100 150 bench_eager.json env LRBENCH_COMPILE=off $PY "${BENCH[@]}"
stage "bench compiled" 150 240 bench_compiled.json $PY "${BENCH[@]}"
stage "vmap vs grouped" 60 90 vmap.txt \
  $PY benchmarks/vmap_vs_grouped.py --device cuda --groups 8 32 64 --steps 10 --warmup 3
if [[ $DATA != synthetic ]]; then
  stage "packed sweep" 90 150 sweep.txt \
    $PY benchmarks/packed_sweep.py --data "$DATA" --out /tmp/packed_sweep
fi
echo "== done in $(($(date +%s) - START))s; files in $OUT"
