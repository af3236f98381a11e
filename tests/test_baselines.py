"""Baselines behind the Method protocol: each learns on a tiny slice, the parallel scores are the sum of
per-level log-marginals, SASRec windows match the paper's samples, and the CLI trains/evaluates them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from model.baselines.parallel import ParallelModel
from model.baselines.sasrec import SASRec, SASRecMethod, SeqExample, collate_items
from model.config import BaselineConfig, ModelConfig, TrainConfig
from model.training.registry import get_method, method_names
from model.training.run import RunConfig, build_from_config
from service.cli.main import main

BASELINES = ("sasrec", "autoregressive", "parallel", "latte")


def test_registry_lists_every_method() -> None:
    assert set(method_names()) >= {"simgr", *BASELINES}


def test_run_config_round_trips_the_baseline_section() -> None:
    cfg = RunConfig(data_dir="x", method="latte", baseline=BaselineConfig(beam_size=7, latte_agg="sum"))
    again = RunConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert again == cfg
    assert again.baseline.beam_size == 7
    assert RunConfig.from_json({"data_dir": "x"}).baseline == BaselineConfig()  # old runs still load


@pytest.mark.parametrize("name", BASELINES)
def test_one_epoch_lowers_the_loss(synthetic_data_dir: Path, name: str) -> None:
    random.seed(0)
    cfg = RunConfig(data_dir=str(synthetic_data_dir), method=name, model=ModelConfig(backbone="tiny"),
                    train=TrainConfig(dropout=0.0), baseline=BaselineConfig(latent_tokens=2, sasrec_dropout=0.0))
    run = build_from_config(cfg)
    method, built = run.method, run.built
    examples = [e for s in run.data.train_sequences() for e in method.examples(s, built, stride=10)]
    assert sum(method.n_targets(e) for e in examples) == sum(len(s) - 1 for s in run.data.train_sequences())
    model = built.model
    probe = method.collate(examples[:32], built)

    def probe_loss() -> float:
        model.eval()
        with torch.no_grad():
            random.seed(1)  # Latte draws latents in collate; the probe batch is fixed above
            return float(model(probe)[1])  # type: ignore[index]

    before = probe_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    for s in range(0, len(order), 16):
        _, loss = model(method.collate([examples[i] for i in order[s:s + 16]], built))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert probe_loss() < 0.9 * before
    top = method.rank(built, [[0, 1, 2], [5, 6]], k=10, batch_size=8, device="cpu")
    assert top.shape == (2, 10)
    assert ((top >= 0) & (top < 30)).all()
    assert all(len(set(row.tolist())) == 10 for row in top)  # distinct items


def test_parallel_scores_are_the_sum_of_log_marginals(synthetic_data_dir: Path) -> None:
    cfg = RunConfig(data_dir=str(synthetic_data_dir), method="parallel", model=ModelConfig(backbone="tiny"))
    run = build_from_config(cfg)
    model: ParallelModel = run.built.model  # type: ignore[assignment]
    with torch.no_grad():
        for head in model.heads:  # leave the identity init so the heads differ
            head.weight.add_(0.1 * torch.randn_like(head.weight))
        h = torch.randn(3, 32)
        scores = model.item_scores(h)  # (3, N)
        emb = model.encoder.input_embeddings().weight
        sid_ids = run.built.vocab.sid_token_ids
        for level in range(len(model.heads)):
            assert len(model.level_tokens[level]) == len({s[level] for s in sid_ids})
        for i in (0, 11, 29):
            by_hand = torch.zeros(3)
            for level, head in enumerate(model.heads):
                toks = model.level_tokens[level]
                logits = head(h) @ emb[toks].T  # (3, V_l)
                col = toks.index(sid_ids[i][level])
                by_hand += logits[:, col] - torch.logsumexp(logits, dim=1)
            torch.testing.assert_close(scores[:, i], by_hand, atol=1e-5, rtol=1e-5)


def test_sasrec_windows_cover_every_prefix_once(synthetic_data_dir: Path) -> None:
    cfg = RunConfig(data_dir=str(synthetic_data_dir), method="sasrec")
    built = get_method("sasrec").build(cfg, [[f"<a_{i}>"] for i in range(30)])
    seq = list(range(10, 36))  # 26 items -> targets 1..25
    ex = SASRecMethod().examples(seq, built, stride=10)
    pairs = [(e.items[: j + 1][-20:], t) for e in ex for j, t in enumerate(e.targets) if t >= 0]
    assert [t for _, t in pairs] == seq[1:]
    assert all(h[-1] + 1 == t for h, t in pairs)  # position j predicts the item after it


def test_sasrec_label_smoothing_is_soft_target_cross_entropy() -> None:
    torch.manual_seed(0)
    eps, n = 0.2, 7
    model = SASRec(n_items=n, dim=8, layers=1, heads=2, dropout=0.0, max_len=5, label_smoothing=eps).eval()
    batch = collate_items([SeqExample((0, 1, 2), (1, 2, 3)), SeqExample((4, 5), (-100, 6))])
    _, loss = model(batch)
    at = batch.targets >= 0
    logp = torch.log_softmax(model.scores(model.hidden(batch)[at]), dim=-1)  # (R, N)
    soft = torch.full_like(logp, eps / n).scatter_add_(1, batch.targets[at][:, None],
                                                       torch.full((int(at.sum()), 1), 1.0 - eps))
    torch.testing.assert_close(loss, -(soft * logp).sum(-1).mean())
    model.label_smoothing = 0.0
    torch.testing.assert_close(model(batch)[1], -logp.gather(1, batch.targets[at][:, None]).mean())


@pytest.mark.parametrize("name", ["autoregressive", "sasrec"])
def test_cli_trains_and_evaluates_a_baseline(synthetic_data_dir: Path, tmp_path: Path, name: str,
                                             capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--method", name,
                 "--backbone", "tiny", "--epochs", "2", "--batch-size", "16", "--micro-batch-size", "16",
                 "--lr", "0.01", "--beam-size", "12"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["method"] == name
    assert saved["baseline"]["beam_size"] == 12
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n_users"] == 48
    from model.evaluation.evaluate import evaluate_model
    from model.training.run import load_run

    loaded = load_run(run)  # the CLI's numbers are the library's numbers for the saved run
    hist, targets = loaded.data.eval_examples("test", max_history=loaded.cfg.prompt.max_history)
    again = evaluate_model(loaded.method, loaded.built, hist, targets)
    assert metrics["ndcg@10"] == pytest.approx(again["ndcg@10"], abs=1e-6)
    assert metrics["hr@10"] == pytest.approx(again["hr@10"], abs=1e-6)
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "b")]) == 2  # only SimGR exports
