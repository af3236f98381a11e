"""Decoding over a semantic-ID trie: constrained beam search, exact global search, token ranks.

Everything is built on two primitives of the model: ``next_logprobs``, the log-softmax over the vocabulary
of the next token after (prompt of user u) + (token prefix), computed on top of the prompt's KV cache, and
``extend_logprobs``, the same for ONE new token on top of a cache that already holds the prefix. Beam
search extends each beam's cache by one token per step (``cache=True``, the default) or re-feeds the
whole prefix (``cache=False``, the reference); exact search and token ranks teacher-force prefixes. With a
beam as large as the trie, beam search equals exact search.
Scores are full-vocabulary log-probabilities (MiniOneRec's masked log-softmax): invalid tokens are
never expanded, and the mass they would take is not renormalised away.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from model.baselines.trie import SIDTrie

KV = tuple[torch.Tensor, torch.Tensor]  # one layer's (R, H_kv, T, Dh) keys and values


class PromptState(NamedTuple):
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (B, H_kv, T, Dh) keys and values of the prompts
    mask: torch.Tensor  # (B, T) long, 1 on real prompt positions (right padded)
    length: torch.Tensor  # (B,) long, real prompt lengths
    last_logp: torch.Tensor  # (B, V) next-token log-probs after the prompt


def select_users(state: PromptState, users: torch.Tensor) -> PromptState:
    """The prompt state of a subset of its users (e.g. those whose beam must grow)."""
    dev = state.mask.device
    idx = users.to(dev)
    return PromptState([(k[idx], v[idx]) for k, v in state.kv], state.mask[idx], state.length[idx],
                       state.last_logp[users.to(state.last_logp.device)])


class SequenceScorer(Protocol):
    def next_logprobs(self, state: PromptState, rows: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """(R, V) log p(next | prompt of user rows[r], prefix[r]) for prefix (R, d), d >= 0."""
        ...

    def extend_logprobs(self, state: PromptState, users: torch.Tensor, past: list[KV] | None,
                        tokens: torch.Tensor) -> tuple[torch.Tensor, list[KV]]:
        """(R, V) log p(next | cache of row r, tokens[r]) and the cache extended by tokens (R,)."""
        ...


class _Refeed:
    """Beam stepper that re-feeds each beam's whole token prefix on the prompt cache at every step."""

    def __init__(self, model: SequenceScorer, state: PromptState, chunk: int) -> None:
        self.model, self.state, self.chunk = model, state, chunk
        self.prefix = torch.zeros(int(state.length.shape[0]), 0, dtype=torch.long)  # (R, d)

    def advance(self, parent: torch.Tensor, token: torch.Tensor) -> None:
        self.prefix = torch.cat([self.prefix[parent], token[:, None]], dim=1)

    def logprobs(self, user: torch.Tensor) -> torch.Tensor:
        return _chunked_logprobs(self.model, self.state, user, self.prefix, self.chunk)


class _Cached:
    """Beam stepper that keeps each beam's KV cache (prompt + prefix) and feeds one new token per step."""

    def __init__(self, model: SequenceScorer, state: PromptState, chunk: int) -> None:
        self.model, self.state, self.chunk = model, state, chunk
        self.past: list[KV] | None = None  # per layer (R', H_kv, T + d - 1, Dh) of the previous step's beams
        self.parent = torch.zeros(0, dtype=torch.long)  # (R,) row of each beam's parent in self.past
        self.token: torch.Tensor | None = None  # (R,) each beam's newest token, not yet in the cache

    def advance(self, parent: torch.Tensor, token: torch.Tensor) -> None:
        self.parent, self.token = parent, token

    def _past(self, s: int) -> list[KV] | None:
        if self.past is None:  # depth 1: the prompt's cache, gathered by user in extend_logprobs
            return None
        idx = self.parent[s:s + self.chunk]
        return [(k[idx.to(k.device)], v[idx.to(v.device)]) for k, v in self.past]

    def logprobs(self, user: torch.Tensor) -> torch.Tensor:
        if self.token is None:
            return self.state.last_logp[user]
        parts, pasts = [], []
        for s in range(0, len(user), self.chunk):
            logp, new = self.model.extend_logprobs(self.state, user[s:s + self.chunk], self._past(s),
                                                   self.token[s:s + self.chunk])
            parts.append(logp)
            pasts.append(new)
        self.past = pasts[0] if len(pasts) == 1 else [  # one chunk: no copy
            (torch.cat([p[i][0] for p in pasts]), torch.cat([p[i][1] for p in pasts])) for i in range(len(pasts[0]))]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class Beams(NamedTuple):
    leaves: torch.Tensor  # (B, beam) trie leaf ids, best first; -1 pads users with fewer beams
    scores: torch.Tensor  # (B, beam) sequence log-probs; -inf under padding


def _chunked_logprobs(model: SequenceScorer, state: PromptState, rows: torch.Tensor, prefix: torch.Tensor,
                      chunk: int) -> torch.Tensor:
    parts = [model.next_logprobs(state, rows[s:s + chunk], prefix[s:s + chunk])
             for s in range(0, len(rows), chunk)]
    return torch.cat(parts) if parts else torch.empty(0, state.last_logp.shape[1])


@torch.inference_mode()
def beam_search(model: SequenceScorer, state: PromptState, trie: SIDTrie, *, beam: int,
                chunk: int = 4096, cache: bool = True) -> Beams:
    """Constrained beam search (LC-Rec/TIGER decoding, with a real trie): keep the ``beam`` best valid
    prefixes per user at every depth. Deterministic: ties break by trie edge order. ``cache``: extend
    each beam's KV cache by one token per step (default) instead of re-feeding its prefix."""
    n_users = int(state.length.shape[0])
    user = torch.arange(n_users)  # (R,) the user of each live beam
    node = torch.zeros(n_users, dtype=torch.long)  # (R,) trie node at the current depth
    score = torch.zeros(n_users)  # (R,)
    stepper = _Cached(model, state, chunk) if cache else _Refeed(model, state, chunk)
    for d in range(trie.depth):
        logp = stepper.logprobs(user).float()  # (R, V)
        e = trie.expand(d, node)
        cand = score[e.row] + logp[e.row, e.token]  # (E,)
        cand_user = user[e.row]
        order = torch.argsort(cand, descending=True, stable=True)
        order = order[torch.argsort(cand_user[order], stable=True)]  # grouped by user, best first
        counts = torch.bincount(cand_user, minlength=n_users)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(order)) - starts[cand_user[order]]
        keep = order[rank < beam]
        user, node, score = cand_user[keep], e.child[keep], cand[keep]
        stepper.advance(e.row[keep], e.token[keep])
    leaves = torch.full((n_users, beam), -1, dtype=torch.long)
    scores = torch.full((n_users, beam), float("-inf"))
    counts = torch.bincount(user, minlength=n_users)
    slot = torch.arange(len(user)) - (torch.cumsum(counts, 0) - counts)[user]
    leaves[user, slot], scores[user, slot] = node, score
    return Beams(leaves, scores)


@torch.inference_mode()
def exact_leaf_scores(model: SequenceScorer, state: PromptState, trie: SIDTrie, *,
                      chunk: int = 4096) -> torch.Tensor:
    """(B, n_leaves) log-prob of EVERY valid sequence by teacher forcing, level by level over the trie:
    the oracle that beam search approximates. Cost: sum over depths d of (#prefixes of length d) x d tokens."""
    n_users = int(state.length.shape[0])
    out = torch.empty(n_users, trie.n_leaves)
    for u in range(n_users):
        node_score = torch.zeros(1)  # (n_0,) the root
        for d in range(trie.depth):
            n = trie.n_nodes(d)
            rows = torch.full((n,), u, dtype=torch.long)
            logp = _chunked_logprobs(model, state, rows, trie.prefixes[d], chunk).float()  # (n_d, V)
            e = trie.expand(d, torch.arange(n))
            nxt = torch.empty(trie.n_nodes(d + 1))
            nxt[e.child] = node_score[e.row] + logp[e.row, e.token]
            node_score = nxt
        out[u] = node_score
    return out


@torch.inference_mode()
def target_token_ranks(model: SequenceScorer, state: PromptState, trie: SIDTrie,
                       targets: torch.Tensor) -> torch.Tensor:
    """(B, depth) 0-based rank of each target token among the trie-allowed tokens at its step, given the
    target's own prefix (teacher forcing). Theorem 4.1's condition for beam B: every rank < B."""
    n_users, depth = targets.shape
    ranks = torch.zeros(n_users, depth, dtype=torch.long)
    for d in range(depth):
        logp = model.next_logprobs(state, torch.arange(n_users), targets[:, :d]).float()  # (B, V)
        for u in range(n_users):
            allowed = torch.tensor(trie.allowed(targets[u, :d].tolist()), dtype=torch.long)
            ranks[u, d] = int((logp[u, allowed] > logp[u, targets[u, d]]).sum())
    return ranks
