"""RPG-style parallel semantic-ID prediction (RPG, arXiv 2506.05781) on SimGR's backbone and prompt.

L output heads read the same hidden state h (one forward pass): head l gives p(t_l | x) over the level-l
codes, logits_l = (W_l h) . E[level-l tokens] (tied to the input embeddings). Training: mean over levels
of the per-level cross-entropy, at every item boundary of a window (as SimGR). Ranking: every valid item
scores sum_l log p(c_l(i) | x) (independence across levels), an exact full ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.baselines.autoregressive import prompt_batches
from model.methods.simgr import SimGRMethod
from model.network.assembly import Assembled, build_model
from model.network.model import SimGR
from model.network.prompt import PromptBatch


class ParallelModel(nn.Module):
    def __init__(self, *, encoder: SimGR) -> None:
        super().__init__()
        self.encoder = encoder
        table = encoder.sid_token_ids  # (N, L)
        emb: torch.Tensor = encoder.input_embeddings().weight  # type: ignore[assignment]
        dim = int(emb.shape[1])
        codes, level_tokens = [], []
        for level in range(table.shape[1]):
            toks, inv = torch.unique(table[:, level], return_inverse=True)
            level_tokens.append(toks)
            codes.append(inv)
        self.codes: torch.Tensor
        self.register_buffer("codes", torch.stack(codes, dim=1), persistent=False)  # (N, L) code index per level
        self.level_tokens = [t.tolist() for t in level_tokens]
        self.heads = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in level_tokens)
        for head in self.heads:
            nn.init.eye_(head.weight)  # type: ignore[arg-type]

    def level_logprobs(self, h: torch.Tensor) -> list[torch.Tensor]:
        """(R, D) hidden states -> per level (R, V_l) log p(t_l | x)."""
        emb: torch.Tensor = self.encoder.input_embeddings().weight  # type: ignore[assignment]
        return [F.log_softmax(head(h.float()) @ emb[toks].float().T, dim=-1)
                for head, toks in zip(self.heads, self.level_tokens, strict=True)]

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        """(R, D) -> (R, N) sum_l log p(c_l(i) | x) for every item i."""
        parts = self.level_logprobs(h)
        return torch.stack([lp[:, self.codes[:, level]] for level, lp in enumerate(parts)]).sum(0)

    def forward(self, batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        table = self.encoder.item_embeddings() if self.encoder.prompt_cfg.layout == "items" else None
        hidden = self.encoder.hidden_states(batch, table)  # (B, T, D)
        h_last = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.last].float()
        if batch.targets is None:
            return h_last, None
        at = batch.targets >= 0
        codes = self.codes[batch.targets[at]]  # (M, L)
        parts = self.level_logprobs(hidden[at])
        loss = torch.stack([F.nll_loss(lp, codes[:, level]) for level, lp in enumerate(parts)]).mean()
        return h_last, loss


class ParallelMethod(SimGRMethod):
    """Same windows and batches as SimGR (every prefix scored in one pass); its own model and ranking."""

    name = "parallel"

    def build(self, cfg: Any, sids: Sequence[Sequence[str]]) -> Assembled:
        built = build_model(cfg.model, cfg.prompt, sids, dropout=cfg.train.dropout,
                            hidden_dropout=cfg.train.hidden_dropout, seed=cfg.train.seed)
        return Assembled(ParallelModel(encoder=built.model), built.tokenizer, built.vocab)  # type: ignore[arg-type]

    @torch.inference_mode()
    def rank(self, built: Assembled, histories: Sequence[Sequence[int]], *, k: int, batch_size: int,
             device: torch.device | str, desc: str = "rank") -> np.ndarray:
        model: ParallelModel = built.model  # type: ignore[assignment]
        model.eval()
        out = np.empty((len(histories), k), dtype=np.int64)
        for idx, batch in prompt_batches(built, histories, batch_size, device, desc):
            h, _ = model(batch)
            out[idx] = model.item_scores(h).topk(k, dim=-1).indices.cpu().numpy()
        return out
