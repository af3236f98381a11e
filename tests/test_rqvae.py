"""RQ-VAE: shapes, k-means init, training reduces reconstruction error, determinism, dead-code re-seeding."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from model.config import RQVAEConfig
from model.semantic_ids.assign import utilization
from model.semantic_ids.rqvae import RQVAE, kmeans, train_rqvae

SMALL = RQVAEConfig(hidden_dims=(64,), code_dim=8, codebook_sizes=(16, 8), epochs=0, batch_size=128,
                    kmeans_iters=20, dead_code_after=5, seed=0)


def blobs(
    n_clusters: int = 16, per_cluster: int = 25, dim: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs on the unit sphere, like normalised text embeddings, and each
    point's blob: (N, dim) float32, (N,) int."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    x = np.repeat(centers, per_cluster, axis=0) + 0.05 * rng.normal(size=(n_clusters * per_cluster, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    perm = rng.permutation(len(x))
    return x[perm].astype(np.float32), labels[perm]


def clustered(n_clusters: int = 16, per_cluster: int = 25, dim: int = 32, seed: int = 0) -> np.ndarray:
    return blobs(n_clusters, per_cluster, dim, seed)[0]


def test_kmeans_known_answer() -> None:
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1], [0.05], [10.05]])
    c = kmeans(x, 2, iters=10, generator=torch.Generator().manual_seed(0))
    assert sorted(round(float(v), 4) for v in c[:, 0]) == [0.05, 10.05]


def test_kmeans_fewer_points_than_codes() -> None:
    x = torch.randn(3, 4)
    c = kmeans(x, 5, iters=10, generator=torch.Generator().manual_seed(0))
    assert c.shape == (5, 4)
    assert torch.equal(c[:3], x)


def test_forward_shapes_and_decode_of_encode() -> None:
    torch.manual_seed(0)
    rq = RQVAE(input_dim=16, hidden_dims=(32,), code_dim=4, codebook_sizes=(8, 6, 5))
    x = torch.randn(10, 16)
    out = rq(x)
    assert out.recon.shape == (10, 16)
    assert out.quantized.shape == (10, 4)
    assert out.codes.shape == (10, 3)
    assert out.codes.dtype == torch.int64
    assert (out.codes < torch.tensor([8, 6, 5])).all()
    assert out.loss.ndim == 0
    assert torch.allclose(out.loss, out.recon_loss + out.commit_loss)
    assert torch.equal(rq.encode_codes(x), out.codes)
    assert torch.allclose(rq.decode_codes(out.codes), out.recon, atol=1e-5)
    out.loss.backward()  # straight-through: the encoder gets a gradient through the argmin
    grad = next(rq.encoder.parameters()).grad
    assert grad is not None
    assert grad.abs().sum() > 0


def test_training_improves_reconstruction() -> None:
    x = clustered()
    before = train_rqvae(x, cfg=SMALL)  # k-means init only
    after = train_rqvae(x, cfg=replace(SMALL, epochs=60))
    assert after.recon_loss < 0.5 * before.recon_loss
    assert after.epoch_losses[-1] < after.epoch_losses[0]
    # decode(encode(x)) of the trained model is the reported reconstruction (in the model's scaled space)
    scaled = torch.as_tensor((x - after.center) / after.scale)
    assert torch.equal(after.model.encode_codes(scaled), torch.as_tensor(after.codes))
    rec = after.model.decode_codes(torch.as_tensor(after.codes))
    assert float(((rec - scaled) ** 2).mean()) == pytest.approx(after.recon_loss, rel=1e-4)
    assert after.recon_loss < 1.0  # better than predicting the mean


def test_kmeans_init_spreads_codes_over_clusters() -> None:
    x, blob = blobs(n_clusters=16)
    res = train_rqvae(x, cfg=SMALL)
    first = res.codes[:, 0]
    # 16 well-separated blobs and 16 first-level codes: k-means gives each blob its own code, i.e.
    # every item of a blob shares one first code and no two blobs share it
    per_blob = [set(first[blob == b].tolist()) for b in range(16)]
    assert [len(codes) for codes in per_blob] == [1] * 16
    assert len(set().union(*per_blob)) == 16
    assert utilization(res.codes, SMALL.codebook_sizes)[0] == 1.0


def test_deterministic_with_seed() -> None:
    x = clustered()
    cfg = replace(SMALL, epochs=3)
    a, b = train_rqvae(x, cfg=cfg), train_rqvae(x, cfg=cfg)
    assert np.array_equal(a.codes, b.codes)
    assert a.recon_loss == b.recon_loss
    c = train_rqvae(x, cfg=replace(cfg, seed=1))
    assert not np.array_equal(a.codes, c.codes)


def test_reseed_moves_dead_codes_onto_residuals() -> None:
    torch.manual_seed(0)
    rq = RQVAE(input_dim=8, hidden_dims=(16,), code_dim=4, codebook_sizes=(4, 4))
    x = torch.randn(20, 8)
    dead = [torch.tensor([True, False, False, False]), torch.zeros(4, dtype=torch.bool)]
    before = rq.codebooks[1].detach().clone()
    moved = rq.reseed_codes(x, dead, generator=torch.Generator().manual_seed(0))
    assert moved == 1
    z = rq.encoder(x).detach()
    assert torch.isclose(z, rq.codebooks[0][0].detach()[None]).all(1).any()  # code 0 sits on an item's z
    assert torch.equal(rq.codebooks[1].detach(), before)


def test_training_reseeds_codes_that_stay_unused() -> None:
    # 4 distinct points, 16 first-level codes: most codes can never win and must be re-seeded
    x = np.repeat(clustered(n_clusters=4, per_cluster=1), 20, axis=0)
    res = train_rqvae(x, cfg=replace(SMALL, epochs=12, dead_code_after=2))
    assert res.reseeded > 0
