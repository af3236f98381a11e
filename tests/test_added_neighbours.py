"""Added items embedded by their nearest trained items in the quantizer's space (model/export/added.py):
known answers against the vectors and codebooks of a real tiny bundle, order independence, the fallback
without a quantizer, and refused settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from index.catalog import Upsert
from model.errors import SimGRError
from model.export.added import AddedEmbedding
from model.export.bundle import Bundle
from model.export.living import unique_code
from service.cli.main import main


def add(bundle: Bundle, changes: list[Upsert], spec: AddedEmbedding) -> Bundle:
    catalog, _, outcomes = bundle.catalog.apply(changes, unique=unique_code(bundle.space), embed=bundle.embedder(spec))
    assert {o.status for o in outcomes} == {"created"}
    return bundle.with_catalog(catalog)


def vector(bundle: Bundle, item_id: str) -> np.ndarray:
    return np.asarray(bundle.embeddings[bundle.item_lookup[item_id]], dtype=np.float64)


def semantic_codes(bundle: Bundle) -> np.ndarray:
    """(N, L-1) the trained items' RQ-VAE codes."""
    return np.array([bundle.catalog.row(i).sid[:-1] for i in range(len(bundle.catalog))])


def hand_latents(bundle: Bundle, codes: np.ndarray) -> np.ndarray:
    """(N, C) unit sums of each level's codebook row, computed here from the RQ-VAE's parameters."""
    assert bundle.quantizer is not None
    books = [cb.detach().double().numpy() for cb in bundle.quantizer.rqvae.codebooks]
    z = sum(books[lvl][codes[:, lvl]] for lvl in range(codes.shape[1]))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def free_sid(bundle: Bundle, prefix: tuple[int, ...]) -> tuple[int, ...]:
    used = {bundle.catalog.row(i).sid[-1] for i in range(len(bundle.catalog)) if bundle.catalog.row(i).sid[:-1] == prefix}
    return (*prefix, min(set(range(bundle.space.sizes[-1])) - used))


@pytest.fixture(scope="module")
def qbundle(quant_bundle_dir: Path) -> Bundle:
    return Bundle.load(quant_bundle_dir)


def test_one_neighbour_in_an_empty_cell_copies_the_nearest_trained_item(qbundle: Bundle) -> None:
    codes = semantic_codes(qbundle)
    prefixes, counts = np.unique(codes, axis=0, return_counts=True)
    alone = tuple(int(c) for c in prefixes[counts == 1][0])  # a cell holding exactly one trained item
    owner = qbundle.item_ids[int(np.flatnonzero((codes == alone).all(1))[0])]
    b = add(qbundle, [Upsert("new", title="New", codes=free_sid(qbundle, alone), full=True)],
            AddedEmbedding(neighbours=1))
    np.testing.assert_allclose(vector(b, "new"), vector(b, owner), rtol=1e-5, atol=1e-6)
    b2 = add(qbundle, [Upsert("new", title="New", codes=free_sid(qbundle, alone), full=True)],
             AddedEmbedding(neighbours=1, gain=2.0))
    np.testing.assert_allclose(vector(b2, "new"), 2.0 * vector(b, owner), rtol=1e-5, atol=1e-6)


def test_k_neighbours_are_a_softmax_weighted_mean_of_trained_vectors(qbundle: Bundle) -> None:
    codes = semantic_codes(qbundle)
    sid = free_sid(qbundle, tuple(int(c) for c in codes[3]))
    sims = hand_latents(qbundle, codes) @ hand_latents(qbundle, np.array([sid[:-1]]))[0]  # (N,)
    levels = np.unique(sims.round(6))[::-1]  # distinct similarities, nearest cell first
    k, temperature = int((sims.round(6) >= levels[1]).sum()), 0.2  # the two nearest cells, whole: no tie at k
    near = np.flatnonzero(sims.round(6) >= levels[1])
    assert len(near) > len(np.flatnonzero(sims.round(6) >= levels[0]))  # weights differ across the two cells
    b = add(qbundle, [Upsert("new", title="New", codes=sid, full=True)],
            AddedEmbedding(neighbours=k, temperature=temperature))
    w = np.exp((sims[near] - sims[near].max()) / temperature)
    mixed = (w[:, None] * np.asarray(qbundle.embeddings)[near]).sum(0) / w.sum()
    np.testing.assert_allclose(vector(b, "new"), mixed / np.linalg.norm(mixed), rtol=1e-4, atol=1e-5)
    code_mean = add(qbundle, [Upsert("new", title="New", codes=sid, full=True)], AddedEmbedding())
    assert not np.allclose(vector(code_mean, "new"), vector(b, "new"), atol=1e-3)  # the setting changed it


def test_vectors_do_not_depend_on_the_order_items_arrive_in(qbundle: Bundle) -> None:
    codes = semantic_codes(qbundle)
    a = Upsert("a", title="A", codes=free_sid(qbundle, tuple(int(c) for c in codes[0])), full=True)
    c = Upsert("c", title="C", codes=free_sid(qbundle, tuple(int(c) for c in codes[1])), full=True)
    spec = AddedEmbedding(neighbours=3)
    one, two = add(qbundle, [a, c], spec), add(add(qbundle, [c], spec), [a], spec)
    for item_id in ("a", "c"):
        np.testing.assert_array_equal(vector(one, item_id), vector(two, item_id))


def test_without_a_quantizer_added_items_keep_their_code_rows(tiny_bundle_dir: Path) -> None:
    b = Bundle.load(tiny_bundle_dir)
    assert b.quantizer is None
    sid = (*b.catalog.row(0).sid[:-1], b.space.sizes[-1] - 1)
    with_k = add(b, [Upsert("new", title="New", codes=sid, full=True)], AddedEmbedding(neighbours=5))
    plain = add(b, [Upsert("new", title="New", codes=sid, full=True)], AddedEmbedding())
    np.testing.assert_array_equal(vector(with_k, "new"), vector(plain, "new"))


@pytest.mark.parametrize(("kwargs", "message"), [({"neighbours": -1}, "neighbours must be 0"),
                                             ({"temperature": 0.0}, "temperature must be positive"),
                                             ({"gain": -1.0}, "gain must be positive")])
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(SimGRError, match=message):
        AddedEmbedding(**kwargs)  # type: ignore[arg-type]


def test_catalog_apply_with_neighbours_and_a_bad_k(quant_bundle_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    changes = tmp_path / "c.jsonl"
    changes.write_text('{"op": "upsert", "item": {"item_id": "c1", "title": "Tuner clip"}}\n')
    out = tmp_path / "b"
    assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                 "--out", str(out), "--added-item-neighbours", "3"]) == 0
    b = Bundle.load(out)
    assert b.catalog.row(b.item_lookup["c1"]).origin == "added"
    np.testing.assert_allclose(np.linalg.norm(vector(b, "c1")), 1.0, rtol=1e-5)
    capsys.readouterr()
    assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                 "--out", str(tmp_path / "bad"), "--added-item-neighbours", "-2"]) == 2
    assert "neighbours must be 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert torch.is_grad_enabled()  # the embedder's inference mode did not leak
