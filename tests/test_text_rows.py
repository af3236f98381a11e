"""model/network/text_rows.py: text rows (codebook vectors through a learned map) beside the learned code
rows; a text-only share of items while training (DropoutNet); added items embedded by their text rows,
through export and load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.config import ModelConfig, PromptConfig, TrainConfig
from model.data.dataset import load_items
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.export.living import ItemEmbedder
from model.methods.simgr import SimGRMethod
from model.network.code_init import quantizer_codebooks
from model.network.prompt import collate
from model.network.windows import make_windows
from model.semantic_ids.assign import load_semantic_ids
from model.training.run import RunConfig


def built_for(data: Path, *, share: float = 0.5, **model_fields):  # type: ignore[no-untyped-def]
    model = ModelConfig(backbone="tiny", text_rows=True, text_only_share=share, **model_fields)
    cfg = RunConfig(data_dir=str(data), model=model, train=TrainConfig(seed=3))
    sids = load_semantic_ids(data, [it.item_id for it in load_items(data / "items.jsonl")])
    return SimGRMethod().build(cfg, sids)


def quantised_latents(built, data: Path) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """(N, code_dim) sum of each item's semantic-level codebook vectors (the RQ-VAE reconstruction)."""
    books = [torch.from_numpy(cb) for cb in quantizer_codebooks(data)]
    tokens = [built.tokenizer.convert_ids_to_tokens(row.tolist()) for row in built.model.sid_token_ids]
    return torch.stack([sum(books[lvl][int(t[lvl][3:-1])] for lvl in range(len(books))) for t in tokens])


def test_items_start_at_their_quantised_text_and_learned_rows_at_zero(quant_data_dir: Path) -> None:
    built = built_for(quant_data_dir)
    assert torch.count_nonzero(built.model.input_embeddings().weight[built.model.sid_token_ids.unique()]) == 0
    latent = F.normalize(quantised_latents(built, quant_data_dir), dim=-1)
    with torch.no_grad():
        emb = built.model.eval().item_embeddings()  # (N, D), normalised
    torch.testing.assert_close(emb @ emb.T, latent @ latent.T, atol=1e-4, rtol=1e-4)


def train_step(built) -> None:  # type: ignore[no-untyped-def]
    windows = make_windows(list(range(8)), built.vocab, stride=10)
    batch = collate([w.prompt for w in windows], pad_id=built.vocab.pad_id, targets=[w.targets for w in windows])
    _, loss = built.model.train()(batch)
    loss.backward()


def test_codebook_vectors_stay_and_their_map_and_the_code_rows_train(quant_data_dir: Path) -> None:
    built = built_for(quant_data_dir)
    text = built.model.text_rows
    assert not any(p is text.latent for p in built.model.parameters())
    latent0 = text.latent.clone()
    torch.manual_seed(0)
    train_step(built)
    grad = built.model.input_embeddings().weight.grad
    assert torch.count_nonzero(grad[built.model.sid_token_ids.unique()]) > 0
    assert torch.equal(text.latent, latent0)
    assert torch.count_nonzero(text.proj.grad) > 0  # the content map learns
    assert float(text.gain.grad.abs()) > 0  # the text-only items' scale trains


def test_a_text_only_share_of_items_while_training_and_none_in_eval(quant_data_dir: Path) -> None:
    built = built_for(quant_data_dir, share=0.5)
    model = built.model
    with torch.no_grad():
        model.input_embeddings().weight.normal_()  # learned rows that differ from zero
        text_only = model.embed_tokens(model.sid_token_ids, learned=False)  # (N, D)
        torch.manual_seed(0)
        train_table = model.train().item_embeddings()
        eval_table = model.eval().item_embeddings()
    same = torch.isclose(train_table, text_only, atol=1e-6).all(dim=1)  # (N,)
    n = len(same)
    assert 0.2 * n < int(same.sum()) < 0.8 * n  # a Bernoulli(0.5) share of 48 items
    assert not torch.isclose(eval_table, text_only, atol=1e-6).all(dim=1).any()
    torch.testing.assert_close(eval_table[~same], train_table[~same])  # kept items: text + learned, as served


@pytest.mark.parametrize(("fields", "prompt", "match"), [
    ({"code_init": "codebook"}, PromptConfig(), "code_init 'random'"),
    ({"lora": True}, PromptConfig(), "LoRA"),
    ({}, PromptConfig(layout="tokens"), "'items' input layout"),
])
def test_options_text_rows_cannot_serve_are_refused(quant_data_dir: Path, fields: dict, prompt: PromptConfig,
                                                    match: str) -> None:
    model = ModelConfig(backbone="tiny", text_rows=True, **fields)
    cfg = RunConfig(data_dir=str(quant_data_dir), model=model, prompt=prompt)
    sids = load_semantic_ids(quant_data_dir, [it.item_id for it in load_items(quant_data_dir / "items.jsonl")])
    with pytest.raises(SimGRError, match=match):
        SimGRMethod().build(cfg, sids)


def test_given_ids_have_no_text_rows(synthetic_data_dir: Path) -> None:
    with pytest.raises(SimGRError, match="quantizer"):
        built_for(synthetic_data_dir)


def test_text_level_needs_a_model_with_text_rows(quant_bundle_dir: Path) -> None:
    bundle = Bundle.load(quant_bundle_dir)
    assert bundle.model.text_rows is None
    assert bundle.embedder("auto").levels == "trained"
    with pytest.raises(SimGRError, match="text rows"):
        bundle.embedder("text")


def test_export_round_trip_and_added_items_by_their_text_rows(quant_data_dir: Path, tmp_path: Path) -> None:
    from model.export.atomic import staged_dir
    from model.export.export import write_bundle
    from model.export.integrity import seal_bundle
    from model.semantic_ids.quantizer import find_quantizer
    from model.semantic_ids.space import load_sid_space

    built = built_for(quant_data_dir)
    with torch.no_grad():
        built.model.input_embeddings().weight.normal_(std=0.02)  # as if trained
        built.model.text_rows.gain.fill_(1.7)
    items = load_items(quant_data_dir / "items.jsonl")
    sids = load_semantic_ids(quant_data_dir, [it.item_id for it in items])
    from model.semantic_ids.assign import tokens_to_codes

    space = load_sid_space(quant_data_dir, tokens_to_codes(sids))
    with staged_dir(tmp_path / "b") as tmp:
        write_bundle(tmp, model=built.model, tokenizer=built.tokenizer, item_ids=[it.item_id for it in items],
                     sids=sids, titles=[it.title for it in items], popularity=list(range(len(items))),
                     quantizer_dir=find_quantizer(quant_data_dir), sid_space=space.sizes)
        seal_bundle(tmp)
    bundle = Bundle.load(tmp_path / "b", verify="full")
    assert bundle.model.text_rows is not None
    torch.testing.assert_close(bundle.model.text_rows.table, built.model.text_rows.table.detach())
    stored = np.load(tmp_path / "b" / "item_embeddings.npy")
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(stored), built.model.eval().item_embeddings())
    embed = bundle.embedder()  # auto -> text
    assert isinstance(embed, ItemEmbedder)
    assert embed.levels == "text"
    codes = [tuple(int(c) for c in row) for row in tokens_to_codes(sids[:5])]
    expected = built.model.embed_tokens(built.model.sid_token_ids[:5], learned=False).detach().numpy()
    np.testing.assert_allclose(embed(codes), expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embed(codes), axis=1), 1.7, rtol=1e-5)  # g * a unit vector
    (tmp_path / "b" / "model" / "text_rows.safetensors").unlink()
    with pytest.raises(SimGRError, match=r"text_rows\.safetensors"):
        Bundle.load(tmp_path / "b", verify="off")


def test_text_only_share_is_validated() -> None:
    from model.config import from_dict

    with pytest.raises(SimGRError, match="text_only_share"):
        from_dict(ModelConfig, {"text_only_share": 1.0}, origin="command line", what="ModelConfig")
    assert dataclasses.replace(ModelConfig(), text_only_share=0.0).text_only_share == 0.0


def test_sid_exact_index_folds_in_the_text_rows(quant_data_dir: Path, tmp_path: Path) -> None:
    """The trie's per-level tables reproduce e_i = normalise(mean E + mean T) exactly, so sid-exact search
    over a text-rows bundle returns the exact top-k (make_random_bundle runs check_bundle after tuning)."""
    from model.export.indexing import sid_codes
    from model.export.synthetic import make_random_bundle

    root = make_random_bundle(tmp_path / "b", preset="tiny", data_dir=quant_data_dir, text_rows=True,
                              index="sid-exact")
    bundle = Bundle.load(root)
    assert bundle.manifest.index is not None
    assert bundle.manifest.index.recall_at_10 == 1.0
    codes = sid_codes(bundle.model)
    rebuilt = sum(codes.tables[lvl][codes.codes[:, lvl]] for lvl in range(len(codes.tables)))  # (N, D)
    rebuilt = rebuilt / np.linalg.norm(rebuilt, axis=1, keepdims=True)
    np.testing.assert_allclose(rebuilt, np.asarray(bundle.embeddings), atol=1e-5)


def test_added_item_gain_scales_the_added_vectors(quant_bundle_dir: Path) -> None:
    bundle = Bundle.load(quant_bundle_dir)
    codes = [tuple(int(c) for c in row) for row in bundle.catalog.codes[:4]]
    plain = bundle.embedder("trained")(codes)
    np.testing.assert_allclose(bundle.embedder("trained", 2.5)(codes), 2.5 * plain, rtol=1e-6)
    with pytest.raises(SimGRError, match="positive"):
        bundle.embedder("trained", 0.0)
