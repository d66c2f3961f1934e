"""Who holds a run's lock, and taking over a lock whose holder can never let it go.

A run's lock (`.lock`, a flock) dies with its process, so a killed sweep leaves nothing held.
One case remains: a worker stopped with SIGSTOP (Ctrl-Z, a debugger) whose sweep was then
killed. It holds its locks while stopped, and its pending SIGTERM (lrbench.executors.local:
workers die with their sweep) is delivered only once it runs again; so the next sweep sends it
SIGCONT, it ends its runs as interrupted, and the lock is free. Linux only (/proc/locks).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

LOCKS = Path("/proc/locks")


def holder(lock: Path) -> int | None:
    """The process holding a flock on `lock`, or None (unknown, not held, not Linux)."""
    try:
        st = os.stat(lock, follow_symlinks=False)
        table = LOCKS.read_text()
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        inode = fields[5].rsplit(":", 1)[-1]
        if inode == str(st.st_ino) and fields[4].isdigit():
            return int(fields[4])
    return None


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid (/proc/PID/stat), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[1])


def _is_sweep(pid: int) -> bool:
    try:
        return b"lrbench" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wake_orphan(lock: Path) -> bool:
    """Wake the holder of `lock` when it is stopped and its sweep is gone (module docstring);
    True when one was woken, so the lock is worth trying again."""
    pid = holder(lock)
    found = _stat(pid) if pid is not None and pid != os.getpid() else None
    if found is None:
        return False
    state, parent = found
    if state not in ("T", "t") or (parent != 1 and _is_sweep(parent)):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
        os.kill(pid, signal.SIGCONT)  # type: ignore[arg-type]
        return True
    return False
