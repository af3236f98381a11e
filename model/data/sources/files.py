"""Locating and reading a source's input files, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

from model.errors import SimGRError


def require_input(input_path: Path | None, source: str) -> Path:
    """The ``--input`` path, which must exist."""
    if input_path is None:
        raise SimGRError(f"source '{source}' needs --input PATH")
    path = Path(input_path)
    if not path.exists():
        raise SimGRError(f"{path}: no such file or directory")
    return path


def read_text(path: Path) -> str:
    """A text file as str (UTF-8, falling back to Latin-1); SimGRError when it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SimGRError(f"{path}: file not found") from None
    except OSError as exc:
        raise SimGRError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def find_one(folder: Path, pattern: str, *, what: str) -> Path | None:
    """The single file in ``folder`` matching ``pattern``, None when there is none."""
    matches = sorted(p for p in folder.glob(pattern) if p.is_file())
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise SimGRError(f"{folder}: more than one {what} ({names}); point --input at one of them")
    return matches[0] if matches else None


def require_one(folder: Path, pattern: str, *, what: str) -> Path:
    """Like ``find_one`` but the file must be there."""
    found = find_one(folder, pattern, what=what)
    if found is None:
        raise SimGRError(f"{folder}: no {what} ({pattern}) found")
    return found
