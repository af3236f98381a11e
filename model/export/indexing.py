"""The bundle's item index, chosen at export: build the requested type, tune it on validation users'
embeddings to the cheapest setting reaching the recall target, and record the result in the manifest.

``sid-exact`` needs what the mean aggregator makes an item from: each item's semantic-ID tokens and
their input-embedding rows. ``sid_codes`` reads both off the exported model, per level, so the index
and the served item table come from the same weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from index import IndexChoice, IndexSpec, ItemIndex, RecallTargetError, SidCodes
from index.spec import EXACT_KINDS, choose_kind, factory_string
from index.tuning import tune
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.network.model import SimGR

log = logging.getLogger(__name__)


@torch.inference_mode()
def sid_codes(model: SimGR) -> SidCodes:
    """Per-level code tables (the input-embedding rows of the tokens used at that level) and each
    item's codes into them; e_i = normalise(mean_l tables[l][codes[i, l]]) for the mean aggregator."""
    tokens = model.sid_token_ids.cpu().numpy()  # (N, L) vocabulary ids
    weight = model.input_embeddings().weight.detach().float().cpu().numpy()  # type: ignore[operator]  # (V, D)
    tables, cols, level_tokens = [], [], []
    for lvl in range(tokens.shape[1]):
        used, local = np.unique(tokens[:, lvl], return_inverse=True)
        tables.append(np.ascontiguousarray(weight[used]))
        cols.append(local.astype(np.int32))
        level_tokens.append(used.astype(np.int64))
    return SidCodes(tables=tables, codes=np.stack(cols, axis=1), normalize=model.cfg.normalize,
                    level_tokens=level_tokens)


def user_queries(bundle: Bundle, histories: Sequence[Sequence[int]], *, limit: int, seed: int = 0,
                 batch: int = 64) -> np.ndarray:
    """(Q, D) user embeddings of up to ``limit`` histories (a seeded sample): the recall queries."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(histories), size=min(limit, len(histories)), replace=False)
    chosen = [histories[i] for i in sorted(pick.tolist())]
    parts = [bundle.encode_users(chosen[s : s + batch]) for s in range(0, len(chosen), batch)]
    return np.concatenate(parts) if parts else np.empty((0, bundle.dim), dtype=np.float32)


def install_index(root: Path, bundle: Bundle, choice: IndexChoice, queries: np.ndarray) -> IndexSpec:
    """Build the chosen index over the bundle's item matrix, tune it on ``queries``, write it into
    ``root`` and record it in the manifest. SimGRError (one line) when the target cannot be met."""
    aggregator = bundle.manifest.aggregator
    kind = choose_kind(choice, n_items=bundle.n_items, dim=bundle.dim, mean_aggregator=aggregator == "mean")
    if kind == "sid-exact" and aggregator != "mean":
        raise SimGRError(f"--index sid-exact needs the mean aggregator; this model uses {aggregator!r}")
    if len(queries) == 0:
        raise SimGRError(f"{root}: no validation users to measure the index's recall on")
    codes = sid_codes(bundle.model) if kind == "sid-exact" else None
    try:
        factory = None if kind in EXACT_KINDS else factory_string(kind, choice, n_items=bundle.n_items,
                                                                  dim=bundle.dim)
        index = ItemIndex.build(bundle.embeddings, kind=kind, factory=factory, codes=codes,
                                ef_construction=choice.ef_construction, seed=choice.seed)
        index = tune(index, queries, min_recall=choice.min_recall, max_search=choice.max_search)
    except RecallTargetError as e:
        raise SimGRError(f"export: {e}") from None
    except ValueError as e:
        raise SimGRError(f"export: cannot build the {kind} index: {e}") from None
    spec = index.save(root)
    bundle.manifest.model_copy(update={"index": spec}).write(root / "manifest.json")
    log.info("index %s %s: recall@10 %.4f on %d validation users", kind, factory or "", spec.recall_at_10 or 0,
             spec.recall_queries or 0)
    return spec
