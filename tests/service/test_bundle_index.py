"""Export is the index's only writer: serving refuses a bundle without index.faiss, at start-up and on
reload, and builds an index in-process only for an encoder that has no bundle directory at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from svc_helpers import make_settings, serve

from model.errors import SimGRError
from model.export.integrity import seal_bundle
from service.app import create_app
from service.dummy import DummyEncoder
from service.model_state import ModelState

pytestmark = pytest.mark.anyio


def _without_index(bundle_dir: Path, root: Path) -> Path:
    shutil.copytree(bundle_dir, root)
    (root / "index.faiss").unlink()
    seal_bundle(root)  # exported without an index (the manifest agrees), not damaged afterwards
    return root


async def test_start_up_refuses_a_bundle_without_its_index(bundle_dir: Path, tmp_path: Path) -> None:
    root = _without_index(bundle_dir, tmp_path / "noindex")
    app = create_app(make_settings(artifacts=root, warmup=False))
    with pytest.raises(SimGRError, match=r"noindex/index.faiss: missing from the bundle; run `simgr export`"):
        async with serve(app):
            pass
    assert "index.faiss: missing from the bundle" in app.state.startup_error
    assert not (root / "index.faiss").exists()  # nothing was written into the bundle


async def test_reload_refuses_a_bundle_without_its_index(bundle_dir: Path, tmp_path: Path) -> None:
    root = _without_index(bundle_dir, tmp_path / "noindex")
    served = json.loads((bundle_dir / "manifest.json").read_text())["model_version"]
    admin = "index-admin-key-0123"
    settings = make_settings(artifacts=bundle_dir, warmup=False, admin_keys=admin)
    async with serve(create_app(settings), headers={"Authorization": f"Bearer {admin}"}) as c:
        r = await c.post("/admin/reload", json={"artifacts": str(root)})
        assert r.status_code == 422, r.text
        assert r.json()["error_type"] == "bad_bundle"
        assert "index.faiss: missing from the bundle" in r.json()["error"]
        assert (await c.get("/info")).json()["model_version"] == served
    assert not (root / "index.faiss").exists()


def test_an_encoder_without_a_bundle_directory_gets_an_in_process_index() -> None:
    enc = DummyEncoder.random(n_items=50, dim=8)
    state = ModelState.build(enc, artifacts=None)
    assert (state.index.ntotal, state.index.dim) == (50, 8)
    q = enc.encode_users([[3]])
    _, ids = state.index.search(q, 1)
    assert ids[0, 0] == 3  # the index holds the encoder's own vectors


def test_model_state_refuses_a_directory_without_an_index(tmp_path: Path) -> None:
    with pytest.raises(SimGRError, match=r"index.faiss: missing from the bundle"):
        ModelState.build(DummyEncoder.random(n_items=10, dim=4), artifacts=tmp_path)
