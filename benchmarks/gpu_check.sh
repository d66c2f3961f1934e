#!/usr/bin/env bash
# One prepared GPU check for issue #6 (packed training), sized for ~10 minutes of one H200.
#
#   PYTHONPATH=. bash benchmarks/gpu_check.sh            # from the repository root
#
# Needs: python3 with torch (CUDA), torchvision, typer, rich, pyyaml, filelock, pillow, numpy,
# pytest; pydantic's wheels in .whl/ when the machine lacks it, and real CIFAR-10 in
# .data/cifar10_jpeg_train_test.tar.xz: `bash benchmarks/prepare_gpu_check.sh` puts both there
# (folders git ignores; carry them). No network. Without the archive the bench uses synthetic
# images and the sweep stage is skipped.
#
# Stages in order of importance, each under `timeout`, each skipped when the time left
# ($BUDGET_S, default 540 s) is too short for it; everything goes to $OUT (or
# /tmp/gpu_check_out) as 7 files (the device tool returns at most 8):
#   1. pytest -m cuda tests/test_packed.py            -> pytest_cuda.txt
#   2. bench, torch.compile (the default path)         -> bench_compiled.json
#   3. a real packed sweep: configs/rex.yaml's SGD cells at the 1% and 5% budgets, 48 runs
#      ($SWEEP_CONFIG, default benchmarks/rex-sgd-low-budgets.yaml), --pack auto, timed, then
#      its report
#                                                      -> sweep.txt, summary.csv
#   4. bench, eager (LRBENCH_COMPILE=off)              -> bench_eager.json
#   5. vmap vs grouped vs loop, fwd+bwd                -> vmap.txt
# plus gpu_check.log (the environment and the whole console).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-.}
export PYTHONUNBUFFERED=1
export LRBENCH_DATA=${LRBENCH_DATA:-/tmp/lrbench-data}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-540}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu PACKS=2 SWEEP_CONFIG=configs/smoke.yaml: the plumbing, on a CPU
PACKS=${PACKS:-8 32 64}
SWEEP_CONFIG=${SWEEP_CONFIG:-benchmarks/rex-sgd-low-budgets.yaml}
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
echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
$PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
$PY -c "import lrbench, pydantic, typer; print('lrbench', lrbench.__version__)"
echo "cores: $(nproc)"

DATA=synthetic
ARCHIVE=.data/cifar10_jpeg_train_test.tar.xz
if [[ -f $ARCHIVE ]]; then
  DATA=$ARCHIVE
  echo "== decoding $ARCHIVE once (cached in $LRBENCH_DATA)"
  timeout 120 $PY -c "from lrbench.tools.bench import dataset_spec; from lrbench.data import load_splits; s = load_splits(dataset_spec('$ARCHIVE')); print(len(s.train_y), 'train images')"
fi
BENCH=(benchmarks/bench.py --device "$DEVICE" --model resnet20 --batch-size 128 --pack $PACKS --data "$DATA" --json)

stage "pytest -m cuda" 100 150 pytest_cuda.txt \
  $PY -m pytest -m cuda -q -p no:cacheprovider --noconftest -s tests/test_packed.py
stage "bench compiled" 150 220 bench_compiled.json $PY "${BENCH[@]}"
if [[ $DATA != synthetic ]]; then
  RES=/tmp/gpu_check_results
  NAME=$($PY -c "import yaml; print(yaml.safe_load(open('$SWEEP_CONFIG'))['name'])")
  # the sweep is interrupted (SIGINT: finished epochs kept) after $SWEEP_S s, so that the report
  # of what finished still comes back
  stage "packed sweep ($SWEEP_CONFIG)" 150 260 sweep.txt bash -c "
    rm -rf $RES; t0=\$(date +%s)
    timeout --signal=INT --kill-after=20 ${SWEEP_S:-200} $PY -m lrbench sweep $SWEEP_CONFIG --results $RES --data-root $DATA --device $DEVICE 2>&1
    echo \"sweep exit \$? after \$((\$(date +%s) - t0)) s\"
    cat $RES/$NAME/pack-auto.json 2>/dev/null; echo
    $PY -m lrbench report $RES/$NAME --out $RES/report --reference rex-paper 2>&1 || exit
    cp $RES/report/summary.csv $OUT/summary.csv; cat $RES/report/tables.md $RES/report/reference.csv
    $PY -c 'import json, glob; print(\"run wall times (s):\", sorted(round(json.load(open(p))[\"wall_time_s\"], 1) for p in glob.glob(\"$RES/$NAME/runs/*/summary.json\")))'"
fi
stage "bench eager" 60 120 bench_eager.json env LRBENCH_COMPILE=off $PY "${BENCH[@]}"
stage "vmap vs grouped" 40 60 vmap.txt \
  $PY benchmarks/vmap_vs_grouped.py --device "$DEVICE" --groups $PACKS --steps 10 --warmup 3
echo "== done in $(($(date +%s) - START))s; files in $OUT"
