"""One fused optimizer step for every model of a pack, each with its own rate and momentum.

The pack's parameters, gradient and optimizer state are each one flat tensor (see
lrbench.packed.models), so a step is a handful of whole-buffer ops whatever G and the depth are:
the step's per-model values (rate, momentum, Adam's bias-corrected step size) are looked up in
[steps, G] tables that live on the device, spread to the elements with one `index_select` over
`owner` (which model each element belongs to), and applied with plain tensor ops. No host sync.

The arithmetic is PyTorch's, op for op, so a packed model follows its unpacked twin:

- SGD (torch.optim.SGD, dampening 0): d = g + wd*p; buf = mu*buf + d (the first step's
  clone(d) equals mu*0 + d, so buffers start at zero); d = d + mu*buf (Nesterov) or buf;
  p = p - lr*d. A model whose momentum is 0 at a step skips its buffer, as PyTorch does.
- Adam / AdamW (torch.optim.Adam / AdamW, amsgrad off): Adam adds wd*p to the gradient, AdamW
  scales p by 1 - lr*wd; m = lerp(m, g, 1 - beta1); v = beta2*v + (1 - beta2)*g*g;
  p = p - (lr / (1 - beta1^k)) * m / (sqrt(v) / sqrt(1 - beta2^k) + eps), k the 1-based step.
  beta1 may move with the schedule (onecycle), per model, and bias correction uses the current
  beta1, as PyTorch does. The host-side constants are computed in float64 as PyTorch computes
  them in Python floats.

A frozen model (diverged) gets rate 0: `active` multiplies the per-model rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lrbench.specs import OptimizerSpec


class PackedOptimizer:
    """Fused SGD / Adam / AdamW over one flat parameter tensor shared by G models."""

    def __init__(
        self,
        spec: OptimizerSpec,
        flat: torch.Tensor,
        owner: torch.Tensor,
        lrs: np.ndarray,
        momenta: np.ndarray | None,
    ) -> None:
        """`lrs` [T, G]: every model's rate at every step; `momenta` [T, G] or None (the
        configured momentum / beta1 stands)."""
        self.spec = spec
        self.flat = flat
        self.owner = owner
        steps, groups = lrs.shape
        self.groups = groups
        dev, dt = flat.device, flat.dtype
        base = spec.betas[0] if spec.name in ("adam", "adamw") else spec.momentum
        mom = np.full((steps, groups), float(base)) if momenta is None else momenta
        self.momenta_table = mom

        def table(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)

        self.lr = table(lrs)
        self.update_fn = sgd_update if spec.name == "sgd" else adam_update
        self.state: dict[str, torch.Tensor] = {}
        if spec.name == "sgd":
            # PyTorch keeps a buffer only once momentum has been nonzero, and leaves it alone
            # at a step whose momentum is 0: the general path is needed only when some model's
            # momentum is 0 at some step.
            self.use_momentum = bool((mom != 0).any())
            self.skips = bool((mom == 0).any()) and self.use_momentum
            self.mom = table(mom)
            if self.use_momentum:
                self.state["momentum_buffer"] = torch.zeros_like(flat)
        else:
            beta2 = float(spec.betas[1])
            bc1 = np.stack([_bias_correction(col) for col in mom.T], 1)
            bc2 = _bias_correction(np.full(steps, beta2))
            self.neg_step_size = table(-(lrs / bc1))
            self.bc2_sqrt = table(np.array([b**0.5 for b in bc2.tolist()]))
            self.lerp_weight = table(1.0 - mom)
            if spec.name == "adamw":
                self.decay = table(1.0 - lrs * float(spec.weight_decay))
            self.state["exp_avg"] = torch.zeros_like(flat)
            self.state["exp_avg_sq"] = torch.zeros_like(flat)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, t: int, active: torch.Tensor) -> None:
        """Apply step t (0-based) with gradient `grad` (flat); `active` [G] bool."""
        self.update_fn(**self.step_args(grad, t, active))

    def step_args(self, grad: torch.Tensor, t: int, active: torch.Tensor) -> dict[str, Any]:
        """The tensors and constants of step t, for `update_fn` (a pure function of them)."""
        args: dict[str, Any] = {
            "p": self.flat, "grad": grad, "owner": self.owner, "active": active,
            "weight_decay": float(self.spec.weight_decay), **self.state,
        }  # fmt: skip
        if self.spec.name == "sgd":
            args.update(lr=self.lr[t], momentum=self.mom[t], nesterov=self.spec.nesterov,
                        use_momentum=self.use_momentum, skips=self.skips)  # fmt: skip
        else:
            args.update(
                neg_step_size=self.neg_step_size[t],
                bc2_sqrt=self.bc2_sqrt[t],
                lerp_weight=self.lerp_weight[t],
                decay=self.decay[t] if self.spec.name == "adamw" else None,
                beta2=float(self.spec.betas[1]),
                eps=float(self.spec.eps),
            )
        return args

    # --- per-model state, in torch.optim's own state_dict format (for checkpoints) ----------

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of the state buffers on the CPU (also on the CPU), for `member_state`."""
        return {n: t.detach().to("cpu", copy=True) for n, t in self.state.items()}

    def member_state(self, views, source=None) -> list[dict[str, torch.Tensor]]:
        """Per-parameter torch.optim state of one model: `views(tensor)` returns that model's
        parameter-shaped views of a flat tensor; `source` is a `snapshot()` (default: live)."""
        state = self.state if source is None else source
        names = list(state)
        if not names:
            return []
        per_name = {n: views(state[n]) for n in names}
        count = len(next(iter(per_name.values())))
        return [{n: per_name[n][i] for n in names} for i in range(count)]

    def has_buffer(self, g: int, steps_done: int) -> bool:
        """Would torch.optim.SGD hold a momentum buffer for model g after `steps_done` steps?"""
        if self.spec.name != "sgd":
            return True
        return steps_done > 0 and bool((self.momenta_table[:steps_done, g] != 0).any())


def sgd_update(
    *,
    p: torch.Tensor,
    grad: torch.Tensor,
    owner: torch.Tensor,
    active: torch.Tensor,
    lr: torch.Tensor,
    momentum: torch.Tensor,
    weight_decay: float,
    nesterov: bool,
    use_momentum: bool,
    skips: bool,
    momentum_buffer: torch.Tensor | None = None,
) -> None:
    """torch.optim.SGD's step for G models at once; lr, momentum [G] (this step's rows)."""
    d = grad.add(p, alpha=weight_decay) if weight_decay != 0 else grad
    if use_momentum:
        assert momentum_buffer is not None
        buf = momentum_buffer
        mu = momentum.index_select(0, owner)
        if skips:  # a model at momentum 0 leaves its buffer alone and steps with d
            moving = mu != 0
            buf.copy_(torch.where(moving, buf * mu + d, buf))
            d = torch.where(moving, d.addcmul(buf, mu) if nesterov else buf, d)
        else:
            buf.mul_(mu).add_(d)
            d = d.addcmul(buf, mu) if nesterov else buf
    neg_lr = (lr * active).index_select(0, owner).neg_()
    p.addcmul_(d, neg_lr)  # p + (-lr)*d rounded as add(alpha=-lr) rounds it (fused)


def adam_update(
    *,
    p: torch.Tensor,
    grad: torch.Tensor,
    owner: torch.Tensor,
    active: torch.Tensor,
    neg_step_size: torch.Tensor,
    bc2_sqrt: torch.Tensor,
    lerp_weight: torch.Tensor,
    decay: torch.Tensor | None,
    beta2: float,
    eps: float,
    weight_decay: float,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
) -> None:
    """torch.optim.Adam / AdamW's step for G models at once (AdamW when `decay` is given)."""
    if decay is not None:
        if weight_decay != 0:
            keep = torch.where(active, decay, torch.ones_like(decay))
            p.mul_(keep.index_select(0, owner))
        d = grad
    else:
        d = grad.add(p, alpha=weight_decay) if weight_decay != 0 else grad
    exp_avg.lerp_(d, lerp_weight.index_select(0, owner))
    exp_avg_sq.mul_(beta2).addcmul_(d, d, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
    p.add_(exp_avg.mul((neg_step_size * active).index_select(0, owner)).div_(denom))


def _bias_correction(beta: np.ndarray) -> np.ndarray:
    """1 - beta_t ** k for k = 1..T, with Python's float pow, as torch.optim computes it
    (NumPy's vectorised pow may differ from libm's in the last bit)."""
    values = beta.tolist()
    if len(set(values)) == 1:
        b = values[0]
        return np.array([1.0 - b ** float(k) for k in range(1, len(values) + 1)])
    return np.array([1.0 - b ** float(k) for k, b in enumerate(values, 1)])
