#!/bin/bash
# Time `lrbench sweep --dry-run` of 10^3, 10^4 and 10^5 runs (benchmarks/README.md: A plan that
# scales): 10 schedules x 10 budgets x N seeds of resnet8 on synthetic data, into an empty
# results folder. Usage: benchmarks/plan_scale.sh [lrbench]   (default: .venv/bin/lrbench)
set -euo pipefail
LRBENCH=$(realpath "${1:-.venv/bin/lrbench}")
WORK=$(mktemp -d)
cd "$WORK"
for n in 1000 10000 100000; do
  cat > "plan$n.yaml" <<YAML
name: plan$n
dataset: {name: synthetic, limit_train: 256}
models: [resnet8]
optimizers: [{name: sgd, lr: 0.1}]
full_epochs: 100
budgets: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0]
seeds: $((n / 100))
schedules: [step, cosine, linear, rex, exponential, poly, onecycle, constant, wsd, sgdr]
YAML
done
"$LRBENCH" sweep plan1000.yaml --results results --dry-run > /dev/null  # calibrates once
for n in 1000 10000 100000; do
  /usr/bin/time -f "$n runs: %e s wall, %U s CPU, %M KB peak" \
    "$LRBENCH" sweep "plan$n.yaml" --results results --dry-run > /dev/null
done
rm -rf "$WORK"
