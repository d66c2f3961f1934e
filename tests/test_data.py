"""Data: sources, subsets, the decode cache, and the device-side batches a trainer draws."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from lrbench.data import (
    DeviceData,
    Splits,
    crop_flip,
    crop_pad,
    default_data_dir,
    epoch_draws,
    load_splits,
    normalize,
)
from lrbench.data import imagefolder as imagefolder_module
from lrbench.data.splits import LIMIT_SEED, balanced_subset, even_quotas
from lrbench.errors import UserError
from lrbench.specs import DatasetSpec

SYNTHETIC = DatasetSpec(name="synthetic")


def make_splits(n: int = 64, size: int = 8, seed: int = 0, identity: bool = True) -> Splits:
    """Random uint8 images; with identity, each image's label is its index (to track it)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    y = torch.arange(n) if identity else torch.arange(n) % 10
    return Splits(
        train_x=x,
        train_y=y,
        test_x=x[:10].clone(),
        test_y=y[:10].clone(),
        val_x=None,
        val_y=None,
        num_classes=int(y.max()) + 1,
        classes=[str(i) for i in range(int(y.max()) + 1)],
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    """Undo normalisation with mean 0, std 1."""
    return (x * 255).round().to(torch.uint8)


def naive_crop_flip(img: torch.Tensor, dy: int, dx: int, flip: bool, pad: int = 4):
    padded = torch.zeros(
        img.shape[0], img.shape[1] + 2 * pad, img.shape[2] + 2 * pad, dtype=img.dtype
    )
    padded[:, pad:-pad, pad:-pad] = img
    out = padded[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
    return out.flip(-1) if flip else out


def is_crop_flip_of(out: torch.Tensor, img: torch.Tensor) -> bool:
    return any(
        torch.equal(out, naive_crop_flip(img, dy, dx, flip))
        for dy in range(9)
        for dx in range(9)
        for flip in (False, True)
    )


def image_digests(x: torch.Tensor) -> list[str]:
    return [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in x]


# --- synthetic -------------------------------------------------------------------------------


def test_synthetic_is_deterministic_balanced_and_never_cached(tmp_path):
    a = load_splits(SYNTHETIC, tmp_path)
    b = load_splits(SYNTHETIC, tmp_path)
    assert a.train_x.shape == (2000, 3, 32, 32) and a.train_x.dtype == torch.uint8
    assert a.test_x.shape == (500, 3, 32, 32)
    assert a.train_y.dtype == torch.int64 and a.num_classes == 10 == len(a.classes)
    assert torch.bincount(a.train_y).tolist() == [200] * 10
    assert torch.bincount(a.test_y).tolist() == [50] * 10
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.val_x is None and a.val_y is None
    assert not (tmp_path / "cache").exists()


def test_synthetic_classes_are_separable_but_not_trivial(tmp_path):
    s = load_splits(SYNTHETIC, tmp_path)
    train, test = s.train_x.double().flatten(1), s.test_x.double().flatten(1)
    means = torch.stack([train[s.train_y == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(test, means).argmin(1) == s.test_y).double().mean().item()
    assert 0.35 < accuracy < 0.9


# --- subsets and statistics ------------------------------------------------------------------


def test_limit_train_is_class_balanced_and_the_same_every_time(tmp_path):
    spec = DatasetSpec(name="synthetic", limit_train=500)
    a, b = load_splits(spec, tmp_path), load_splits(spec, tmp_path)
    assert torch.bincount(a.train_y).tolist() == [50] * 10
    assert torch.equal(a.train_x, b.train_x)
    full = set(image_digests(load_splits(SYNTHETIC, tmp_path).train_x))
    assert set(image_digests(a.train_x)) <= full
    assert a.test_x.shape[0] == 500


def test_limit_train_trains_exactly_that_many_images(tmp_path):
    """129 over 10 classes: 12 of one class and 13 of the nine others, not 120."""
    s = load_splits(DatasetSpec(name="synthetic", limit_train=129), tmp_path)
    assert len(s.train_y) == 129
    assert sorted(torch.bincount(s.train_y).tolist()) == [12] + [13] * 9


def test_a_multiple_of_the_classes_picks_the_images_it_always_picked():
    """limit // K of each class, from one seeded permutation per class: existing runs' data."""
    labels = np.random.default_rng(3).permutation(np.arange(1000) % 10)
    rng = np.random.default_rng(LIMIT_SEED)
    before = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:37] for c in range(10)])
    )
    assert np.array_equal(balanced_subset(labels, 370, 10), before)


def test_a_small_class_gives_all_it_has_and_the_others_make_up_the_rest():
    labels = np.array([0] * 3 + [1] * 50 + [2] * 50)
    subset = balanced_subset(labels, 60, 3)
    assert len(subset) == 60 and np.bincount(labels[subset]).tolist() == [3, 28, 29]


@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.data())
def test_quotas_sum_to_the_total_within_each_class_and_differ_by_at_most_one(sizes, data):
    sizes = np.array(sizes)
    total = data.draw(st.integers(0, int(sizes.sum())))
    quotas = even_quotas(sizes, total)
    assert quotas.sum() == total and (quotas <= sizes).all()
    short = quotas[quotas < sizes]  # classes that could have given more
    assert len(short) == 0 or quotas.max() - short.min() <= 1


def test_val_split_is_disjoint_stratified_and_drawn_from_the_limited_set(tmp_path):
    limited = load_splits(DatasetSpec(name="synthetic", limit_train=500), tmp_path)
    s = load_splits(DatasetSpec(name="synthetic", limit_train=500, val_fraction=0.1), tmp_path)
    assert torch.bincount(s.train_y).tolist() == [45] * 10
    assert torch.bincount(s.val_y).tolist() == [5] * 10
    train, val = image_digests(s.train_x), image_digests(s.val_x)
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(image_digests(limited.train_x))
    again = load_splits(DatasetSpec(name="synthetic", limit_train=500, val_fraction=0.1), tmp_path)
    assert torch.equal(again.val_x, s.val_x)


def test_mean_and_std_are_those_of_the_final_train_split(tmp_path):
    s = load_splits(DatasetSpec(name="synthetic", limit_train=300, val_fraction=0.2), tmp_path)
    pixels = s.train_x.double().div(255).transpose(0, 1).reshape(3, -1)
    assert s.mean == pytest.approx(pixels.mean(1).tolist(), abs=1e-6)
    assert s.std == pytest.approx(pixels.std(1, unbiased=False).tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (DatasetSpec(name="synthetic", limit_train=5), "below the number of classes"),
        (DatasetSpec(name="synthetic", limit_train=3000), "exceeds the 2000"),
        (DatasetSpec.model_construct(name="mnist"), "unknown dataset 'mnist'"),
        (DatasetSpec(name="imagefolder"), "needs a root"),
    ],
)
def test_bad_dataset_options_are_user_errors(tmp_path, spec, pattern):
    with pytest.raises(UserError, match=pattern) as info:
        load_splits(spec, tmp_path)
    assert "\n" not in str(info.value)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LRBENCH_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("LRBENCH_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".cache" / "lrbench"


# --- device batches --------------------------------------------------------------------------


def test_steps_per_epoch_keeps_the_last_short_batch():
    s = make_splits(n=50_000, size=1)
    assert DeviceData(s, "cpu").steps_per_epoch(128) == 391
    data = DeviceData(make_splits(n=1000), "cpu")
    sizes = [len(y) for _, y in data.train_batches(0, 0, 128)]
    assert len(sizes) == data.steps_per_epoch(128) == 8
    assert sizes[-1] == 1000 - 7 * 128


def test_every_image_exactly_once_per_epoch():
    data = DeviceData(make_splits(n=300), "cpu")
    for epoch in range(3):
        seen = torch.cat([y for _, y in data.train_batches(7, epoch, 64)])
        assert sorted(seen.tolist()) == list(range(300))


def test_an_epoch_is_a_pure_function_of_seed_and_epoch():
    data = DeviceData(make_splits(), "cpu")
    first = list(data.train_batches(seed=1, epoch=4, batch_size=16))
    next(data.train_batches(seed=9, epoch=0, batch_size=16))  # interleaved use changes nothing
    second = list(data.train_batches(seed=1, epoch=4, batch_size=16))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, second, strict=True)
    )


def test_other_epochs_and_seeds_shuffle_differently():
    data = DeviceData(make_splits(n=200), "cpu")

    def order(seed, epoch):
        return torch.cat([y for _, y in data.train_batches(seed, epoch, 50)]).tolist()

    assert order(0, 0) != order(0, 1)
    assert order(0, 1) != order(1, 0)
    assert order(0, 1) != order(1, 1)


def test_train_batches_are_valid_crops_and_flips_of_their_images():
    splits = make_splits(n=64, size=8)
    data = DeviceData(splits, "cpu")
    for x, y in data.train_batches(3, 0, 32):
        for out, idx in zip(as_uint8(x), y.tolist(), strict=True):
            assert is_crop_flip_of(out, splits.train_x[idx])


def test_crop_flip_matches_a_naive_reference():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 10, 12), dtype=torch.uint8, generator=gen)
    dy = torch.randint(0, 9, (40,), generator=gen)
    dx = torch.randint(0, 9, (40,), generator=gen)
    flip = torch.randint(0, 2, (40,), generator=gen).bool()
    out = crop_flip(x, dy, dx, flip)
    for i in range(40):
        assert torch.equal(out[i], naive_crop_flip(x[i], int(dy[i]), int(dx[i]), bool(flip[i])))


def test_random_offsets_cover_the_pad_range_and_flip_half_the_time():
    img = (torch.arange(3 * 32 * 32).reshape(1, 3, 32, 32) % 251 + 1).to(torch.uint8)
    x = img.expand(4000, -1, -1, -1)  # no zero pixel inside, so padding shows
    draws = epoch_draws(0, 0, len(x), "cpu")
    out = crop_flip(x, draws.dy, draws.dx, draws.flip)
    zero_cols = (out[:, 0] == 0).all(dim=1).sum(dim=1)
    zero_rows = (out[:, 0] == 0).all(dim=2).sum(dim=1)
    assert set(zero_cols.tolist()) == set(range(5)) == set(zero_rows.tolist())
    assert zero_rows.eq(0).float().mean().item() == pytest.approx(1 / 9, abs=0.03)
    centred = out[(zero_cols == 0) & (zero_rows == 0)]
    assert all(torch.equal(o, img[0]) or torch.equal(o, img[0].flip(-1)) for o in centred)
    flipped = torch.tensor([torch.equal(o, img[0].flip(-1)) for o in centred])
    assert flipped.float().mean().item() == pytest.approx(0.5, abs=0.15)


def test_normalisation_gives_zero_mean_unit_std_on_train(tmp_path):
    s = load_splits(SYNTHETIC, tmp_path)
    data = DeviceData(s, "cpu")
    x = torch.cat([xb for xb, _ in data.eval_batches("train", 512)]).double()
    assert x.mean(dim=(0, 2, 3)).tolist() == pytest.approx([0, 0, 0], abs=1e-4)
    assert x.std(dim=(0, 2, 3)).tolist() == pytest.approx([1, 1, 1], abs=1e-3)
    ref = (s.test_x[:5].double() / 255 - torch.tensor(s.mean).view(1, 3, 1, 1)) / torch.tensor(
        s.std
    ).view(1, 3, 1, 1)
    first, _ = next(data.eval_batches("test", 5))
    torch.testing.assert_close(first.double(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels_last", [True, False])
def test_batch_types_and_memory_format(channels_last):
    data = DeviceData(make_splits(n=20, size=8), "cpu", channels_last=channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for x, y in [next(data.train_batches(0, 0, 8)), next(data.eval_batches("test", 8))]:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (8, 3, 8, 8)
        assert x.is_contiguous(memory_format=fmt)


def test_eval_batches_are_in_order_and_unaugmented():
    splits = make_splits(n=30)
    data = DeviceData(splits, "cpu")
    xs, ys = zip(*data.eval_batches("test", 4), strict=True)
    assert torch.cat(ys).tolist() == list(range(10))
    assert torch.equal(as_uint8(torch.cat(xs)), splits.test_x)
    with pytest.raises(ValueError, match="val"):
        next(data.eval_batches("val", 4))


def test_val_split_is_served(tmp_path):
    s = load_splits(DatasetSpec(name="synthetic", val_fraction=0.25), tmp_path)
    data = DeviceData(s, "cpu")
    assert data.has_val and data.num_train == 1500 and data.size("val") == 500
    assert sum(len(y) for _, y in data.eval_batches("val", 128)) == 500


def test_building_blocks_compose_like_train_batches():
    """A packed trainer draws its own batches from the public pieces and gets the same ones."""
    splits = make_splits(n=100)
    data = DeviceData(splits, "cpu")
    images, labels = data.tensors("train")
    d = epoch_draws(5, 2, 100, "cpu")
    for start, (x, y) in zip(range(0, 100, 32), data.train_batches(5, 2, 32), strict=True):
        at = slice(start, start + 32)
        idx = d.order[at]
        assert torch.equal(y, labels[idx])
        xb = normalize(
            crop_flip(images[idx], d.dy[at], d.dx[at], d.flip[at]), splits.mean, splits.std
        )
        assert torch.equal(xb, x)


def test_an_epochs_draws_depend_on_seed_and_epoch_only():
    """Resuming at an epoch boundary needs no RNG state: the draws are a function of (seed, epoch)."""
    a, b = epoch_draws(3, 1, 500, "cpu"), epoch_draws(3, 1, 500, "cpu")
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("order", "dy", "dx", "flip"))
    assert sorted(a.order.tolist()) == list(range(500))
    for other in (epoch_draws(3, 2, 500, "cpu"), epoch_draws(4, 1, 500, "cpu")):
        assert not torch.equal(a.order, other.order)


def test_normalize_accepts_plain_tuples():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = normalize(x, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert out[:, :, 0, 0].tolist() == [[2.0, 1.0, 0.5]] * 2


# --- image folders and archives --------------------------------------------------------------

COLOURS = {"cat": (200, 10, 10), "ant": (10, 200, 10), "dog": (10, 10, 200)}


def write_image(path: Path, colour: tuple[int, int, int], shade: int, size=(8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixel = tuple(min(255, c + shade) for c in colour)
    Image.new("RGB", size, pixel).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    """3 classes (created in unsorted order), 3 train and 2 test PNGs each, 8 wide x 6 high."""
    root = tmp_path / "imgs"
    for cls, colour in COLOURS.items():
        for i in range(3):
            write_image(root / "train" / cls / f"{i:02d}.png", colour, shade=i)
        for i in range(2):
            write_image(root / "test" / cls / f"{i}.png", colour, shade=10 + i)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "cat" / ".hidden.png").write_bytes(b"junk")
    return root


def make_tar(src: Path, dest: Path, arcname: str) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=arcname)
    return dest


def check_folder_splits(s: Splits) -> None:
    assert s.classes == ["ant", "cat", "dog"]
    assert s.train_x.shape == (9, 3, 6, 8) and s.test_x.shape == (6, 3, 6, 8)
    assert s.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert s.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    for x, y, shades in ((s.train_x, s.train_y, (0, 1, 2)), (s.test_x, s.test_y, (10, 11))):
        for i, (img, label) in enumerate(zip(x, y.tolist(), strict=True)):
            colour = COLOURS[s.classes[label]]
            shade = shades[i % len(shades)]
            expected = torch.tensor([min(255, c + shade) for c in colour], dtype=torch.uint8)
            assert torch.equal(img[:, 0, 0], expected)
            assert (img == img[:, :1, :1]).all()


def test_imagefolder_from_a_folder(folder, tmp_path):
    check_folder_splits(load_splits(DatasetSpec(name="imagefolder", root=str(folder)), tmp_path))


def test_imagefolder_from_a_parent_of_one_dataset_folder(folder, tmp_path):
    s = load_splits(DatasetSpec(name="imagefolder", root=str(folder.parent)), tmp_path)
    check_folder_splits(s)


@pytest.mark.parametrize("arcname", [".", "cifar-like"])
def test_imagefolder_from_a_tar_gz(folder, tmp_path, arcname):
    archive = make_tar(folder, tmp_path / "imgs.tar.gz", arcname)
    check_folder_splits(load_splits(DatasetSpec(name="imagefolder", root=str(archive)), tmp_path))


def test_jpeg_and_grayscale_images_decode_to_rgb(tmp_path):
    root = tmp_path / "jpg"
    write_image(root / "train" / "a" / "0.jpg", (120, 60, 30), 0, size=(32, 32))
    path = root / "train" / "b" / "0.jpg"
    path.parent.mkdir(parents=True)
    Image.new("L", (32, 32), 90).save(path)
    write_image(root / "test" / "a" / "0.jpg", (120, 60, 30), 0, size=(32, 32))
    s = load_splits(DatasetSpec(name="imagefolder", root=str(root)), tmp_path)
    assert s.train_x.shape == (2, 3, 32, 32)
    assert s.train_x[0, :, 16, 16].tolist() == pytest.approx([120, 60, 30], abs=4)
    assert s.train_x[1, :, 16, 16].tolist() == pytest.approx([90, 90, 90], abs=2)


def test_second_load_comes_from_the_cache(folder, tmp_path, monkeypatch):
    archive = make_tar(folder, tmp_path / "imgs.tar.gz", ".")
    spec = DatasetSpec(name="imagefolder", root=str(archive))
    first = load_splits(spec, tmp_path / "data")
    entries = list((tmp_path / "data" / "cache").glob("*.npz"))
    assert len(entries) == 1
    assert not list((tmp_path / "data" / "cache").glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr(imagefolder_module, "_decode_stream", no_decoding)
    second = load_splits(spec, tmp_path / "data")
    assert torch.equal(first.train_x, second.train_x) and first.classes == second.classes
    check_folder_splits(second)
    with pytest.raises(AssertionError, match="decoded again"):
        load_splits(DatasetSpec(name="imagefolder", root=str(folder)), tmp_path / "data")


def test_a_changed_source_is_decoded_again(folder, tmp_path):
    archive = make_tar(folder, tmp_path / "imgs.tar", ".")
    spec = DatasetSpec(name="imagefolder", root=str(archive))
    load_splits(spec, tmp_path)
    write_image(folder / "train" / "emu" / "0.png", (90, 90, 90), 0)
    make_tar(folder, archive, ".")
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert load_splits(spec, tmp_path).classes == ["ant", "cat", "dog", "emu"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2

    folder_spec = DatasetSpec(name="imagefolder", root=str(folder))
    assert load_splits(folder_spec, tmp_path).train_x.shape[0] == 10
    write_image(folder / "train" / "emu" / "1.png", (90, 90, 90), 1)
    assert load_splits(folder_spec, tmp_path).train_x.shape[0] == 11


def test_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "cifar.tar.xz"
    with pytest.raises(UserError, match=str(missing)):
        load_splits(DatasetSpec(name="imagefolder", root=str(missing)), tmp_path)


@pytest.mark.parametrize("name", ["garbage.tar.xz", "garbage.bin"])
def test_garbage_archive_names_the_path(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(os.urandom(3000))
    with pytest.raises(UserError, match=str(bad)) as info:
        load_splits(DatasetSpec(name="imagefolder", root=str(bad)), tmp_path)
    assert "\n" not in str(info.value)


def test_truncated_archive_names_the_path(folder, tmp_path):
    archive = make_tar(folder, tmp_path / "imgs.tar.gz", ".")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match=str(archive)):
        load_splits(DatasetSpec(name="imagefolder", root=str(archive)), tmp_path)


def test_folder_without_train_and_test_names_the_path(tmp_path):
    root = tmp_path / "flat"
    write_image(root / "cat" / "0.png", (1, 2, 3), 0)
    with pytest.raises(UserError, match=f"{root}.*train/ and test/"):
        load_splits(DatasetSpec(name="imagefolder", root=str(root)), tmp_path)


def test_archive_without_train_and_test_names_the_path(tmp_path):
    root = tmp_path / "flat"
    write_image(root / "cat" / "0.png", (1, 2, 3), 0)
    archive = make_tar(root, tmp_path / "flat.tar.gz", ".")
    with pytest.raises(UserError, match=str(archive)):
        load_splits(DatasetSpec(name="imagefolder", root=str(archive)), tmp_path)


def test_unreadable_image_and_mixed_sizes_name_the_file(folder, tmp_path):
    (folder / "train" / "dog" / "bad.png").write_bytes(b"\x89PNG not really")
    spec = DatasetSpec(name="imagefolder", root=str(folder))
    with pytest.raises(UserError, match=r"bad\.png"):
        load_splits(spec, tmp_path)
    (folder / "train" / "dog" / "bad.png").unlink()
    write_image(folder / "test" / "cat" / "big.png", (5, 5, 5), 0, size=(16, 16))
    with pytest.raises(UserError, match=r"test/cat/big\.png is 16x16, not 8x6"):
        load_splits(spec, tmp_path)


def test_test_classes_must_exist_in_train(folder, tmp_path):
    write_image(folder / "test" / "yak" / "0.png", (5, 5, 5), 0)
    with pytest.raises(UserError, match="yak"):
        load_splits(DatasetSpec(name="imagefolder", root=str(folder)), tmp_path)


# --- torchvision's CIFAR files ---------------------------------------------------------------


def write_fake_cifar10(root: Path) -> np.ndarray:
    """torchvision's pickled layout (rows of R, G, B planes), 2 images per file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 256, size=(12, 3, 32, 32), dtype=np.uint8)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(files):
        batch = {"data": planes[2 * i : 2 * i + 2].reshape(2, -1), "labels": [i, (i + 1) % 10]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return planes


def test_cifar10_reads_torchvision_files_as_nchw(tmp_path, monkeypatch):
    from torchvision.datasets import cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    planes = write_fake_cifar10(tmp_path)
    s = load_splits(DatasetSpec(name="cifar10"), tmp_path)
    assert s.train_x.shape == (10, 3, 32, 32) and s.test_x.shape == (2, 3, 32, 32)
    assert torch.equal(s.train_x, torch.from_numpy(planes[:10]))
    assert torch.equal(s.test_x, torch.from_numpy(planes[10:]))
    assert s.train_y.tolist()[:4] == [0, 1, 1, 2] and s.classes[0] == "c0"


@pytest.mark.parametrize(
    ("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")]
)
def test_cifar_without_files_or_network_says_where_to_put_them(tmp_path, monkeypatch, name, folder):
    from torchvision import datasets

    def offline(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    monkeypatch.setattr(datasets.CIFAR100, "download", offline)
    with pytest.raises(UserError) as info:
        load_splits(DatasetSpec(name=name), tmp_path)
    message = str(info.value)
    assert f"'{folder}' folder in {tmp_path}" in message
    assert "network unreachable" in message and "imagefolder" in message
    assert "\n" not in message


def test_cache_survives_a_reader_seeing_a_broken_entry(folder, tmp_path):
    """A damaged entry (say, a disk-full copy by hand) is rebuilt, not trusted."""
    spec = DatasetSpec(name="imagefolder", root=str(folder))
    load_splits(spec, tmp_path)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(io.BytesIO(b"PK\x03\x04 broken").getvalue())
    check_folder_splits(load_splits(spec, tmp_path))


# --- STL-10: torchvision's files, 96 pixels -------------------------------------------------


def write_fake_stl10(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    """torchvision's binary layout: column-major 96x96 planes, labels 1..10, one byte each."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        rng.integers(0, 256, size=n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        (np.arange(n, dtype=np.uint8) % 10 + 1).tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)))


def test_stl10_reads_torchvision_files_as_96_pixel_nchw(tmp_path, monkeypatch):
    from torchvision import datasets

    monkeypatch.setattr(datasets.STL10, "_check_integrity", lambda self: True)
    write_fake_stl10(tmp_path)
    s = load_splits(DatasetSpec(name="stl10"), tmp_path)
    assert s.train_x.shape == (20, 3, 96, 96) and s.test_x.shape == (10, 3, 96, 96)
    assert s.train_y.dtype == torch.int64 and s.train_y.tolist()[:11] == [*range(10), 0]
    assert s.num_classes == 10 and s.classes[3] == "c3"
    stl = datasets.STL10(str(tmp_path), split="train")
    assert np.array_equal(s.train_x.numpy(), stl.data)


def test_stl10_without_files_or_network_says_where_to_put_them(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.STL10, "download", offline)
    with pytest.raises(UserError) as info:
        load_splits(DatasetSpec(name="stl10"), tmp_path)
    message = str(info.value)
    assert message.startswith("STL-10 is not in")
    assert f"'stl10_binary' folder in {tmp_path}" in message and "network unreachable" in message
    assert "\n" not in message


@pytest.mark.parametrize(("size", "pad"), [(32, 4), (8, 4), (28, 4), (64, 8), (96, 12)])
def test_the_crop_padding_scales_with_the_image_from_4_at_32_pixels(size, pad):
    assert crop_pad((size, size)) == pad
    assert DeviceData(make_splits(n=10, size=size), "cpu").pad == pad


def test_stl10_sized_batches_are_crops_of_images_padded_by_12():
    splits = make_splits(n=300, size=96, identity=False)
    splits.train_x.clamp_(min=1)  # no zero pixel inside, so padding shows
    data = DeviceData(splits, "cpu", channels_last=False)
    edges = []
    for x, _ in data.train_batches(0, 0, 100):
        zero = as_uint8(x)[:, 0] == 0  # mean 0, std 1: zero pixels are padding
        left = zero.all(dim=1).int().cumprod(dim=1).sum(dim=1)
        right = zero.all(dim=1).flip(1).int().cumprod(dim=1).sum(dim=1)
        edges += (left + right).tolist()
    assert max(edges) == 12 and min(edges) == 0  # offsets 0..24 leave 0..12 padded columns


def test_zero_padding_is_used_for_crops():
    x = torch.full((1, 3, 4, 4), 7, dtype=torch.uint8)
    out = crop_flip(x, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    assert torch.equal(out, F.pad(x, (4, 4, 4, 4))[:, :, :4, :4])


# --- CUDA (skipped without a GPU) ------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_stay_on_the_device_and_are_reproducible():
    splits = make_splits(n=300, size=8)
    data = DeviceData(splits, "cuda")
    first = list(data.train_batches(2, 1, 64))
    again = list(data.train_batches(2, 1, 64))
    assert all(x.is_cuda and y.is_cuda for x, y in first)
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x, _ in first)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(first, again, strict=True)
    )
    ids = torch.cat([y for _, y in first]).cpu()
    assert sorted(ids.tolist()) == list(range(300))
    x, y = first[0]
    for out, idx in zip(as_uint8(x).cpu(), y.cpu().tolist(), strict=True):
        assert is_crop_flip_of(out, splits.train_x[idx])


def test_limit_test_is_a_class_balanced_subset_of_the_test_split():
    splits = load_splits(DatasetSpec(name="synthetic", limit_test=100))
    assert len(splits.test_y) == 100
    assert torch.bincount(splits.test_y).tolist() == [10] * 10
    again = load_splits(DatasetSpec(name="synthetic", limit_test=100))
    assert torch.equal(splits.test_x, again.test_x)
