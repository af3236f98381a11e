"""Exact full ranking with SimGR: one forward pass per batch of users, then top-k over every item."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from model.network.model import SimGR
from model.network.prompt import PromptVocab, build_prompt, by_length, collate
from model.progress import progress


@torch.inference_mode()
def rank_users(model: SimGR, vocab: PromptVocab, histories: Sequence[Sequence[int]], *, k: int = 10,
               batch_size: int = 256, device: torch.device | str = "cpu", desc: str = "rank") -> np.ndarray:
    """(U, k) item indices of each user's top-k over ALL items, best first."""
    model.eval()
    table = model.item_embeddings().float()  # (N, D), computed once
    out = np.empty((len(histories), k), dtype=np.int64)
    for idx in progress(by_length(histories, batch_size, keep=vocab.cfg.max_history), desc=desc,
                        unit_scale=batch_size):
        prompts = [build_prompt(histories[i], vocab) for i in idx]
        batch = collate(prompts, pad_id=vocab.pad_id).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"):
            h = model.user_embeddings(batch, table)  # (B, D)
        scores = h.float() @ table.T  # (B, N)
        out[idx] = scores.topk(k, dim=-1).indices.cpu().numpy()
    return out
