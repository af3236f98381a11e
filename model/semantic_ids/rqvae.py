"""RQ-VAE item tokenizer: text embedding -> L residual codes (TIGER, arXiv 2305.05065, section 3.1).

    rq = RQVAE(input_dim=384)                   # 3 x 256 codes by default
    out = rq(x)                                 # RQVAEOutput(recon, quantized, codes (N, L), loss, ...)
    result = train_rqvae(embeddings, cfg=RQVAEConfig())   # k-means init, AdamW, dead-code re-seeding

Training recipe (see ``train_rqvae``):
- inputs are centred and scaled by one global factor (mean squared entry 1; distances keep their
  geometry). Unit-norm sentence vectors have entries ~1/sqrt(384), so unscaled MSE is tiny next to the
  commitment loss and the codebooks collapse (seen on Scientific: 24% first-level use after 50 epochs).
  The reported ``recon_loss`` is therefore the fraction of variance not explained (1.0 = predict the mean);
- the first pass runs k-means on the encoder's output, level by level, to initialise every codebook
  (on all items, or a random ``kmeans_max_points`` sample of them);
- loss = MSE(recon, x) + sum over levels of [codebook loss + beta * commitment loss], with the
  straight-through estimator carrying the reconstruction gradient past the argmin;
- dead codes: a code that no item selected for ``dead_code_after`` consecutive epochs is moved onto a
  random current residual of its level (drawn from the k-means sample of items, seeded). No
  re-seeding happens in the last 10% of epochs, so the final codebooks are the trained ones.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import RQVAEConfig
from model.progress import progress

log = logging.getLogger(__name__)


def sq_dists(x: Tensor, c: Tensor) -> Tensor:
    """Squared Euclidean distances (N, D) x (K, D) -> (N, K)."""
    return (x * x).sum(-1, keepdim=True) - 2.0 * x @ c.T + (c * c).sum(-1)[None, :]


def kmeans(x: Tensor, k: int, *, iters: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding then ``iters`` Lloyd steps; returns (k, D) centroids.

    Empty clusters are moved to random points. With fewer points than ``k``, the extra centroids are
    random points plus small noise (they start dead and get re-seeded during training).
    Example: x = [[0],[0.1],[10],[10.1]], k=2 -> centroids {[0.05], [10.05]} (in some order).
    """
    n = x.shape[0]
    if n <= k:
        extra = x[torch.randint(n, (k - n,), generator=generator)]
        noise = 1e-3 * torch.randn(extra.shape, generator=generator).to(x)
        return torch.cat([x, extra + noise])
    # k-means++: each new centroid drawn with probability proportional to its squared distance
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[first]]
    closest = sq_dists(x, x[first : first + 1]).squeeze(1).clamp(min=0)  # (N,)
    for _ in range(1, k):
        weights = closest.cpu() + 1e-12
        pick = int(torch.multinomial(weights, 1, generator=generator))
        centroids.append(x[pick])
        closest = torch.minimum(closest, sq_dists(x, x[pick : pick + 1]).squeeze(1).clamp(min=0))
    c = torch.stack(centroids)  # (K, D)
    # Lloyd steps
    for _ in range(iters):
        assign = sq_dists(x, c).argmin(1)  # (N,)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)  # (K,)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            c[empty] = x[torch.randint(n, (int(empty.sum()),), generator=generator)]
    return c


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAEOutput(NamedTuple):
    recon: Tensor  # (N, input_dim) decoder output
    quantized: Tensor  # (N, code_dim) sum of the chosen code vectors (straight-through to the encoder)
    codes: Tensor  # (N, L) int64
    loss: Tensor  # recon_loss + commit_loss
    recon_loss: Tensor  # MSE(recon, x), mean over elements
    commit_loss: Tensor  # sum over levels of codebook loss + beta * commitment loss


class RQVAE(nn.Module):
    """Residual-quantized autoencoder (TIGER, arXiv 2305.05065; residual VQ: arXiv 2203.01941)."""

    def __init__(
        self,
        *,
        input_dim: int,
        hidden_dims: tuple[int, ...] = (512, 256, 128),
        code_dim: int = 32,
        codebook_sizes: tuple[int, ...] = (256, 256, 256),
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        self.beta = beta
        self.codebook_sizes = tuple(codebook_sizes)
        self.encoder = mlp([input_dim, *hidden_dims, code_dim])
        self.decoder = mlp([code_dim, *reversed(hidden_dims), input_dim])
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(k, code_dim) / code_dim**0.5) for k in codebook_sizes]
        )

    @property
    def n_levels(self) -> int:
        return len(self.codebook_sizes)

    @torch.no_grad()
    def init_codebooks(self, z: Tensor, *, iters: int, generator: torch.Generator) -> None:
        """k-means each level's codebook on the residuals of encoder outputs ``z`` (N, code_dim)."""
        residual = z.detach()
        for cb, k in zip(self.codebooks, self.codebook_sizes, strict=True):
            cb.data.copy_(kmeans(residual, k, iters=iters, generator=generator))
            residual = residual - cb[sq_dists(residual, cb).argmin(1)]

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (N, C) -> (straight-through quantized (N, C), codes (N, L), commit_loss scalar)."""
        residual = z
        total = torch.zeros_like(z)
        codes = []
        commit = z.new_zeros(())
        for cb in self.codebooks:
            idx = sq_dists(residual.detach(), cb.detach()).argmin(1)  # (N,)
            chosen = cb[idx]  # (N, C)
            commit = commit + F.mse_loss(chosen, residual.detach()) + self.beta * F.mse_loss(residual, chosen.detach())
            total = total + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        quantized = z + (total - z).detach()  # straight-through: value of the codes, gradient of z
        return quantized, torch.stack(codes, 1), commit

    def forward(self, x: Tensor) -> RQVAEOutput:
        z = self.encoder(x)  # (N, C)
        quantized, codes, commit = self.quantize(z)
        recon = self.decoder(quantized)  # (N, D)
        recon_loss = F.mse_loss(recon, x)
        return RQVAEOutput(recon, quantized, codes, recon_loss + commit, recon_loss, commit)

    @torch.no_grad()
    def encode_codes(self, x: Tensor) -> Tensor:
        """x (N, D) -> codes (N, L) int64."""
        return self.quantize(self.encoder(x))[1]

    @torch.no_grad()
    def quantised(self, codes: Tensor) -> Tensor:
        """codes (N, L) -> quantised latents (N, C): each level's codebook vector, summed."""
        total = sum(cb[codes[:, lvl]] for lvl, cb in enumerate(self.codebooks))
        assert isinstance(total, Tensor)
        return total

    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes (N, L) -> reconstruction (N, D)."""
        return self.decoder(self.quantised(codes))

    @torch.no_grad()
    def reseed_codes(self, x: Tensor, dead: list[Tensor], *, generator: torch.Generator) -> int:
        """Move the codes flagged in ``dead[l]`` (bool (K_l,)) onto random residuals of level l."""
        residual = self.encoder(x)
        moved = 0
        for cb, mask in zip(self.codebooks, dead, strict=True):
            n_dead = int(mask.sum())
            if n_dead:
                rows = torch.randperm(residual.shape[0], generator=generator)[:n_dead]
                if rows.numel() < n_dead:  # fewer items than dead codes: reuse rows
                    rows = rows[torch.randint(rows.numel(), (n_dead,), generator=generator)]
                cb.data[mask] = residual[rows.to(residual.device)]
                moved += n_dead
            residual = residual - cb[sq_dists(residual, cb).argmin(1)]
        return moved


class RQVAETrainResult(NamedTuple):
    model: RQVAE
    codes: np.ndarray  # (N, L) int64, final assignment in eval mode
    recon_loss: float  # final MSE(recon, x) over all items, x centred and scaled (1.0 = predict the mean)
    epoch_losses: list[float]  # mean training loss per epoch
    reseeded: int  # dead codes re-seeded over the whole run
    seconds: float
    center: np.ndarray  # (D,) the model sees (embeddings - center) / scale
    scale: float


def train_rqvae(embeddings: np.ndarray, *, cfg: RQVAEConfig, device: str = "cpu") -> RQVAETrainResult:
    """Fit an RQ-VAE to ``embeddings`` (N, D) and return the model and every item's codes."""
    t0 = time.perf_counter()
    x = torch.as_tensor(np.ascontiguousarray(embeddings), dtype=torch.float32, device=device)  # (N, D)
    center = x.mean(0)  # (D,)
    scale = float((x - center).pow(2).mean().sqrt().clamp(min=1e-12))
    x = (x - center) / scale  # centred, mean squared entry 1 (geometry kept)
    n = x.shape[0]
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = RQVAE(
            input_dim=x.shape[1], hidden_dims=cfg.hidden_dims, code_dim=cfg.code_dim,
            codebook_sizes=cfg.codebook_sizes, beta=cfg.beta,
        ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    # first pass: k-means init of every level on (a sample of) all items
    with torch.no_grad():
        sample = torch.randperm(n, generator=gen)[: cfg.kmeans_max_points].to(device)
        model.init_codebooks(model.encoder(x[sample]), iters=cfg.kmeans_iters, generator=gen)

    idle = [torch.zeros(k, dtype=torch.long, device=device) for k in cfg.codebook_sizes]
    last_reseed_epoch = int(cfg.epochs * 0.9)  # the last 10% of epochs keep their codebooks
    epoch_losses: list[float] = []
    reseeded = 0
    model.train()
    for epoch in progress(range(cfg.epochs), desc="rq-vae", unit="epoch"):
        perm = torch.randperm(n, generator=gen).to(device)
        used = [torch.zeros(k, dtype=torch.bool, device=device) for k in cfg.codebook_sizes]
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            out = model(x[idx])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            total += float(out.loss.detach()) * idx.numel()
            for lvl in range(model.n_levels):
                used[lvl][out.codes[:, lvl]] = True
        epoch_losses.append(total / n)
        for lvl in range(model.n_levels):
            idle[lvl] = torch.where(used[lvl], 0, idle[lvl] + 1)
        dead = [i >= cfg.dead_code_after for i in idle]
        if epoch < last_reseed_epoch and any(bool(d.any()) for d in dead):
            reseeded += model.reseed_codes(x[sample], dead, generator=gen)
            for lvl in range(model.n_levels):
                idle[lvl][dead[lvl]] = 0

    model.eval()
    with torch.no_grad():
        codes = torch.cat([model.encode_codes(x[s : s + 8192]) for s in range(0, n, 8192)])
        recon = torch.cat([model(x[s : s + 8192]).recon for s in range(0, n, 8192)])
        recon_loss = float(F.mse_loss(recon, x))
    seconds = time.perf_counter() - t0
    log.info("rq-vae: %d items, %d epochs, recon %.5f, %d codes re-seeded, %.1fs",
             n, cfg.epochs, recon_loss, reseeded, seconds)
    return RQVAETrainResult(model, codes.cpu().numpy().astype(np.int64), recon_loss, epoch_losses,
                            reseeded, seconds, center.cpu().numpy(), scale)
