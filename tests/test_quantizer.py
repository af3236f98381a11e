"""The item quantizer travels with the model: saved by semantic-ids, carried by train and export, and it
reproduces the training codes; every code of every level is a token."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.data.dataset import load_items
from model.errors import SimGRError
from model.semantic_ids.assign import load_semantic_ids, read_item_texts, tokens_to_codes
from model.semantic_ids.quantizer import ItemQuantizer, encoder_checksum
from model.semantic_ids.space import SidSpace, lowest_free
from model.semantic_ids.text_encoder import default_encoder_dir


def test_saved_quantizer_reproduces_the_training_codes(quant_data_dir: Path) -> None:
    item_ids, texts, _ = read_item_texts(quant_data_dir)
    stored = tokens_to_codes(load_semantic_ids(quant_data_dir, item_ids))  # (N, L+1)
    q = ItemQuantizer.load(quant_data_dir / "quantizer")
    codes = q.assign_codes(texts)  # (N, L), fresh MiniLM encode + saved RQ-VAE
    assert codes.shape == (len(item_ids), 2)
    np.testing.assert_array_equal(codes, stored[:, :-1])  # every item, before the uniqueness level
    assert len(np.unique(codes, axis=0)) > 3  # a real spread of codes, not one bucket


def test_quantizer_spec_names_encoder_template_and_space(quant_data_dir: Path) -> None:
    spec = json.loads((quant_data_dir / "quantizer" / "quantizer.json").read_text())
    assert spec["codebook_sizes"] == [4, 4]
    assert spec["unique_codes"] == 16
    assert spec["encoder"]["dim"] == 384
    assert spec["encoder"]["checksum"] == encoder_checksum(default_encoder_dir())
    assert spec["max_text_chars"] == 2000
    space = json.loads((quant_data_dir / "sid_space.json").read_text())
    assert space["sizes"] == [4, 4, 16]


def test_item_text_uses_the_training_template(quant_data_dir: Path) -> None:
    q = ItemQuantizer.load(quant_data_dir / "quantizer")
    item = load_items(quant_data_dir / "items.jsonl")[0]
    assert q.item_text(title="Red strap", text="Soft leather", categories=["Straps"]) == \
        "Red strap. Categories: Straps. Soft leather."
    assert item.text is not None
    assert item.text.startswith(item.title or "")
    with pytest.raises(ValueError, match="title or text"):
        q.item_text(title="  ", text="")


def test_wrong_encoder_is_refused(quant_data_dir: Path, tmp_path: Path) -> None:
    q = ItemQuantizer.load(quant_data_dir / "quantizer")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SimGRError, match="not the text encoder"):
        q.encoder(tmp_path)


def test_broken_spec_names_the_file(tmp_path: Path, quant_data_dir: Path) -> None:
    import shutil

    folder = tmp_path / "quantizer"
    shutil.copytree(quant_data_dir / "quantizer", folder)
    spec = json.loads((folder / "quantizer.json").read_text())
    spec["bogus"] = 1
    (folder / "quantizer.json").write_text(json.dumps(spec))
    with pytest.raises(SimGRError, match=r"quantizer.json: bogus"):
        ItemQuantizer.load(folder)


def test_vocabulary_holds_every_code_of_the_space(quant_bundle_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(quant_bundle_dir / "model" / "backbone")
    vocab = tok.get_vocab()
    missing = [t for t in SidSpace(sizes=(4, 4, 16)).tokens() if t not in vocab]
    assert missing == []
    manifest = json.loads((quant_bundle_dir / "manifest.json").read_text())
    assert manifest["sid_space"] == [4, 4, 16]
    assert manifest["quantizer"] is True
    assert (quant_bundle_dir / "quantizer" / "rqvae.safetensors").is_file()


def test_lowest_free_is_the_uniqueness_rule() -> None:
    assert lowest_free({0, 1, 3}, 8) == 2
    assert lowest_free(set(), 8) == 0
    assert lowest_free(set(range(4)), 4) is None


def test_given_ids_leave_no_quantizer(quant_data_dir: Path, tmp_path: Path) -> None:
    import shutil

    from model.semantic_ids.assign import build_semantic_ids

    data = tmp_path / "data"
    shutil.copytree(quant_data_dir, data)
    item_ids = [it.item_id for it in load_items(data / "items.jsonl")]
    given = {iid: [f"<a_{i % 5}>", f"<b_{i % 3}>"] for i, iid in enumerate(item_ids)}
    (tmp_path / "given.json").write_text(json.dumps(given))
    build_semantic_ids(data_dir=data, given=tmp_path / "given.json")
    assert not (data / "quantizer").exists()
    assert json.loads((data / "sid_space.json").read_text())["sizes"] == [256, 256]


def test_train_and_export_carry_the_quantizer(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """semantic-ids (RQ-VAE) -> train -> export: the bundle's quantizer reproduces the trained items' codes,
    and the vocabulary covers the whole code space."""
    import shutil

    from catalog_helpers import TINY_RQ

    from model.export.bundle import Bundle
    from model.semantic_ids.assign import build_semantic_ids
    from service.cli.main import main

    data = tmp_path / "data"
    shutil.copytree(synthetic_data_dir, data)
    build_semantic_ids(data_dir=data, cfg=TINY_RQ)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--backbone", "tiny",
                 "--batch-size", "16", "--micro-batch-size", "16"]) == 0
    assert (run / "quantizer" / "quantizer.json").is_file()
    assert main(["export", "--run", str(run), "--out", str(bundle)]) == 0
    loaded = Bundle.load(bundle)
    assert loaded.quantizer is not None
    assert loaded.space.sizes == (4, 4, 16)
    _, texts, _ = read_item_texts(data)
    codes = loaded.quantizer.assign_codes(texts)
    np.testing.assert_array_equal(codes, np.asarray([r.sid[:-1] for r in loaded.catalog.rows]))
    assert all(t in loaded.tokenizer.get_vocab() for t in SidSpace(sizes=(4, 4, 16)).tokens())
    assert loaded.catalog.rows[0].text == load_items(data / "items.jsonl")[0].text


def test_spread_is_a_stable_uniqueness_rule() -> None:
    """Known answers: the offset is a stable hash of the prefix (offline and online must agree across
    releases), items sharing a prefix take the free codes from it on, and codes cover the level."""
    from model.semantic_ids.dedup import dedup_append_level, dedup_spread_level
    from model.semantic_ids.space import free_code, spread_start

    assert spread_start((1, 2), 256) == 174
    assert spread_start((1, 2), 8) == 6
    assert free_code((1, 2), set(), 8, "spread") == 6
    assert free_code((1, 2), {6, 7}, 8, "spread") == 0
    assert free_code((1, 2), {6, 7}, 8, "lowest") == 0
    assert free_code((1, 2), set(range(8)), 8, "spread") is None
    assert dedup_spread_level(np.array([[1, 2], [1, 2], [1, 2], [3, 4]]), 8).tolist() == [
        [1, 2, 6], [1, 2, 7], [1, 2, 0], [3, 4, spread_start((3, 4), 8)]]
    with pytest.raises(SimGRError, match="more than 2 items share the codes"):
        dedup_spread_level(np.array([[1, 2]] * 3), 2)
    singles = np.random.default_rng(0).permutation(np.arange(4000)).reshape(-1, 2)[:1000]  # 1000 distinct tuples
    assert len(np.unique(dedup_spread_level(singles, 256)[:, -1])) > 200
    assert np.unique(dedup_append_level(singles)[:, -1]).tolist() == [0]  # the counter: every item on code 0


def test_spread_ids_carry_their_rule_into_the_bundle_and_its_additions(quant_data_dir: Path, tmp_path: Path) -> None:
    """semantic-ids --uniqueness spread -> sid_space.json -> bundle manifest -> an item added while serving
    gets its uniqueness code by the same rule."""
    import dataclasses
    import shutil

    from catalog_helpers import TINY_RQ

    from index.catalog import Upsert
    from model.export.bundle import Bundle
    from model.export.living import unique_code
    from model.export.synthetic import make_random_bundle
    from model.semantic_ids.assign import build_semantic_ids
    from model.semantic_ids.dedup import dedup_spread_level
    from model.semantic_ids.space import free_code

    data = tmp_path / "data"
    shutil.copytree(quant_data_dir, data)
    build_semantic_ids(data_dir=data, cfg=dataclasses.replace(TINY_RQ, uniqueness="spread"))
    assert json.loads((data / "sid_space.json").read_text())["uniqueness"] == "spread"
    item_ids = [it.item_id for it in load_items(data / "items.jsonl")]
    codes = tokens_to_codes(load_semantic_ids(data, item_ids))
    np.testing.assert_array_equal(codes, dedup_spread_level(codes[:, :-1], TINY_RQ.unique_codes))
    b = Bundle.load(make_random_bundle(tmp_path / "bundle", preset="tiny", data_dir=data))
    assert b.space.uniqueness == "spread"
    prefix = tuple(int(c) for c in codes[0, :-1])
    used = {int(c[-1]) for c in codes if tuple(int(x) for x in c[:-1]) == prefix}
    _, _, outcomes = b.catalog.apply([Upsert("new", title="New", codes=prefix, full=False)],
                                     unique=unique_code(b.space), embed=b.embedder())
    assert tuple(outcomes[0].sid) == (*prefix, free_code(prefix, used, b.space.sizes[-1], "spread"))


def test_given_ids_with_spread_carry_the_rule_into_additions(quant_data_dir: Path, tmp_path: Path) -> None:
    """semantic-ids --given F --uniqueness spread -> a fifth level -> bundle: an item added while serving with
    its four given codes gets its fifth code by the spread rule."""
    import shutil

    from index.catalog import Upsert
    from model.config import RQVAEConfig
    from model.export.bundle import Bundle
    from model.export.living import unique_code
    from model.export.synthetic import make_random_bundle
    from model.semantic_ids.assign import build_semantic_ids
    from model.semantic_ids.space import free_code

    data = tmp_path / "data"
    shutil.copytree(quant_data_dir, data)
    item_ids = [it.item_id for it in load_items(data / "items.jsonl")]
    rng = np.random.default_rng(0)
    given = {i: [f"<{lvl}_{int(c)}>" for lvl, c in zip("abcd", rng.integers(0, 4, size=4), strict=True)]
             for i in item_ids}
    (tmp_path / "X.index.json").write_text(json.dumps(given))
    build_semantic_ids(data_dir=data, given=tmp_path / "X.index.json",
                       cfg=RQVAEConfig(uniqueness="spread", unique_codes=64))
    codes = tokens_to_codes(load_semantic_ids(data, item_ids))
    assert codes.shape[1] == 5
    b = Bundle.load(make_random_bundle(tmp_path / "bundle", preset="tiny", data_dir=data))
    assert (b.space.uniqueness, b.space.sizes[-1]) == ("spread", 64)
    prefix = tuple(int(c) for c in codes[0, :-1])
    used = {int(c[-1]) for c in codes if tuple(int(x) for x in c[:-1]) == prefix}
    _, _, outcomes = b.catalog.apply([Upsert("new", title="New", codes=prefix, full=False)],
                                     unique=unique_code(b.space), embed=b.embedder())
    assert tuple(outcomes[0].sid) == (*prefix, free_code(prefix, used, 64, "spread"))
