"""The one progress-bar helper: tqdm on a terminal, silent in CI logs or when SIMGR_NO_PROGRESS is set
to 1, true, yes or on (any case)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})


def enabled() -> bool:
    """Whether bars are shown: stderr is a terminal and SIMGR_NO_PROGRESS is not set to a true value."""
    return os.environ.get("SIMGR_NO_PROGRESS", "").strip().lower() not in _TRUE and sys.stderr.isatty()


def silence() -> None:
    """No bars in this process and the ones it starts, unless SIMGR_NO_PROGRESS is already set: a
    benchmark's output is its JSON line."""
    os.environ.setdefault("SIMGR_NO_PROGRESS", "1")


def progress(it: Iterable[T], *, desc: str, unit_scale: int | None = None, **kw: Any) -> Any:
    """``it`` wrapped in a tqdm bar (disabled when ``enabled()`` is false); ``unit_scale`` counts in batches."""
    if unit_scale:
        kw.setdefault("unit", "batch")
    return tqdm(it, desc=desc, disable=not enabled(), leave=False, dynamic_ncols=True, **kw)
