"""Two ways to train G models as one: lrbench's packed layers vs torch.func's vmap.

    PYTHONPATH=. python benchmarks/vmap_vs_grouped.py --device cuda --groups 8 32 64

Times forward + backward of G ResNets (optimizer excluded: the same flat update serves both):

- grouped: lrbench.train.packed (impl=grouped): one [B, G*C, H, W] activation, grouped convolutions,
  per-model BatchNorm over G*C channels, a batched-matmul head; parameters in one flat tensor.
- loop: lrbench.train.packed (impl=loop): the same packed parameters, one model's layers at a time.
- vmap: lrbench.train.packed (impl=vmap): torch.func.vmap over functional_call of the plain model,
  the documented "model ensembling" recipe on the same packed parameters; BatchNorm buffers are
  stacked too, so running stats update per model.

Prints one line per (G, way): ms per step and model-steps per second.
"""

from __future__ import annotations

import argparse
import time

import torch

from lrbench.train import autocast_for
from lrbench.train.build import build_packed_model
from lrbench.train.packed.stepper import per_model_loss


def timed(step, device, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--groups", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (default on CUDA)")
    args = ap.parse_args()
    device = torch.device(args.device)
    autocast = autocast_for("bf16" if args.bf16 or device.type == "cuda" else "fp32", device)

    for g in args.groups:
        for way, sec in measure(g, args, device, autocast).items():
            print(f"G={g:3d} {way:8s} {sec * 1e3:9.1f} ms/step  {g / sec:8.1f} model-steps/s")


def measure(g: int, args, device: torch.device, autocast) -> dict[str, float]:
    b = args.batch_size
    x5 = torch.randn(g, b, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (g, b), device=device)
    x = x5.permute(1, 0, 2, 3, 4).reshape(b, g * 3, 32, 32)
    x = x.contiguous(memory_format=torch.channels_last)
    results = {}
    for impl in ("grouped", "vmap", "loop"):
        net = build_packed_model(args.model, 10, list(range(g)), device, "fp32", True, impl)

        def step(net=net):
            with autocast():
                out = net(x)
                loss = per_model_loss(out, y, torch.float32).sum()
            net.flat.grad = None
            loss.backward()

        try:
            results[impl] = timed(step, device, args.steps, args.warmup)
        except Exception as err:  # report, don't hide
            print(f"G={g} {impl} failed: {type(err).__name__}: {err}")
    return results


if __name__ == "__main__":
    main()
