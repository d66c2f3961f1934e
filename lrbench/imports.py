"""User code named in a config as "module:attribute": found, imported and fingerprinted here.

A config may name the user's own schedule, model or dataset by import path. Only `sweep`,
`run` and `schedule` import (user code runs); `report` and `status` never do. Modules are
looked up on `sys.path` after the folders added with `add_search_path` (the config file's
folder and the current directory, in the sweep's process and in every worker and Slurm task),
so a worker imports exactly what the config meant.

The fingerprint of an import is a hash of its module's source file: it goes into the run's
spec (and so into the run id), so an edited schedule or model never reuses old runs.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrbench.errors import UserError, did_you_mean

_SEARCH: list[str] = []


def add_search_path(*paths: str | Path) -> None:
    """Put folders in front of sys.path (once each), where user modules are looked up."""
    for path in paths:
        text = str(Path(path).expanduser().resolve())
        if text not in _SEARCH:
            _SEARCH.append(text)
        if text in sys.path:
            sys.path.remove(text)
        sys.path.insert(0, text)


def search_paths() -> tuple[str, ...]:
    """The folders added so far, to hand to worker processes (Runtime.import_paths)."""
    return tuple(_SEARCH)


@dataclass(frozen=True)
class Imported:
    """An imported object with the path it was named by and its module's source hash."""

    ref: str
    obj: Any
    source_hash: str


def split_ref(ref: object, where: str) -> tuple[str, str]:
    """ "package.module:function" -> ("package.module", "function"); UserError if malformed."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise UserError(
            f"{where}: {ref!r} is not an import path; write 'module:function' "
            "(a module on the config's folder or the current directory, then its function)"
        )
    module, attr = (part.strip() for part in ref.split(":"))
    if (
        not module
        or not attr
        or not all(p.isidentifier() for p in [*module.split("."), *attr.split(".")])
    ):
        raise UserError(f"{where}: {ref!r} is not an import path; write 'module:function'")
    return module, attr


def import_planned(ref: object, source: str | None, where: str) -> Imported:
    """`ref` imported as import_ref does, from the very source a run was planned with: a module
    whose source hash is no longer `source` (None: not recorded) is refused, naming `where`."""
    imported = import_ref(ref, where)
    if source is not None and imported.source_hash != source:
        raise UserError(
            f"{where}: the source of {imported.ref} changed since this run was planned (hash "
            f"{source}, now {imported.source_hash}); plan the sweep again, so that the run ids "
            "cover the new code"
        )
    return imported


def import_ref(ref: object, where: str) -> Imported:
    """Import `ref` ("module:attribute"); every failure is a UserError that names `where`."""
    module_name, attr = split_ref(ref, where)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            searched = ", ".join(_SEARCH) or "sys.path"
            raise UserError(
                f"{where}: {ref!r}: no module named {err.name!r} (looked in {searched})"
            ) from None
        raise UserError(f"{where}: {ref!r}: importing {module_name} failed: {err}") from None
    except (Exception, SystemExit) as err:  # the user's module raised while importing
        raise UserError(
            f"{where}: {ref!r}: importing {module_name} failed: {type(err).__name__}: {err}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [
                n
                for n in dir(module)
                if not n.startswith("_") and not inspect.ismodule(getattr(module, n))
            ]
            raise UserError(
                f"{where}: {ref!r}: module {module_name} has no {attr!r}"
                f"{did_you_mean(attr, public)}"
            )
        obj = getattr(obj, part)
    return Imported(f"{module_name}:{attr}", obj, source_hash(module))


def source_hash(module: Any) -> str:
    """sha256 (16 hex digits) of the module's source file; of its name when it has none."""
    try:
        path = inspect.getsourcefile(module) or inspect.getfile(module)
        data = Path(path).read_bytes()
    except (TypeError, OSError):
        data = module.__name__.encode()
    return hashlib.sha256(data).hexdigest()[:16]


def check_callable(imported: Imported, where: str, what: str) -> None:
    if not callable(imported.obj):
        raise UserError(f"{where}: {imported.ref!r} is not callable; it must be {what}")
