"""One fused optimizer step for every model of a pack, each with its own rate and momentum.

The pack's parameters, gradient and optimizer state are each one flat tensor (see
lrbench.train.packed.models), so a step is a handful of whole-buffer ops whatever G and the depth are:
the step's per-model values (rate, momentum, Adam's bias-corrected step size) are rows of
[steps, G] tables that live on the device, spread to the elements with one `index_select` over
`owner` (which model each element belongs to), and applied with plain tensor ops. No host sync.
The rate tables come one epoch at a time (`set_rates`): a reactive schedule (plateau) may change
a model's rates between epochs.

The arithmetic is the reference's, op for op, so a packed model follows its unpacked twin:

- SGD (torch.optim.SGD, dampening 0): d = g + wd*p; buf = mu*buf + d (the first step's
  clone(d) equals mu*0 + d, so buffers start at zero); d = d + mu*buf (Nesterov) or buf;
  p = p - lr*d. A model whose momentum is 0 at a step skips its buffer, as PyTorch does.
- Adam / AdamW (torch.optim.Adam / AdamW, amsgrad off): Adam adds wd*p to the gradient, AdamW
  scales p by 1 - lr*wd; m = lerp(m, g, 1 - beta1); v = beta2*v + (1 - beta2)*g*g;
  p = p - (lr / (1 - beta1^k)) * m / (sqrt(v) / sqrt(1 - beta2^k) + eps), k the 1-based step.
  beta1 may move with the schedule (onecycle), per model, and bias correction uses the current
  beta1, as PyTorch does. The host-side constants are computed in float64 as PyTorch computes
  them in Python floats.
- Schedule-free SGD / AdamW (the `schedulefree` package's SGDScheduleFree / AdamWScheduleFree,
  r = 0, weight_lr_power = 2, no warmup_steps): the parameters hold y while training and x
  while evaluating; z is the plain SGD (or Adam-normalised) iterate. Per step, with c the
  averaging weight lr_max^2 / sum of lr_max^2 so far: (AdamW: v = beta2*v + (1-beta2)*g*g,
  g = g / (sqrt(v / (1 - beta2^k)) + eps)); g += wd*y; y = lerp(y, z, c);
  y += lr*(beta*(1 - c) - 1)*g; z -= lr*g. train/eval move between y and x with
  lerp(p, z, 1 - beta) and lerp(p, z, 1 - 1/beta).

A frozen model (diverged or stopped) gets rate 0 and moves nothing: `active` multiplies its
per-model factors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lrbench.specs import OptimizerSpec
from lrbench.train.optim import SCHEDULE_FREE


def build_packed_optimizer(
    spec: OptimizerSpec,
    flat: torch.Tensor,
    owner: torch.Tensor,
    momenta: np.ndarray,
    decay_mask: torch.Tensor | None = None,
) -> PackedOptimizer | PackedScheduleFree:
    """The fused optimizer for `spec`; `momenta` [T, G] is every model's momentum (Adam: beta1)
    at every step (the configured value where a schedule does not move it); `decay_mask`
    (bool, shaped like `flat`) the elements weight decay applies to, None for all of them."""
    if spec.name in SCHEDULE_FREE:
        optimizer: PackedOptimizer | PackedScheduleFree = PackedScheduleFree(
            spec, flat, owner, momenta.shape[1]
        )
    else:
        optimizer = PackedOptimizer(spec, flat, owner, momenta)
    optimizer.decay_mask = decay_mask
    return optimizer


class PackedOptimizer:
    """Fused SGD / Adam / AdamW over one flat parameter tensor shared by G models."""

    decay_mask: torch.Tensor | None = None  # elements weight decay applies to (None: all)

    def __init__(
        self, spec: OptimizerSpec, flat: torch.Tensor, owner: torch.Tensor, momenta: np.ndarray
    ) -> None:
        self.spec = spec
        self.flat = flat
        self.owner = owner
        self.momenta = momenta
        self.update_fn = sgd_update if spec.name == "sgd" else adam_update
        self.state: dict[str, torch.Tensor] = {}
        self.tables: dict[str, torch.Tensor] = {}
        if spec.name == "sgd":
            # PyTorch keeps a buffer only once momentum has been nonzero, and leaves it alone
            # at a step whose momentum is 0: the general path is needed only when some model's
            # momentum is 0 at some step.
            self.use_momentum = bool((momenta != 0).any())
            self.skips = bool((momenta == 0).any()) and self.use_momentum
            if self.use_momentum:
                self.state["momentum_buffer"] = torch.zeros_like(flat)
        else:
            steps = len(momenta)
            beta2 = float(spec.betas[1])
            self.bc1 = np.stack([_bias_correction(col) for col in momenta.T], 1)
            self.bc2_sqrt = np.array(
                [b**0.5 for b in _bias_correction(np.full(steps, beta2)).tolist()]
            )
            self.state["exp_avg"] = torch.zeros_like(flat)
            self.state["exp_avg_sq"] = torch.zeros_like(flat)

    def _table(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(
            np.ascontiguousarray(a), dtype=self.flat.dtype, device=self.flat.device
        )

    def set_rates(self, first: int, lrs: np.ndarray) -> None:
        """Every model's rate for steps first, first+1, ... ([n, G], float64, already scaled)."""
        at = slice(first, first + len(lrs))
        mom = self.momenta[at]
        if self.spec.name == "sgd":
            self.tables = {"lr": self._table(lrs), "momentum": self._table(mom)}
            return
        self.tables = {
            "neg_step_size": self._table(-(lrs / self.bc1[at])),
            "bc2_sqrt": self._table(self.bc2_sqrt[at]),
            "lerp_weight": self._table(1.0 - mom),
        }
        if self.spec.name == "adamw":
            self.tables["decay"] = self._table(1.0 - lrs * float(self.spec.weight_decay))

    @torch.no_grad()
    def step(self, grad: torch.Tensor, i: int, active: torch.Tensor) -> None:
        """Apply row i of the current rates with gradient `grad` (flat); `active` [G] bool."""
        self.update_fn(**self.step_args(grad, i, active))

    def step_args(self, grad: torch.Tensor, i: int, active: torch.Tensor) -> dict[str, Any]:
        """The tensors and constants of one step, for `update_fn` (a pure function of them)."""
        args: dict[str, Any] = {
            "p": self.flat, "grad": grad, "owner": self.owner, "active": active,
            "weight_decay": float(self.spec.weight_decay), **self.state,
        }  # fmt: skip
        if self.decay_mask is not None:
            args["decay_mask"] = self.decay_mask
        row = {name: table[i] for name, table in self.tables.items()}
        if self.spec.name == "sgd":
            args.update(row, nesterov=self.spec.nesterov, use_momentum=self.use_momentum,
                        skips=self.skips)  # fmt: skip
        else:
            args.update(row, beta2=float(self.spec.betas[1]), eps=float(self.spec.eps))
            args.setdefault("decay", None)
        return args

    def train(self) -> None:
        """The parameters are what training steps (nothing to switch for these optimizers)."""

    def eval(self) -> None:
        """The parameters are what evaluation reads (nothing to switch for these optimizers)."""

    # --- per-model state, in torch.optim's own state_dict format (for checkpoints) ----------

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of the state buffers on the CPU (also on the CPU), for `member_state`."""
        return {n: t.detach().to("cpu", copy=True) for n, t in self.state.items()}

    def member_state(self, views, steps_done: int, g: int, source=None) -> list[dict]:
        """Per-parameter torch.optim state of model g: `views(tensor)` returns its parameter-
        shaped views of a flat tensor; `source` is a `snapshot()` (default: live)."""
        if not self._has_state(g, steps_done):
            return []
        state = self.state if source is None else source
        per_name = {n: views(t) for n, t in state.items()}
        count = len(next(iter(per_name.values())))
        out = []
        for i in range(count):
            entry = {n: per_name[n][i] for n in per_name}
            if self.spec.name != "sgd":
                entry = {"step": torch.tensor(float(steps_done)), **entry}
            out.append(entry)
        return out

    def load_member_state(self, views, per_param: list[dict[str, torch.Tensor]]) -> None:
        """torch.optim's per-parameter state of one model (its checkpoint) into the buffers."""
        with torch.no_grad():
            for name, buffer in self.state.items():
                for view, entry in zip(views(buffer), per_param, strict=False):
                    if name in entry:
                        view.copy_(entry[name])

    def _has_state(self, g: int, steps_done: int) -> bool:
        """Would torch.optim hold state for model g after `steps_done` steps? (SGD keeps a
        momentum buffer only once momentum has been nonzero.)"""
        if self.spec.name != "sgd":
            return steps_done > 0
        return steps_done > 0 and bool((self.momenta[:steps_done, g] != 0).any())


class PackedScheduleFree:
    """Fused schedule-free SGD / AdamW over one flat parameter tensor shared by G models.

    The per-model averaging state (step count k, largest rate so far, sum of weights) is kept
    on the host in Python floats and advanced as the package advances it, one epoch of rates at
    a time; the device gets each step's averaging weight and step sizes as [n, G] tables.
    """

    decay_mask: torch.Tensor | None = None

    def __init__(
        self, spec: OptimizerSpec, flat: torch.Tensor, owner: torch.Tensor, groups: int
    ) -> None:
        self.spec = spec
        self.flat = flat
        self.owner = owner
        self.adam = spec.name == "adamw_schedulefree"
        self.beta = float(spec.betas[0] if self.adam else spec.momentum)
        self.k = 0  # steps the averaging state has been advanced over (set_rates)
        self.done = 0  # steps taken
        self.lr_max = [-1.0] * groups
        self.weight_sum = [0.0] * groups
        self.train_mode = False
        self.state: dict[str, torch.Tensor] = {"z": torch.zeros_like(flat)}
        if self.adam:
            self.state["exp_avg_sq"] = torch.zeros_like(flat)
        self.tables: dict[str, torch.Tensor] = {}
        self.update_fn = schedule_free_update

    def set_rates(self, first: int, lrs: np.ndarray) -> None:
        """The epoch's rates [n, G]; advances the host-side averaging state over them."""
        n, groups = lrs.shape
        ckp1 = np.zeros((n, groups))
        for g in range(groups):
            for i in range(n):
                lr = float(lrs[i, g])
                self.lr_max[g] = max(lr, self.lr_max[g])
                weight = ((self.k + i + 1) ** 0.0) * (self.lr_max[g] ** 2.0)
                self.weight_sum[g] = self.weight_sum[g] + weight
                try:
                    ckp1[i, g] = weight / self.weight_sum[g]
                except ZeroDivisionError:
                    ckp1[i, g] = 0.0
        beta2 = float(self.spec.betas[1])
        bc2 = [1 - beta2 ** (self.k + i + 1) for i in range(n)]
        self.k += n
        table = lambda a: torch.as_tensor(  # noqa: E731
            np.ascontiguousarray(a), dtype=self.flat.dtype, device=self.flat.device
        )
        self.tables = {
            "ckp1": table(ckp1),
            "y_step": table(lrs * (self.beta * (1.0 - ckp1) - 1.0)),
            "neg_lr": table(-lrs),
            "bc2": table(np.array(bc2)),
        }

    @torch.no_grad()
    def step(self, grad: torch.Tensor, i: int, active: torch.Tensor) -> None:
        if self.done == 0:
            self.state["z"].copy_(self.flat)  # the package's z starts as a copy of y
        self.update_fn(**self.step_args(grad, i, active))
        self.done += 1

    def step_args(self, grad: torch.Tensor, i: int, active: torch.Tensor) -> dict[str, Any]:
        return {
            "p": self.flat, "grad": grad, "owner": self.owner, "active": active,
            "weight_decay": float(self.spec.weight_decay), "eps": float(self.spec.eps),
            "beta2": float(self.spec.betas[1]), "exp_avg_sq": self.state.get("exp_avg_sq"),
            "z": self.state["z"], **{n: t[i] for n, t in self.tables.items()},
            **({"decay_mask": self.decay_mask} if self.decay_mask is not None else {}),
        }  # fmt: skip

    @torch.no_grad()
    def train(self) -> None:
        """Parameters to y (the point gradients are taken at)."""
        if not self.train_mode and self.done > 0:
            self.flat.lerp_(self.state["z"], 1 - self.beta)
        self.train_mode = True

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters to x (the average, the model to evaluate and checkpoint)."""
        if self.train_mode and self.done > 0:
            self.flat.lerp_(self.state["z"], 1 - 1 / self.beta)
        self.train_mode = False

    def snapshot(self) -> dict[str, Any]:
        return {
            **{n: t.detach().to("cpu", copy=True) for n, t in self.state.items()},
            "k": self.done, "lr_max": list(self.lr_max), "weight_sum": list(self.weight_sum),
        }  # fmt: skip

    def member_state(self, views, steps_done: int, g: int, source=None) -> dict[str, Any]:
        """Model g's state in lrbench's schedule-free layout (lrbench.train.optim.schedule_free_state)."""
        state = self.snapshot() if source is None else source
        out: dict[str, Any] = {"k": state["k"], "lr_max": state["lr_max"][g],
                               "weight_sum": state["weight_sum"][g]}  # fmt: skip
        if state["k"] > 0:
            for name in self.state:
                out[name] = views(state[name])
        return {"schedule_free": out}

    def load_member_state(self, views, g: int, saved: dict[str, Any]) -> None:
        sf = saved["schedule_free"]
        self.k = self.done = int(sf["k"])
        self.lr_max[g] = float(sf["lr_max"])
        self.weight_sum[g] = float(sf["weight_sum"])
        with torch.no_grad():
            for name, buffer in self.state.items():
                for view, value in zip(views(buffer), sf.get(name, []), strict=False):
                    view.copy_(value)


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
    decay_mask: torch.Tensor | None = None,
) -> None:
    """torch.optim.SGD's step for G models at once; lr, momentum [G] (this step's rows)."""
    d = _l2(grad, p, weight_decay, decay_mask)
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
    decay_mask: torch.Tensor | None = None,
) -> None:
    """torch.optim.Adam / AdamW's step for G models at once (AdamW when `decay` is given)."""
    if decay is not None:
        if weight_decay != 0:
            keep = torch.where(active, decay, torch.ones_like(decay)).index_select(0, owner)
            if decay_mask is not None:
                keep = torch.where(decay_mask, keep, torch.ones_like(keep))
            p.mul_(keep)
        d = grad
    else:
        d = _l2(grad, p, weight_decay, decay_mask)
    exp_avg.lerp_(d, lerp_weight.index_select(0, owner))
    exp_avg_sq.mul_(beta2).addcmul_(d, d, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
    p.add_(exp_avg.mul((neg_step_size * active).index_select(0, owner)).div_(denom))


def schedule_free_update(
    *,
    p: torch.Tensor,
    grad: torch.Tensor,
    owner: torch.Tensor,
    active: torch.Tensor,
    z: torch.Tensor,
    exp_avg_sq: torch.Tensor | None,
    ckp1: torch.Tensor,
    y_step: torch.Tensor,
    neg_lr: torch.Tensor,
    bc2: torch.Tensor,
    beta2: float,
    eps: float,
    weight_decay: float,
    decay_mask: torch.Tensor | None = None,
) -> None:
    """schedulefree's SGDScheduleFree / AdamWScheduleFree step for G models at once (AdamW
    when `exp_avg_sq` is given); ckp1, y_step, neg_lr [G] are this step's rows."""
    d = grad
    if exp_avg_sq is not None:
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        d = grad / exp_avg_sq.div(bc2).sqrt_().add_(eps)
    d = _l2(d, p, weight_decay, decay_mask)
    on = active.to(p.dtype)
    p.lerp_(z, (ckp1 * on).index_select(0, owner))
    p.addcmul_(d, (y_step * on).index_select(0, owner))
    z.addcmul_(d, (neg_lr * on).index_select(0, owner))


def _l2(grad: torch.Tensor, p: torch.Tensor, weight_decay: float, mask: torch.Tensor | None):
    """grad + weight_decay * p (where `mask`, when given), rounded as torch.optim rounds it."""
    if weight_decay == 0:
        return grad
    d = grad.add(p, alpha=weight_decay)
    return d if mask is None else torch.where(mask, d, grad)


def _bias_correction(beta: np.ndarray) -> np.ndarray:
    """1 - beta_t ** k for k = 1..T, with Python's float pow, as torch.optim computes it
    (NumPy's vectorised pow may differ from libm's in the last bit)."""
    values = beta.tolist()
    if len(set(values)) == 1:
        b = values[0]
        return np.array([1.0 - b ** float(k) for k in range(1, len(values) + 1)])
    return np.array([1.0 - b ** float(k) for k, b in enumerate(values, 1)])
