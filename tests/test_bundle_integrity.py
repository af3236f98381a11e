"""Immutable, verified bundles: staged + checked + renamed export, per-file sha256 checked at load."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.errors import SimGRError
from model.export import integrity
from model.export.bundle import Bundle
from model.export.manifest import BundleManifest
from model.export.synthetic import make_random_bundle

ROOT = Path(__file__).resolve().parents[1]


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_manifest_lists_every_file_with_its_digest(tiny_bundle_dir: Path) -> None:
    manifest = BundleManifest.read(tiny_bundle_dir / "manifest.json")
    on_disk = sorted(p.relative_to(tiny_bundle_dir).as_posix() for p in tiny_bundle_dir.rglob("*") if p.is_file())
    assert list(manifest.files) == [p for p in on_disk if p != "manifest.json"]
    assert "index.faiss" in manifest.files
    for rel, digest in manifest.files.items():
        assert digest.sha256 == integrity.sha256_file(tiny_bundle_dir / rel)
        assert digest.size == (tiny_bundle_dir / rel).stat().st_size


@pytest.mark.parametrize("name", ["items.jsonl", "index.faiss", "model/simgr.json", "popularity.json"])
def test_one_flipped_byte_is_refused(tiny_bundle_dir: Path, tmp_path: Path, name: str) -> None:
    root = _copy(tiny_bundle_dir, tmp_path / "b")
    _flip_byte(root / name)
    with pytest.raises(SimGRError, match=f"{name}: sha256 differs from the manifest"):
        Bundle.load(root)


def test_truncated_and_missing_files_are_refused(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root = _copy(tiny_bundle_dir, tmp_path / "b")
    (weights,) = (root / "model" / "backbone").glob("*.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 10)
    with pytest.raises(SimGRError, match="truncated or replaced"):
        Bundle.load(root)
    weights.unlink()
    with pytest.raises(SimGRError, match="missing from the bundle"):
        Bundle.load(root)


def test_large_files_are_hashed_only_in_full_mode(tiny_bundle_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy(tiny_bundle_dir, tmp_path / "b")
    (weights,) = (root / "model" / "backbone").glob("*.safetensors")
    _flip_byte(weights, offset=weights.stat().st_size - 3)  # inside a tensor: loads, but is not what was exported
    monkeypatch.setattr(integrity, "QUICK_HASH_LIMIT", 0)  # every file counts as large
    manifest = BundleManifest.read(root / "manifest.json")
    assert integrity.verify_bundle(root, manifest, "quick") == 1  # only index.faiss was hashed
    with pytest.raises(SimGRError, match=r"model\.safetensors: sha256 differs"):
        Bundle.load(root, verify="full")
    assert integrity.verify_bundle(root, manifest, "off") == 0


def test_bundle_without_digests_needs_verify_off(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root = _copy(tiny_bundle_dir, tmp_path / "b")
    manifest = BundleManifest.read(root / "manifest.json")
    manifest.model_copy(update={"files": {}}).write(root / "manifest.json")
    with pytest.raises(SimGRError, match="--verify off"):
        Bundle.load(root)
    assert Bundle.load(root, verify="off").n_items == 200


def test_export_refuses_a_non_empty_target_unless_forced(tmp_path: Path) -> None:
    out = make_random_bundle(tmp_path / "b", n_items=40, seed=0)
    v0 = BundleManifest.read(out / "manifest.json").model_version
    with pytest.raises(SimGRError, match="not empty; pass --force"):
        make_random_bundle(out, n_items=40, seed=1)
    assert BundleManifest.read(out / "manifest.json").model_version == v0
    make_random_bundle(out, n_items=40, seed=1, force=True)
    assert BundleManifest.read(out / "manifest.json").model_version != v0
    assert Bundle.load(out, verify="full").n_items == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging directory left behind


def test_a_failed_check_never_reaches_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = make_random_bundle(tmp_path / "b", n_items=40, seed=0)
    before = (out / "manifest.json").read_bytes()

    def broken_check(root: Path, histories: object) -> int:
        raise SimGRError(f"{root}: FAISS top-10 differs from exact top-10")  # the fault under test

    import model.export.synthetic as synthetic

    monkeypatch.setattr(synthetic, "check_bundle", broken_check)
    with pytest.raises(SimGRError, match="differs"):
        make_random_bundle(out, n_items=40, seed=1, force=True)
    assert (out / "manifest.json").read_bytes() == before
    assert Bundle.load(out, verify="full").n_items == 40
    with pytest.raises(SimGRError, match="differs"):
        make_random_bundle(tmp_path / "fresh", n_items=40, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_kill_during_export_leaves_the_old_bundle_intact(tmp_path: Path) -> None:
    out = make_random_bundle(tmp_path / "b", n_items=40, seed=0)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIMGR_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "model.export.synthetic", "--out", str(out), "--items", "40", "--seed", "1", "--force"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not any(tmp_path.glob(".b.tmp-*/model/*")):  # the new bundle is being written
            assert proc.poll() is None, "the export finished before it could be killed"
            assert time.monotonic() < deadline, "no staging directory appeared"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert Bundle.load(out, verify="full").n_items == 40


def test_seal_lists_files_written_after_the_manifest(tiny_bundle_dir: Path, tmp_path: Path) -> None:
    root = _copy(tiny_bundle_dir, tmp_path / "b")
    before = BundleManifest.read(root / "manifest.json")
    (root / "index.extra.bin").write_bytes(b"side file of another index type")
    (root / "popularity.json").unlink()
    sealed = integrity.seal_bundle(root)
    assert "index.extra.bin" in sealed.files
    assert "popularity.json" not in sealed.files
    assert sealed.model_version == before.model_version
    assert BundleManifest.read(root / "manifest.json") == sealed
    integrity.verify_bundle(root, sealed, "full")
    _flip_byte(root / "index.extra.bin")
    with pytest.raises(SimGRError, match=r"index\.extra\.bin: sha256 differs"):
        integrity.verify_bundle(root, sealed, "quick")  # index side files are hashed in quick mode
