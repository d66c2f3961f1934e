"""Where images come from: torchvision's CIFAR and STL-10 files, an image folder or archive,
the user's own function, or synthetic."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from lrbench.data.identity import check_identity
from lrbench.data.imagefolder import load_imagefolder
from lrbench.data.imported import load_imported
from lrbench.data.raw import RawData
from lrbench.data.synthetic import NUM_CLASSES, SIZE, make_synthetic
from lrbench.errors import UserError
from lrbench.specs import DatasetSpec

DOWNLOAD_TIMEOUT_S = 60
STL10_CLASSES = [
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
]


@dataclass(frozen=True)
class Torchvision:
    """A torchvision dataset lrbench knows by name: its class and its train/test split keywords.

    STL-10 trains on its 5,000 labelled images (not the unlabelled 100,000) and tests on 8,000.
    """

    label: str
    cls: str
    train: dict[str, Any]
    test: dict[str, Any]
    num_classes: int
    size: int


TORCHVISION = {
    "cifar10": Torchvision("CIFAR-10", "CIFAR10", {"train": True}, {"train": False}, 10, 32),
    "cifar100": Torchvision("CIFAR-100", "CIFAR100", {"train": True}, {"train": False}, 100, 32),
    "stl10": Torchvision("STL-10", "STL10", {"split": "train"}, {"split": "test"}, 10, 96),
}


def dataset_shape(spec: DatasetSpec) -> tuple[int, tuple[int, int]] | None:
    """(classes, image size) of a built-in source, known without loading it; None for the
    user's own data and image folders."""
    if spec.name in TORCHVISION:
        source = TORCHVISION[spec.name]
        return source.num_classes, (source.size, source.size)
    if spec.name == "synthetic":
        return NUM_CLASSES, (SIZE, SIZE)
    return None


def load_source(spec: DatasetSpec, data_dir: Path) -> RawData:
    """The whole train and test splits of `spec`'s source, before any subsetting."""
    if spec.name in TORCHVISION:
        return load_torchvision(spec.name, data_dir)
    if spec.name == "imagefolder":
        check_identity(spec, data_dir / "cache")
        return load_imagefolder(spec.root, data_dir / "cache")
    if spec.name == "synthetic":
        return make_synthetic()
    if spec.name == "import":
        return load_imported(spec)
    known = ", ".join([*TORCHVISION, "synthetic", "imagefolder", "import"])
    raise UserError(f"unknown dataset {spec.name!r} (known: {known})")


def load_torchvision(name: str, data_dir: Path) -> RawData:
    """torchvision's files under data_dir, downloaded once (under a lock) when missing."""
    from torchvision import datasets

    source = TORCHVISION[name]
    cls = getattr(datasets, source.cls)
    try:
        train, test = cls(str(data_dir), **source.train), cls(str(data_dir), **source.test)
    except RuntimeError:
        train, test = _download(cls, source, name, data_dir)
    train_x, train_y = _arrays(train)
    test_x, test_y = _arrays(test)
    classes = list(getattr(train, "classes", STL10_CLASSES))
    return RawData(train_x, train_y, test_x, test_y, classes)


def _arrays(split: Any) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NCHW images and int64 labels: STL-10 holds NCHW `labels`, CIFAR NHWC `targets`."""
    if hasattr(split, "targets"):
        return _nchw(split.data), np.asarray(split.targets, dtype=np.int64)
    return np.ascontiguousarray(split.data, dtype=np.uint8), split.labels.astype(np.int64)


def _download(cls: type, source: Torchvision, name: str, data_dir: Path) -> tuple:
    folder = cls.base_folder
    previous = socket.getdefaulttimeout()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(data_dir / f".{name}.lock")):
            socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
            train = cls(str(data_dir), **source.train, download=True)
            return train, cls(str(data_dir), **source.test)
    except Exception as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(
            f"{source.label} is not in {data_dir / folder} and could not be downloaded "
            f"({reason}); put the extracted '{folder}' folder in {data_dir} (or point --data-dir "
            "or LRBENCH_DATA at the folder that holds it), or use "
            "{name: imagefolder, root: PATH} for a folder or .tar archive of images"
        ) from err
    finally:
        socket.setdefaulttimeout(previous)


def _nchw(hwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(hwc, dtype=np.uint8).transpose(0, 3, 1, 2))
