"""Where images come from: torchvision's CIFAR files, an image folder or archive, or synthetic."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
from filelock import FileLock

from lrbench.data.imagefolder import load_imagefolder
from lrbench.data.raw import RawData
from lrbench.data.synthetic import make_synthetic
from lrbench.errors import UserError
from lrbench.specs import DatasetSpec

DOWNLOAD_TIMEOUT_S = 60
_CIFAR_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def load_source(spec: DatasetSpec, data_dir: Path) -> RawData:
    """The whole train and test splits of `spec`'s source, before any subsetting."""
    if spec.name in _CIFAR_LABELS:
        return load_cifar(spec.name, data_dir)
    if spec.name == "imagefolder":
        return load_imagefolder(spec.root, data_dir / "cache")
    if spec.name == "synthetic":
        return make_synthetic()
    raise UserError(
        f"unknown dataset {spec.name!r} (known: cifar10, cifar100, synthetic, imagefolder)"
    )


def load_cifar(name: str, data_dir: Path) -> RawData:
    """torchvision's files under data_dir, downloaded once (under a lock) when missing."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train, test = cls(str(data_dir), train=True), cls(str(data_dir), train=False)
    except RuntimeError:
        train, test = _download(cls, name, data_dir)
    return RawData(
        train_x=_nchw(train.data),
        train_y=np.asarray(train.targets, dtype=np.int64),
        test_x=_nchw(test.data),
        test_y=np.asarray(test.targets, dtype=np.int64),
        classes=list(train.classes),
    )


def _download(cls: type, name: str, data_dir: Path) -> tuple:
    folder = cls.base_folder
    previous = socket.getdefaulttimeout()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(data_dir / f".{name}.lock")):
            socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
            train = cls(str(data_dir), train=True, download=True)
            return train, cls(str(data_dir), train=False)
    except Exception as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(
            f"{_CIFAR_LABELS[name]} is not in {data_dir / folder} and could not be downloaded "
            f"({reason}); put the extracted '{folder}' folder in {data_dir} (or point --data-dir "
            "or LRBENCH_DATA at the folder that holds it), or use "
            "{name: imagefolder, root: PATH} for a folder or .tar archive of images"
        ) from err
    finally:
        socket.setdefaulttimeout(previous)


def _nchw(hwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(hwc, dtype=np.uint8).transpose(0, 3, 1, 2))
