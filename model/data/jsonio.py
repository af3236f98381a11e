"""Reading the project's own JSON / JSON-lines files with one-line, file-naming errors (SimGRError).

``missing`` is what the error says after the path when the file does not exist, e.g. how to create it.
``read_validated`` is the reader of every file with a schema: parse, then validate with pydantic
(``model.config.from_dict``), so an error names the file, the field and the problem. ``write_atomic`` is
the writer of the files other processes read while they are rewritten (run results, analysis entries).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from model.config import from_dict, from_json
from model.errors import SimGRError

T = TypeVar("T")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it over, so a reader sees the old file or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    """The file's sha256 as hex, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path, *, missing: str = "missing") -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimGRError(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SimGRError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise SimGRError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def read_validated(path: Path, cls: type[T], *, what: str, missing: str = "missing") -> T:
    """The JSON file at ``path`` as a ``cls`` (a pydantic model or config dataclass)."""
    return from_dict(cls, read_json(path, missing=missing), origin=path, what=what)


def _lines(path: Path, missing: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for every non-blank line; bytes, so bad UTF-8 is a validation error."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise SimGRError(f"{path}: {missing}") from None
    except OSError as exc:
        raise SimGRError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                yield lineno, line


def iter_validated_jsonl(path: Path, cls: type[T], *, what: str, missing: str = "missing") -> Iterator[tuple[int, T]]:
    """(line number, row as a ``cls``) for every non-blank line, parsed and validated in one pass."""
    for lineno, line in _lines(path, missing):
        yield lineno, from_json(cls, line, origin=f"{path}: line {lineno}", what=what)


def iter_indexed_jsonl(path: Path, cls: type[T], *, what: str, missing: str = "missing") -> Iterator[T]:
    """Rows of a JSON-lines table whose ``idx`` field must count 0, 1, 2, ... in file order, one at a time."""
    for n, (lineno, row) in enumerate(iter_validated_jsonl(path, cls, what=what, missing=missing)):
        if getattr(row, "idx", None) != n:
            raise SimGRError(f"{path}: line {lineno}: expected idx {n}, got {getattr(row, 'idx', None)}")
        yield row


def read_indexed_jsonl(path: Path, cls: type[T], *, what: str, missing: str = "missing") -> list[T]:
    """Every row of a JSON-lines table whose ``idx`` field must count 0, 1, 2, ... in file order."""
    return list(iter_indexed_jsonl(path, cls, what=what, missing=missing))
