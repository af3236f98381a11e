"""Training that scales with N: the sampled softmax's logQ correction (known answers), training with it on
a tiny set, and the item table computed once per optimiser step giving the same gradients."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from model.config import ModelConfig, PromptConfig
from model.data.synthetic import random_sids
from model.network.assembly import build_model
from model.network.losses import draw_candidates, sampled_softmax_loss
from model.network.prompt import collate
from model.network.windows import make_windows
from service.cli.main import main


def test_logq_correction_known_answer() -> None:
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (M=2, D)
    items = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (N=3, D)
    targets = torch.tensor([0, 1])  # one column each, then the uniform draws
    log_prior = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    gen = torch.Generator().manual_seed(0)
    cand = draw_candidates(targets, n_items=3, n_uniform=2, log_prior=log_prior, generator=gen)
    assert cand.items[:2].tolist() == [0, 1]
    assert cand.labels.tolist() == [0, 1]
    assert len(cand.items) == 4
    drawn = cand.items[2:].tolist()
    count = [2 * p + 2 / 3 for p in (0.5, 0.3, 0.2)]  # M p(j) + U / N
    np.testing.assert_allclose(cand.log_count.numpy(), [math.log(count[j]) for j in [0, 1, *drawn]], rtol=1e-6)
    loss = sampled_softmax_loss(h, items[cand.items], cand, targets, tau=0.5)
    expect = 0.0
    for m in range(2):
        logits = [float(h[m] @ items[j]) / 0.5 - math.log(count[j]) for j in [0, 1, *drawn]]
        expect += -(logits[m] - math.log(sum(math.exp(z) for z in logits))) / 2
    assert abs(float(loss) - expect) < 1e-5


def _fit(p: np.ndarray, *, correct: bool, steps: int = 1500, m: int = 16) -> np.ndarray:
    """Free logits z trained with in-batch sampled softmax on targets drawn from p: softmax(z) estimate."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = len(p)
    z = torch.zeros(n, 1, requires_grad=True)  # item "embeddings" with a constant user h = [1]
    opt = torch.optim.Adam([z], lr=0.05)
    log_prior = torch.log(torch.tensor(p, dtype=torch.float32))
    for step in range(steps):
        if step == steps // 2:
            opt.param_groups[0]["lr"] = 0.01
        targets = torch.from_numpy(rng.choice(n, size=m, p=p))
        cand = draw_candidates(targets, n_items=n, n_uniform=4, log_prior=log_prior)
        loss = sampled_softmax_loss(torch.ones(m, 1), z[cand.items], cand, targets, tau=1.0, correct=correct)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.softmax(z.detach()[:, 0], 0).numpy()


def test_logq_correction_recovers_the_true_distribution() -> None:
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02])
    corrected, plain = _fit(p, correct=True), _fit(p, correct=False)
    assert np.abs(corrected - p).max() < 0.02, corrected
    assert np.abs(plain - p).max() > 2 * np.abs(corrected - p).max(), plain  # without it popular items sink


def test_sampled_loss_trains_to_a_sane_ndcg(synthetic_data_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    flags = ["--backbone", "tiny", "--batch-size", "16", "--micro-batch-size", "16", "--lr", "0.01"]
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--epochs", "6", *flags,
                 "--loss", "sampled", "--sampled-negatives", "8"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((run / "config.json").read_text())["model"]["loss"] == "sampled"
    assert summary["best_valid_ndcg@10"] > 0.3  # 30 items: popularity is about 0.1


def test_item_table_once_per_step_gives_the_same_gradients() -> None:
    cfg = ModelConfig(backbone="tiny")
    built = build_model(cfg, PromptConfig(), random_sids(40, seed=1), seed=0)
    model, vocab = built.model.eval(), built.vocab  # eval: no dropout, so both passes see the same graph
    batches = []
    for seq in ([1, 2, 3, 4, 5], [7, 8, 9], [20, 21, 22, 23]):
        w = make_windows(seq, vocab, stride=10)
        batches.append(collate([x.prompt for x in w], pad_id=vocab.pad_id, targets=[x.targets for x in w]))
    for b in batches:
        (model(b)[1] / len(batches)).backward()
    per_batch = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    table = model.item_embeddings()
    leaf = table.detach().requires_grad_()
    for b in batches:
        (model(b, item_table=leaf)[1] / len(batches)).backward()
    table.backward(leaf.grad)
    once = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(once) == len(per_batch)
    for a, b in zip(per_batch, once, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
