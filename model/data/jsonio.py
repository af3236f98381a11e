"""Reading the project's own JSON / JSON-lines files with one-line, file-naming errors (SimGRError).

``missing`` is what the error says after the path when the file does not exist, e.g. how to create it.
``read_validated`` is the reader of every file with a schema: parse, then validate with pydantic
(``model.config.from_dict``), so an error names the file, the field and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from model.config import from_dict
from model.errors import SimGRError

T = TypeVar("T")


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


def iter_jsonl(path: Path, *, missing: str = "missing") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; each line must be a JSON object."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise SimGRError(f"{path}: {missing}") from None
    except OSError as exc:
        raise SimGRError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SimGRError(f"{path}: malformed JSON on line {lineno}: {exc.msg}") from None
            if not isinstance(row, dict):
                raise SimGRError(f"{path}: line {lineno} is not a JSON object")
            yield lineno, row
