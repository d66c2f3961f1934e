"""Which runs are seeds of one setting: runs are averaged only when their specs differ in the seed.

The report splits a run's spec.json three ways:

- the row it belongs to: dataset, model, optimizer, budget and schedule label;
- the learning rate: the grid dimension the report chooses on validation (rank.choose_lr);
- everything else, which must be equal for runs to be pooled as seeds. What cannot change a
  run's numbers by design is left out: `run_id`, `seed`, `sweep`, `provenance`, the derived
  `steps_per_epoch`, `total_steps` and `epochs` (budget x full_epochs), and `dataset.root`
  when `dataset.fingerprint` names the data (a path is spelled differently on each machine).

"Everything else" is divided once more. The *setup* (full_epochs, batch_size, the data subset,
early stopping, optimizer settings, ...) is shared by every schedule of a sweep: runs of
different setups are never compared, each setup has cells of its own. The schedule's own
parameters under one label (rex with beta 0.5 and 0.9) are rows of the same cell, competing.
A `variant` names what tells rows apart: the keys that differ, with the row's values, e.g.
`full_epochs=8` or `schedule.beta=0.9`; it is empty when nothing needs telling apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from lrbench.report.problems import NOTE, Problem, common_parent

SETTING = ["dataset", "model", "optimizer"]
NOT_SETUP = (
    "run_id",
    "seed",
    "sweep",
    "provenance",
    "steps_per_epoch",
    "total_steps",
    "epochs",
    "budget",
    "schedule",
)
ABSENT = "–"
SCHEDULE_PREFIX = "schedule."


def setup_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What runs of one row must share to be seeds of one setting, except the schedule."""
    setup = {k: v for k, v in spec.items() if k not in NOT_SETUP}
    if setup.get("metric") == "error":  # the default said aloud is the default
        del setup["metric"]
    optimizer = setup.get("optimizer")
    if isinstance(optimizer, Mapping):
        setup["optimizer"] = {k: v for k, v in optimizer.items() if k != "lr"}
    dataset = setup.get("dataset")
    if isinstance(dataset, Mapping) and dataset.get("fingerprint"):
        setup["dataset"] = {k: v for k, v in dataset.items() if k != "root"}
    return setup


def canonical(obj: Any) -> str:
    """One text per value, whatever the key order: equal texts mean equal settings."""
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def flat(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys with short printed values: {"a": {"b": 1}} -> {"a.b": "1"}."""
    if isinstance(obj, Mapping) and obj:
        out: dict[str, str] = {}
        for key in sorted(obj, key=str):
            out.update(flat(obj[key], f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): _show(obj)}


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    return canonical(value)


def differing(flats: Iterable[Mapping[str, str]]) -> list[str]:
    """The keys whose values are not the same in all of `flats` (a missing key counts)."""
    flats = list(flats)
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({f.get(k, ABSENT) for f in flats}) > 1]


def describe(values: Mapping[str, str], keys: Iterable[str]) -> str:
    """`k=v` for each key; a missing key is left out when a key above or below it is present
    (early_stop=none against early_stop.patience=3), else shown as `k=–`."""
    keys = list(keys)
    present = [k for k in keys if k in values]
    parts = []
    for k in keys:
        if k in values:
            parts.append(f"{k}={values[k]}")
        elif not any(p.startswith(f"{k}.") or k.startswith(f"{p}.") for p in present):
            parts.append(f"{k}={ABSENT}")
    return ", ".join(parts)


def shown(schedule: str, variant: str) -> str:
    """A row's name in plots and the finish table: the label, and its variant when it has one."""
    return f"{schedule} [{variant}]" if variant else str(schedule)


def named_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """`schedule` as shown in figures: the label, with the row's variant when it has one."""
    names = [shown(s, v) for s, v in zip(frame["schedule"], frame["variant"], strict=True)]
    return frame.assign(schedule=pd.Series(names, index=frame.index, dtype=object))


def assign_variants(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Add `setup`, `schedule_variant` and `variant` (texts, "" when nothing differs) to runs
    that have `setup_key` and `schedule_params`, with a note wherever rows had to be split."""
    runs = runs.assign(setup="", schedule_variant="", variant="")
    problems: list[Problem] = []
    for setting, group in runs.groupby(SETTING, sort=True):
        texts = group["setup_key"].map(_texts(group["setup_key"], flat))
        runs.loc[group.index, "setup"] = texts
        if texts.nunique() > 1:
            where = "/".join(map(str, setting))
            problems.append(_split_note(where, group, texts, "each is ranked in cells of its own"))
    for key, group in runs.groupby([*SETTING, "setup", "schedule"], sort=True):
        texts = group["schedule_params"].map(
            _texts(group["schedule_params"], lambda obj: flat(obj, SCHEDULE_PREFIX))
        )
        runs.loc[group.index, "schedule_variant"] = texts
        if texts.nunique() > 1:
            where = f"{'/'.join(map(str, key[:3]))}, schedule {key[-1]!r}"
            problems.append(_split_note(where, group, texts, "each is a row of its own"))
    runs["variant"] = [
        ", ".join(t for t in pair if t)
        for pair in zip(runs["setup"], runs["schedule_variant"], strict=True)
    ]
    return runs, problems


def _texts(keys: pd.Series, flatten: Callable[[Any], dict[str, str]]) -> dict[str, str]:
    """Each distinct key's variant text: its values of the keys that differ among them."""
    distinct = sorted(set(keys))
    if len(distinct) == 1:
        return {distinct[0]: ""}
    flats = {k: flatten(json.loads(k)) for k in distinct}
    diff = differing(flats.values())
    return {k: describe(flats[k], diff) for k in distinct}


def _split_note(where: str, group: pd.DataFrame, texts: pd.Series, how: str) -> Problem:
    counts = texts.value_counts().sort_index()
    parts = "; ".join(f"{text} ({n} run{'s' if n != 1 else ''})" for text, n in counts.items())
    return Problem(
        common_parent(group["path"]),
        f"{where}: runs differ in more than the seed, so they are not averaged together; "
        f"{how}: {parts}",
        NOTE,
    )


def stale_differences(stale: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """Keys in which stale runs hold values no current run of their sweep has."""
    stale_flats = [_comparable(r) for r in stale.to_dict("records")]
    current_flats = [_comparable(r) for r in current.to_dict("records")]
    keys = sorted({k for f in stale_flats for k in f})
    return [
        k
        for k in keys
        if {f.get(k, ABSENT) for f in stale_flats} - {f.get(k, ABSENT) for f in current_flats}
    ]


def _comparable(row: Mapping[str, Any]) -> dict[str, str]:
    return {
        **flat(json.loads(row["setup_key"])),
        **flat(json.loads(row["schedule_params"]), SCHEDULE_PREFIX),
        "optimizer.lr": _show(float(row["lr"])),
        "budget": _show(float(row["budget"])),
    }
