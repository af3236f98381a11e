"""A real prefix trie over the token-id sequences of valid semantic IDs (MiniOneRec-style constraint).

LC-Rec constrains decoding with per-level token sets, which admits SIDs that match no item; this trie
admits exactly the valid ones. Nodes are numbered per depth; the children of a node are stored in CSR
form so a batched beam step can gather every allowed (beam, token, child) triple at once.

Example: sequences [[5, 7], [5, 8], [6, 7]] ->
    allowed(()) = [5, 6], allowed((5,)) = [7, 8], allowed((6,)) = [7], item_of((5, 8)) = 1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class Expansion(NamedTuple):
    row: torch.Tensor  # (E,) which input node (row of the query) each edge leaves from
    token: torch.Tensor  # (E,) token id on the edge
    child: torch.Tensor  # (E,) child node id at the next depth (a leaf id at the last depth)


class SIDTrie:
    """Prefix trie of equal-length token sequences; leaf ``j`` belongs to item ``leaf_item[j]``.

    Several leaves may share an item (Latte: one path per latent token), but every sequence is unique."""

    def __init__(self, sequences: Sequence[Sequence[int]], items: Sequence[int] | None = None) -> None:
        if not sequences:
            raise ValueError("a trie needs at least one sequence")
        self.depth = len(sequences[0])
        items = list(range(len(sequences))) if items is None else list(items)
        children: list[list[dict[int, int]]] = [[{}] for _ in range(self.depth)]  # per depth: node -> {tok: child}
        prefixes: list[list[tuple[int, ...]]] = [[] for _ in range(self.depth + 1)]
        prefixes[0].append(())
        leaf_item: list[int] = []
        for seq, item in zip(sequences, items, strict=True):
            if len(seq) != self.depth:
                raise ValueError(f"all sequences must have length {self.depth}, got {len(seq)}")
            node = 0
            for d, tok in enumerate(seq):
                nxt = children[d][node].get(int(tok))
                if nxt is not None and d + 1 == self.depth:
                    raise ValueError(f"duplicate sequence {list(seq)}: every semantic ID must be unique")
                if nxt is None:
                    nxt = len(prefixes[d + 1])
                    children[d][node][int(tok)] = nxt
                    prefixes[d + 1].append((*prefixes[d][node], int(tok)))
                    if d + 1 < self.depth:
                        children[d + 1].append({})
                    else:
                        leaf_item.append(item)
                node = nxt
        self.leaf_item = torch.tensor(leaf_item, dtype=torch.long)  # (n_leaves,)
        self.prefixes = [torch.tensor(p, dtype=torch.long).reshape(len(p), d) for d, p in enumerate(prefixes)]
        self._children = children
        self._offsets: list[torch.Tensor] = []
        self._tokens: list[torch.Tensor] = []
        self._child: list[torch.Tensor] = []
        for d in range(self.depth):
            counts = torch.tensor([len(c) for c in children[d]], dtype=torch.long)
            self._offsets.append(torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]))
            self._tokens.append(torch.tensor([t for c in children[d] for t in c], dtype=torch.long))
            self._child.append(torch.tensor([n for c in children[d] for n in c.values()], dtype=torch.long))

    def n_nodes(self, depth: int) -> int:
        """Number of distinct prefixes of length ``depth`` (depth == self.depth: leaves)."""
        return int(self.prefixes[depth].shape[0])

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_item.shape[0])

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Token ids that may follow ``prefix`` ([] when it is complete or invalid); LogitsProcessor-ready."""
        node = 0
        if len(prefix) >= self.depth:
            return []
        for d, tok in enumerate(prefix):
            nxt = self._children[d][node].get(int(tok))
            if nxt is None:
                return []
            node = nxt
        return sorted(self._children[len(prefix)][node])

    def item_of(self, sequence: Sequence[int]) -> int:
        """Item index of a complete sequence, -1 when it is not a valid one."""
        node = 0
        for d, tok in enumerate(sequence):
            if d >= self.depth or (nxt := self._children[d][node].get(int(tok))) is None:
                return -1
            node = nxt
        return int(self.leaf_item[node]) if len(sequence) == self.depth else -1

    def sequences(self) -> set[tuple[int, ...]]:
        """Every complete sequence stored in the trie."""
        return {tuple(p) for p in self.prefixes[self.depth].tolist()}

    def expand(self, depth: int, nodes: torch.Tensor) -> Expansion:
        """All edges out of ``nodes`` (R,) at ``depth``, in row order (vectorised CSR gather)."""
        off = self._offsets[depth]
        start, count = off[nodes], off[nodes + 1] - off[nodes]  # (R,)
        row = torch.repeat_interleave(torch.arange(len(nodes)), count)  # (E,)
        first = torch.repeat_interleave(start - torch.cumsum(count, 0) + count, count)  # (E,) start - edges before
        idx = first + torch.arange(int(count.sum()))
        return Expansion(row, self._tokens[depth][idx], self._child[depth][idx])
