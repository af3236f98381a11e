"""Generated blocks in a markdown file: the README's results tables, rewritten from committed run files.

A block is the text between ``<!-- TAG:start -->`` and ``<!-- TAG:end -->``; exactly one pair per tag.
"""

from __future__ import annotations

from pathlib import Path

from model.data.jsonio import write_atomic
from model.errors import SimGRError


def _markers(tag: str) -> tuple[str, str]:
    return f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"


def _split(path: Path, tag: str) -> tuple[str, str, str]:
    """(text before the block, the block, text after it) of ``path``."""
    start, end = _markers(tag)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SimGRError(f"{path}: cannot read ({e.strerror})") from None
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SimGRError(f"{path}: needs one '{start}' ... '{end}' block for the results table")
    head, rest = text.split(start)
    block, tail = rest.split(end, 1)
    return head, block.removeprefix("\n"), tail


def has_block(path: Path, tag: str) -> bool:
    """Whether ``path`` holds the block's start marker (a block that is only partly there is an error later)."""
    return path.is_file() and _markers(tag)[0] in path.read_text(encoding="utf-8")


def read_block(path: Path, tag: str) -> str:
    """The block's current text, without its markers."""
    return _split(path, tag)[1]


def replace_block(path: Path, tag: str, text: str) -> None:
    """Replace the block's text with ``text`` (which ends in a newline), leaving the rest of the file as it was."""
    head, _, tail = _split(path, tag)
    start, end = _markers(tag)
    write_atomic(path, head + start + "\n" + text + end + tail)
