"""Decoding over a semantic-ID trie: constrained beam search, exact global search, token ranks.

Everything is built on two primitives of the model: ``next_logprobs``, the log-softmax over the vocabulary
of the next token after (prompt of user u) + (token prefix), computed on top of the prompt's KV cache, and
``tree_logprobs``, the same for the new tokens of all of a user's beams at once on top of one cache per
user that already holds every earlier beam token (a tree mask keeps beams apart). Beam search extends
that cache by one token per beam per step (``cache=True``, the default) or re-feeds each beam's whole
prefix (``cache=False``, the reference); exact search and token ranks teacher-force prefixes. With a
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

    def tree_logprobs(self, cache: list[KV], mask: torch.Tensor, tokens: torch.Tensor,
                      position_ids: torch.Tensor) -> tuple[torch.Tensor, list[KV]]:
        """Feed tokens (B, Q) at position_ids (B, Q) on top of ``cache`` (per layer (B, H, K, Dh)) under the
        attention mask (B, 1, Q, K + Q) bool: (B, Q, V) next-token log-probs and the cache grown by Q."""
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


class _Tree:
    """Beam stepper over ONE KV cache per user: the prompt, then every token any of its beams has taken.

    A step feeds each user's new beam tokens as Q query positions at once. A tree mask lets beam j attend
    to the prompt, to the cached tokens of its own prefix and to itself, so it computes exactly what a
    separate sequence per beam would. The prompt's keys and values are never copied per beam: the cache
    grows by Q positions per step and no beam is ever reordered in it."""

    def __init__(self, model: SequenceScorer, state: PromptState) -> None:
        self.model, self.state = model, state
        self.cache: list[KV] = list(state.kv)  # per layer (B, H_kv, K, Dh); K = T + tokens fed so far
        self.anc = torch.zeros(int(state.length.shape[0]), 0, dtype=torch.long)  # (R, d) cache slots of a prefix
        self.parent: torch.Tensor | None = None
        self.token: torch.Tensor | None = None  # (R,) each live beam's newest token, not yet in the cache

    def advance(self, parent: torch.Tensor, token: torch.Tensor) -> None:
        self.parent, self.token = parent, token

    def logprobs(self, user: torch.Tensor) -> torch.Tensor:
        if self.token is None or self.parent is None:
            return self.state.last_logp[user]
        n_users, k_len = int(self.state.length.shape[0]), int(self.cache[0][0].shape[2])
        counts = torch.bincount(user, minlength=n_users)
        slot = torch.arange(len(user)) - (torch.cumsum(counts, 0) - counts)[user]  # (R,) beam's rank in its user
        q = int(counts.max())
        anc = self.anc[self.parent]  # (R, d - 1)
        tokens = torch.zeros(n_users, q, dtype=torch.long)
        tokens[user, slot] = self.token
        mask = torch.zeros(n_users, q, k_len + q, dtype=torch.bool)
        mask[:, :, :self.state.mask.shape[1]] = self.state.mask.bool().cpu()[:, None, :]
        rows = torch.repeat_interleave(torch.arange(len(user)), anc.shape[1])
        mask[user[rows], slot[rows], anc.reshape(-1)] = True
        mask[:, torch.arange(q), k_len + torch.arange(q)] = True  # every query sees itself (padding too)
        pos = (self.state.length.cpu() + anc.shape[1])[:, None].expand(n_users, q)  # (B, Q)
        logp, self.cache = self.model.tree_logprobs(self.cache, mask[:, None], tokens, pos)  # (B, Q, V)
        self.anc = torch.cat([anc, (k_len + slot)[:, None]], dim=1)
        return logp[user, slot]


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
    one KV cache per user by its beams' new tokens each step (default; ``chunk`` unused) instead of
    re-feeding each beam's prefix in row chunks of ``chunk``."""
    n_users = int(state.length.shape[0])
    user = torch.arange(n_users)  # (R,) the user of each live beam
    node = torch.zeros(n_users, dtype=torch.long)  # (R,) trie node at the current depth
    score = torch.zeros(n_users)  # (R,)
    stepper = _Tree(model, state) if cache else _Refeed(model, state, chunk)
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
