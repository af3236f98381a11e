"""Batching by size: the training order (size-pooled micro-batches, every example once per epoch, little
padding), each method's example size, and ranking in batches of similar history length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import ModelConfig, TrainConfig
from model.network.prompt import by_length
from model.training.order import epoch_order
from model.training.registry import get_method
from model.training.run import RunConfig, build_from_config


def _padding(sizes: np.ndarray, order: list[int], micro: int) -> float:
    """Share of padded positions over the epoch's full micro-batches."""
    batches = [sizes[order[i:i + micro]] for i in range(0, len(order) - micro + 1, micro)]
    return 1 - sum(b.sum() for b in batches) / sum(b.max() * len(b) for b in batches)


def test_pool_one_is_the_plain_seeded_permutation() -> None:
    sizes = np.arange(50)
    plain = np.random.default_rng(7 + 2).permutation(50).tolist()
    assert epoch_order(sizes, seed=7, epoch=2, micro=8, pool=1) == plain
    assert epoch_order(sizes, seed=7, epoch=2, rank=1, world=2, micro=8, pool=1) == plain[25:50]


def test_known_answer_small_pool() -> None:
    # one pool of 2 micro-batches: sorted by size, cut into {1, 2} and {8, 9}, batch order shuffled
    order = epoch_order(np.array([1, 9, 2, 8]), seed=0, epoch=0, micro=2, pool=2)
    assert sorted(order) == [0, 1, 2, 3]
    assert {frozenset(order[:2]), frozenset(order[2:])} == {frozenset({0, 2}), frozenset({1, 3})}


@pytest.mark.parametrize(("rank", "world"), [(0, 1), (0, 2), (1, 2)])
def test_every_example_once_and_far_less_padding(rank: int, world: int) -> None:
    sizes = np.random.default_rng(1).integers(1, 21, size=2003)  # window lengths 1..20, as in training
    pooled = epoch_order(sizes, seed=3, epoch=1, rank=rank, world=world, micro=64, pool=32)
    plain = epoch_order(sizes, seed=3, epoch=1, rank=rank, world=world, micro=64, pool=1)
    assert sorted(pooled) == sorted(plain)  # the same shard, each example once
    assert len(pooled) == 2003 // world
    assert _padding(sizes, plain, 64) > 0.4
    assert _padding(sizes, pooled, 64) < 0.12
    ragged = len(pooled) % 64
    if ragged:  # the short batch comes last, where the epoch's step count drops it
        tail = sorted(pooled[-ragged:])
        assert all(tail != sorted(pooled[i:i + ragged]) for i in range(0, len(pooled) - ragged, 64))


def test_epochs_differ_and_repeat() -> None:
    sizes = np.random.default_rng(0).integers(1, 21, size=500)
    a = epoch_order(sizes, seed=5, epoch=0, micro=16, pool=8)
    assert a == epoch_order(sizes, seed=5, epoch=0, micro=16, pool=8)
    assert a != epoch_order(sizes, seed=5, epoch=1, micro=16, pool=8)


@pytest.mark.parametrize("method", ["simgr", "sasrec", "autoregressive", "latte", "parallel"])
def test_size_is_the_collated_width(method: str, synthetic_data_dir: Path) -> None:
    cfg = RunConfig(data_dir=str(synthetic_data_dir), method=method, model=ModelConfig(backbone="tiny"),
                    train=TrainConfig())
    loaded = build_from_config(cfg)
    m = get_method(method)
    seq = loaded.data.train_sequences()[0]
    windows = m.examples(list(seq) * 3, loaded.built, stride=10)  # a long sequence: several windows
    assert len(windows) > 1
    for w in windows:
        batch = m.collate([w], loaded.built)
        width = next(v for v in batch if isinstance(v, torch.Tensor)).shape[1]
        assert m.size(w, loaded.built) == width


def test_by_length_known_answer() -> None:
    batches = by_length([[1, 2, 3], [4], [5, 6], list(range(30))], 2, keep=20)
    assert [b.tolist() for b in batches] == [[1, 2], [0, 3]]  # lengths 1, 2 | 3, 20 (cut at keep)


@pytest.mark.parametrize("method", ["simgr", "sasrec", "parallel", "autoregressive"])
def test_ranking_in_length_batches_equals_one_user_at_a_time(method: str, synthetic_data_dir: Path) -> None:
    cfg = RunConfig(data_dir=str(synthetic_data_dir), method=method, model=ModelConfig(backbone="tiny"),
                    train=TrainConfig())
    loaded = build_from_config(cfg)
    hist, _ = loaded.data.eval_examples("test", max_history=20)
    hist = [h[: 1 + i % len(h)] for i, h in enumerate(hist[:24])]  # lengths all over the range
    together = loaded.method.rank(loaded.built, hist, k=5, batch_size=8, device="cpu")
    alone = np.concatenate([loaded.method.rank(loaded.built, [h], k=5, batch_size=8, device="cpu") for h in hist])
    assert (together == alone).all()


def test_every_target_weighs_the_same_across_micro_batches(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """Two micro-batches of one step, with different target counts, give the gradient of the mean loss
    over all their targets, as if they were one batch."""
    from model.training.train import _setup, train_step

    cfg = RunConfig(data_dir=str(synthetic_data_dir), model=ModelConfig(backbone="tiny"),
                    train=TrainConfig(batch_size=2, micro_batch_size=1, dropout=0.0, input_dropout=0.0,
                                      grad_clip=1e9, max_users=6))
    run, state = _setup(cfg, tmp_path / "run", resume=False)
    counts = [run.method.n_targets(w) for w in run.windows]
    a, b = next((i, j) for i in range(len(counts)) for j in range(len(counts)) if counts[i] != counts[j])
    model = run.built.model
    model.train()
    model.zero_grad(set_to_none=True)
    _, loss = model(run.method.collate([run.windows[a], run.windows[b]], run.built))  # mean over both
    assert loss is not None
    loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    object.__setattr__(run, "targets_per_micro", (counts[a] + counts[b]) / 2)  # this step's mean
    run.optim.step = lambda *args, **kw: None  # type: ignore[method-assign]  # keep the gradients to look at
    train_step(run, state, [a, b], 0)
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert want.keys() == got.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], atol=1e-6, rtol=1e-4)


def test_clipping_bounds_the_mean_gradient_and_keeps_the_step_weight(synthetic_data_dir: Path,
                                                                      tmp_path: Path) -> None:
    from model.training.train import _setup, train_step

    cfg = RunConfig(data_dir=str(synthetic_data_dir), model=ModelConfig(backbone="tiny"),
                    train=TrainConfig(batch_size=1, micro_batch_size=1, dropout=0.0, input_dropout=0.0,
                                      grad_clip=1e-3, max_users=6))
    run, state = _setup(cfg, tmp_path / "run", resume=False)
    model = run.built.model
    model.train()
    model.zero_grad(set_to_none=True)
    _, loss = model(run.method.collate([run.windows[0]], run.built))
    assert loss is not None
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert norm > 1e-3  # clipping is active
    n = run.method.n_targets(run.windows[0])
    weight = n / (n + 2.0)  # a step with fewer targets than the average one
    want = [p.grad * (1e-3 / norm) * weight for p in params]  # the clipped mean gradient, times the weight
    object.__setattr__(run, "targets_per_micro", n + 2.0)
    run.optim.step = lambda *args, **kw: None  # type: ignore[method-assign]
    train_step(run, state, [0], 0)
    for p, w in zip(params, want, strict=True):
        torch.testing.assert_close(p.grad, w, atol=1e-9, rtol=1e-4)
