"""Latte: latent reasoning tokens for generative recommendation (arXiv 2605.06331), on the autoregressive
baseline.

M latent tokens join the vocabulary. Training: the target becomes [l, c_1..c_L] with ONE latent l drawn
uniformly at random afresh every time a batch is built (history items carry no latent), trained by the
autoregressive baseline's whole-sequence teacher forcing. Inference: beam
search with one extra first step (the latent) over the trie of [l, SID] paths; an item's score aggregates
its paths in the final beam, max (default) or sum (logsumexp) of P(l|u) * prod_j P(c_j|l, c_<j, u); the
list is deduplicated to distinct items and the beam doubles while fewer than K distinct items remain.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from model.baselines.autoregressive import (
    AutoregressiveMethod,
    as_ar,
    build_ar,
    prompt_batches,
    topk_from_beams,
)
from model.baselines.beam import beam_search, select_users
from model.network.assembly import Assembled


def aggregate_paths(items: torch.Tensor, scores: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One user's beam (items (P,), path log-probs (P,)) -> distinct items and aggregated log-scores."""
    ok = items >= 0
    items, scores = items[ok], scores[ok]
    uniq, inv = torch.unique(items, return_inverse=True)
    if how == "max":
        agg = torch.full((len(uniq),), float("-inf")).scatter_reduce(0, inv, scores, reduce="amax")
    elif how == "sum":
        peak = torch.full((len(uniq),), float("-inf")).scatter_reduce(0, inv, scores, reduce="amax")
        agg = peak + torch.zeros(len(uniq)).index_add(0, inv, torch.exp(scores - peak[inv])).log()
    else:
        raise ValueError(f"latte_agg must be 'max' or 'sum', got {how!r}")
    return uniq, agg


class LatteMethod(AutoregressiveMethod):
    name = "latte"

    def build(self, cfg: Any, sids: Sequence[Sequence[str]]) -> Assembled:
        return build_ar(cfg, sids, latent_tokens=cfg.baseline.latent_tokens)

    def answer(self, item: int, built: Assembled) -> list[int]:
        latents = as_ar(built).latent_ids.tolist()
        return [latents[random.randrange(len(latents))], *built.vocab.sid_token_ids[item]]

    @torch.inference_mode()
    def rank(self, built: Assembled, histories: Sequence[Sequence[int]], *, k: int, batch_size: int,
             device: torch.device | str, desc: str = "rank") -> np.ndarray:
        return rank_latte(built, histories, k=k, beam=as_ar(built).bcfg.beam_size, batch_size=batch_size,
                          device=device, desc=desc)


@torch.inference_mode()
def rank_latte(built: Assembled, histories: Sequence[Sequence[int]], *, k: int, beam: int, batch_size: int = 256,
               device: torch.device | str = "cpu", desc: str = "latte") -> np.ndarray:
    """(U, k) distinct items per user from Latte's latent-first beam search with path aggregation."""
    model = as_ar(built)
    model.eval()
    how = model.bcfg.latte_agg
    users_per_batch = max(1, min(batch_size, 4096 // max(1, beam)))
    out = np.full((len(histories), k), -1, dtype=np.int64)
    for idx, batch in prompt_batches(built, histories, users_per_batch, device, desc):
        state = model.prompt_state(batch)
        width = beam
        todo = list(range(len(batch.last)))
        while todo:  # only the users still short of k distinct items search again, at twice the width
            sub = select_users(state, torch.tensor(todo))
            beams = beam_search(model, sub, model.trie, beam=width)
            items = torch.where(beams.leaves >= 0, model.trie.leaf_item[beams.leaves.clamp(min=0)], -1)
            short = []
            for row, u in enumerate(todo):
                uniq, agg = aggregate_paths(items[row], beams.scores[row], how)
                if len(uniq) < k and width < model.trie.n_leaves:
                    short.append(u)
                    continue
                out[idx[u]] = topk_from_beams(uniq[None], agg[None], k)[0]
            todo, width = short, min(2 * width, model.trie.n_leaves)
    return out
