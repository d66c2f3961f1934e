"""Options and option parsing shared by commands (`run` and `lr-find` train the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import typer

from lrbench.errors import UserError, did_you_mean

if TYPE_CHECKING:  # pydantic and the specs are imported when an option is parsed, not for --help
    from pydantic import ValidationError

    from lrbench.specs import DatasetSpec, OptimizerSpec


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs, each value parsed as YAML (`milestones=[0.3,0.6]`, `beta=0.9`)."""
    import yaml

    from lrbench.yamlio import load_yaml

    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set beta=0.9")
        try:
            out[key] = load_yaml(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise UserError(f"--set {key}: {text!r} is not a valid value ({err.problem})") from None
    return out


def log_choice(text: str | None) -> str | None:
    """`--log`: how runs log live curves (tensorboard), or None."""
    from lrbench.specs import LOGS

    if text is not None and text not in LOGS:
        raise UserError(
            f"--log: {text!r} is not one of {', '.join(LOGS)}{did_you_mean(text, LOGS)}"
        )
    return text


LiveLog = Annotated[
    str | None,
    typer.Option(
        "--log",
        help="tensorboard: also log live curves (a sweep's runs under SWEEP/tensorboard/, "
        "`lrbench run` under OUT/tensorboard/); not part of a run's identity.",
    ),
]


# --- what to train, as `lrbench run` and `lrbench lr-find` spell it --------------------------

Model = Annotated[
    str,
    typer.Option(
        help="resnet{6n+2} (resnet20, resnet56, ...), vgg11/13/16/19, wrn{6n+4}-{width} (wrn16-8)."
    ),
]
Dataset = Annotated[
    str,
    typer.Option(
        help="cifar10 | cifar100 | stl10 | synthetic | imagefolder, or a path to an image folder "
        "or archive."
    ),
]
DataRoot = Annotated[
    str | None,
    typer.Option(
        help="imagefolder: a folder with train/ and test/, or a .tar[.gz|.xz] of one; with "
        "another --dataset (cifar10), that dataset read from there under its own name."
    ),
]
DataDir = Annotated[
    str | None,
    typer.Option(envvar="LRBENCH_DATA", help="Where datasets are downloaded and cached."),
]
LimitTrain = Annotated[
    int | None, typer.Option(help="Train on a class-balanced subset of this many images.")
]
Optimizer = Annotated[
    str, typer.Option(help="sgd | adam | adamw | sgd_schedulefree | adamw_schedulefree.")
]
Momentum = Annotated[float, typer.Option(help="SGD momentum.")]
Nesterov = Annotated[bool, typer.Option(help="SGD with Nesterov momentum.")]
WeightDecay = Annotated[float, typer.Option(help="Weight decay.")]
BatchSize = Annotated[int, typer.Option(help="Batch size.")]
Seed = Annotated[int, typer.Option(help="Seed: fixes the initial weights and the data order.")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N.")]
Precision = Annotated[
    str, typer.Option(help="auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp64.")
]
ChannelsLast = Annotated[bool, typer.Option(help="channels_last memory format.")]
Lr = Annotated[
    float, typer.Option("--lr", help="The peak learning rate (the schedule multiplies it).")
]
ScheduleSets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Schedule parameter KEY=VALUE, VALUE read as YAML; repeatable: "
        "--set milestones=[0.3,0.6] --set warmup=0.05 --set 'profile={name: rex, beta: 0.9}'.",
    ),
]


# --- the specs those options make ------------------------------------------------------------


def schedule_spec(name: str, sets: list[str] | None) -> dict[str, Any]:
    """`--schedule NAME` (or module:function, found from the current folder) and its `--set`s,
    checked and written out as a spec's schedule."""
    from lrbench.imports import add_search_path
    from lrbench.schedules import build_schedule

    add_search_path(Path.cwd())
    entry = {"import": name} if ":" in name else {"name": name}
    return build_schedule({**entry, **parse_sets(sets)}).to_dict()


def out_folder(out: Path, what: str) -> Path:
    """`--out`: a folder, made if missing (a file there, or one that cannot be made, is refused)."""
    from lrbench.plainfiles import make_folder

    return make_folder(out, what, f"--out {out}")


def model_name(text: str) -> str:
    """`--model`: a built-in model's name, checked without building it."""
    from lrbench.models import check_model_name

    try:
        check_model_name(text)
    except UserError as err:
        raise UserError(f"--model: {err}") from None
    return text


def dataset_spec(
    name: str,
    root: str | None,
    limit_train: int | None,
    val_fraction: float,
    limit_test: int | None = None,
) -> DatasetSpec:
    """`--dataset cifar10`, or `--dataset imagefolder --data-root PATH`, or a path for short;
    an image folder's images fingerprinted (the run id covers them, not the path).
    `--dataset cifar10 --data-root PATH` reads CIFAR-10 from there and calls it cifar10, as a
    sweep's `--data-root` does."""
    from pydantic import ValidationError

    from lrbench.config import read_from
    from lrbench.data.identity import identify
    from lrbench.specs import DatasetName, DatasetSpec

    if name not in get_args(DatasetName) and Path(name).exists():
        name, root = "imagefolder", name
    elsewhere = root if name != "imagefolder" else None
    try:
        spec = DatasetSpec(
            name=name,
            root=None if elsewhere else root,
            limit_train=limit_train,
            limit_test=limit_test,
            val_fraction=val_fraction,
        )
    except ValidationError as err:
        raise UserError(pydantic_line(err, prefix="--")) from None
    if elsewhere:
        if not Path(elsewhere).exists():
            raise UserError(f"--data-root {elsewhere}: no such file or folder")
        spec = read_from(spec, elsewhere)
    return identify(spec)


# spec fields an option of another name sets: `--dataset` is DatasetSpec.name, `--epochs`
# both RunSpec.epochs and full_epochs (one complaint for the two)
OPTION_OF = {"name": "dataset", "root": "data-root", "full_epochs": "epochs"}


def pydantic_line(err: ValidationError, prefix: str = "") -> str:
    """A validation error as one line that names each option as the user typed it
    (`--limit-train`) and the value it was given."""
    from lrbench.config import shown

    parts: list[str] = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"])
        key = OPTION_OF.get(key, key).replace("_", "-")
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        got = "" if isinstance(value, dict) else f", got {shown(value)}"
        part = f"{prefix}{key}: {msg}{got}"
        if part not in parts:
            parts.append(part)
    return "; ".join(parts)


def optimizer_spec(
    name: str, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> OptimizerSpec:
    """`--optimizer` and its settings, checked as a config's optimizer is."""
    from pydantic import ValidationError

    from lrbench.specs import OptimizerSpec
    from lrbench.train.optim import OPTIMIZERS

    if name not in OPTIMIZERS:
        raise UserError(f"--optimizer: {name!r} is not one of {', '.join(OPTIMIZERS)}")
    try:
        return OptimizerSpec(
            name=name, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    except ValidationError as err:
        raise UserError(pydantic_line(err, prefix="--")) from None
