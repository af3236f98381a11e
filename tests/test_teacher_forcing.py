"""Whole-sequence teacher forcing gives the generative baselines the same per-target loss as one sequence
per (history, target) sample; the KV-cache beam search returns exactly the re-feeding beam's results."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from model.baselines.autoregressive import ARModel, collate_sequences, history_examples, prompt_batches
from model.baselines.beam import beam_search, select_users
from model.baselines.teacher_forcing import collate_tree
from model.config import BaselineConfig, ModelConfig, PromptConfig, TrainConfig
from model.network.prompt import build_prompt
from model.training.run import RunConfig, build_from_config

HISTORIES = [[0, 1, 2], [5], [7, 3, 9, 11, 4], [20, 21, 22, 23, 24, 25, 26]]


def _run(data_dir: Path, method: str, layout: str, max_history: int = 20) -> tuple:
    cfg = RunConfig(data_dir=str(data_dir), method=method, model=ModelConfig(backbone="tiny"),
                    prompt=PromptConfig(layout=layout, max_history=max_history),  # type: ignore[arg-type]
                    train=TrainConfig(dropout=0.0), baseline=BaselineConfig(latent_tokens=3))
    run = build_from_config(cfg)
    run.built.model.eval()
    return run.method, run.built, run.built.model


def _per_target_reference(method: object, built: object, model: ARModel, sequence: list[int]) -> torch.Tensor:
    """Summed token CE of each target, one sequence per (history, target) sample (the old path)."""
    examples = history_examples(sequence, built.vocab.cfg.max_history)  # type: ignore[attr-defined]
    prompts = [build_prompt(ex.history, built.vocab) for ex in examples]  # type: ignore[attr-defined]
    random.seed(7)
    answers = [method.answer(ex.target, built) for ex in examples]  # type: ignore[attr-defined]
    batch = collate_sequences(prompts, answers, built.vocab.pad_id)  # type: ignore[attr-defined]
    losses = model.token_losses(batch)  # (n * A,) row-major: one row per target
    return losses.reshape(len(examples), -1).sum(1)


@pytest.mark.parametrize(("method_name", "layout", "max_history", "stride"), [
    ("autoregressive", "items", 20, 10), ("autoregressive", "tokens", 20, 10),
    ("autoregressive", "items", 4, 1), ("latte", "items", 20, 10), ("latte", "tokens", 4, 1)])
def test_whole_sequence_loss_equals_per_target_loss(synthetic_data_dir: Path, method_name: str, layout: str,
                                                    max_history: int, stride: int) -> None:
    method, built, model = _run(synthetic_data_dir, method_name, layout, max_history)
    sequence = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]  # 10 targets; with W = 4 several windows
    windows = method.examples(sequence, built, stride=stride)
    assert sum(method.n_targets(w) for w in windows) == len(sequence) - 1
    random.seed(7)  # Latte draws one latent per target, in target order on both paths
    batch = collate_tree(windows, [[method.answer(i, built) for _, i in w.targets] for w in windows],
                         pad_id=built.vocab.pad_id)
    with torch.no_grad():
        losses = model.token_losses(batch)  # (M,)
        at = batch.targets >= 0
        whole = torch.zeros(len(sequence) - 1).index_add(0, batch.target_of[at], losses)
        reference = _per_target_reference(method, built, model, sequence)
        n_tokens = len(method.answer(0, built))
        assert int(at.sum()) == (len(sequence) - 1) * n_tokens  # every SID token of every target
        torch.testing.assert_close(whole, reference, atol=1e-4, rtol=1e-4)
        assert float(reference.std()) > 1e-3  # the targets' losses differ: the match is not a coincidence
        random.seed(7)
        mean_loss = model(method.collate(windows, built))[1]
        torch.testing.assert_close(mean_loss, reference.sum() / (len(reference) * n_tokens), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("method_name", "layout", "beam", "chunk"), [
    ("autoregressive", "items", 5, 4096), ("autoregressive", "tokens", 7, 3), ("latte", "items", 6, 5)])
def test_kv_cache_beam_equals_refeeding_beam(synthetic_data_dir: Path, method_name: str, layout: str,
                                             beam: int, chunk: int) -> None:
    _, built, model = _run(synthetic_data_dir, method_name, layout)
    (_, batch), = list(prompt_batches(built, HISTORIES, 64, "cpu", "t"))
    state = model.prompt_state(batch)
    cached = beam_search(model, state, model.trie, beam=beam, chunk=chunk)
    refeed = beam_search(model, state, model.trie, beam=beam, chunk=chunk, cache=False)
    assert torch.equal(cached.leaves, refeed.leaves)
    torch.testing.assert_close(cached.scores, refeed.scores, atol=1e-5, rtol=1e-5)
    assert (cached.leaves >= 0).all()
    sub = select_users(state, torch.tensor([2, 0]))  # a subset of users, as Latte's widening re-search does
    part = beam_search(model, sub, model.trie, beam=beam, chunk=chunk)
    assert torch.equal(part.leaves, cached.leaves[[2, 0]])
