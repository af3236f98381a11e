"""Progress bars: tqdm on a terminal, silent in CI logs or when SIMGR_NO_PROGRESS=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("SIMGR_NO_PROGRESS", "") not in ("1", "true") and sys.stderr.isatty()


def progress(it: Iterable[T], *, desc: str, unit_scale: int | None = None, **kw: Any) -> Any:
    if unit_scale:
        kw.setdefault("unit", "batch")
    return tqdm(it, desc=desc, disable=not enabled(), leave=False, dynamic_ncols=True, **kw)
