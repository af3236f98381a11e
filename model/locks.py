"""One advisory lock per directory, shared by the processes that write into it."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def dir_lock(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` exclusively (creating ``root``): a second holder waits until the first is done.
    The lock goes with the process, so a killed holder never leaves it taken."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
