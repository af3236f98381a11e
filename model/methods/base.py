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

from model.network.assembly import Assembled


class Method(Protocol):
    name: str

    def build(self, cfg: Any, sids: Sequence[Sequence[str]]) -> Assembled: ...

    def examples(self, sequence: Sequence[int], built: Assembled, *, stride: int) -> list[Any]: ...

    def n_targets(self, example: Any) -> int: ...

    def size(self, example: Any, built: Assembled) -> int: ...  # positions it fills in a batch (padding)

    def collate(self, examples: Sequence[Any], built: Assembled) -> Any: ...

    def rank(self, built: Assembled, histories: Sequence[Sequence[int]], *, k: int, batch_size: int,
             device: torch.device | str, desc: str = "rank") -> np.ndarray: ...
