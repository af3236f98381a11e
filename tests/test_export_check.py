"""check_bundle: the export self-check passes on a consistent bundle and fails on an index that does not
hold the bundle's item vectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from index.item_index import ItemIndex
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.export.export import check_bundle
from model.export.integrity import seal_bundle

HISTORIES = [[1, 2, 3], [7], [10, 11], list(range(20, 40))]


def _bundle_copy(tiny_bundle_dir: Path, root: Path) -> tuple[Path, np.ndarray]:
    shutil.copytree(tiny_bundle_dir, root)
    return root, np.load(root / "item_embeddings.npy")


def test_consistent_bundle_passes(tiny_bundle_dir: Path) -> None:
    assert check_bundle(tiny_bundle_dir, HISTORIES) == len(HISTORIES)


def test_index_over_other_vectors_fails(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root, emb = _bundle_copy(tiny_bundle_dir, tmp_path / "b")
    shuffled = emb[np.random.default_rng(0).permutation(len(emb))]  # same shape, rows under the wrong ids
    ItemIndex.build(shuffled).save(root / "index.faiss")
    seal_bundle(root, rehash=True)  # an exporter bug, not damage after export: the digests agree
    with pytest.raises(SimGRError, match=r"b: FAISS top-10 differs from exact top-10 for check user 0"):
        check_bundle(root, HISTORIES)


def test_index_of_another_size_fails(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root, emb = _bundle_copy(tiny_bundle_dir, tmp_path / "b")
    ItemIndex.build(emb[:-1]).save(root / "index.faiss")
    seal_bundle(root, rehash=True)
    n, d = emb.shape
    with pytest.raises(SimGRError, match=rf"index holds {n - 1} x {d} vectors, the bundle {n} x {d}"):
        check_bundle(root, HISTORIES)


def test_near_ties_at_the_kth_score_may_swap_but_nothing_else(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    """The worst item is made a near twin of the 10th: just above it in the index, just below it in
    item_embeddings.npy, so FAISS and the exact top-10 disagree on the 10th place by ~1e-6 only."""
    root, emb = _bundle_copy(tiny_bundle_dir, tmp_path / "b")
    q = Bundle.load(tiny_bundle_dir).encode_users(HISTORIES[:1])[0]  # (D,)
    order = np.argsort(-(emb @ q))
    tenth, twin = int(order[9]), int(order[-1])
    assert twin not in HISTORIES[0]  # the user's embedding does not change with the twin's row
    indexed, exact = emb.copy(), emb.copy()
    indexed[twin], exact[twin] = emb[tenth] * (1 + 1e-6), emb[tenth] * (1 - 1e-6)
    ItemIndex.build(indexed).save(root / "index.faiss")
    np.save(root / "item_embeddings.npy", exact)
    seal_bundle(root, rehash=True)
    _, faiss_ids = ItemIndex.load(root / "index.faiss").search(q[None, :], 10)
    assert twin in faiss_ids[0].tolist()
    assert tenth not in faiss_ids[0].tolist()  # a real disagreement on the 10th place
    assert check_bundle(root, HISTORIES[:1]) == 1
    with pytest.raises(SimGRError, match=rf"for check user 0 \(items \[{twin}\]\)"):  # 1e-6 off the 10th
        check_bundle(root, HISTORIES[:1], atol=1e-9)
