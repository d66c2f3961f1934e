"""Your own data: `dataset: {import: "module:function", args: {...}, limit_train: ...}`.

The function is called with the entry's args as keywords and returns `(train, test)`, each one
  - a pair `(images, labels)` of torch tensors or numpy arrays, or
  - a dataset like torchvision's: `len(d)` and `d[i] -> (image, label)`, the image a PIL image,
    an array or a tensor (torchvision's datasets without a transform, or with ToTensor).
Images are [N, 3, H, W], or [N, H, W, 3] as numpy and PIL lay them out; grayscale [N, H, W] or
[N, 1, H, W] is copied into three channels. uint8 images are taken as they are; float images
must hold intensities in [0, 1] and are stored as uint8, round(255 x), like every other source:
all of them then get the same on-device crop, flip and normalisation by the training split's
per-channel mean and std (so do not normalise your images yourself). Labels are integers
0 .. K-1, K the train dataset's `classes` when it has them, else the largest label + 1.

It becomes the RawData every source produces, so subsets, validation splits and augmentation
work as for CIFAR. Only the sweep imports the module (at config time, to check it and hash its
source into the run ids); the data are made and checked where a run loads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from lrbench.data.raw import RawData
from lrbench.errors import UserError, one_line
from lrbench.imports import check_callable, import_planned, import_ref
from lrbench.specs import DatasetSpec

RETURNS = "(train, test), each (images, labels) or a dataset of (image, label)"
WHAT = f"a function returning {RETURNS}"


def resolve_dataset(spec: DatasetSpec, where: str) -> DatasetSpec:
    """`spec` as a run records it: for your own data, the function imported (UserError naming
    `where` if that fails), its source hashed and its label fixed; other sources unchanged."""
    if spec.name != "import" or spec.ref is None:
        return spec
    imported = import_ref(spec.ref, where)
    check_callable(imported, where, WHAT)
    update = {"ref": imported.ref, "args": spec.args or {}, "source": imported.source_hash}
    return spec.model_copy(update={**update, "label": spec.display_name})


def call_dataset(spec: DatasetSpec) -> Any:
    """What the user's dataset function returns, called from the source the run was planned
    with; its failure (an exception or SystemExit) is one UserError naming it."""
    where = f"dataset {spec.ref}"
    imported = import_planned(spec.ref, spec.source, "dataset")
    try:
        return imported.obj(**(spec.args or {}))
    except (Exception, SystemExit) as err:  # the user's function failed
        raise UserError(f"{where}: calling it raised {one_line(err)}") from err


def load_imported(spec: DatasetSpec) -> RawData:
    """Call the user's function and check what it returned; every problem is one UserError."""
    where = f"dataset {spec.ref}"
    result = call_dataset(spec)
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise UserError(f"{where}: returned a {type(result).__name__}, not {RETURNS}")
    train_x, train_y, classes = _split(result[0], f"{where}: train")
    test_x, test_y, _ = _split(result[1], f"{where}: test")
    if train_x.shape[2:] != test_x.shape[2:]:
        raise UserError(
            f"{where}: train images are {_size(train_x)} but test images {_size(test_x)}; "
            "both splits need one size"
        )
    top = int(max(train_y.max(), test_y.max()))
    classes = classes or [str(c) for c in range(top + 1)]
    if top >= len(classes):
        raise UserError(f"{where}: label {top} but only {len(classes)} classes")
    return RawData(train_x, train_y, test_x, test_y, classes)


def _split(split: Any, where: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """uint8 [N, 3, H, W] images, int64 labels and the class names (when the split has them)."""
    if isinstance(split, tuple | list) and len(split) == 2:
        images, labels = split
    elif hasattr(split, "__len__") and hasattr(split, "__getitem__"):
        items = [split[i] for i in range(len(split))]
        try:
            images = np.stack([_item_image(image) for image, _ in items]) if items else []
        except ValueError as err:
            raise UserError(f"{where}: the images differ in size ({one_line(err)})") from None
        labels = [int(label) for _, label in items]
    else:
        raise UserError(
            f"{where}: is a {type(split).__name__}, not (images, labels) nor a dataset of "
            "(image, label)"
        )
    x = _images(images, where)
    y = _labels(labels, len(x), where)
    classes = getattr(split, "classes", None)
    return x, y, [str(c) for c in classes] if isinstance(classes, list | tuple) else None


def _item_image(image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return _numpy(image)


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _images(images: Any, where: str) -> np.ndarray:
    x = _numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise UserError(
            f"{where}: images must be [N, 3, H, W] or [N, H, W, 3] (or grayscale [N, H, W]) "
            f"with N > 0, got shape {list(x.shape)}"
        )
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    if np.issubdtype(x.dtype, np.floating):
        low, high = float(x.min()), float(x.max())
        if not 0.0 <= low <= high <= 1.0:
            raise UserError(
                f"{where}: float images must hold intensities in [0, 1], got values in "
                f"[{low:g}, {high:g}] (leave normalising to lrbench)"
            )
        x = np.rint(x * 255.0).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise UserError(f"{where}: images must be uint8 or float in [0, 1], got {x.dtype}")
    return np.ascontiguousarray(x)


def _labels(labels: Any, n: int, where: str) -> np.ndarray:
    y = _numpy(labels)
    if y.shape != (n,):
        raise UserError(f"{where}: {n} images but labels of shape {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels must be integers 0 .. K-1, got {y.dtype}")
    if y.min() < 0:
        raise UserError(f"{where}: labels must be integers 0 .. K-1, got {int(y.min())}")
    return y.astype(np.int64)


def _size(x: np.ndarray) -> str:
    return f"{x.shape[3]}x{x.shape[2]}"
