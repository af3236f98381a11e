"""Training/ranking methods behind one interface, so `simgr train --method M` and the evaluator treat
SimGR and the baselines alike. A method builds its model, turns a user's training sequence into
examples, collates examples into a batch (``batch.to(device)``; ``model(batch) -> (h, loss)``), and
ranks ALL items for a list of histories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from model.factory import Built


class Method(Protocol):
    name: str

    def build(self, cfg: Any, sids: Sequence[Sequence[str]]) -> Built: ...

    def examples(self, sequence: Sequence[int], built: Built, *, stride: int) -> list[Any]: ...

    def n_targets(self, example: Any) -> int: ...

    def collate(self, examples: Sequence[Any], built: Built) -> Any: ...

    def rank(self, built: Built, histories: Sequence[Sequence[int]], *, k: int, batch_size: int,
             device: torch.device | str, desc: str = "rank") -> np.ndarray: ...


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    _REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    from model.methods import simgr  # noqa: F401  (registers itself)

    try:
        import model.methods.baselines  # noqa: F401  (optional: registers the baselines when present)
    except ImportError:
        pass
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def method_names() -> list[str]:
    get_method("simgr")
    return sorted(_REGISTRY)
