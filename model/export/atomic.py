"""Write a directory somewhere no reader looks, then move it into place in one step.

``staged_dir(out)`` yields a fresh temporary directory beside ``out`` (same filesystem, so the final
move is a rename). On success its files are fsynced and it replaces ``out``: with Linux's
``renameat2(RENAME_EXCHANGE)`` the swap is atomic; elsewhere ``out`` is moved aside first, so a reader
can find it briefly missing but never half-written. On any error, or a kill, ``out`` is untouched;
a killed writer leaves its ``.NAME.tmp-*`` directory behind, which nothing loads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from model.errors import SimGRError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` (and ``root`` itself) to disk."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the call is unavailable."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory ``src`` to ``dst``, replacing whatever ``dst`` was; the old content is deleted."""
    if not os.path.lexists(dst):
        os.rename(src, dst)
    elif _exchange(src, dst):
        shutil.rmtree(src)  # now holds the old content
    else:
        aside = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.rename(dst, aside / dst.name)
        os.rename(src, dst)
        shutil.rmtree(aside)
    fsync_dir(dst.parent)


def check_target(out: Path, *, force: bool) -> None:
    """Refuse a non-empty ``out`` unless ``force``; refuse a file where a directory must go."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SimGRError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SimGRError(f"{out}: exists and is not empty; pass --force to replace it")


@contextlib.contextmanager
def staged_dir(out: Path, *, force: bool = False) -> Iterator[Path]:
    """A temporary directory that becomes ``out`` when the ``with`` block ends without an error."""
    out = Path(out)
    check_target(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the bundle from a server running as another user
    try:
        yield tmp
        fsync_tree(tmp)
        check_target(out, force=force)  # another writer may have filled it meanwhile
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
