"""Training losses over the item catalogue: SimGR's full softmax, and a sampled softmax for catalogues
where scoring every item at every step is too slow.

Sampled softmax with logQ correction (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large
Corpus Item Recommendations", RecSys 2019): the candidates of a batch are its own targets (in-batch
negatives, drawn in proportion to item frequency) plus ``n_uniform`` items drawn uniformly. Every logit
is corrected by the log of its candidate's expected count under that sampling,

    s_j = <h, e_j>/tau - log(M * p(j) + U / N)       (M targets in the batch, U uniform draws, N items)

so popular items, which appear as negatives more often, are not over-penalised; the correction makes
the sampled softmax's minimiser the full softmax's. Each target is its own row's positive column.
Other columns holding the same item stay in (no accidental-hit removal): the correction counts every
column, and removing some would under-count popular items (tests/test_training_scale.py shows the fit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Candidates:
    items: torch.Tensor  # (C,) long: the batch's M targets (one column each) first, then the uniform draws
    log_count: torch.Tensor  # (C,) float: log expected count of each candidate under the sampling
    labels: torch.Tensor  # (M,) long: column of each row's target among the candidates


def draw_candidates(targets: torch.Tensor, *, n_items: int, n_uniform: int, log_prior: torch.Tensor,
                    generator: torch.Generator | None = None) -> Candidates:
    """In-batch targets plus ``n_uniform`` uniform draws; targets (M,) long, log_prior (N,) log p(item)."""
    uniform = torch.randint(n_items, (n_uniform,), generator=generator).to(targets.device)
    items = torch.cat([targets, uniform])  # (C,) = M + U columns, a sample of M + U draws
    count = targets.shape[0] * log_prior[items].exp() + n_uniform / n_items  # expected columns per item
    return Candidates(items=items, log_count=count.log(), labels=torch.arange(targets.shape[0], device=targets.device))


def sampled_softmax_loss(h: torch.Tensor, cand_rows: torch.Tensor, cand: Candidates, targets: torch.Tensor, *,
                         tau: float, correct: bool = True) -> torch.Tensor:
    """Mean cross-entropy over the candidates. h (M, D), cand_rows (C, D) the candidates' embeddings,
    targets (M,) (their columns are ``cand.labels``). ``correct=False`` drops the logQ term (comparison only)."""
    logits = h @ cand_rows.T / tau  # (M, C)
    if correct:
        logits = logits - cand.log_count[None, :]
    return F.cross_entropy(logits, cand.labels)


def log_prior(counts: np.ndarray) -> torch.Tensor:
    """(N,) log p(item) from interaction counts (N,), +1 smoothing: the in-batch sampling distribution."""
    p = (counts.astype(np.float64) + 1.0) / (counts.sum() + len(counts))
    return torch.from_numpy(np.log(p)).float()


def prefix_groups(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) long group of each item of ``tokens`` (N, L): items share a group when their first k >= 1 codes
    agree. The groups label smoothing spreads over (ModelConfig.smoothing_prefix)."""
    return torch.unique(tokens[:, :k], dim=0, return_inverse=True)[1]


def group_means(items: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(G, D) mean of the rows of ``items`` (N, D) in each group of ``groups`` (N,) long, 0..G-1."""
    n_groups = int(groups.max()) + 1
    sums = items.new_zeros(n_groups, items.shape[1]).index_add_(0, groups, items)  # (G, D)
    counts = torch.bincount(groups, minlength=n_groups).clamp_min(1).to(items.dtype)  # (G,)
    return sums / counts[:, None]
