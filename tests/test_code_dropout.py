"""Code dropout (TrainConfig.code_dropout): in training, each item vector averages a random non-empty subset
of its semantic-ID code rows; in evaluation, all of them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from train_helpers import TINY

from model.config import ModelConfig, PromptConfig
from model.data.synthetic import random_sids
from model.errors import SimGRError
from model.network.assembly import build_model
from model.network.model import kept_code_weights
from model.training.run import RunConfig
from service.cli.main import main


def _built(code_dropout: float, aggregator: str = "mean"):  # type: ignore[no-untyped-def]
    cfg = ModelConfig(backbone="tiny", aggregator=aggregator)  # type: ignore[arg-type]
    return build_model(cfg, PromptConfig(), random_sids(30, seed=1), seed=0, code_dropout=code_dropout)


def test_the_weights_average_a_non_empty_subset_at_the_stated_rate() -> None:
    torch.manual_seed(0)
    tokens = torch.zeros(20000, 4, dtype=torch.long)
    w = kept_code_weights(tokens, 0.3)  # (M, L)
    kept = w > 0
    assert bool(kept.any(1).all())  # one code always stays
    assert torch.allclose(w.sum(1), torch.ones(20000))
    assert torch.equal(w[kept], (1 / kept.sum(1, keepdim=True).float()).expand_as(w)[kept])  # a plain mean
    # a code is dropped with p unless it is the one kept by force: p (L - 1) / L = 0.225
    assert abs((~kept).float().mean().item() - 0.3 * 3 / 4) < 0.01


def _subset_means(rows: torch.Tensor) -> torch.Tensor:
    """(L, D) code rows -> (2^L - 1, D) normalised means of every non-empty subset."""
    subsets = [s for k in range(1, rows.shape[0] + 1) for s in itertools.combinations(range(rows.shape[0]), k)]
    return F.normalize(torch.stack([rows[list(s)].mean(0) for s in subsets]), dim=-1)


class _Wrapped(nn.Embedding):
    """An input table that is not a plain nn.Embedding (as under peft): the generic aggregation path."""


@pytest.mark.parametrize("path", ["embedding_bag", "generic"])
def test_training_rows_are_subset_means_and_evaluation_rows_the_full_mean(path: str) -> None:
    model = _built(0.5).model
    if path == "generic":
        plain = model.input_embeddings()
        wrapped = _Wrapped(plain.num_embeddings, plain.embedding_dim)
        wrapped.weight = plain.weight
        model.backbone.set_input_embeddings(wrapped)
    codes = model.input_embeddings().weight.detach()[model.sid_token_ids]  # (N, L, D)
    full = F.normalize(codes.mean(1), dim=-1)  # (N, D)
    torch.manual_seed(1)
    train_rows = model.train().item_embeddings().detach()
    assert torch.allclose(model.eval().item_embeddings().detach(), full, atol=1e-6)
    partial = 0
    for i in range(model.n_items):
        gap = (_subset_means(codes[i]) - train_rows[i]).abs().amax(-1)  # (2^L - 1,)
        assert gap.min().item() < 1e-5  # some non-empty subset's mean
        partial += not torch.allclose(train_rows[i], full[i], atol=1e-5)
    assert partial > model.n_items // 2  # at p = 0.5 most items lose a code


def test_the_gradient_reaches_only_kept_codes() -> None:
    model = _built(0.5).model.train()
    torch.manual_seed(2)
    model.item_rows(torch.tensor([0])).sum().backward()
    grad = model.input_embeddings().weight.grad
    touched = {int(t) for t in grad.abs().sum(1).nonzero()}
    assert touched  # the kept codes learn
    assert touched < set(model.sid_token_ids[0].tolist())  # and a dropped one does not


def test_off_by_default_and_refused_beside_a_learned_aggregator(tmp_path: Path) -> None:
    model = _built(0.0).model.train()
    assert torch.equal(model.item_embeddings(), model.item_embeddings())  # no randomness at p = 0
    with pytest.raises(SimGRError, match="mean aggregator"):
        _built(0.2, aggregator="gating")
    with pytest.raises(SimGRError, match="code_dropout"):
        RunConfig.from_json({"data_dir": str(tmp_path), "train": {"code_dropout": 1.0}}, origin="test")


def test_a_run_with_code_dropout_trains(synthetic_data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_data_dir), "--out", str(run), "--epochs", "4",
                 "--code-dropout", "0.2", *TINY]) == 0
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert json.loads((run / "config.json").read_text())["train"]["code_dropout"] == 0.2
    assert log[-1]["train_loss"] < log[0]["train_loss"]
