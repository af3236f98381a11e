"""SimGR-native exact search for the mean aggregator: branch-and-bound over the semantic-ID code trie.

With the mean aggregator an item embedding is e_i = s_i * (1/L) * sum_l E_l[c_l(i)], where s_i is the
item's inverse norm when embeddings are L2-normalised (else 1). So for a user embedding h

    <h, e_i> = s_i * sum_l T[l, c_l(i)],   T[l, c] = <h, E_l[c]> / L      (an L x K table per query)

Items are kept sorted by their code tuple, so every code prefix is a contiguous run of items and a node
of the trie. The bound of a prefix is its partial sum plus the best code of each later level, times the
largest (or, for a negative bound, the smallest) inverse norm below it: no item under a prefix can score
above it. A first threshold comes from scoring the items under the best few prefixes exactly; every
prefix whose bound is below it is cut, level by level, and the survivors are returned as candidates.
Nothing that could reach the top k is ever cut (a small margin covers float rounding), so the result is
exact; the caller re-scores the candidates against the stored item rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEED_ITEMS = 64  # items scored exactly under the best prefixes to seed the cut threshold


@dataclass(frozen=True, eq=False)
class _Level:
    code: np.ndarray  # (G,) int: the code of each prefix at this level
    start: np.ndarray  # (G + 1,) int64: first sorted item position of each prefix (+ the end)
    child: np.ndarray  # (G + 1,) int64: first child prefix at the next level (+ the end); empty at the last
    max_inv: np.ndarray  # (G,) float32: largest inverse norm under the prefix
    min_inv: np.ndarray  # (G,) float32: smallest inverse norm under the prefix


def _build_levels(codes: np.ndarray, inv: np.ndarray) -> list[_Level]:
    """Prefix runs of codes sorted lexicographically: codes (N, L), inv (N,) -> one _Level per depth."""
    n, depth = codes.shape
    levels: list[_Level] = []
    new = np.zeros(n, dtype=bool)
    new[0] = True
    starts_per_level = []
    for lvl in range(depth):
        new[1:] |= codes[1:, lvl] != codes[:-1, lvl]
        starts_per_level.append(np.flatnonzero(new).astype(np.int64))
    for lvl, starts in enumerate(starts_per_level):
        bounds = np.append(starts, n)
        if lvl + 1 < depth:
            nxt = starts_per_level[lvl + 1]
            child = np.append(np.searchsorted(nxt, starts), len(nxt)).astype(np.int64)
        else:
            child = np.empty(0, dtype=np.int64)
        levels.append(_Level(code=codes[starts, lvl], start=bounds, child=child,
                             max_inv=np.maximum.reduceat(inv, starts), min_inv=np.minimum.reduceat(inv, starts)))
    return levels


def _expand(first: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ranges [first[j], end[j]) -> (indices, owner j of each index)."""
    counts = end - first
    owner = np.repeat(np.arange(len(first)), counts)
    offsets = np.cumsum(counts) - counts
    return first[owner] + (np.arange(int(counts.sum())) - offsets[owner]), owner


class SidTrie:
    """Code trie over items in code order; ``candidates`` gives every row that can reach the top k."""

    def __init__(self, tables: list[np.ndarray], codes: np.ndarray, inv: np.ndarray) -> None:
        # tables[l] (K_l, D) float32 code embeddings of level l; codes (N, L) int; inv (N,) float32
        order = np.lexsort(codes.T[::-1])  # sorted position -> row
        self.order = order.astype(np.int64)
        self.codes = np.ascontiguousarray(codes[order])  # (N, L) in code order
        self.inv = np.ascontiguousarray(inv[order], dtype=np.float32)  # (N,)
        self.tables = tables
        self.levels = _build_levels(self.codes, self.inv)
        self.n_levels = codes.shape[1]
        self._start = min(1, self.n_levels - 1)  # the cut starts with every prefix of this depth
        self._start_codes = self.codes[self.levels[self._start].start[:-1], : self._start + 1]  # (G, depth+1)

    def _table(self, h: np.ndarray) -> list[np.ndarray]:
        return [(t @ h) / self.n_levels for t in self.tables]  # L x (K_l,)

    def _exact(self, dots: list[np.ndarray], pos: np.ndarray) -> np.ndarray:
        """Algebraic scores of sorted positions ``pos`` (M,) from the per-query table."""
        s = dots[0][self.codes[pos, 0]]
        for lvl in range(1, self.n_levels):
            s = s + dots[lvl][self.codes[pos, lvl]]
        return s * self.inv[pos]  # (M,)

    def candidates(self, h: np.ndarray, k: int, drop: np.ndarray, margin: float = 1e-4) -> np.ndarray:
        """Rows that may hold one of the top ``k`` items outside ``drop``: a superset of the exact top k.

        h (D,) float32; drop (M,) int64 rows never to return (excluded or retired)."""
        dots = self._table(h)
        best = [float(d.max()) for d in dots]
        rest = np.cumsum([0.0, *best[::-1]])[::-1][1:]  # rest[l]: sum of the best codes below level l
        scale = sum(float(np.abs(d).max()) for d in dots) * float(self.levels[0].max_inv.max())
        theta = self._seed(dots, rest, k, drop) - margin * max(scale, 1e-12)
        depth = self._start
        lv = self.levels[depth]
        partial = dots[0][self._start_codes[:, 0]]
        for lvl in range(1, depth + 1):
            partial = partial + dots[lvl][self._start_codes[:, lvl]]
        nodes = np.flatnonzero(self._bound(partial + rest[depth], lv.max_inv, lv.min_inv) >= theta)
        partial = partial[nodes]
        while depth + 1 < self.n_levels:
            lv, nxt = self.levels[depth], self.levels[depth + 1]
            nodes, owner = _expand(lv.child[nodes], lv.child[nodes + 1])
            partial = partial[owner] + dots[depth + 1][nxt.code[nodes]]
            depth += 1
            keep = self._bound(partial + rest[depth], nxt.max_inv[nodes], nxt.min_inv[nodes]) >= theta
            nodes, partial = nodes[keep], partial[keep]
        last = self.levels[-1]
        pos, _ = _expand(last.start[nodes], last.start[nodes + 1])
        rows = self.order[pos]
        return rows[~np.isin(rows, drop)] if drop.size else rows

    @staticmethod
    def _bound(ub: np.ndarray, max_inv: np.ndarray, min_inv: np.ndarray) -> np.ndarray:
        """Largest score an item under a prefix can reach, from the unscaled bound ``ub``."""
        return np.where(ub > 0, ub * max_inv, ub * min_inv)

    def _seed(self, dots: list[np.ndarray], rest: np.ndarray, k: int, drop: np.ndarray) -> float:
        """A lower bound on the k-th best alive score: exact scores of the items under the prefixes
        with the best bounds, found greedily from the first level (-inf when fewer than k are found)."""
        want = max(SEED_ITEMS, 4 * k)
        lv0 = self.levels[0]
        top0 = np.argsort(-(dots[0][lv0.code] * lv0.max_inv), kind="stable")
        got: list[np.ndarray] = []
        count = 0
        for g in top0[:8].tolist():
            if self.n_levels > 1:
                kids = np.arange(lv0.child[g], lv0.child[g + 1])
                lv1 = self.levels[1]
                ub = (dots[1][lv1.code[kids]] + rest[1]) * lv1.max_inv[kids]
                kids = kids[np.argsort(-ub, kind="stable")]
                sizes = lv1.start[kids + 1] - lv1.start[kids]
                kids = kids[: int(np.searchsorted(np.cumsum(sizes), want - count)) + 1]
                pos, _ = _expand(lv1.start[kids], lv1.start[kids + 1])
            else:
                pos = np.arange(lv0.start[g], lv0.start[g + 1])
            if drop.size:
                pos = pos[~np.isin(self.order[pos], drop)]
            got.append(pos)
            count += len(pos)
            if count >= want:
                break
        pos = np.concatenate(got)
        if len(pos) < k:
            return -np.inf
        scores = self._exact(dots, pos)
        return float(np.partition(scores, len(scores) - k)[len(scores) - k])
