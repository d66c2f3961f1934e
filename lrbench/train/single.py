"""One run alone, as `lrbench run` gives it: a whole budget of its own epochs, checked as a
sweep's runs are before any of them trains. `train_run(alone_spec(...), folder, runtime)`
trains it by the loop sweeps use."""

from __future__ import annotations

from typing import Any

from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec


def alone_spec(
    *,
    model: str,
    dataset: DatasetSpec,
    optimizer: OptimizerSpec,
    schedule: dict[str, Any],
    epochs: int,
    seed: int,
    batch_size: int,
) -> RunSpec:
    """The spec of a run that is its own budget (the schedule spans exactly `epochs`). Raises
    pydantic's ValidationError for a bad field, UserError for a schedule the optimizer cannot
    follow (as a config's runs are refused)."""
    from lrbench.schedules import build_schedule
    from lrbench.train.optim import check_schedule

    spec = RunSpec(
        model=model,
        dataset=dataset,
        optimizer=optimizer,
        schedule=schedule,
        budget=1.0,
        full_epochs=epochs,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
    )
    built = build_schedule(spec.schedule)
    check_schedule(spec.optimizer, built.sets_momentum, built.momenta(1000, 10))
    return spec
