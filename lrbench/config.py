"""Sweep configs: a YAML file validated completely, then expanded into run specs.

pydantic does the checking, strictly (no number is guessed from text or a boolean); this module
adds what spans keys (a grid needs a validation split, nothing is counted twice, a sweep has a
bounded number of runs) and turns every error into one line per problem that names the file,
the key path (`schedules[2].beta`) and the value, and suggests the closest name.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import reprlib
import stat
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yaml import YAMLError
from yaml.reader import ReaderError

from lrbench.data.identity import identify
from lrbench.data.imported import resolve_dataset
from lrbench.data.sources import dataset_shape
from lrbench.data.text import load_text
from lrbench.errors import UserError, did_you_mean
from lrbench.imports import add_search_path, check_callable, import_ref
from lrbench.models import check_model_name, model_family
from lrbench.models.imported import build_imported, check_imported, resolve_import
from lrbench.schedules import ScheduleError, build_schedule
from lrbench.specs import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH,
    MAX_EPOCHS,
    SEEDS_BELOW,
    DatasetSpec,
    ImportedLoss,
    ImportedModel,
    Log,
    OptimizerSpec,
    RunSpec,
    Strict,
    epochs_for_budget,
    import_label,
)
from lrbench.train.optim import SCHEDULE_FREE, check_schedule
from lrbench.yamlio import load_yaml

MAX_RUNS = 100_000
MAX_CONFIG_BYTES = 256 * 1024
MAX_LABEL = 64  # a run id holds model, dataset and schedule labels: under 255 bytes
RESERVED_NAMES = ("runs", "report")  # a sweep's runs; where `lrbench report RESULTS` writes


class _AsWritten(reprlib.Repr):
    """A value as the config spells it (true, null, .nan), cut short: an input can be huge."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlist = self.maxdict = 6

    def repr_bool(self, value: bool, level: int) -> str:
        return "true" if value else "false"

    def repr_NoneType(self, value: None, level: int) -> str:
        return "null"

    def repr_float(self, value: float, level: int) -> str:
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)


shown = _AsWritten().repr


def _first_repeat(items: list) -> Any:
    """The first item that an earlier one equals, or None."""
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


class OptimizerEntry(OptimizerSpec):
    """An optimizer as written in a sweep: `lr` may be a list, a tuning grid."""

    lr: float | list[float]  # type: ignore[assignment]

    @field_validator("lr", mode="wrap")
    @classmethod
    def _positive(cls, value: Any, handler: Any) -> float | list[float]:
        try:
            lr = handler(value)
        except ValidationError:
            lr = None
        rates = lr if isinstance(lr, list) else [lr]
        if lr is None or not rates or any(r <= 0 for r in rates):
            raise ValueError(
                f"must be a positive number or a non-empty list of them, got {shown(value)}"
            )
        twice = _first_repeat(rates)
        if twice is not None:
            raise ValueError(f"lists the rate {twice:g} twice")
        return lr

    @property
    def rates(self) -> list[float]:
        return self.lr if isinstance(self.lr, list) else [self.lr]


class ModelEntry(Strict):
    """Your own model in `models:`: `{import: "module:factory", label: mynet, args: {...}}`."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    ref: str = Field(alias="import", description="module:factory")
    label: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._+-]+$", description="run ids and reports (default: factory)"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="keywords of the factory")


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
    name: str = Field(min_length=1, max_length=100, description="the sweep's folder")
    loss: ImportedLoss | None = Field(
        None, description="your own loss: {import: module:function}, (outputs, targets) -> [B]"
    )
    metric: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_]{1,40}$",
        description="what the report ranks by (default: error; loss for text and own losses)",
    )
    dataset: DatasetSpec
    models: list[str | ImportedModel] = Field(min_length=1)
    optimizers: list[OptimizerEntry] = Field(min_length=1)
    full_epochs: int = Field(gt=0, le=MAX_EPOCHS)
    budgets: list[float] = Field(min_length=1)
    seeds: int | list[int] = 1
    batch_size: int = Field(DEFAULT_BATCH_SIZE, gt=0, le=MAX_BATCH)
    schedules: list[str | dict[str, Any]] = Field(min_length=1)
    early_stop: EarlyStop | None = None
    snapshots: bool = False
    executor: ExecutorConfig | None = None
    log: Log | None = Field(None, description="tensorboard: live curves; not part of run ids")
    keep_checkpoints: bool = Field(
        False, description="keep checkpoint.pt of finished runs; not part of run ids"
    )

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str) -> str:
        """The name is a folder under the results root, never a path that leaves it."""
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
            raise ValueError(
                f"{shown(name)} is not a plain folder name (letters, digits, '.', '_', '-'; "
                "not starting with '.', which status and report would not see)"
            )
        if name.lower() in RESERVED_NAMES:
            why = (
                "it is the folder of a sweep's runs, and a sweep named so would hide the other "
                "sweeps of its results folder"
                if name.lower() == "runs"
                else "it is the folder `lrbench report RESULTS` writes its files to"
            )
            raise ValueError(f"{shown(name)} is reserved: {why}")
        return name

    @model_validator(mode="before")
    @classmethod
    def _own_loss(cls, data: Any, info: ValidationInfo) -> Any:
        """`loss: {import: ...}`: the function imported and its source hashed (as for models),
        and the dataset's tensors used as they are (`tensors: true`)."""
        if not isinstance(data, dict) or data.get("loss") is None:
            return data
        loss, dataset = data["loss"], data.get("dataset")
        if isinstance(loss, dict) and _imports(info) and set(loss) == {"import"}:
            try:
                imported = import_ref(loss["import"], "loss")
                check_callable(imported, "loss", "a function (outputs, targets) -> losses [B]")
            except UserError as err:
                raise ValueError(str(err)) from None
            loss = {"import": imported.ref, "source": imported.source_hash}
        if isinstance(dataset, dict) and ("import" in dataset or dataset.get("name") == "import"):
            dataset = {**dataset, "tensors": True}
        elif dataset is not None:
            raise ValueError(
                "loss: your own loss trains on your own data: dataset: {import: module:function}"
            )
        return {**data, "loss": loss, "dataset": dataset}

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_shorthand(cls, value: Any, info: ValidationInfo) -> Any:
        """A name alone; a text file's path taken from the config file's folder."""
        if isinstance(value, str):
            return {"name": value}
        folder = (info.context or {}).get("base")
        if isinstance(value, dict) and value.get("name") == "text" and folder is not None:
            path = value.get("path")
            if isinstance(path, str) and path and not Path(path).is_absolute():
                return {**value, "path": os.path.normpath((Path(folder) / path).absolute())}
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset_resolved(cls, dataset: DatasetSpec, info: ValidationInfo) -> DatasetSpec:
        """Your own data imported and its source hashed, an image folder's images fingerprinted,
        here: sweep.yaml records what its runs read and is read again (imports=False) as it is,
        without importing or hashing anything."""
        if not _imports(info):
            return dataset
        dataset = _placed(dataset, info.context or {})
        try:
            resolved = identify(resolve_dataset(dataset, "dataset"))
            if resolved.name == "text":
                load_text(resolved)  # a file too short, or a limit too large: before training
            return resolved
        except UserError as err:
            raise ValueError(str(err)) from None

    @field_validator("models", mode="before")
    @classmethod
    def _known_models(cls, models: Any, info: ValidationInfo) -> Any:
        """Built-in names checked, own models imported and hashed (as for the dataset): each
        problem names its `models[i]`."""
        if not isinstance(models, list):
            return models
        out = []
        for i, m in enumerate(models):
            where = f"models[{i}]"
            if isinstance(m, str):
                try:
                    check_model_name(m)
                except UserError as err:
                    raise ValueError(f"{where}: {err}") from None
            elif isinstance(m, dict) and not _imports(info) and "source" in m:
                m = ImportedModel.model_validate(m)
            elif isinstance(m, dict):
                entry = _model_entry(m, where)
                try:
                    m = resolve_import(entry.ref, entry.label, entry.args, where)
                except UserError as err:
                    raise ValueError(str(err)) from None
            out.append(m)
        return out

    @model_validator(mode="after")
    def _models_distinct(self) -> SweepConfig:
        labels = [m if isinstance(m, str) else m.label or import_label(m.ref) for m in self.models]
        for i, label in enumerate(labels):
            if labels.index(label) < i:
                raise ValueError(f"models[{i}]: {label!r} is listed twice")
            if not isinstance(self.models[i], str) and _is_builtin(label):
                raise ValueError(
                    f"models[{i}].label: {label!r} is a built-in model's name; choose another"
                )
        return self

    @model_validator(mode="after")
    def _models_fit_the_task(self) -> SweepConfig:
        """Language models train on text, and text trains language models; your own loss
        trains your own models; what has no accuracy is not judged by one."""
        text = self.dataset.name == "text"
        for i, model in enumerate(self.models):
            if isinstance(model, str) and (model_family(model)[0] == "gpt") != text:
                if text:
                    raise ValueError(
                        f"models[{i}]: {model} is not a language model; a text dataset trains "
                        "gpt{layers}-{width} (e.g. gpt4-128) or your own factory"
                    )
                raise ValueError(
                    f"models[{i}]: {model} is a language model; it trains on "
                    "dataset: {name: text, path: FILE}"
                )
            if isinstance(model, str) and self.loss is not None:
                raise ValueError(
                    f"models[{i}]: with your own loss, models are your own factories "
                    "({import: module:factory}), called with their args only"
                )
        if self.dataset.tensors and self.loss is None:
            raise ValueError("dataset.tensors: true goes with your own loss (loss: {import: ...})")
        if not (text or self.loss):
            return self
        if self.snapshots:
            raise ValueError("snapshots: snapshot ensembles are scored by accuracy of images")
        if self.loss is not None and self.early_stop and self.early_stop.metric.endswith("_acc"):
            raise ValueError(
                f"early_stop.metric: {self.early_stop.metric}: your own loss records no "
                "accuracy; use val_loss or train_loss"
            )
        for i, opt in enumerate(self.optimizers):
            if text and opt.name in SCHEDULE_FREE:
                raise ValueError(
                    f"optimizers[{i}].name: {opt.name} trains image models here; language "
                    "models use sgd, adam or adamw"
                )
        return self

    @model_validator(mode="after")
    def _imports_build(self, info: ValidationInfo) -> SweepConfig:
        """Your own models build, and map images to class logits (when the dataset's image
        size and class count are known before loading it)."""
        if not _imports(info):
            return self
        if self.dataset.name == "text" or self.loss is not None:
            vocab = 2 if self.dataset.name == "text" else None
            context = self.dataset.context
            try:
                for i, model in enumerate(self.models):
                    if isinstance(model, ImportedModel):
                        with torch.random.fork_rng(devices=[]):
                            build_imported(model, vocab, f"models[{i}]", context)
            except UserError as err:
                raise ValueError(str(err)) from None
            return self
        shape = dataset_shape(self.dataset)
        num_classes, size = shape if shape else (10, None)
        try:
            for i, model in enumerate(self.models):
                if isinstance(model, ImportedModel):
                    check_imported(model, num_classes, size, f"models[{i}]")
        except UserError as err:
            raise ValueError(str(err)) from None
        return self

    @field_validator("schedules")
    @classmethod
    def _schedules_build(
        cls, schedules: list[str | dict[str, Any]], info: ValidationInfo
    ) -> list[str | dict[str, Any]]:
        """Every schedule builds; one named by import path is imported and tried here (unless
        the context says imports=False) and its entry records the module's source hash, so
        sweep.yaml names the code its runs ran and is read again without importing it."""
        imports = _imports(info)
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
        twice = _first_repeat(budgets)
        if twice is not None:
            raise ValueError(f"lists the budget {twice:g} twice")
        printed = [f"{b:g}" for b in budgets] + [f"{100 * b:g}%" for b in budgets]
        same = _first_repeat(printed)
        if same is not None:
            a, b = [x for x, text in zip(budgets * 2, printed, strict=True) if text == same][:2]
            raise ValueError(
                f"the budgets {a!r} and {b!r} both print as {same} in run ids and tables; "
                "list one of them"
            )
        return budgets

    @field_validator("seeds", mode="wrap")
    @classmethod
    def _seeds(cls, value: Any, handler: Any) -> int | list[int]:
        try:
            seeds = handler(value)
        except ValidationError:
            seeds = None
        if isinstance(seeds, int):
            ok = seeds >= 1
        else:
            ok = bool(seeds) and min(seeds) >= 0 and max(seeds) < SEEDS_BELOW
            ok = ok and _first_repeat(seeds) is None
        if not ok:
            raise ValueError(
                "must be a count >= 1 or a list of distinct seeds in [0, 2**31), "
                f"got {shown(value)}"
            )
        return seeds

    @model_validator(mode="after")
    def _runs_bounded(self) -> SweepConfig:
        """A sweep is listed, planned and tracked whole: billions of runs would never start."""
        sizes = {
            "models": len(self.models),
            "rates": sum(len(opt.rates) for opt in self.optimizers),
            "schedules": len(self.schedules),
            "budgets": len(self.budgets),
            "seeds": self.seeds if isinstance(self.seeds, int) else len(self.seeds),
        }
        total = math.prod(sizes.values())
        if total > MAX_RUNS:
            counts = " x ".join(f"{n:,} {what}" for what, n in sizes.items())
            raise ValueError(
                f"the sweep expands to {total:,} runs ({counts}); at most {MAX_RUNS:,} fit "
                "one sweep: split it into sweeps of other names, e.g. by seeds, and report them "
                "together (README: A study larger than one sweep)"
            )
        return self

    @model_validator(mode="after")
    def _each_optimizer_once(self) -> SweepConfig:
        first: dict[str, int] = {}
        for i, opt in enumerate(self.optimizers):
            for lr in opt.rates:
                key = json.dumps({**opt.model_dump(mode="json"), "lr": lr}, sort_keys=True)
                j = first.setdefault(key, i)
                if j != i:
                    raise ValueError(
                        f"optimizers[{i}]: {opt.name} with lr {lr:g} repeats optimizers[{j}]; "
                        "each run would train and count twice"
                    )
        return self

    @model_validator(mode="after")
    def _validation_split_where_needed(self) -> SweepConfig:
        if self.dataset.val_fraction > 0:
            return self
        for i, opt in enumerate(self.optimizers):
            if len(opt.rates) > 1:
                raise ValueError(
                    f"optimizers[{i}].lr: the grid {shown(opt.lr)} is chosen on validation "
                    "accuracy, which needs a validation split; set dataset.val_fraction "
                    "(e.g. 0.1) or give one rate"
                )
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
    def _labels_are_names(self) -> SweepConfig:
        """Labels become parts of run ids (file names) and cells of Markdown tables: at most
        MAX_LABEL characters, none of them a control character or `|`."""
        named = [("dataset.label", self.dataset.display_name)]
        for i, m in enumerate(self.models):
            if not isinstance(m, str):
                named.append((f"models[{i}].label", m.label or import_label(m.ref)))
        for i, entry in enumerate(self.resolved_schedules()):
            named.append((f"schedules[{i}].label", str(entry["label"])))
        for where, label in named:
            bad = next((c for c in label if not c.isprintable() or c == "|"), None)
            if bad is not None or not 1 <= len(label) <= MAX_LABEL:
                why = (
                    f"holds {bad!r}, which a file name or a Markdown table cannot show"
                    if bad is not None
                    else f"has {len(label)} characters (1 to {MAX_LABEL})"
                )
                raise ValueError(f"{where}: {shown(label)} {why}")
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


_UNION_TAGS = ("str", "int", "float", "bool", "list[float]", "list[int]", "dict[str,any]")
_FILE_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _loc(loc: tuple) -> str:
    """`optimizers[0].lr`: a key path as the config writes it (union member tags left out)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in _UNION_TAGS:
            key = part if part.isprintable() else repr(part)
            path += f".{key}" if path else key
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


def _describe(loc: str, errors: list[dict]) -> str:
    """One problem at one key, naming the value; a union's members' complaints become one."""
    err = errors[0]
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        model = _model_at(err["loc"])
        hint = did_you_mean(key, list(model.model_fields)) if model else ""
        return f"{loc}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{loc}: required key is missing"
    if err["type"] == "value_error":  # our validators' messages name the value themselves
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith(("schedules[", "models[", "dataset.", "loss")):
            return msg
        return f"{loc}: {msg}" if loc else msg
    msg = " or ".join(
        [err["msg"], *(e["msg"].removeprefix("Input should be ") for e in errors[1:])]
    )
    hint = ""
    if err["type"] == "literal_error" and isinstance(err.get("input"), str):
        expected = err.get("ctx", {}).get("expected", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",")]
        hint = did_you_mean(err["input"], choices)
    return f"{loc}: {msg}, got {shown(err.get('input'))}{hint}"


def _imports(info: ValidationInfo) -> bool:
    """Whether this validation may import user code (not when a results folder is read)."""
    return bool((info.context or {}).get("imports", True))


def _model_entry(raw: dict, where: str) -> ModelEntry:
    """A `models` mapping as a ModelEntry; its problems as one line naming `models[i].key`."""
    try:
        return ModelEntry.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(part) for part in e["loc"])
            if e["type"] == "extra_forbidden":
                hint = did_you_mean(key, ["import", "label", "args"])
                problems.append(f"{where}.{key}: unknown key{hint}")
            elif e["type"] == "missing":
                problems.append(f"{where}.{key}: required key is missing")
            else:
                problems.append(f"{where}.{key}: {e['msg']}")
        raise ValueError("; ".join(problems)) from None


def _is_builtin(name: str) -> bool:
    try:
        check_model_name(name)
    except UserError:
        return False
    return True


def config_relative(value: str, base: Path) -> str:
    """A path written in a config, read from the config's folder (`~` expanded; an absolute
    path as it is), so a config means the same files from whichever folder it is run."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def read_from(dataset: DatasetSpec, root: str) -> DatasetSpec:
    """The same dataset read from an image folder or archive (`--data-root`): it keeps its name
    in run ids and reports (`label`), whichever command made the run. A text dataset reads
    another copy of its text (or another text)."""
    if dataset.name == "text":
        path = os.path.normpath(Path(root).absolute())
        return dataset.model_copy(update={"path": path, "fingerprint": None})
    moved = {"name": "imagefolder", "root": root, "label": dataset.display_name}
    return dataset.model_copy(update={**moved, "ref": None, "args": None, "source": None})


def _placed(dataset: DatasetSpec, context: dict[str, Any]) -> DatasetSpec:
    """The dataset where this command reads it: `--data-root` in place of the config's data
    (its own path is never checked then), else the config's paths from the config's folder."""
    if context.get("data_root"):
        return read_from(dataset, context["data_root"])
    base = context.get("base")
    if base is None or dataset.root is None:
        return dataset
    return dataset.model_copy(update={"root": config_relative(dataset.root, base)})


def load_config(
    path: str | Path, imports: bool = True, data_root: str | None = None
) -> SweepConfig:
    """Read and validate a sweep file; every problem is reported at once, naming file and key.

    Paths in it (the dataset's root) and import paths resolve against the file's folder (import
    paths also against the current directory); `data_root` replaces the dataset's files before
    they are looked at. With imports=False (a results folder's sweep.yaml, read by `status`) no
    user code is imported and no path is touched.
    """
    if data_root is not None and not Path(data_root).exists():
        raise UserError(f"--data-root {data_root}: no such file or folder")
    path = Path(path)
    text = _config_text(path)
    try:
        raw = load_yaml(text)
    except YAMLError as err:
        raise UserError(_yaml_problem(path, text, err)) from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys (name, dataset, models, ...)")
    if imports:  # the folder added last is searched first: the config's own modules win
        add_search_path(Path.cwd(), path.parent)
    placing = {"base": path.absolute().parent, "data_root": data_root}
    return parse_config(raw, source=str(path), imports=imports, placing=placing)


def _config_text(path: Path) -> str:
    """The text of a config file; anything but a small UTF-8 text file is refused by what it is."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the config file: {err.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a folder, not a config file")
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "neither a file nor a folder")
        raise UserError(f"{path}: is not a regular file ({kind})")
    if info.st_size > MAX_CONFIG_BYTES:
        raise UserError(
            f"{path}: {info.st_size:,} bytes is too large for a sweep config "
            f"(at most {MAX_CONFIG_BYTES:,})"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read the config file: {err.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: not a text file: byte 0x{data[err.start]:02x} at offset {err.start} "
            "is not UTF-8"
        ) from None


def _yaml_problem(path: Path, text: str, err: YAMLError) -> str:
    """`file:line:column: not valid YAML: what`, for every kind of YAMLError."""
    mark = getattr(err, "problem_mark", None)
    if mark is not None:
        where = f"{path}:{mark.line + 1}:{mark.column + 1}"
    elif isinstance(err, ReaderError):  # a character YAML refuses (NUL, ...): no mark
        before = text[: err.position]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        where = f"{path}:{line}:{column}"
    else:
        where = str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    if context and problem.startswith("but "):  # "expected a single document ... but found ..."
        problem = f"{context} {problem}"
    return f"{where}: not valid YAML: {problem}"


def parse_config(
    raw: dict, source: str = "<config>", imports: bool = True, placing: dict | None = None
) -> SweepConfig:
    """`placing`: where the config's paths are read from (`base`) and `data_root`, if given."""
    try:
        return SweepConfig.model_validate(raw, context={"imports": imports, **(placing or {})})
    except ValidationError as err:
        at: dict[str, list[dict]] = {}
        for e in err.errors():
            at.setdefault(_loc(e["loc"]), []).append(e)
        problems = sorted({_describe(loc, errors) for loc, errors in at.items()})
        raise UserError(f"{source}: " + "; ".join(problems)) from None


def with_data_root(config: SweepConfig, root: str) -> SweepConfig:
    """The same sweep reading its images from a folder or archive (`--data-root`).

    The dataset keeps its name in reports (`label`). The run ids cover the images' fingerprint,
    not `root`: the same images by any path, or copied elsewhere, give the same runs.
    """
    if not Path(root).exists():
        raise UserError(f"--data-root {root}: no such file or folder")
    dataset = identify(read_from(config.dataset, root))
    if dataset.name == "text":
        try:
            load_text(dataset)
        except UserError as err:
            raise UserError(f"--data-root {root}: {err}") from None
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
                    loss=config.loss,
                    metric=config.metric,
                )
            )
    return runs
