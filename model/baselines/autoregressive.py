"""LC-Rec/TIGER-style autoregressive generative recommendation (LC-Rec, arXiv 2311.09049; TIGER, arXiv
2305.05065) on SimGR's backbone and prompt.

Training: whole-sequence teacher forcing (model/baselines/teacher_forcing.py). One causal pass over a
user's window (SimGR's windows) gives the next-token cross-entropy at every semantic-ID token of every
target item, exactly as one sequence per (history, target) sample, ``build_prompt(history)`` + the target's
tokens (``collate_sequences``, kept as the reference), would. LM head tied to the input embeddings. SIDs
all have the same length L and decoding follows a trie, so no EOS is needed.
Inference: constrained beam search over the trie of valid SIDs (model/baselines/beam.py); an
item's score is its sequence log-prob and items outside the final beam rank after every item in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.baselines.beam import KV, PromptState, beam_search
from model.baselines.teacher_forcing import TreeBatch, collate_tree
from model.baselines.trie import SIDTrie
from model.config import BaselineConfig
from model.network.assembly import Assembled, sid_vocabulary
from model.network.backbone import build_backbone, forward_with_cache
from model.network.model import SimGR
from model.network.prompt import Prompt, PromptBatch, PromptVocab, build_prompt, by_length, collate
from model.network.windows import Window, make_windows
from model.progress import progress


class ARExample(NamedTuple):
    history: tuple[int, ...]  # the last <= max_history items before the target
    target: int


class ARModel(nn.Module):
    """A SimGR encoder (backbone + prompt handling) used as a causal LM over its own vocabulary."""

    def __init__(self, *, encoder: SimGR, bcfg: BaselineConfig, trie_sequences: torch.Tensor,
                 trie_items: torch.Tensor, latent_ids: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.bcfg = bcfg
        self.trie = SIDTrie(trie_sequences.tolist(), trie_items.tolist())
        self.latent_ids: torch.Tensor
        self.register_buffer("latent_ids", latent_ids.long(), persistent=False)  # (M,) Latte's latent tokens

    def embedding_matrix(self) -> torch.Tensor:
        weight: torch.Tensor = self.encoder.input_embeddings().weight  # type: ignore[assignment]
        return weight  # (V, D), tied LM head

    def logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) hidden states -> (..., V) next-token log-probs."""
        return F.log_softmax(hidden.float() @ self.embedding_matrix().float().T, dim=-1)

    def _embeds(self, batch: PromptBatch | TreeBatch) -> torch.Tensor:
        embeds = self.encoder.input_embeddings()(batch.input_ids)  # (B, T, D)
        slots = batch.item_slots >= 0
        if bool(slots.any()):
            table = self.encoder.item_embeddings()
            embeds = embeds.masked_scatter(slots.unsqueeze(-1), table[batch.item_slots[slots]].to(embeds.dtype))
        return embeds

    def _hidden(self, batch: PromptBatch | TreeBatch) -> torch.Tensor:
        """(B, T, D) final hidden states; a TreeBatch carries its own attention mask and position ids."""
        if isinstance(batch, TreeBatch):
            out = self.encoder.backbone(inputs_embeds=self._embeds(batch), attention_mask=batch.tree_mask,
                                        position_ids=batch.position_ids)
        else:
            out = self.encoder.backbone(inputs_embeds=self._embeds(batch), attention_mask=batch.attention_mask)
        return out.last_hidden_state  # type: ignore[no-any-return]

    def token_losses(self, batch: PromptBatch | TreeBatch) -> torch.Tensor:
        """(M,) next-token cross-entropy at every labelled position (``targets >= 0``), row-major order."""
        assert batch.targets is not None
        return self._losses(self._hidden(batch), batch.targets)

    def _losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        at = targets >= 0
        logits = hidden[at].float() @ self.embedding_matrix().float().T  # (M, V)
        return F.cross_entropy(logits, targets[at], reduction="none")

    def forward(self, batch: PromptBatch | TreeBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(last hidden state (B, D), mean next-token CE over ``batch.targets`` >= 0 (token ids))."""
        hidden = self._hidden(batch)  # (B, T, D)
        h_last = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.last].float()
        if batch.targets is None:
            return h_last, None
        return h_last, self._losses(hidden, batch.targets).mean()

    def prompt_state(self, batch: PromptBatch) -> PromptState:
        hidden, kv = forward_with_cache(self.encoder.backbone, None, inputs_embeds=self._embeds(batch),
                                        attention_mask=batch.attention_mask)
        h = hidden[torch.arange(batch.input_ids.shape[0]), batch.last]  # (B, D)
        return PromptState(kv, batch.attention_mask, batch.last + 1, self.logprobs(h))

    def next_logprobs(self, state: PromptState, rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        if prefix.shape[1] == 0:
            return state.last_logp[rows]
        dev = state.mask.device
        rows, prefix = rows.to(dev), prefix.to(dev)
        d = prefix.shape[1]
        pos = state.length[rows, None] + torch.arange(d, device=dev)  # (R, d)
        mask = torch.cat([state.mask[rows], torch.ones(len(rows), d, dtype=torch.long, device=dev)], dim=1)
        hidden, _ = forward_with_cache(self.encoder.backbone, [(k[rows], v[rows]) for k, v in state.kv],
                                       inputs_embeds=self.encoder.input_embeddings()(prefix), attention_mask=mask,
                                       position_ids=pos)
        return self.logprobs(hidden[:, -1]).cpu()

    def tree_logprobs(self, cache: list[KV], mask: torch.Tensor, tokens: torch.Tensor,
                      position_ids: torch.Tensor) -> tuple[torch.Tensor, list[KV]]:
        """(B, Q, V) next-token log-probs of tokens (B, Q) fed on ``cache`` under ``mask`` (B, 1, Q, K + Q)
        and the grown cache (model/baselines/beam.py, ``_Tree``)."""
        dev = cache[0][0].device
        hidden, new = forward_with_cache(self.encoder.backbone, cache,
                                         inputs_embeds=self.encoder.input_embeddings()(tokens.to(dev)),
                                         attention_mask=mask.to(dev), position_ids=position_ids.to(dev))
        return self.logprobs(hidden).cpu(), new


def build_ar(cfg: Any, sids: Sequence[Sequence[str]], *, latent_tokens: int = 0) -> Assembled:
    """Backbone + tokenizer with the SID tokens (and ``latent_tokens`` Latte tokens), tied LM head, trie."""
    torch.manual_seed(cfg.train.seed)
    latents = [f"<latent_{m}>" for m in range(latent_tokens)]
    backbone, tokenizer = build_backbone(cfg.model, sid_vocabulary(sids) + latents, dropout=cfg.train.dropout,
                                          hidden_dropout=cfg.train.hidden_dropout)
    vocab = PromptVocab.from_tokenizer(tokenizer, sids, cfg.prompt)
    table = torch.tensor(vocab.sid_token_ids, dtype=torch.long)  # (N, L)
    encoder = SimGR(backbone=backbone, sid_token_ids=table, cfg=cfg.model, prompt=cfg.prompt)
    latent_ids = torch.tensor(tokenizer.convert_tokens_to_ids(latents), dtype=torch.long).reshape(-1)
    if latent_tokens:  # paths [latent, c_1..c_L], M per item
        m = len(latent_ids)
        seqs = torch.cat([latent_ids.repeat_interleave(len(table))[:, None], table.repeat(m, 1)], dim=1)
        items = torch.arange(len(table)).repeat(m)
    else:
        seqs, items = table, torch.arange(len(table))
    model = ARModel(encoder=encoder, bcfg=cfg.baseline, trie_sequences=seqs, trie_items=items,
                    latent_ids=latent_ids)
    return Assembled(model, tokenizer, vocab)  # type: ignore[arg-type]


def as_ar(built: Assembled) -> ARModel:
    return cast(ARModel, built.model)


def history_examples(sequence: Sequence[int], max_history: int) -> list[ARExample]:
    """Every (history, target) sample of a training sequence (the paper's and LC-Rec's sample set)."""
    return [ARExample(tuple(sequence[max(0, t - max_history):t]), int(sequence[t]))
            for t in range(1, len(sequence))]


def collate_sequences(prompt_parts: Sequence[Prompt], answers: Sequence[list[int]], pad_id: int) -> PromptBatch:
    """Prompt + answer tokens; label at the prompt's last position and at every answer token but the last."""
    full, targets = [], []
    for p, ans in zip(prompt_parts, answers, strict=True):
        n = len(p.input_ids)
        full.append(p._replace(input_ids=p.input_ids + ans[:-1], item_slots=p.item_slots + [-1] * (len(ans) - 1)))
        targets.append([(n - 1 + j, tok) for j, tok in enumerate(ans)])
    return collate(full, pad_id=pad_id, targets=targets)


def prompt_batches(built: Assembled, histories: Sequence[Sequence[int]], batch_size: int,
                   device: torch.device | str, desc: str) -> Any:
    """(user indices, batch) over ``histories``, users of similar history length together (by_length)."""
    for idx in progress(by_length(histories, batch_size, keep=built.vocab.cfg.max_history), desc=desc,
                        unit_scale=batch_size):
        prompts = [build_prompt(histories[i], built.vocab) for i in idx]
        yield idx, collate(prompts, pad_id=built.vocab.pad_id).to(device)


def topk_from_beams(items: torch.Tensor, scores: torch.Tensor, k: int) -> np.ndarray:
    """(U, beam) items + scores -> (U, k) best-first items; -1 past the end of a short beam."""
    out = np.full((items.shape[0], k), -1, dtype=np.int64)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    ranked = torch.gather(items, 1, order)[:, :k].numpy()
    out[:, :ranked.shape[1]] = ranked
    return out


class AutoregressiveMethod:
    name = "autoregressive"

    def build(self, cfg: Any, sids: Sequence[Sequence[str]]) -> Assembled:
        return build_ar(cfg, sids)

    def examples(self, sequence: Sequence[int], built: Assembled, *, stride: int) -> list[Window]:
        return make_windows(sequence, built.vocab, stride=stride)

    def n_targets(self, example: Window) -> int:
        return len(example.targets)

    def size(self, example: Window, built: Assembled) -> int:
        """The flattened tree: the prompt, then every target's answer but its last token (teacher_forcing.py)."""
        branches = sum(len(self.answer(item, built)) - 1 for _, item in example.targets)
        return len(example.prompt.input_ids) + branches

    def answer(self, item: int, built: Assembled) -> list[int]:
        """The tokens the model must generate for ``item``."""
        return list(built.vocab.sid_token_ids[item])

    def collate(self, examples: Sequence[Window], built: Assembled) -> TreeBatch:
        answers = [[self.answer(item, built) for _, item in w.targets] for w in examples]
        return collate_tree(examples, answers, pad_id=built.vocab.pad_id)

    @torch.inference_mode()
    def rank(self, built: Assembled, histories: Sequence[Sequence[int]], *, k: int, batch_size: int,
             device: torch.device | str, desc: str = "rank") -> np.ndarray:
        return rank_beam(built, histories, k=k, beam=as_ar(built).bcfg.beam_size, batch_size=batch_size,
                         device=device, desc=desc)


@torch.inference_mode()
def rank_beam(built: Assembled, histories: Sequence[Sequence[int]], *, k: int, beam: int, batch_size: int = 256,
              device: torch.device | str = "cpu", desc: str = "beam", cache: bool = True) -> np.ndarray:
    """(U, k) top-k items per user by constrained beam search of width ``beam`` (``cache``: extend each
    beam's KV cache, the default; False re-feeds the prefix, the reference implementation)."""
    model = as_ar(built)
    model.eval()
    users_per_batch = max(1, min(batch_size, 4096 // max(1, beam)))
    out = np.empty((len(histories), k), dtype=np.int64)
    for idx, batch in prompt_batches(built, histories, users_per_batch, device, desc):
        beams = beam_search(model, model.prompt_state(batch), model.trie, beam=beam, cache=cache)
        items = torch.where(beams.leaves >= 0, model.trie.leaf_item[beams.leaves.clamp(min=0)], -1)
        out[idx] = topk_from_beams(items, beams.scores, k)
    return out
