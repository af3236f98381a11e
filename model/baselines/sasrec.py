"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018, arXiv 1808.09781), with
RecBole's ``loss_type: CE`` (full softmax over every item, item table shared by input and output).

Item ids only (no semantic IDs, no prompt). Windows as SimGR's: one causal pass over up to max_history
items, a loss at every position (position j predicts item j+1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.network.assembly import Assembled, sid_vocabulary
from model.network.backbone import build_preset_tokenizer
from model.network.prompt import PromptVocab, by_length
from model.network.windows import window_spans
from model.progress import progress


class SeqBatch(NamedTuple):
    items: torch.Tensor  # (B, T) long item index + 1 (0 = padding), right padded
    last: torch.Tensor  # (B,) position of the last real item
    targets: torch.Tensor | None  # (B, T) next item at each position, -100 where none

    def to(self, device: torch.device | str) -> SeqBatch:
        t = self.targets.to(device) if self.targets is not None else None
        return SeqBatch(self.items.to(device), self.last.to(device), t)


class SeqExample(NamedTuple):
    items: tuple[int, ...]  # inputs
    targets: tuple[int, ...]  # next item after each input, -100 when that position carries no loss


class SASRec(nn.Module):
    def __init__(self, *, n_items: int, dim: int, layers: int, heads: int, dropout: float, max_len: int,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing  # of the training loss only
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)  # row 0 = padding
        self.pos_emb = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def hidden(self, batch: SeqBatch) -> torch.Tensor:
        t = batch.items.shape[1]
        x = self.item_emb(batch.items) + self.pos_emb(torch.arange(t, device=batch.items.device))  # (B, T, D)
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)  # True = hidden
        h = self.blocks(self.drop(x), mask=causal, src_key_padding_mask=batch.items == 0)
        return self.norm(h)  # type: ignore[no-any-return]

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item_emb.weight[1:].T  # (R, N)

    def forward(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self.hidden(batch)  # (B, T, D)
        h_last = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.last]
        if batch.targets is None:
            return h_last, None
        at = batch.targets >= 0
        return h_last, F.cross_entropy(self.scores(hidden[at]), batch.targets[at],
                                       label_smoothing=self.label_smoothing)


def collate_items(examples: Sequence[SeqExample]) -> SeqBatch:
    t_max = max(len(e.items) for e in examples)
    items = torch.zeros(len(examples), t_max, dtype=torch.long)
    targets = torch.full((len(examples), t_max), -100, dtype=torch.long)
    for b, e in enumerate(examples):
        items[b, :len(e.items)] = torch.tensor(e.items) + 1
        targets[b, :len(e.targets)] = torch.tensor(e.targets)
    return SeqBatch(items, torch.tensor([len(e.items) - 1 for e in examples]), targets)


class SASRecMethod:
    name = "sasrec"

    def build(self, cfg: Any, sids: Sequence[Sequence[str]]) -> Assembled:
        torch.manual_seed(cfg.train.seed)
        b = cfg.baseline
        tokenizer = build_preset_tokenizer(sid_vocabulary(sids))  # only so runs look alike on disk
        vocab = PromptVocab.from_tokenizer(tokenizer, sids, cfg.prompt)
        model = SASRec(n_items=len(sids), dim=b.sasrec_dim, layers=b.sasrec_layers, heads=b.sasrec_heads,
                       dropout=b.sasrec_dropout, max_len=max(1, cfg.prompt.max_history),
                       label_smoothing=b.sasrec_label_smoothing)
        return Assembled(model, tokenizer, vocab)  # type: ignore[arg-type]

    def examples(self, sequence: Sequence[int], built: Assembled, *, stride: int) -> list[SeqExample]:
        w = built.vocab.cfg.max_history
        out = []
        for start, first, last in window_spans(len(sequence), max_history=w, stride=stride):
            inputs = tuple(sequence[start:last])
            targets = tuple(int(sequence[j + 1]) if j + 1 >= first else -100 for j in range(start, last))
            out.append(SeqExample(inputs, targets))
        return out

    def n_targets(self, example: SeqExample) -> int:
        return sum(t >= 0 for t in example.targets)

    def size(self, example: SeqExample, built: Assembled) -> int:
        return len(example.items)

    def collate(self, examples: Sequence[SeqExample], built: Assembled) -> SeqBatch:
        return collate_items(examples)

    @torch.inference_mode()
    def rank(self, built: Assembled, histories: Sequence[Sequence[int]], *, k: int, batch_size: int,
             device: torch.device | str, desc: str = "rank") -> np.ndarray:
        model: SASRec = built.model  # type: ignore[assignment]
        model.eval()
        w = max(1, built.vocab.cfg.max_history)
        out = np.empty((len(histories), k), dtype=np.int64)
        for idx in progress(by_length(histories, batch_size, keep=w), desc=desc, unit_scale=batch_size):
            ex = [SeqExample(tuple(histories[i][-w:]), ()) for i in idx]
            h, _ = model(collate_items(ex)._replace(targets=None).to(device))
            out[idx] = model.scores(h).topk(k, dim=-1).indices.cpu().numpy()
        return out
