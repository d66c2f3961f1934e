"""How a run executes on this machine: device, precision, memory format, threads, how a pack's
models run and compile, and whether it logs live curves. None of it changes which run it is
(nothing here is hashed into the run id); how it computes is recorded in the run's provenance."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lrbench.errors import UserError
from lrbench.forked import usable_cores
from lrbench.specs import Log

PRECISIONS = ("auto", "fp32", "bf16", "fp64")
COMPILE_ENV = "LRBENCH_COMPILE"  # the default of Runtime.compile, for the commands
NOT_COMPILED = ("", "0", "off", "none", "false", "no")


def compile_from_environment() -> str:
    """Runtime.compile's default: $LRBENCH_COMPILE (off | default | reduce-overhead |
    max-autotune-no-cudagraphs), else auto. Read where a Runtime is built, so that it travels
    with the runtime to the workers and Slurm jobs."""
    return os.environ.get(COMPILE_ENV, "auto").strip().lower() or "off"


@dataclass(frozen=True)
class Runtime:
    """Where and how runs train. `threads`: torch's CPU threads (None: leave torch's choice);
    `import_paths`: folders user modules named in the config are imported from; `log`:
    "tensorboard" writes each run's live curves (lrbench.train.tblog), None writes none;
    `keep_checkpoints`: False deletes a run's checkpoint.pt once it is done or diverged;
    `impl`: how a pack's models run (lrbench.train.packed.models.IMPLS; auto: `loop` on the CPU,
    `grouped` on CUDA where the architecture has it, else `vmap`); `compile`: torch.compile's mode
    for a pack's step (auto: `default` on CUDA, off on the CPU; see resolve_compile)."""

    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    data_dir: str | None = None
    threads: int | None = None
    import_paths: tuple[str, ...] = ()
    log: Log | None = None
    keep_checkpoints: bool = True  # a sweep keeps a finished run's checkpoint only when asked
    impl: str = "auto"
    compile: str = field(default_factory=compile_from_environment)


@dataclass
class Event:
    """Progress reported to a display: one per step (cheap), one per finished epoch, and one
    `resume` per run that continues from its checkpoint (epoch: the checkpoint's)."""

    kind: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    row: dict[str, Any] | None = None
    images_per_s: float | None = None


Callback = Callable[[Event], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_compile(mode: str, device: torch.device) -> str | None:
    """torch.compile's mode for a pack's step on `device`, None for eager: `auto` compiles on
    CUDA (mode `default`) and not on the CPU."""
    mode = mode.strip().lower()
    if mode == "auto":
        return "default" if device.type == "cuda" else None
    return None if mode in NOT_COMPILED else mode


def param_dtype(precision: str) -> torch.dtype:
    """The weights' dtype: float64 for fp64, else float32 (bf16 autocasts over float32 weights)."""
    return torch.float64 if precision == "fp64" else torch.float32


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    """A factory of the context every forward pass runs in: bf16 autocast, or nothing."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def provenance(device: torch.device, precision: str) -> dict[str, Any]:
    """What the numbers of a run may depend on besides its spec: versions, hardware (the CPU's
    instruction set torch dispatches to: AVX-512 or AVX2 round differently), threads."""
    from lrbench import __version__

    return {
        "lrbench": __version__,
        "torch": torch.__version__,
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "git_commit": git_commit(),
        **numeric_libraries(),
    }


@functools.cache
def numeric_libraries() -> dict[str, str | None]:
    """Versions that change float rounding across machines: numpy, and the image decoder
    (Pillow and the libjpeg it was built with) that turns JPEG bytes into pixels."""
    import numpy
    import PIL
    from PIL import features

    return {
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "libjpeg": features.version("jpg"),
    }


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_commit() -> str | None:
    """The commit of the lrbench checkout that runs (None when it is not a git checkout)."""
    here = Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=5, check=False,
    ).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("+dirty" if dirty else "")


def apply_threads(runtime: Runtime) -> None:
    """Set torch's CPU threads for this process when the runtime fixes them."""
    if runtime.threads is not None and runtime.threads != torch.get_num_threads():
        torch.set_num_threads(runtime.threads)


CPU_THREADS = 1  # threads of a worker training on the CPU, unless --threads says otherwise


def default_threads(device: str, workers: int) -> int:
    """CPU threads per worker when nothing says otherwise.

    On the CPU one, whatever the cores and the load: the parallelism is in the workers (a sweep
    starts one per core, lrbench.sweep.run), a run's numbers do not depend on the machine's core
    count or on --jobs (thread count changes how reductions round), and a worker the system
    pauses stalls only itself (two threads of one worker wait for each other at every operation:
    on a loaded 2-core machine that made runs 2-3x slower). On GPUs the cores shared out among
    the workers: there the CPU only feeds the GPU."""
    if device == "cpu":
        return CPU_THREADS
    return max(1, usable_cores() // max(1, workers))
