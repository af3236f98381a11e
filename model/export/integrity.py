"""Bundle integrity: the sha256 + size of every file, recorded in the manifest at export and checked at load.

Verification modes (``simgr serve --verify``):

- ``quick`` (default): every file's size, and the sha256 of the small files plus the item index files.
  The weights are the only large files; a size check catches their truncation, the full mode the rest.
- ``full``: the sha256 of every file.
- ``off``: nothing (bundles exported before digests existed).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from model.data.jsonio import sha256_file
from model.errors import SimGRError
from model.export.manifest import BundleManifest, FileDigest

log = logging.getLogger(__name__)

VerifyMode = Literal["quick", "full", "off"]
MANIFEST = "manifest.json"
QUICK_HASH_LIMIT = 8 << 20  # bytes: files up to this size are hashed in quick mode


def bundle_files(root: Path) -> list[str]:
    """Every regular file under ``root`` except the manifest, as sorted POSIX relative paths."""
    rels = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(r for r in rels if r != MANIFEST)


def digest_files(root: Path) -> dict[str, FileDigest]:
    """The manifest's ``files`` table for the bundle at ``root``."""
    return {rel: FileDigest(sha256=sha256_file(root / rel), size=(root / rel).stat().st_size)
            for rel in bundle_files(root)}


def _is_index_file(rel: str) -> bool:
    return "/" not in rel and rel.startswith("index")  # index.faiss and any index side files


def verify_bundle(root: Path, manifest: BundleManifest, mode: VerifyMode = "quick") -> int:
    """Raise SimGRError naming the first missing, truncated or altered file; returns files hashed."""
    if mode == "off":
        return 0
    if not manifest.files:
        raise SimGRError(f"{root}: the manifest records no file digests (exported by an older simgr); "
                         "re-export it, or serve it with --verify off")
    hashed = 0
    for rel, want in manifest.files.items():
        path = root / rel
        if not path.is_file():
            raise SimGRError(f"{path}: missing from the bundle (listed in its manifest)")
        size = path.stat().st_size
        if size != want.size:
            raise SimGRError(f"{path}: {size} bytes, the manifest says {want.size} (truncated or replaced)")
        if mode == "full" or size <= QUICK_HASH_LIMIT or _is_index_file(rel):
            if sha256_file(path) != want.sha256:
                raise SimGRError(f"{path}: sha256 differs from the manifest (corrupted or modified after export)")
            hashed += 1
    extra = set(bundle_files(root)) - set(manifest.files)
    if extra:
        log.warning("%s: files not in the manifest are ignored: %s", root, sorted(extra)[:5])
    return hashed


def seal_bundle(root: Path, *, rehash: bool = False) -> BundleManifest:
    """Make the manifest list exactly the files now in ``root``: digests for files written after it
    (e.g. extra index files), none for files removed since. Files already listed are re-hashed only
    with ``rehash`` (a bundle deliberately rewritten in place, as the export-check tests do)."""
    path = root / MANIFEST
    manifest = BundleManifest.read(path)
    present = bundle_files(root)
    if list(manifest.files) == present and not rehash:
        return manifest
    old = {} if rehash else manifest.files
    files = {rel: old.get(rel) or FileDigest(sha256=sha256_file(root / rel), size=(root / rel).stat().st_size)
             for rel in present}
    sealed = manifest.model_copy(update={"files": files})
    sealed.write(path)
    return sealed
