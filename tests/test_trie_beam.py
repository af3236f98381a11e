"""The SID trie holds exactly the valid IDs; beam search with beam = catalog size equals exact global search,
which equals naive teacher forcing without a KV cache; Latte's path aggregation; token ranks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model.baselines.autoregressive import ARModel, collate_sequences, rank_beam
from model.baselines.beam import beam_search, exact_leaf_scores, target_token_ranks
from model.baselines.latte import aggregate_paths, rank_latte
from model.baselines.trie import SIDTrie
from model.config import BaselineConfig, ModelConfig, PromptConfig, TrainConfig
from model.network.prompt import build_prompt, collate
from model.training.run import RunConfig, build_from_config

HISTORIES = [[0, 1, 2], [5], [7, 3, 9, 11, 4]]


def test_trie_contains_exactly_the_valid_sids() -> None:
    seqs = [[5, 7, 1], [5, 8, 1], [6, 7, 2], [5, 7, 3]]
    trie = SIDTrie(seqs, items=[0, 1, 2, 3])
    assert trie.sequences() == {tuple(s) for s in seqs}
    assert trie.allowed([]) == [5, 6]
    assert trie.allowed([5]) == [7, 8]
    assert trie.allowed([5, 7]) == [1, 3]
    assert trie.allowed([6, 8]) == []
    assert trie.allowed([5, 7, 1]) == []
    assert [trie.item_of(s) for s in seqs] == [0, 1, 2, 3]
    assert trie.item_of([6, 7, 1]) == -1
    assert trie.item_of([5, 7]) == -1
    assert [trie.n_nodes(d) for d in range(4)] == [1, 2, 3, 4]
    e = trie.expand(1, torch.tensor([0, 1]))  # nodes (5,) and (6,)
    assert e.row.tolist() == [0, 0, 1]
    assert e.token.tolist() == [7, 8, 7]
    with pytest.raises(ValueError, match="duplicate"):
        SIDTrie([[1, 2], [1, 2]])


def _built(data_dir: Path, method: str, layout: str = "items") -> tuple:
    cfg = RunConfig(data_dir=str(data_dir), method=method, model=ModelConfig(backbone="tiny"),
                    prompt=PromptConfig(layout=layout),  # type: ignore[arg-type]
                    train=TrainConfig(dropout=0.0), baseline=BaselineConfig(beam_size=5, latent_tokens=3))
    run = build_from_config(cfg)
    run.built.model.eval()
    return run.built, run.built.model


def _state(built: object, model: ARModel) -> object:
    """One batch of HISTORIES in their own order."""
    prompts = [build_prompt(h, built.vocab) for h in HISTORIES]  # type: ignore[attr-defined]
    return model.prompt_state(collate(prompts, pad_id=built.vocab.pad_id))  # type: ignore[attr-defined]


@pytest.mark.parametrize("layout", ["items", "tokens"])
def test_full_beam_equals_exact_search_equals_teacher_forcing(synthetic_data_dir: Path, layout: str) -> None:
    built, model = _built(synthetic_data_dir, "autoregressive", layout)
    state = _state(built, model)
    trie = model.trie
    exact = exact_leaf_scores(model, state, trie, chunk=7)  # (U, N), small chunks exercise chunking
    beams = beam_search(model, state, trie, beam=trie.n_leaves)
    assert (beams.leaves >= 0).all()
    for u in range(len(HISTORIES)):
        got = torch.full((trie.n_leaves,), float("nan"))
        got[beams.leaves[u]] = beams.scores[u]
        torch.testing.assert_close(got, exact[u], atol=1e-4, rtol=1e-4)
        assert (beams.scores[u][:-1] >= beams.scores[u][1:]).all()  # best first
    # naive: one full forward per (user, item) without any cache
    items = [0, 7, 29]
    with torch.inference_mode():
        for u, hist in enumerate(HISTORIES):
            prompts = [build_prompt(hist, built.vocab)] * len(items)
            answers = [list(built.vocab.sid_token_ids[i]) for i in items]
            batch = collate_sequences(prompts, answers, built.vocab.pad_id)
            out = model.encoder.backbone(inputs_embeds=model._embeds(batch), attention_mask=batch.attention_mask)
            logp = model.logprobs(out.last_hidden_state[batch.targets >= 0])  # (n * L, V)
            labels = batch.targets[batch.targets >= 0]
            naive = logp[torch.arange(len(labels)), labels].reshape(len(items), -1).sum(1)
            leaf = [int((trie.leaf_item == i).nonzero()) for i in items]
            torch.testing.assert_close(exact[u, leaf], naive, atol=1e-4, rtol=1e-4)


def test_small_beam_is_a_valid_subset_and_ranks_match(synthetic_data_dir: Path) -> None:
    built, model = _built(synthetic_data_dir, "autoregressive")
    state = _state(built, model)
    exact = exact_leaf_scores(model, state, model.trie)
    beams = beam_search(model, state, model.trie, beam=4)
    assert beams.leaves.shape == (3, 4)
    for u in range(3):  # beam scores are true sequence log-probs of the items found
        torch.testing.assert_close(beams.scores[u], exact[u, beams.leaves[u]], atol=1e-4, rtol=1e-4)
    top = rank_beam(built, HISTORIES, k=4, beam=4)
    assert top.shape == (3, 4)
    assert (top >= 0).all()
    assert (top < 30).all()
    targets = torch.from_numpy(built.vocab.sid_token_ids[[3, 6, 5]])
    ranks = target_token_ranks(model, state, model.trie, targets)
    assert ranks.shape == (3, 4)
    assert (ranks >= 0).all()
    # greedy decoding (beam 1) picks the rank-0 allowed token at every step, by definition
    greedy = beam_search(model, state, model.trie, beam=1).leaves[:, 0]
    greedy_seqs = model.trie.prefixes[model.trie.depth][greedy]  # (3, L)
    assert target_token_ranks(model, state, model.trie, greedy_seqs).eq(0).all()


def test_latte_aggregation_and_dedup(synthetic_data_dir: Path) -> None:
    items, scores = torch.tensor([4, 2, 4, -1]), torch.tensor([-1.0, -2.0, -3.0, float("-inf")])
    uniq, agg = aggregate_paths(items, scores, "max")
    assert uniq.tolist() == [2, 4]
    assert agg.tolist() == [-2.0, -1.0]
    _, agg = aggregate_paths(items, scores, "sum")
    assert agg[1].item() == pytest.approx(math.log(math.exp(-1) + math.exp(-3)), abs=1e-6)
    built, model = _built(synthetic_data_dir, "latte")
    assert model.trie.depth == 5
    assert model.trie.n_leaves == 3 * 30
    top = rank_latte(built, HISTORIES, k=10, beam=2)  # beam 2 < K: doubles until 10 distinct items
    for row in top:
        assert len(set(row.tolist())) == 10
        assert (row >= 0).all()
