"""Character-level language modelling: text data, the GPT, and the one loop training it."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import replace
from pathlib import Path

import helpers
import pytest
import torch
from helpers import CPU, metrics_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from lrbench.config import expand, load_config
from lrbench.data import load_splits, on_device
from lrbench.data.text import TextData, encode, split_text
from lrbench.models import build_model, count_parameters
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec
from lrbench.tasks import CrossEntropy
from lrbench.train import train_run, train_runs
from lrbench.train.evaluation import evaluate, plain_forward

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def lm_spec(path: Path, **changes) -> RunSpec:
    text = DatasetSpec(name="text", path=str(path), context=16, epoch_steps=6, val_fraction=0.1)
    adamw = OptimizerSpec(name="adamw", lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1, clip_norm=1.0)
    cosine = {"name": "cosine", "label": "cosine", "final": 0.1}
    gpt = {"model": "gpt1-32", "dataset": text, "optimizer": adamw, "schedule": cosine}
    return helpers.spec(**{**gpt, "batch_size": 4, **changes})


def test_the_gpt_overfits_a_short_text(one_thread):
    ids, vocab = encode("to be or not to be, that is the question")
    x, y = ids[:-1][None], ids[1:][None]
    torch.manual_seed(0)
    model = build_model("gpt1-32", len(vocab), context=len(x[0]))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(60):
        loss = CrossEntropy().loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_a_uniform_model_scores_ln_of_the_vocabulary(text_file):
    data = on_device(load_splits(lm_spec(text_file).dataset), "cpu")
    model = build_model("gpt1-32", data.num_classes, context=data.context)
    with torch.no_grad():
        model.tok.weight.zero_()  # tied output: every logit 0, every character equally likely
    [loss], _ = evaluate(model, plain_forward(model), data, "test", CrossEntropy())
    assert loss == pytest.approx(math.log(data.num_classes), rel=1e-6)


def test_the_vocabulary_is_the_files_characters_in_code_point_order():
    ids, vocab = encode("bacab é")
    assert vocab == [" ", "a", "b", "c", "é"]
    assert ids.tolist() == [2, 1, 3, 1, 2, 0, 4]


def test_windows_are_a_function_of_seed_and_epoch_alone(text_file):
    """Every schedule of a cell (same seed) sees the same windows in the same order."""
    spec = lm_spec(text_file).dataset
    a, b = (on_device(load_splits(spec), "cpu") for _ in range(2))
    assert torch.equal(a.positions(3, 1, 4), b.positions(3, 1, 4))
    assert not torch.equal(a.positions(3, 1, 4), a.positions(4, 1, 4))
    assert not torch.equal(a.positions(3, 1, 4), a.positions(3, 2, 4))
    for (xa, ya), (xb, yb) in zip(a.train_batches(3, 1, 4), b.train_batches(3, 1, 4), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa[:, 1:], ya[:, :-1])  # targets: the next characters


def test_a_cells_schedules_train_on_the_same_windows(text_file, monkeypatch, tmp_path):
    seen: dict[str, list] = {}
    real = TextData.train_batches

    def spy(self, seed, epoch, batch_size):
        for x, y in real(self, seed, epoch, batch_size):
            seen.setdefault(label, []).append(x.clone())
            yield x, y

    monkeypatch.setattr(TextData, "train_batches", spy)
    for label in ("cosine", "constant"):
        schedule = {"name": label, "label": label}
        train_run(lm_spec(text_file, schedule=schedule, epochs=1), tmp_path / label,
                  CPU)  # fmt: skip
    assert len(seen["cosine"]) == 6
    assert all(torch.equal(a, b) for a, b in zip(seen["cosine"], seen["constant"], strict=True))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(200, 5000),
    val=st.floats(0.01, 0.5),
    limit=st.one_of(st.none(), st.integers(100, 180)),
)
def test_validation_never_overlaps_training(n, val, limit):
    ids = torch.arange(n)  # character i has id i: a split's ids are its positions
    spec = DatasetSpec(name="text", path="x.txt", context=4, val_fraction=val, limit_train=limit)
    train, held, test = split_text(ids, spec)
    assert held is not None
    if len(train) and len(held):
        assert int(train.max()) < int(held.min())  # contiguous: train, then val, then test
    assert int(held.max()) < int(test.min())
    assert len(train) + len(held) == (limit or int(n * 0.9))
    assert len(test) == n - int(n * 0.9)


def test_training_windows_stay_inside_the_training_part(text_file):
    data = on_device(load_splits(lm_spec(text_file).dataset), "cpu")
    starts = data.positions(0, 0, 512)
    assert int(starts.min()) >= 0
    assert int(starts.max()) + data.context + 1 <= data.num_train


def test_evaluation_reads_a_split_in_non_overlapping_windows(text_file):
    data = on_device(load_splits(lm_spec(text_file).dataset), "cpu")
    xs = [x for x, _ in data.eval_batches("test", batch_size=3)]
    flat = torch.cat(xs).flatten()
    n = len(data.tensors("test"))
    assert len(flat) == (n - 1) // data.context * data.context
    assert torch.equal(flat, data.tensors("test")[: len(flat)])


def test_an_lm_run_records_losses_in_nats_per_character(text_file, tmp_path, one_thread):
    summary = train_run(lm_spec(text_file), tmp_path / "run", CPU)
    rows = metrics_rows(tmp_path / "run")
    assert list(rows[0]) == ["epoch", "step", "lr", "momentum", "train_loss", "train_acc",
                             "test_loss", "test_acc", "val_loss", "val_acc"]  # fmt: skip
    assert [int(r["step"]) for r in rows] == [6, 12]
    vocab = len(set(TEXT))
    assert float(rows[-1]["test_loss"]) < math.log(vocab)  # it learned something
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["metric"] == "loss" and spec["optimizer"]["clip_norm"] == 1.0
    assert summary["final"]["test_loss"] == float(rows[-1]["test_loss"])


def test_a_packed_gpt_sweep_equals_its_runs_alone(text_file, tmp_path, one_thread):
    specs = [
        lm_spec(text_file, seed=0),
        lm_spec(text_file, seed=1, schedule={"name": "constant", "label": "constant"}),
        lm_spec(text_file, seed=0, schedule={"name": "rex", "label": "rex", "beta": 0.5}),
    ]
    alone = [tmp_path / "alone" / s.run_id for s in specs]
    packed = [tmp_path / "packed" / s.run_id for s in specs]
    for spec, path in zip(specs, alone, strict=True):
        train_run(spec, path, CPU)
    train_runs(specs, packed, CPU)
    for a, p in zip(alone, packed, strict=True):
        assert metrics_rows(a) == metrics_rows(p)


def test_a_gpt_packs_through_vmap_too(text_file, tmp_path, one_thread):
    """CUDA's way for models without a grouped form, rehearsed on the CPU: equal to rounding."""
    specs = [lm_spec(text_file, seed=s, epochs=1) for s in (0, 1)]
    alone = [tmp_path / "alone" / s.run_id for s in specs]
    for spec, path in zip(specs, alone, strict=True):
        train_run(spec, path, CPU)
    packed = [tmp_path / "vmap" / s.run_id for s in specs]
    train_runs(specs, packed, replace(CPU, impl="vmap"))
    for a, p in zip(alone, packed, strict=True):
        for ra, rp in zip(metrics_rows(a), metrics_rows(p), strict=True):
            assert float(rp["test_loss"]) == pytest.approx(float(ra["test_loss"]), rel=1e-4)


def test_weight_decay_spares_the_gpts_vectors():
    from lrbench.train.optim import decayed, param_groups

    model = build_model("gpt1-32", 10, context=8)
    flags = dict(zip([n for n, _ in model.named_parameters()], decayed(model), strict=True))
    assert flags["tok.weight"] and flags["blocks.0.qkv.weight"]
    assert not flags["blocks.0.ln1.weight"] and not flags["ln_f.weight"]
    assert len(param_groups(build_model("resnet8", 10))) == 1  # classification as it was


@pytest.mark.parametrize(("name", "count"), [("gpt4-128", 804_096), ("gpt6-384", 10_745_088)])
def test_parameter_counts_are_the_documented_ones(name, count):
    context = 64 if name == "gpt4-128" else 256
    with torch.device("meta"):
        model = build_model(name, 65, context=context)
    assert count_parameters(model) == count


CONFIG = """\
name: lm
dataset: {{name: text, path: {path}, context: 16{extra}}}
models: [{model}]
optimizers: [{{name: adamw, lr: 1.0e-3}}]
full_epochs: 1
budgets: [1.0]
batch_size: 4
schedules: [cosine]
"""


def write_config(folder: Path, path: str = "corpus.txt", model: str = "gpt1-32", extra=""):
    config = folder / "sweep.yaml"
    config.write_text(CONFIG.format(path=path, model=model, extra=extra))
    return config


def test_a_text_path_is_taken_from_the_configs_folder(text_file, tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    spec = expand(load_config(write_config(tmp_path)))[0]
    assert Path(spec.dataset.path) == text_file
    assert spec.run_id.startswith("gpt1-32-corpus-adamw0.001-cosine-b1-s0-")


def test_the_run_id_names_the_texts_bytes_not_its_path(text_file, tmp_path):
    first = expand(load_config(write_config(tmp_path)))[0]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "corpus.txt").write_bytes(text_file.read_bytes())
    assert expand(load_config(write_config(moved)))[0].run_id == first.run_id
    (moved / "corpus.txt").write_text(TEXT + "more")
    assert expand(load_config(write_config(moved)))[0].run_id != first.run_id


@pytest.mark.parametrize(
    ("write", "model", "extra", "says"),
    [
        (None, "gpt1-32", "", "corpus.txt: no such text file"),
        (b"", "gpt1-32", "", "corpus.txt: the file is empty"),
        (b"abc\x00def" * 20, "gpt1-32", "", "not a text file: byte 0x00 at offset 3"),
        (b"caf\xe9" * 40, "gpt1-32", "", "not a text file: byte 0xe9 at offset 3 is not UTF-8"),
        (b"short text", "gpt1-32", "", "less than one window of context 16"),
        (TEXT.encode(), "resnet20", "", "resnet20 is not a language model"),
        (TEXT.encode(), "gpt1-30", "", "gpt width 30 does not divide into its 4 heads"),
        (TEXT.encode(), "gpt1000-64", "", "gpt layers must be from 1 to 96, got 1000"),
        (TEXT.encode(), "gpt1-32", ", limit_train: 100000000", "limit_train=100000000 exceeds"),
        (TEXT.encode(), "gpt1-32", ", epoch_steps: 0", "epoch_steps: Input should be greater"),
    ],
)
def test_each_bad_text_input_is_one_line_and_exit_2(tmp_path, cli, write, model, extra, says):
    if write is not None:
        (tmp_path / "corpus.txt").write_bytes(write)
    config = write_config(tmp_path, model=model, extra=extra)
    result = cli("sweep", config, "--dry-run", "--results", tmp_path / "results")
    assert result.code == 2
    assert result.err.count("\n") == 1 and says in result.err, result.err


def test_a_gpt_on_images_is_refused(tmp_path, cli):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "name: x\ndataset: synthetic\nmodels: [gpt1-32]\noptimizers: [{name: sgd, lr: 0.1}]\n"
        "full_epochs: 1\nbudgets: [1.0]\nschedules: [cosine]\n"
    )
    result = cli("sweep", config, "--dry-run")
    assert result.code == 2 and "gpt1-32 is a language model" in result.err


@pytest.mark.slow
def test_an_interrupted_lm_pack_resumes_alone_to_the_uninterrupted_runs(text_file, tmp_path):
    def stop_in_epoch_2(event):
        if event.kind == "step" and event.epoch == 2:
            raise KeyboardInterrupt

    specs = [lm_spec(text_file, seed=s, epochs=3, full_epochs=3) for s in (0, 1)]
    whole = [tmp_path / "whole" / s.run_id for s in specs]
    broken = [tmp_path / "broken" / s.run_id for s in specs]
    train_runs(specs, whole, CPU)
    with contextlib.suppress(KeyboardInterrupt):
        train_runs(specs, broken, CPU, on_event=stop_in_epoch_2)
    assert len(metrics_rows(broken[0])) == 1
    for spec, path in zip(specs, broken, strict=True):
        train_run(spec, path, CPU)
    for w, b in zip(whole, broken, strict=True):
        assert metrics_rows(w) == metrics_rows(b)


def test_pack_auto_says_it_does_not_measure_language_models(text_file, monkeypatch):
    from lrbench.sweep import autosize

    monkeypatch.setattr(autosize, "memory_cap", lambda device: 64)
    specs = [lm_spec(text_file, seed=s) for s in range(12)]
    said: list[str] = []
    size = autosize.sweep_pack_size(specs, 65, torch.device("cpu"), "fp32", False, Path("x"),
                                    said.append)  # fmt: skip
    assert size == 8 and "measures packs of image models only" in said[0]


def test_a_schedule_free_lm_pack_equals_its_runs_alone(text_file, tmp_path, one_thread):
    """Token ids go into the model as they are, and a model without BatchNorm re-estimates
    nothing at the averaged weights: packed as alone, to the bit."""
    sf = OptimizerSpec(name="adamw_schedulefree", lr=3e-3)
    constant = {"name": "constant", "label": "constant"}
    specs = [lm_spec(text_file, seed=s, epochs=1, optimizer=sf, schedule=constant) for s in (0, 1)]
    packed = [tmp_path / "packed" / s.run_id for s in specs]
    train_runs(specs, packed, CPU)
    for spec, path in zip(specs, packed, strict=True):
        train_run(spec, tmp_path / "alone" / spec.run_id, CPU)
        assert metrics_rows(path) == metrics_rows(tmp_path / "alone" / spec.run_id)
