"""check_bundle: the export self-check passes on a consistent bundle and fails on an index that does not
describe the bundle's item vectors (here: a sid-exact index whose codes are not the items')."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from index import IndexChoice, exact_topk
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.export.export import check_bundle, disagreements
from model.export.indexing import install_index
from model.export.integrity import seal_bundle

HISTORIES = [[1, 2, 3], [7], [10, 11], list(range(20, 40))]


def _sid_bundle(tiny_bundle_dir: Path, root: Path) -> tuple[Path, np.lib.npyio.NpzFile]:
    """A copy of the bundle with a sid-exact index (its codes file is what the tests tamper with)."""
    shutil.copytree(tiny_bundle_dir, root)
    bundle = Bundle.load(root)
    install_index(root, bundle, IndexChoice(kind="sid-exact"), bundle.encode_users(HISTORIES))
    seal_bundle(root, rehash=True)
    return root, np.load(root / "index_sid_codes.npz")


def _rewrite_codes(root: Path, z: np.lib.npyio.NpzFile, codes: np.ndarray) -> None:
    np.savez(root / "index_sid_codes.npz", **{**{k: z[k] for k in z.files}, "codes": codes})
    seal_bundle(root, rehash=True)  # an exporter bug, not damage after export: the digests agree


def test_consistent_bundle_passes(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    assert check_bundle(tiny_bundle_dir, HISTORIES) == len(HISTORIES)
    root, _ = _sid_bundle(tiny_bundle_dir, tmp_path / "b")
    assert check_bundle(root, HISTORIES) == len(HISTORIES)


def test_index_over_other_vectors_fails(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root, z = _sid_bundle(tiny_bundle_dir, tmp_path / "b")
    shuffled = z["codes"][np.random.default_rng(0).permutation(len(z["codes"]))]  # codes under the wrong rows
    _rewrite_codes(root, z, shuffled)
    with pytest.raises(SimGRError, match=r"b: index top-10 differs from exact top-10 for check user 0"):
        check_bundle(root, HISTORIES)


def test_index_of_another_size_fails(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root, z = _sid_bundle(tiny_bundle_dir, tmp_path / "b")
    _rewrite_codes(root, z, z["codes"][:-1])
    n, levels = z["codes"].shape
    with pytest.raises(SimGRError, match=rf"codes of shape \({n - 1}, {levels}\), expected \({n}, {levels}\)"):
        check_bundle(root, HISTORIES)


def test_near_ties_at_the_kth_score_may_swap_but_nothing_else(tiny_bundle_dir: Path) -> None:
    """The worst item is made a near twin of the 10th: an index that ranks the twin 10th disagrees with the
    exact top-10 by a relative 1e-5 only, which a tolerance above that gap accepts; a tolerance below it
    (still far above float32 rounding), or any other item, is not."""
    emb = np.load(tiny_bundle_dir / "item_embeddings.npy")
    q = Bundle.load(tiny_bundle_dir).encode_users(HISTORIES[:1])[0]  # (D,)
    order = np.argsort(-(emb @ q))
    tenth, twin = int(order[9]), int(order[-1])
    emb[twin] = emb[tenth] * (1 - 1e-5)
    exact_s, exact_i = exact_topk(q[None, :], emb, 10)
    assert tenth in exact_i[0].tolist()
    found = exact_i[0].copy()
    found[found == tenth] = twin  # an index that put the twin 10th
    kth = float(exact_s[0, -1])
    gap = abs(kth) * 1e-5  # the twin's score is this far below the 10th's
    assert disagreements(found, exact_i[0], kth, emb, q, atol=2 * gap) == []
    assert disagreements(found, exact_i[0], kth, emb, q, atol=gap / 4) == [twin]
    found[0] = int(order[50])  # a clearly worse item in first place
    assert int(order[50]) in disagreements(found, exact_i[0], kth, emb, q, atol=2 * gap)
