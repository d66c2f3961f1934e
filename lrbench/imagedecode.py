"""Decoding image files in worker processes, importing nothing but Pillow and numpy.

Workers come from a fork server (a clean, single-threaded process), not from forking the caller:
the caller has threads (torch's, a checkpoint writer's), and a fork of a threaded process can
inherit a lock some other thread held, then hang on it. The fork server imports only this module,
which is why it lives outside lrbench.data (whose package imports torch).
"""

from __future__ import annotations

import io
import multiprocessing
import sys
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

Source = bytes | str  # a file's bytes, or its path


def decode(src: Source) -> np.ndarray | str:
    """The image as a uint8 HWC RGB array, or why it cannot be decoded."""
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return one_line(err)


def one_line(err: BaseException) -> str:
    """An error's message on one line (Pillow's and tarfile's can span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def decode_chunk(chunk: list[tuple[int, Source]]) -> list[tuple[int, np.ndarray | str]]:
    return [(i, decode(src)) for i, src in chunk]


def decode_parallel(
    chunks: Iterable[list[tuple[int, Source]]], workers: int
) -> Iterator[list[tuple[int, np.ndarray | str]]]:
    """decode_chunk over `chunks`, in order, on `workers` processes."""
    method = "forkserver" if sys.platform == "linux" else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([__name__])
    with ctx.Pool(workers) as pool:
        yield from pool.imap(decode_chunk, chunks)
