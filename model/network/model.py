"""SimGR: Simply Generative Recommendation (arXiv 2602.07847).

    h(C)  = final-layer hidden state of the last prompt position                       (B, D)
    e_i   = aggregate(input-embedding rows of item i's semantic-ID tokens)             (N, D)
    p(i|C) = softmax_i(<h, e_i> / tau) over ALL items; trained with full-softmax cross-entropy.

Inference is one forward pass plus an exact top-K over every item: no beam search, no decoding.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from model.config import ModelConfig, PromptConfig
from model.errors import SimGRError
from model.network.aggregators import MeanAggregator, make_aggregator
from model.network.losses import draw_candidates, group_means, prefix_groups, sampled_softmax_loss
from model.network.prompt import PromptBatch
from model.network.shared_prefix import PrefixMemo, run_backbone


class SimGR(nn.Module):
    share_prefix = True  # one pass over the prompts' common opening (shared_prefix.py); False: a full pass each

    def __init__(self, *, backbone: nn.Module, sid_token_ids: torch.Tensor, cfg: ModelConfig,
                 prompt: PromptConfig, input_dropout: float = 0.0, code_dropout: float = 0.0) -> None:
        super().__init__()
        levels = int(sid_token_ids.shape[1])
        if cfg.smoothing_prefix >= max(levels, 1):
            raise SimGRError(f"smoothing_prefix {cfg.smoothing_prefix}: items have {levels} semantic-ID codes, "
                             f"so the shared prefix must be shorter than {levels}")
        self.input_dropout = nn.Dropout(input_dropout)  # on the input vectors, training only
        self.code_dropout = code_dropout  # on the codes averaged into each item vector, training only
        self.backbone = backbone
        self.cfg = cfg
        self.prompt_cfg = prompt
        self.sid_token_ids: torch.Tensor
        self.register_buffer("sid_token_ids", sid_token_ids.long(), persistent=False)  # (N, L)
        n = int(sid_token_ids.shape[0])
        self.item_log_prior: torch.Tensor
        self.register_buffer("item_log_prior", torch.full((n,), -math.log(max(n, 1))), persistent=False)  # (N,)
        self.smoothing_groups: torch.Tensor | None
        self.register_buffer("smoothing_groups", prefix_groups(sid_token_ids, cfg.smoothing_prefix)
                             if cfg.smoothing_prefix else None, persistent=False)  # (N,); None: uniform smoothing
        dim = int(backbone.get_input_embeddings().weight.shape[1])  # type: ignore[operator,index]
        self.aggregator = make_aggregator(cfg.aggregator, dim=dim, levels=levels)
        if code_dropout and not isinstance(self.aggregator, MeanAggregator):
            raise SimGRError(f"code dropout averages the codes an item keeps: it needs the mean aggregator, "
                             f"not {cfg.aggregator!r}")
        self._prefix_memo = PrefixMemo()  # the instruction's pass, kept between no-grad eval calls

    @property
    def n_items(self) -> int:
        return int(self.sid_token_ids.shape[0])

    def input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()  # type: ignore[operator,no-any-return]

    def item_embeddings(self) -> torch.Tensor:
        """(N, D) item table used for scoring (and as item inputs in the ``items`` layout)."""
        return self.item_rows(None)

    def item_rows(self, ids: torch.Tensor | None) -> torch.Tensor:
        """(M, D) embeddings of items ``ids`` (M,) long, or of every item when None."""
        tokens = self.sid_token_ids if ids is None else self.sid_token_ids[ids]  # (M, L)
        emb = self.input_embeddings()
        w = kept_code_weights(tokens, self.code_dropout) if self.training and self.code_dropout else None
        if isinstance(self.aggregator, MeanAggregator) and type(emb) is nn.Embedding:
            # (M, D): gather and mean in one pass, 2.5x faster forward and backward than (M, L, D) rows
            e = (F.embedding_bag(tokens, emb.weight, mode="mean") if w is None
                 else F.embedding_bag(tokens, emb.weight, mode="sum", per_sample_weights=w))
        elif w is not None:
            e = (emb(tokens) * w.unsqueeze(-1)).sum(1)  # (M, L, D) -> (M, D), the kept codes' mean
        else:
            e = self.aggregator(emb(tokens))  # (M, L, D) -> (M, D); peft-safe: a wrapped table goes through forward
        return l2_normalize(e) if self.cfg.normalize else e

    def hidden_states(self, batch: PromptBatch, item_table: torch.Tensor | None) -> torch.Tensor:
        """(B, T, D) final-layer hidden states for a right-padded prompt batch."""
        embeds = self.input_embeddings()(batch.input_ids)  # (B, T, D)
        slots = batch.item_slots >= 0
        if bool(slots.any()):
            assert item_table is not None, "layout 'items' needs the item table"
            embeds = embeds.masked_scatter(slots.unsqueeze(-1),
                                           item_table[batch.item_slots[slots]].to(embeds.dtype))
        memo = self._prefix_memo if not (self.training or torch.is_grad_enabled()) else None
        return run_backbone(self.backbone, embeds, batch, dropout=self.input_dropout, memo=memo,
                            share=self.share_prefix)  # (B, T, D)

    def train(self, mode: bool = True) -> SimGR:
        self._prefix_memo.clear()  # weights may change from here on
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._prefix_memo.clear()
        return super().load_state_dict(*args, **kwargs)

    def user_embeddings(self, batch: PromptBatch, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) user embeddings h(C), normalised like the item table."""
        if item_table is None and self.prompt_cfg.layout == "items":
            item_table = self.item_embeddings()
        return self._at_last(self.hidden_states(batch, item_table), batch)

    def _score_space(self, h: torch.Tensor) -> torch.Tensor:
        """(..., D) hidden states -> the space scored against the item table (fp32, L2-normalised if set)."""
        return l2_normalize(h.float()) if self.cfg.normalize else h.float()

    def _at_last(self, hidden: torch.Tensor, batch: PromptBatch) -> torch.Tensor:
        """(B, T, D) -> (B, D) at each prompt's last real position: the user embedding."""
        return self._score_space(hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.last])

    def forward(self, batch: PromptBatch, item_table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (user embeddings (B, D), loss). The loss is the mean full-softmax cross-entropy over
        every target position in ``batch.targets`` (one per history prefix), None without targets.
        ``item_table`` (N, D): the item table when the caller computed it once for several batches.
        With ``loss="sampled"`` training scores only the sampled candidates (``model.network.losses``)."""
        if self.cfg.loss == "sampled" and self.training and batch.targets is not None:
            return self._sampled_forward(batch)
        item_table = self.item_embeddings() if item_table is None else item_table  # (N, D)
        hidden = self.hidden_states(batch, item_table)  # (B, T, D)
        h_last = self._at_last(hidden, batch)  # (B, D)
        if batch.targets is None:
            return h_last, None
        at = batch.targets >= 0  # (B, T)
        h = self._score_space(hidden[at])  # (M, D), one row per history prefix
        loss = full_softmax_loss(h, item_table.float(), batch.targets[at], tau=self.cfg.tau,
                                 chunk=self.cfg.loss_chunk_items, smoothing=self.cfg.label_smoothing,
                                 groups=self.smoothing_groups)
        return h_last, loss


    def _sampled_forward(self, batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled softmax: embeds only the batch's input items and candidates, never the whole table."""
        assert batch.targets is not None
        at = batch.targets >= 0  # (B, T)
        targets = batch.targets[at]  # (M,)
        cand = draw_candidates(targets, n_items=self.n_items, n_uniform=self.cfg.sampled_negatives,
                               log_prior=self.item_log_prior)
        is_slot = batch.item_slots >= 0
        slots = batch.item_slots[is_slot]  # (S,)
        needed, inverse = torch.unique(torch.cat([slots, cand.items]), return_inverse=True)
        rows = self.item_rows(needed)  # (U, D): the only item embeddings this step computes
        local = batch.item_slots.masked_scatter(is_slot, inverse[: slots.shape[0]])
        hidden = self.hidden_states(batch._replace(item_slots=local), rows)  # (B, T, D)
        h = self._score_space(hidden[at])  # (M, D)
        loss = sampled_softmax_loss(h, rows[inverse[slots.shape[0]:]].float(), cand, targets, tau=self.cfg.tau)
        return self._at_last(hidden, batch), loss


def kept_code_weights(tokens: torch.Tensor, p: float) -> torch.Tensor:
    """(M, L) codes -> (M, L) weights that average each item's kept codes: each code is dropped with
    probability ``p``, and one code per item, drawn uniformly, always stays. Dropout on the item table, as
    the input dropout is on the prompt: an item vector may not lean on one code alone."""
    keep = torch.rand(tokens.shape, device=tokens.device) >= p  # (M, L)
    keep[torch.arange(tokens.shape[0], device=tokens.device),
         torch.randint(tokens.shape[1], (tokens.shape[0],), device=tokens.device)] = True
    w = keep.float()
    return w / w.sum(1, keepdim=True)


class _L2Normalize(torch.autograd.Function):
    """y = x / max(||x||, eps) along the last dim, with the closed-form backward
    dx = (g - y <g, y>) / ||x||: about half the passes over (N, D) of autograd through F.normalize, which
    matters for the (N, D) item table normalised at every training step."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        inv = x.pow(2).sum(-1, keepdim=True).clamp_min(1e-24).rsqrt()  # (..., 1); eps 1e-12, as F.normalize
        y = x * inv
        ctx.save_for_backward(y, inv)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        y, inv = ctx.saved_tensors
        return torch.addcmul(g, y, (g * y).sum(-1, keepdim=True), value=-1).mul_(inv)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """F.normalize(x, dim=-1) with a cheaper backward (``_L2Normalize``)."""
    return _L2Normalize.apply(x)  # type: ignore[no-any-return]


def _chunk_lse(h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp((h @ items.T).float(), dim=-1)  # (M,); fp32 even where autocast multiplied in bf16


def full_softmax_loss(h: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, *, tau: float,
                      chunk: int, smoothing: float = 0.0, groups: torch.Tensor | None = None) -> torch.Tensor:
    """mean_m [ logsumexp_i(<h_m, e_i>/tau) - <h_m, e_{t_m}>/tau ] over ALL items.

    h (M, D), items (N, D), targets (M,). Catalogs larger than ``chunk`` are processed chunk by chunk with
    activation checkpointing, so memory is O(M * chunk) instead of O(M * N). ``smoothing`` eps: the target
    term becomes (1 - eps) <h_m, e_t>/tau + eps mean_i <h_m, e_i>/tau, and the mean over items is one
    product with the mean item vector, never an (M, N) pass. ``groups`` (N,) long: eps is spread over the
    target's group instead (``prefix_groups``), one product with the mean vector of that group."""
    h = h / tau  # (M, D): scaling h, not the (M, N) scores, saves a pass over them both ways
    pos = (h * items[targets]).sum(-1)  # (M,)
    if smoothing:
        if groups is None:
            spread = h @ items.mean(0)  # (M,)
        else:
            spread = (h * group_means(items, groups)[groups[targets]]).sum(-1)  # (M,): each target's group mean
        pos = (1 - smoothing) * pos + smoothing * spread
    if items.shape[0] <= chunk:
        lse = _chunk_lse(h, items)
    else:
        parts = [checkpoint(_chunk_lse, h, items[s:s + chunk], use_reentrant=False)
                 for s in range(0, items.shape[0], chunk)]
        lse = torch.logsumexp(torch.stack(parts, dim=-1), dim=-1)  # type: ignore[arg-type]
    return (lse - pos).mean()
