"""One fused optimizer step for every model of a pack, each with its own rate and momentum.

The pack's parameters, gradient and optimizer state are each one flat tensor (see
lrbench.train.packed.models), so a step is a handful of whole-buffer ops whatever G and the depth are:
the step's per-model values (rate, momentum, Adam's bias-corrected step size) are rows of
[steps, G] tables that live on the device, spread to the elements with one `index_select` over
`owner` (which model each element belongs to), and applied with plain tensor ops. No host sync.
The rates and momenta come together, one epoch at a time (`set_rates`): a reactive schedule
(plateau) may change a model's rates between epochs.

The arithmetic is the reference's, op for op, so a packed model follows its unpacked twin:

- SGD (torch.optim.SGD, dampening 0): d = g + wd*p; buf = mu*buf + d (the first step's
  clone(d) equals mu*0 + d, so buffers start at zero); d = d + mu*buf (Nesterov) or buf;
  p = p - lr*d. A model whose momentum is 0 at a step skips its buffer, as PyTorch does, and
  PyTorch keeps a buffer only once momentum has been nonzero (`moved`: checkpoints say so).
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
    models: int,
    decay_mask: torch.Tensor | None = None,
) -> PackedOptimizer | PackedScheduleFree:
    """The fused optimizer for `spec` over the `models` models of a pack; `decay_mask` (bool,
    shaped like `flat`) the elements weight decay applies to, None for all of them."""
    kind = PackedScheduleFree if spec.name in SCHEDULE_FREE else PackedOptimizer
    optimizer = kind(spec, flat, owner, models)
    optimizer.decay_mask = decay_mask
    return optimizer


class PackedOptimizer:
    """Fused SGD / Adam / AdamW over one flat parameter tensor shared by G models."""

    decay_mask: torch.Tensor | None = None  # elements weight decay applies to (None: all)

    def __init__(
        self, spec: OptimizerSpec, flat: torch.Tensor, owner: torch.Tensor, models: int
    ) -> None:
        self.spec = spec
        self.flat = flat
        self.owner = owner
        self.update_fn = sgd_update if spec.name == "sgd" else adam_update
        self.state: dict[str, torch.Tensor] = {}  # SGD's momentum buffer comes once needed
        self.tables: dict[str, torch.Tensor] = {}
        self.sgd_paths = {"use_momentum": False, "skips": False}  # this epoch's (set_rates)
        self.moved = np.zeros(models, dtype=bool)  # SGD: momentum has been nonzero (a buffer)
        if spec.name != "sgd":
            self.state["exp_avg"] = torch.zeros_like(flat)
            self.state["exp_avg_sq"] = torch.zeros_like(flat)

    def _table(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(
            np.ascontiguousarray(a), dtype=self.flat.dtype, device=self.flat.device
        )

    def set_rates(self, first: int, rates: np.ndarray, momenta: np.ndarray) -> None:
        """Every model's rate and momentum (Adam: beta1) for steps first, first+1, ... ([n, G]
        each, float64; the rates already scaled)."""
        if self.spec.name == "sgd":
            # PyTorch leaves a model's buffer alone at a step whose momentum is 0: the general
            # path is needed only in an epoch where some model's momentum is 0 and some not
            moving = momenta != 0
            self.moved |= moving.any(0)
            self.sgd_paths = {"use_momentum": bool(moving.any()),
                              "skips": bool(moving.any() and not moving.all())}  # fmt: skip
            if moving.any():
                self._momentum_buffer()
            self.tables = {"lr": self._table(rates), "momentum": self._table(momenta)}
            return
        steps = range(first + 1, first + len(rates) + 1)  # 1-based, as torch.optim counts
        beta2 = float(self.spec.betas[1])
        self.tables = {
            "neg_step_size": self._table(-(rates / _bias_correction(momenta, first))),
            "bc2_sqrt": self._table(np.array([(1.0 - beta2 ** float(k)) ** 0.5 for k in steps])),
            "lerp_weight": self._table(1.0 - momenta),
        }
        if self.spec.name == "adamw":
            self.tables["decay"] = self._table(1.0 - rates * float(self.spec.weight_decay))

    def _momentum_buffer(self) -> None:
        if "momentum_buffer" not in self.state:
            self.state["momentum_buffer"] = torch.zeros_like(self.flat)

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
            args.update(row, nesterov=self.spec.nesterov, **self.sgd_paths)
        else:
            args.update(row, beta2=float(self.spec.betas[1]), eps=float(self.spec.eps))
            args.setdefault("decay", None)
        return args

    def train(self) -> None:
        """The parameters are what training steps (nothing to switch for these optimizers)."""

    def eval(self) -> None:
        """The parameters are what evaluation reads (nothing to switch for these optimizers)."""

    # --- per-model state, in torch.optim's own state_dict format (for checkpoints) ----------

    def snapshot(self) -> dict[str, Any]:
        """A copy of the state buffers on the CPU (also on the CPU), and of which models hold
        state, for `member_state` (while the pack trains on)."""
        buffers = {n: t.detach().to("cpu", copy=True) for n, t in self.state.items()}
        return {"buffers": buffers, "moved": self.moved.copy()}

    def member_state(
        self, views, steps_done: int, g: int, snapshot: dict[str, Any] | None = None
    ) -> list[dict]:
        """Per-parameter torch.optim state of model g from a `snapshot()` (default: now):
        `views(tensor)` returns its parameter-shaped views of a flat tensor."""
        snapshot = snapshot or self.snapshot()
        if not self._has_state(g, steps_done, snapshot["moved"]):
            return []
        per_name = {n: views(t) for n, t in snapshot["buffers"].items()}
        count = len(next(iter(per_name.values())))
        out = []
        for i in range(count):
            entry = {n: per_name[n][i] for n in per_name}
            if self.spec.name != "sgd":
                entry = {"step": torch.tensor(float(steps_done)), **entry}
            out.append(entry)
        return out

    def load_member_state(self, views, g: int, per_param: list[dict[str, torch.Tensor]]) -> None:
        """torch.optim's per-parameter state of model g (its checkpoint) into the buffers."""
        if any("momentum_buffer" in entry for entry in per_param):
            self._momentum_buffer()
            self.moved[g] = True
        with torch.no_grad():
            for name, buffer in self.state.items():
                for view, entry in zip(views(buffer), per_param, strict=False):
                    if name in entry:
                        view.copy_(entry[name])

    def _has_state(self, g: int, steps_done: int, moved: np.ndarray) -> bool:
        """Would torch.optim hold state for model g after `steps_done` steps? (SGD keeps a
        momentum buffer only once momentum has been nonzero.)"""
        if self.spec.name != "sgd":
            return steps_done > 0
        return steps_done > 0 and bool(moved[g])


class PackedScheduleFree:
    """Fused schedule-free SGD / AdamW over one flat parameter tensor shared by G models.

    The per-model averaging state (step count k, largest rate so far, sum of weights) is kept
    on the host in Python floats and advanced as the package advances it, one epoch of rates at
    a time; the device gets each step's averaging weight and step sizes as [n, G] tables.
    """

    decay_mask: torch.Tensor | None = None

    def __init__(
        self, spec: OptimizerSpec, flat: torch.Tensor, owner: torch.Tensor, models: int
    ) -> None:
        self.spec = spec
        self.flat = flat
        self.owner = owner
        self.adam = spec.name == "adamw_schedulefree"
        self.beta = float(spec.betas[0] if self.adam else spec.momentum)
        self.k = 0  # steps the averaging state has been advanced over (set_rates)
        self.done = 0  # steps taken
        self.lr_max = [-1.0] * models
        self.weight_sum = [0.0] * models
        self.train_mode = False
        self.state: dict[str, torch.Tensor] = {"z": torch.zeros_like(flat)}
        if self.adam:
            self.state["exp_avg_sq"] = torch.zeros_like(flat)
        self.tables: dict[str, torch.Tensor] = {}
        self.update_fn = schedule_free_update

    def set_rates(self, first: int, rates: np.ndarray, momenta: np.ndarray) -> None:
        """The epoch's rates [n, G]; advances the host-side averaging state over them. The
        momenta hold still (lrbench.train.optim.check_schedule)."""
        n, models = rates.shape
        ckp1 = np.zeros((n, models))
        for g in range(models):
            for i in range(n):
                lr = float(rates[i, g])
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
            "y_step": table(rates * (self.beta * (1.0 - ckp1) - 1.0)),
            "neg_lr": table(-rates),
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

    def member_state(
        self, views, steps_done: int, g: int, snapshot: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Model g's state in lrbench's schedule-free layout (lrbench.train.optim.optimizer_state),
        from a `snapshot()` (default: now)."""
        state = snapshot or self.snapshot()
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


def _bias_correction(betas: np.ndarray, first: int) -> np.ndarray:
    """1 - beta ** k for each [n, G] entry, k = first+1 .. first+n the 1-based step: with
    Python's float pow, as torch.optim computes it (NumPy's vectorised pow may differ from
    libm's in the last bit)."""
    rows = [[1.0 - b ** float(k) for b in row] for k, row in enumerate(betas.tolist(), first + 1)]
    return np.array(rows).reshape(betas.shape)
