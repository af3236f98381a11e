"""A publish root: immutable bundle versions plus two pointers that servers follow.

    ROOT/versions/<model_version>/   a verified copy (or hard links) of an export bundle, never modified
    ROOT/CURRENT -> versions/<v>     what every replica serves (a relative symlink, replaced atomically)
    ROOT/CANARY  -> versions/<v>     optional second bundle for a share of users (SIMGR_CANARY_PERCENT)
    ROOT/history.jsonl               every pointer move, oldest first; rollback replays it

Writers take an exclusive lock on ROOT/.lock, so two publishers never interleave.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from model.errors import SimGRError
from model.export.atomic import fsync_dir, staged_dir
from model.export.integrity import VerifyMode, verify_bundle
from model.export.manifest import BundleManifest
from model.locks import dir_lock

PointerName = Literal["CURRENT", "CANARY"]
POINTERS: tuple[PointerName, ...] = ("CURRENT", "CANARY")
VERSIONS = "versions"
HISTORY = "history.jsonl"


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pointer: PointerName
    action: Literal["publish", "rollback", "clear"]
    model_version: str | None  # None: the pointer was removed
    at: str  # UTC, ISO-8601


def read_pointer(root: Path, name: PointerName = "CURRENT") -> Path | None:
    """The version directory ``ROOT/<name>`` points at, or None when the pointer is absent."""
    link = root / name
    if not os.path.lexists(link):
        return None
    try:
        target = Path(os.readlink(link))
    except OSError as e:
        raise SimGRError(f"{link}: not a pointer written by `simgr publish` ({e.strerror})") from None
    if len(target.parts) != 2 or target.parts[0] != VERSIONS:
        raise SimGRError(f"{link}: points at {target}, not at {VERSIONS}/<model_version>")
    return root / target


def _set_pointer(root: Path, name: PointerName, version: str | None, action: str) -> None:
    """Replace ``ROOT/<name>`` in one rename (or remove it), then record the move in the history."""
    if version is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / name)
    else:
        tmp = root / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        os.symlink(f"{VERSIONS}/{version}", tmp)
        os.replace(tmp, root / name)
    fsync_dir(root)
    entry = HistoryEntry(pointer=name, action=action, model_version=version,  # type: ignore[arg-type]
                         at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with open(root / HISTORY, "a") as f:
        f.write(entry.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())


def _history(root: Path) -> list[HistoryEntry]:
    path = root / HISTORY
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            out.append(HistoryEntry.model_validate_json(line))
        except ValidationError as e:
            raise SimGRError(f"{path}:{n}: {e.errors()[0]['msg']}") from None
    return out


def _current_stack(root: Path) -> list[str]:
    """CURRENT's versions as a stack: a publish pushes, a rollback pops."""
    stack: list[str] = []
    for e in _history(root):
        if e.pointer != "CURRENT" or e.model_version is None:
            continue
        if e.action == "rollback":
            stack.pop()
        elif not stack or stack[-1] != e.model_version:
            stack.append(e.model_version)
    return stack


def _version_of(path: Path | None) -> str | None:
    return path.name if path is not None else None


def _copy_version(bundle: Path, dest: Path, *, link: bool) -> None:
    with staged_dir(dest) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True, copy_function=os.link if link else shutil.copy2)
        verify_bundle(tmp, BundleManifest.read(tmp / "manifest.json"), "full")


def publish(bundle: Path, root: Path, *, pointer: PointerName = "CURRENT", link: bool = False,
            verify: VerifyMode = "full") -> dict[str, str | None]:
    """Copy (or hard-link) a verified bundle to ROOT/versions/<model_version>/ and move the pointer to it."""
    manifest = BundleManifest.read(bundle / "manifest.json")
    verify_bundle(bundle, manifest, verify)
    version = manifest.model_version
    with dir_lock(root):
        dest = root / VERSIONS / version
        if not dest.is_dir():
            _copy_version(bundle, dest, link=link)
        previous = _version_of(read_pointer(root, pointer))
        _set_pointer(root, pointer, version, "publish")
    return {"root": str(root), "pointer": pointer, "model_version": version, "previous_version": previous,
            "path": str(dest)}


def rollback(root: Path, *, pointer: PointerName = "CURRENT") -> dict[str, str | None]:
    """CURRENT back to the version it pointed at before the last publish; CANARY removed (canary ended)."""
    with dir_lock(root):
        previous = _version_of(read_pointer(root, pointer))
        if pointer == "CANARY":
            if previous is None:
                raise SimGRError(f"{root}: no CANARY pointer to remove")
            _set_pointer(root, pointer, None, "clear")
            return {"root": str(root), "pointer": pointer, "model_version": None, "previous_version": previous}
        stack = _current_stack(root)
        if len(stack) < 2:
            raise SimGRError(f"{root}: nothing to roll back to (CURRENT has no earlier published version)")
        target = stack[-2]
        if not (root / VERSIONS / target).is_dir():
            raise SimGRError(f"{root / VERSIONS / target}: the version to roll back to is gone")
        _set_pointer(root, pointer, target, "rollback")
    return {"root": str(root), "pointer": pointer, "model_version": target, "previous_version": previous}
