#!/usr/bin/env bash
# Everything benchmarks/gpu_check.sh needs that the GPU machine lacks, put into two folders that
# git ignores, for the device tool to carry (see benchmarks/README.md):
#
#   bash benchmarks/prepare_gpu_check.sh [ARCHIVE]   # then: run, carry [".data", ".whl"]
#
# .data/: real CIFAR-10 (ARCHIVE, default ../shared/data/cifar10_jpeg_train_test.tar.xz).
# .whl/: the machine has torch, typer, rich, pandas, pyyaml, filelock and pytest, but not
# pydantic (and perhaps an older typing_extensions): wheels for Python 3.12 at the versions this
# project's CI installs; gpu_check.sh installs them into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVE=${1:-../shared/data/cifar10_jpeg_train_test.tar.xz}
PY=${PYTHON:-python3}
mkdir -p .data
cp -u "$ARCHIVE" .data/cifar10_jpeg_train_test.tar.xz
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
rm -rf .whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5 \
  typing_extensions==4.16.0
du -sh .data .whl
