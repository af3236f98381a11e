"""model/network/code_init.py: code rows started from the quantizer's codebooks make an item's initial
embedding a projection of its quantised text embedding; datasets without a quantizer are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.config import ModelConfig, TrainConfig
from model.data.dataset import load_items
from model.errors import SimGRError
from model.methods.simgr import SimGRMethod
from model.network.code_init import quantizer_codebooks
from model.semantic_ids.assign import load_semantic_ids
from model.training.run import RunConfig


def built_for(data: Path, code_init: str):  # type: ignore[no-untyped-def]
    cfg = RunConfig(data_dir=str(data), model=ModelConfig(backbone="tiny", code_init=code_init),  # type: ignore[arg-type]
                    train=TrainConfig(seed=3))
    sids = load_semantic_ids(data, [it.item_id for it in load_items(data / "items.jsonl")])
    return SimGRMethod().build(cfg, sids)


def test_initial_item_similarity_is_the_quantised_text_similarity(quant_data_dir: Path) -> None:
    built = built_for(quant_data_dir, "codebook")
    books = [torch.from_numpy(cb) for cb in quantizer_codebooks(quant_data_dir)]
    codes = built.model.sid_token_ids  # (N, L) token ids; recover each item's codes through the tokenizer
    tokens = [built.tokenizer.convert_ids_to_tokens(row.tolist()) for row in codes]
    latent = torch.stack([sum(books[lvl][int(t[lvl][3:-1])] for lvl in range(len(books))) for t in tokens])  # (N, c)
    with torch.no_grad():
        emb = built.model.item_embeddings()  # (N, D), normalised
    torch.testing.assert_close(emb @ emb.T, F.normalize(latent, dim=-1) @ F.normalize(latent, dim=-1).T,
                               atol=1e-4, rtol=1e-4)


def test_random_init_is_unchanged_and_given_ids_are_refused(quant_data_dir: Path, synthetic_data_dir: Path) -> None:
    plain = built_for(quant_data_dir, "random")
    again = built_for(quant_data_dir, "random")
    assert torch.equal(plain.model.input_embeddings().weight, again.model.input_embeddings().weight)
    coded = built_for(quant_data_dir, "codebook")
    assert not torch.equal(plain.model.input_embeddings().weight, coded.model.input_embeddings().weight)
    with pytest.raises(SimGRError, match="quantizer"):
        built_for(synthetic_data_dir, "codebook")
    cfg = RunConfig(data_dir=str(quant_data_dir), model=dataclasses.replace(
        ModelConfig(backbone="tiny", code_init="codebook"), lora=True))
    sids = load_semantic_ids(quant_data_dir, [it.item_id for it in load_items(quant_data_dir / "items.jsonl")])
    with pytest.raises(SimGRError, match="LoRA"):
        SimGRMethod().build(cfg, sids)


def test_frozen_rows_get_no_gradient_and_uniqueness_rows_train(quant_data_dir: Path) -> None:
    from model.network.prompt import collate
    from model.network.windows import make_windows
    from model.semantic_ids.space import code_token

    built = built_for(quant_data_dir, "codebook-frozen")
    windows = make_windows(list(range(8)), built.vocab, stride=10)
    batch = collate([w.prompt for w in windows], pad_id=built.vocab.pad_id, targets=[w.targets for w in windows])
    _, loss = built.model.train()(batch)
    loss.backward()
    grad = built.model.input_embeddings().weight.grad
    vocab = built.tokenizer.get_vocab()
    semantic = [i for t, i in vocab.items() if t.startswith((code_token(0, 0)[:3], code_token(1, 0)[:3]))]
    unique = [i for t, i in vocab.items() if t.startswith(code_token(len(built.model.sid_token_ids[0]) - 1, 0)[:3])]
    assert semantic
    assert unique
    assert torch.count_nonzero(grad[semantic]) == 0
    assert torch.count_nonzero(grad[unique]) > 0
