"""Typed, fully resolved descriptions of one run: what spec.json holds and the run id hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lrbench.defaults import (  # noqa: F401  (re-exported: the specs' defaults and bounds)
    DEFAULT_BATCH_SIZE,
    DEFAULT_MOMENTUM,
    DEFAULT_WEIGHT_DECAY,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_IMAGES,
    SEEDS_BELOW,
)

DatasetName = Literal["cifar10", "cifar100", "stl10", "synthetic", "imagefolder", "import", "text"]
OptimizerName = Literal["sgd", "adam", "adamw", "sgd_schedulefree", "adamw_schedulefree"]
# how runs log live curves: how a run executes, never part of its id
Log = Literal["tensorboard"]
LOGS: tuple[str, ...] = ("tensorboard",)

# Sizes past any real use for a language model's context.
MAX_CONTEXT = 65_536
DEFAULT_CONTEXT = 256
FINGERPRINT = r"^sha256:[0-9a-f]{64}$"  # lrbench.data.identity


class Strict(BaseModel):
    """Unknown keys are errors, and nothing is coerced: a misspelt option must never be silently
    ignored, and `true`, `'3'` or `.nan` is not a number (a whole number is a float, though)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ImportedModel(Strict):
    """The user's own model as a run records it. spec.json writes `ref` as `import`."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    ref: str = Field(alias="import", description="module:factory")
    label: str = Field(description="the name run ids and reports show")
    args: dict[str, Any] = Field(default_factory=dict, description="the factory's keywords")
    source: str = Field(description="hash of the factory's module source (lrbench.imports)")

    def __hash__(self) -> int:
        """Frozen, so usable as a key (to group runs by model), though `args` is a dict."""
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))


def import_label(ref: str) -> str:
    """The default name of an imported model or dataset: its function's ("mod:make" -> "make")."""
    return ref.rpartition(":")[2].rpartition(".")[2]


def _unset(value: Any) -> bool:
    return value is None


class DatasetSpec(Strict):
    """A built-in source by name, an image folder, or the user's own function (`import`).

    The import fields and the fingerprint are left out of the dump while unset: adding them
    changed no existing run's id.
    """

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    name: DatasetName
    ref: str | None = Field(
        None, alias="import", exclude_if=_unset, description="module:function returning the data"
    )
    args: dict[str, Any] | None = Field(None, exclude_if=_unset, description="its keywords")
    source: str | None = Field(None, exclude_if=_unset, description="hash of its module source")
    root: str | None = Field(
        None, description="imagefolder: a folder or .tar[.gz|.xz] archive, where runs read it"
    )
    path: str | None = Field(
        None, exclude_if=_unset, description="text: the UTF-8 text file, where runs read it"
    )
    context: int | None = Field(
        None, gt=1, le=MAX_CONTEXT, exclude_if=_unset, description="text: characters per window"
    )
    epoch_steps: int | None = Field(
        None,
        gt=0,
        le=MAX_IMAGES,
        exclude_if=_unset,
        description="text: optimizer steps per epoch (default: one pass over the characters)",
    )
    tensors: bool | None = Field(
        None,
        exclude_if=_unset,
        description="import with your own loss: (inputs, targets) used as they are",
    )
    fingerprint: str | None = Field(
        None,
        pattern=FINGERPRINT,
        exclude_if=_unset,
        description="imagefolder, text: lrbench's hash of the data; the run id covers it",
    )
    limit_train: int | None = Field(
        None, gt=0, le=MAX_IMAGES, description="class-balanced training subset"
    )
    limit_test: int | None = Field(
        None, gt=0, le=MAX_IMAGES, description="class-balanced test subset"
    )
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="held out of train, seeded")
    label: str | None = Field(
        None, min_length=1, max_length=100, description="name shown in reports (default: name)"
    )

    @model_validator(mode="before")
    @classmethod
    def _import_names_the_source(cls, data: Any) -> Any:
        """`{import: "module:function"}` needs no `name: import`."""
        if isinstance(data, dict) and {"import", "ref"} & set(data) and "name" not in data:
            return {"name": "import", **data}
        return data

    @model_validator(mode="after")
    def _import_fields_go_together(self) -> DatasetSpec:
        if self.name == "import" and not self.ref:
            raise ValueError("name: import needs `import: module:function`")
        if self.name != "import" and (self.ref, self.args, self.source) != (None, None, None):
            raise ValueError(f"import and args belong to your own dataset, not to {self.name}")
        if self.name not in ("imagefolder", "text") and self.fingerprint is not None:
            raise ValueError(f"fingerprint names an image folder's images, not {self.name}")
        if self.name == "text" and not self.path:
            raise ValueError("name: text needs `path: FILE` (a UTF-8 text file)")
        text_keys = {"path": self.path, "context": self.context, "epoch_steps": self.epoch_steps}
        wrong = [k for k, v in text_keys.items() if v is not None and self.name != "text"]
        if wrong:
            raise ValueError(f"{wrong[0]} belongs to a text dataset, not to {self.name}")
        if self.tensors and self.name != "import":
            raise ValueError(f"tensors: true belongs to your own data (import), not {self.name}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _text_context(cls, data: Any) -> Any:
        """A text dataset always records its window length (DEFAULT_CONTEXT when left out)."""
        if isinstance(data, dict) and data.get("name") == "text" and data.get("context") is None:
            return {**data, "context": DEFAULT_CONTEXT}
        return data

    @property
    def display_name(self) -> str:
        if self.label:
            return self.label
        if self.name == "text" and self.path:
            return PurePath(self.path).stem or "text"
        return import_label(self.ref) if self.ref else self.name


class OptimizerSpec(Strict):
    name: OptimizerName
    lr: float = Field(gt=0)
    momentum: float = Field(
        DEFAULT_MOMENTUM, ge=0.0, lt=1.0, description="sgd only; Adam uses betas"
    )
    nesterov: bool = False
    weight_decay: float = Field(DEFAULT_WEIGHT_DECAY, ge=0.0)
    betas: tuple[float, float] = Field((0.9, 0.999), strict=False)  # YAML and JSON give lists
    eps: float = Field(1e-8, gt=0)
    clip_norm: float | None = Field(
        None, gt=0, exclude_if=_unset, description="clip the gradient's global norm to this"
    )

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"each beta must lie in [0, 1), got {list(betas)}")
        return betas


class ImportedLoss(Strict):
    """Your own loss: `loss: {import: "module:function"}`; maps (outputs, targets) to [B]."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    ref: str = Field(alias="import", description="module:function")
    source: str = Field(description="hash of the function's module source (lrbench.imports)")


class RunSpec(Strict):
    """Everything that determines a run's numbers. Its hash is part of the run id."""

    model: str | ImportedModel = Field(description="a built-in model's name, or the user's own")
    dataset: DatasetSpec
    optimizer: OptimizerSpec
    schedule: dict[str, Any] = Field(description="name, label and resolved parameters")
    budget: float = Field(gt=0, le=1)
    full_epochs: int = Field(gt=0, le=MAX_EPOCHS)
    epochs: int = Field(gt=0, le=MAX_EPOCHS)
    seed: int = Field(ge=0, lt=SEEDS_BELOW)
    batch_size: int = Field(gt=0, le=MAX_BATCH)
    early_stop: dict[str, Any] | None = None
    snapshots: bool = False
    loss: ImportedLoss | None = Field(None, exclude_if=_unset, description="your own loss")
    metric: str | None = Field(
        None, exclude_if=_unset, description="what reports rank by; not part of the run id"
    )

    @property
    def default_metric(self) -> str:
        """What the run's report ranks by: the config's `metric:`, else the task's own."""
        if self.metric:
            return self.metric
        return "loss" if self.loss is not None or self.dataset.name == "text" else "error"

    @model_validator(mode="before")
    @classmethod
    def _plateau_monitor(cls, data: Any) -> Any:
        """Record what plateau watches: val_loss with a validation split, else train_loss."""
        if not isinstance(data, dict):
            return data
        schedule = data.get("schedule")
        if not isinstance(schedule, dict) or schedule.get("name") != "plateau":
            return data
        if schedule.get("monitor", "auto") != "auto":
            return data
        dataset = data.get("dataset")
        if isinstance(dataset, DatasetSpec):
            val = dataset.val_fraction
        else:
            val = (dataset or {}).get("val_fraction", 0)
        monitor = "val_loss" if val else "train_loss"
        return {**data, "schedule": {**schedule, "monitor": monitor}}

    def identity(self) -> dict[str, Any]:
        """What makes a run this run, as its id hashes it: the resolved spec, less the path to
        the data when a fingerprint names the images (a path is spelled differently in every
        folder and on every machine)."""
        dump = self.model_dump(mode="json")
        dump.pop("metric", None)
        if self.dataset.fingerprint:
            dump["dataset"].pop("root", None)
            dump["dataset"].pop("path", None)
        return dump

    def digest(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @property
    def label(self) -> str:
        return str(self.schedule.get("label") or self.schedule["name"])

    @property
    def model_label(self) -> str:
        """The model's name in run ids and reports: a built-in's name, an import's label."""
        return self.model if isinstance(self.model, str) else self.model.label

    @property
    def run_id(self) -> str:
        opt = f"{self.optimizer.name}{self.optimizer.lr:g}"
        return (
            f"{self.model_label}-{self.dataset.display_name}-{opt}-{self.label}"
            f"-b{self.budget:g}-s{self.seed}-{self.digest()}"
        ).replace("/", "_")


def epochs_for_budget(budget: float, full_epochs: int) -> int:
    """docs/design.md: a budget b trains max(1, round(b * full_epochs)) epochs."""
    return max(1, round(budget * full_epochs))
