"""The export bundle: save -> load round trip and clear errors for broken bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from index.item_index import ItemIndex
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.export.export import check_bundle


def test_round_trip_is_exact(tiny_bundle_dir: Path) -> None:
    b = Bundle.load(tiny_bundle_dir)
    assert b.n_items == 200
    assert b.item_ids[5] == "item-5"
    assert b.catalog.row(5).title == "Item 5"
    index = ItemIndex.load(tiny_bundle_dir, expect=b.manifest.index, matrix=b.embeddings)
    assert index.ntotal == 200
    # the vectors in the index are exactly item_embeddings.npy
    _, ids = index.search(b.embeddings[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]
    again = Bundle.load(tiny_bundle_dir)
    h = [[1, 2, 3], [7]]
    assert np.array_equal(b.encode_users(h), again.encode_users(h))
    assert check_bundle(tiny_bundle_dir, h) == 2


def test_batched_and_alone_agree(tiny_bundle_dir: Path) -> None:
    b = Bundle.load(tiny_bundle_dir)
    hist = [[1], list(range(30)), [4, 5, 6]]
    together = b.encode_users(hist)
    for i, h in enumerate(hist):
        assert np.allclose(together[i], b.encode_users([h])[0], atol=1e-5)


BROKEN = {  # damage -> what the error names: the file, then the problem
    "manifest": r"manifest\.json: malformed JSON",
    "version": r"manifest\.json: model_version: required field missing",
    "items": r"items\.jsonl: 11 bytes, the manifest says \d+ \(truncated or replaced\)",
    "embeddings": r"item_embeddings\.npy: \d+ bytes, the manifest says \d+ \(truncated or replaced\)",
    "weights": r"model/backbone/model\.safetensors: missing from the bundle \(listed in its manifest\)",
}


@pytest.mark.parametrize(("damage", "message"), BROKEN.items(), ids=list(BROKEN))
def test_broken_bundle_is_a_clear_error(tiny_bundle_dir: Path, tmp_path: Path, damage: str, message: str) -> None:
    root = tmp_path / "b"
    shutil.copytree(tiny_bundle_dir, root)
    if damage == "manifest":
        (root / "manifest.json").write_text("{not json")
    elif damage == "version":
        m = json.loads((root / "manifest.json").read_text())
        del m["model_version"]
        (root / "manifest.json").write_text(json.dumps(m))
    elif damage == "items":
        (root / "items.jsonl").write_text('{"idx": 0}\n')
    elif damage == "embeddings":
        np.save(root / "item_embeddings.npy", np.zeros((3, 32), dtype=np.float32))
    else:
        for f in (root / "model" / "backbone").glob("*.safetensors"):
            f.unlink()
    with pytest.raises(SimGRError, match=message):
        Bundle.load(root)


def test_added_items_are_read_from_their_own_segment_and_encode_like_one_matrix(tiny_bundle_dir: Path) -> None:
    """After an addition the loaded matrix is shared, not copied, and a history holding the new item encodes
    exactly as with the whole (M, D) table."""
    import torch

    from index.catalog import Upsert
    from model.export.living import unique_code
    from model.network.prompt import build_prompt, collate

    b = Bundle.load(tiny_bundle_dir)
    sid = b.catalog.row(3).sid
    catalog, delta, _ = b.catalog.apply([Upsert("new", title="New", codes=sid, full=True)],
                                        unique=unique_code(b.space), embed=b.embedder())
    assert catalog.base_vectors is b.catalog.base_vectors
    assert delta.add_ids.tolist() == [200]
    b2 = b.with_catalog(catalog)
    np.testing.assert_array_equal(catalog.vectors(np.array([200, 3])), catalog.embeddings[[200, 3]])
    hist = [[1, 200, 5], [200]]
    batch = collate([build_prompt(h, b2.vocab) for h in hist], pad_id=b2.vocab.pad_id)
    with torch.inference_mode():
        whole = b2.model.user_embeddings(batch, torch.from_numpy(catalog.embeddings)).numpy()
    np.testing.assert_allclose(b2.encode_users(hist), whole, atol=1e-6)
