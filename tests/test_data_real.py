"""The real CIFAR-10 (JPEG archive in ../shared/data) through the imagefolder source and cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from lrbench.data import DeviceData, load_splits
from lrbench.specs import DatasetSpec

ARCHIVE = Path(
    os.environ.get("LRBENCH_CIFAR10_ARCHIVE")
    or Path(__file__).parents[2] / "shared/data/cifar10_jpeg_train_test.tar.xz"
)

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"no CIFAR-10 archive at {ARCHIVE}"),
]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def loads(tmp_path_factory):
    """Two loads into a fresh data dir, counting the archive's decodes after each: the first
    decodes the archive, the second reads the cache."""
    from lrbench.data import imagefolder

    data_dir = tmp_path_factory.mktemp("data")
    spec = DatasetSpec(name="imagefolder", root=str(ARCHIVE))
    decodes, splits = [], []
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        decode = imagefolder._decode_stream
        patch.setattr(imagefolder, "_decode_stream", lambda items: calls.append(1) or decode(items))
        for _ in range(2):
            splits.append(load_splits(spec, data_dir))
            decodes.append(len(calls))
    return splits, decodes, data_dir


def test_the_archive_loads_as_cifar10(loads):
    (s, _), _, _ = loads
    assert s.train_x.shape == (50_000, 3, 32, 32) and s.train_x.dtype == torch.uint8
    assert s.test_x.shape == (10_000, 3, 32, 32)
    assert s.classes == CLASSES and s.num_classes == 10
    assert torch.bincount(s.train_y).tolist() == [5000] * 10
    assert torch.bincount(s.test_y).tolist() == [1000] * 10


def test_train_statistics_match_the_readme(loads):
    (s, _), _, _ = loads
    assert s.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=5e-4)
    assert s.std == pytest.approx((0.2452, 0.2428, 0.2606), abs=5e-4)


def test_the_second_load_comes_from_the_cache_without_decoding(loads):
    (first, second), decodes, data_dir = loads
    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)
    assert len(list((data_dir / "cache").glob("*.npz"))) == 1
    assert decodes == [1, 1], "the first load decodes the archive once, the second not at all"


def test_limited_subset_with_validation(loads):
    _, _, data_dir = loads
    spec = DatasetSpec(name="imagefolder", root=str(ARCHIVE), limit_train=5000, val_fraction=0.1)
    s = load_splits(spec, data_dir)
    assert torch.bincount(s.train_y).tolist() == [450] * 10
    assert torch.bincount(s.val_y).tolist() == [50] * 10
    assert s.test_x.shape[0] == 10_000


def test_an_epoch_at_batch_128_is_391_steps(loads):
    (s, _), _, _ = loads
    data = DeviceData(s, "cpu")
    assert data.steps_per_epoch(128) == 391
    x, _ = next(data.train_batches(0, 0, 128))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.3


def test_the_archive_is_fingerprinted_once_by_its_sha256(tmp_path, monkeypatch):
    """What `--dry-run` and `status` pay for naming the data: one hash, then a stat."""
    from lrbench.data import identity

    hashed = []
    digest = identity._file_digest
    monkeypatch.setattr(identity, "_file_digest", lambda path: hashed.append(path) or digest(path))
    first = identity.fingerprint(str(ARCHIVE), tmp_path)
    again = identity.fingerprint(str(ARCHIVE), tmp_path)
    assert first == again == f"sha256:{hashlib.sha256(ARCHIVE.read_bytes()).hexdigest()}"
    assert len(hashed) == 1
