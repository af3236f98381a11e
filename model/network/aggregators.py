"""Item embedding aggregators: (N, L, D) semantic-ID token embeddings -> (N, D) item embeddings.

SimGR (arXiv 2602.07847) uses the plain mean of the input-embedding rows of an item's semantic-ID
tokens; the others are its Table 4 ablation. Every aggregator starts as (or near) the mean.
"""

from __future__ import annotations

import torch
from torch import nn

AGGREGATORS = ("mean", "concat", "proj", "attention", "gating")


class MeanAggregator(nn.Module):
    """e_i = mean_l E[c_l(i)] — parameter-free, the paper's default."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, L, D) -> (N, D)
        return x.mean(dim=1)


class ConcatAggregator(nn.Module):
    """e_i = W [E[c_1]; ...; E[c_L]], W initialised to the mean so training starts from the default."""

    def __init__(self, *, dim: int, levels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim * levels, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(dim).repeat(1, levels) / levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1))  # (N, L*D) -> (N, D)


class ProjAggregator(nn.Module):
    """e_i = mean_l W E[c_l], W initialised to the identity."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).mean(dim=1)  # (N, L, D) -> (N, D)


class AttentionAggregator(nn.Module):
    """e_i = sum_l softmax_l(q . E[c_l] / sqrt(D)) E[c_l] with a learned query (q=0 -> the mean)."""

    def __init__(self, *, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax((x @ self.query) * self.scale, dim=1)  # (N, L)
        return (w.unsqueeze(-1) * x).sum(dim=1)  # (N, D)


class GatingAggregator(nn.Module):
    """e_i = sum_l g_l E[c_l] / L with element-wise gates g_l = 2 sigmoid(W_l E[c_l]) (W=0 -> the mean)."""

    def __init__(self, *, dim: int, levels: int) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(levels, dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = 2 * torch.sigmoid(torch.einsum("nld,lde->nle", x, self.gate))  # (N, L, D)
        return (g * x).mean(dim=1)


def make_aggregator(name: str, *, dim: int, levels: int) -> nn.Module:
    if name == "mean":
        return MeanAggregator()
    if name == "concat":
        return ConcatAggregator(dim=dim, levels=levels)
    if name == "proj":
        return ProjAggregator(dim=dim)
    if name == "attention":
        return AttentionAggregator(dim=dim)
    if name == "gating":
        return GatingAggregator(dim=dim, levels=levels)
    raise ValueError(f"unknown aggregator {name!r}; choose from {', '.join(AGGREGATORS)}")
