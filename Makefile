# One virtual environment in .venv; every target uses it.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The pinned builds CI installs; the package itself asks only for torch>=2.4.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# The real CIFAR-10 beside the checkout when it is there; empty means download it.
DATA ?= $(wildcard ../shared/data/cifar10_jpeg_train_test.tar.xz)

.PHONY: install test test-all smoke demo bench lint format clean

$(BIN)/lrbench: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/lrbench

# The suite CI runs (kill -9 and resume included); `slow` marks the long equivalence and
# Slurm-job tests, which test-all adds.
test: install
	$(BIN)/python -m pytest -m "not slow"

test-all: install
	$(BIN)/python -m pytest

smoke: install
	rm -rf scratch/smoke
	$(BIN)/lrbench sweep configs/smoke.yaml --results scratch/smoke
	$(BIN)/lrbench report scratch/smoke/smoke --out scratch/smoke/report

# A small real sweep on CIFAR-10 and its report (DATA: an image folder or archive of one), into
# scratch/demo (ignored by git); `make demo RESULTS=results` made the committed results/demo.
RESULTS ?= scratch
demo: install
	$(BIN)/lrbench sweep configs/demo.yaml --results $(RESULTS) $(if $(DATA),--data-root $(DATA))
	$(BIN)/lrbench report $(RESULTS)/demo

bench: install
	$(BIN)/lrbench bench

lint: install
	$(BIN)/ruff check lrbench tests benchmarks
	$(BIN)/ruff format --check lrbench tests benchmarks

format: install
	$(BIN)/ruff format lrbench tests benchmarks
	$(BIN)/ruff check --fix lrbench tests benchmarks

clean:
	rm -rf scratch .pytest_cache .ruff_cache
