"""Sweep configs: a YAML file validated completely, then expanded into run specs.

pydantic does the checking; this module only turns its errors into one line per problem that
names the file and the key path (`schedules[2].beta`) and suggests the closest name.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from yaml import YAMLError

from lrbench.errors import UserError, did_you_mean
from lrbench.imports import add_search_path
from lrbench.models import parse_model_name
from lrbench.optim import check_schedule
from lrbench.schedules import ScheduleError, build_schedule
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec, Strict, epochs_for_budget
from lrbench.yamlio import load_yaml


class OptimizerEntry(OptimizerSpec):
    """An optimizer as written in a sweep: `lr` may be a list, a tuning grid."""

    lr: float | list[float]  # type: ignore[assignment]

    @field_validator("lr")
    @classmethod
    def _positive(cls, lr: float | list[float]) -> float | list[float]:
        rates = lr if isinstance(lr, list) else [lr]
        if not rates or any(r <= 0 for r in rates):
            raise ValueError("must be a positive number or a non-empty list of them")
        return lr

    @property
    def rates(self) -> list[float]:
        return self.lr if isinstance(self.lr, list) else [self.lr]


class EarlyStop(Strict):
    """Stop a run whose metric stalls; judged only at cycle ends for cyclical schedules."""

    metric: Literal["val_acc", "val_loss", "train_acc", "train_loss"] = "val_acc"
    patience: int = Field(gt=0, description="epochs without improvement")
    min_delta: float = Field(0.0, ge=0.0)


class ExecutorConfig(Strict):
    """`executor:` — where `lrbench sweep` trains, and the Slurm job settings (flags win).

    `name: local` trains on this machine; `name: slurm` submits one submitit job array. The
    other keys only matter to slurm: each array task trains `runs_per_job` runs, one after the
    other, with this many GPUs, CPUs, memory and time; `sbatch` adds any other sbatch option
    (`{constraint: a100, exclusive: true}`); `setup` lines run before the job starts
    (`module load cuda`, `source .venv/bin/activate`).
    """

    name: Literal["local", "slurm"]
    partition: str | None = None
    gpus_per_job: int | None = Field(None, ge=0)
    cpus_per_job: int | None = Field(None, gt=0)
    mem_gb: float | None = Field(None, gt=0)
    time: int | str | None = Field(None, description="minutes, or D-HH:MM:SS as sbatch takes it")
    account: str | None = None
    qos: str | None = None
    sbatch: dict[str, str | int | float | bool] = Field(default_factory=dict)
    setup: list[str] = Field(default_factory=list)
    max_concurrent: int | None = Field(None, gt=0, description="array tasks running at once")
    runs_per_job: int | None = Field(None, gt=0)
    max_requeues: int | None = Field(None, ge=0, description="requeues after a time-out")

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            cls.minutes(value)
        return value

    @staticmethod
    def minutes(value: int | str) -> int:
        """sbatch's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; whole minutes, rounded up."""
        text = str(value).strip()
        days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
        try:
            parts = [int(p) for p in rest.split(":")]
            d = int(days)
        except ValueError:
            parts, d = [], -1
        if d < 0 or not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
            raise ValueError(f"{value!r} is not a time: minutes, or D-HH:MM:SS (e.g. 240, 4:00:00)")
        if "-" in text:  # D-H, D-H:M, D-H:M:S
            h, m, s = [*parts, 0, 0][:3]
        elif len(parts) == 3:  # H:M:S
            h, m, s = parts
        else:  # M, M:S
            h, m, s = 0, parts[0], parts[1] if len(parts) == 2 else 0
        total = d * 1440 + h * 60 + m + (1 if s else 0)
        if total <= 0:
            raise ValueError(f"{value!r}: the time limit must be at least a minute")
        return total


class SweepConfig(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    dataset: DatasetSpec
    models: list[str] = Field(min_length=1)
    optimizers: list[OptimizerEntry] = Field(min_length=1)
    full_epochs: int = Field(gt=0)
    budgets: list[float] = Field(min_length=1)
    seeds: int | list[int] = 1
    batch_size: int = Field(128, gt=0)
    schedules: list[str | dict[str, Any]] = Field(min_length=1)
    early_stop: EarlyStop | None = None
    snapshots: bool = False
    executor: ExecutorConfig | None = None

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        for m in models:
            try:
                parse_model_name(m)
            except UserError as err:
                raise ValueError(str(err)) from None
        return models

    @field_validator("schedules")
    @classmethod
    def _schedules_build(
        cls, schedules: list[str | dict[str, Any]], info: ValidationInfo
    ) -> list[str | dict[str, Any]]:
        """Every schedule builds; one named by import path is imported and tried here (unless
        the context says imports=False) and its entry records the module's source hash, so
        sweep.yaml names the code its runs ran and is read again without importing it."""
        imports = (info.context or {}).get("imports", True)
        out: list[str | dict[str, Any]] = []
        for i, entry in enumerate(schedules):
            try:
                schedule = build_schedule(entry, imports=imports)
            except ScheduleError as err:
                raise ValueError(f"schedules[{i}]: {err}") from None
            out.append(schedule.to_dict() if schedule.user_code else entry)
        return out

    @field_validator("budgets")
    @classmethod
    def _fractions(cls, budgets: list[float]) -> list[float]:
        for b in budgets:
            if not 0 < b <= 1:
                hint = f" (for {b:g}% write {b / 100:g})" if 1 < b <= 100 else ""
                raise ValueError(f"{b:g} is not a fraction of the full run in (0, 1]{hint}")
        if len(set(budgets)) != len(budgets):
            raise ValueError("lists a budget twice")
        return budgets

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError("must be a count >= 1 or a list of seeds")
        if isinstance(seeds, list) and (
            not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds)
        ):
            raise ValueError("must list distinct seeds >= 0")
        return seeds

    @model_validator(mode="after")
    def _validation_split_where_needed(self) -> SweepConfig:
        if self.dataset.val_fraction > 0:
            return self
        if self.early_stop and self.early_stop.metric.startswith("val_"):
            raise ValueError(
                f"early_stop.metric: {self.early_stop.metric} needs a validation split; "
                "set dataset.val_fraction (e.g. 0.1) or use a train_ metric"
            )
        for i, s in enumerate(self.schedules):
            if isinstance(s, dict) and s.get("monitor") == "val_loss":
                raise ValueError(
                    f"schedules[{i}].monitor: val_loss needs a validation split; set dataset.val_fraction"
                )
        return self

    @model_validator(mode="after")
    def _optimizers_follow_schedules(self) -> SweepConfig:
        for i, opt in enumerate(self.optimizers):
            for entry in self.resolved_schedules():
                schedule = build_schedule(entry, imports=False)
                try:
                    check_schedule(opt, schedule.sets_momentum, schedule.momenta(1000, 10))
                except UserError as err:
                    raise ValueError(
                        f"optimizers[{i}] with schedule {schedule.label!r}: {err}"
                    ) from None
        return self

    @model_validator(mode="after")
    def _labels_unique(self) -> SweepConfig:
        labels = [s["label"] for s in self.resolved_schedules()]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"schedules: label {dup[0]!r} is used twice; give one a `label:`")
        return self

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else self.seeds

    def resolved_schedules(self) -> list[dict[str, Any]]:
        """The schedules as run specs record them; imports were tried when the config was read."""
        out = []
        for i, entry in enumerate(self.schedules):
            try:
                out.append(build_schedule(entry, imports=False).to_dict())
            except ScheduleError as err:
                raise ValueError(f"schedules[{i}]: {err}") from None
        return out


def _loc(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in ("str", "list[float]", "float", "int", "list[int]", "dict[str,any]"):
            path += f".{part}" if path else str(part)
    return path


def _model_at(loc: tuple) -> type | None:
    """The pydantic model whose field set a key path ends in, to suggest a misspelt key."""
    model: Any = SweepConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        ann = field.annotation
        args = [a for a in getattr(ann, "__args__", ()) if hasattr(a, "model_fields")]
        model = args[0] if args else ann
    return model if hasattr(model, "model_fields") else None


def _describe(err: dict) -> str:
    loc = _loc(err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        model = _model_at(err["loc"])
        hint = did_you_mean(key, list(model.model_fields)) if model else ""
        return f"{loc}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{loc}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "literal_error" and isinstance(err.get("input"), str):
        expected = err.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        msg += did_you_mean(err["input"], choices)
    if msg.startswith("schedules["):
        return msg
    return f"{loc}: {msg}" if loc else msg


def load_config(path: str | Path, imports: bool = True) -> SweepConfig:
    """Read and validate a sweep file; every problem is reported at once, naming file and key.

    Import paths in it resolve against the file's folder and the current directory. With
    imports=False (a results folder's sweep.yaml, read by `status`) no user code is imported.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        raw = load_yaml(path.read_text())
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys (name, dataset, models, ...)")
    if imports:  # the folder added last is searched first: the config's own modules win
        add_search_path(Path.cwd(), path.parent)
    return parse_config(raw, source=str(path), imports=imports)


def parse_config(raw: dict, source: str = "<config>", imports: bool = True) -> SweepConfig:
    try:
        return SweepConfig.model_validate(raw, context={"imports": imports})
    except ValidationError as err:
        problems = sorted({_describe(e) for e in err.errors()})
        raise UserError(f"{source}: " + "; ".join(problems)) from None


def with_data_root(config: SweepConfig, root: str) -> SweepConfig:
    """The same sweep reading its images from a folder or archive (`--data-root`).

    The dataset keeps its name in reports (`label`), and the run ids change, since the data do.
    """
    if not Path(root).exists():
        raise UserError(f"--data-root {root}: no such file or folder")
    ds = config.dataset
    dataset = ds.model_copy(update={"name": "imagefolder", "root": root, "label": ds.display_name})
    return config.model_copy(update={"dataset": dataset})


def expand(config: SweepConfig) -> list[RunSpec]:
    """The cartesian product models × optimizers × lr grid × schedules × budgets × seeds.

    The seed alone fixes initial weights and data order, so every schedule in a cell sees the
    same ones for the same seed: comparisons across schedules are paired.
    """
    runs = []
    schedules = config.resolved_schedules()
    for model, opt, schedule, budget, seed in itertools.product(
        config.models, config.optimizers, schedules, config.budgets, config.seed_list
    ):
        for lr in opt.rates:
            runs.append(
                RunSpec(
                    model=model,
                    dataset=config.dataset,
                    optimizer=OptimizerSpec(**{**opt.model_dump(), "lr": lr}),
                    schedule=schedule,
                    budget=budget,
                    full_epochs=config.full_epochs,
                    epochs=epochs_for_budget(budget, config.full_epochs),
                    seed=seed,
                    batch_size=config.batch_size,
                    early_stop=config.early_stop.model_dump() if config.early_stop else None,
                    snapshots=config.snapshots,
                )
            )
    return runs
