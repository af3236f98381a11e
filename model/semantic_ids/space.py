"""The semantic-ID code space: how many codes each level has, so every code can be a token.

The vocabulary holds every code of every level, used by a training item or not, so a new item's tuple
can always be written (``sid_tokens``). ``semantic-ids`` writes DATA_DIR/sid_space.json; datasets
without one (older directories, synthetic tests) fall back to the codes their items use.

One uniqueness rule serves offline and online (``free_code``), recorded in the space so that items added
while serving follow the rule their catalogue was built with:

- ``lowest``: the lowest free last-level code under the item's prefix (TIGER's counter). Most items sit
  alone under their prefix and all get code 0, so the last level's rows only separate collided items.
- ``spread``: the first free code at or after an offset fixed by the prefix (a stable hash), wrapping
  around. Codes spread evenly over the level, so its rows also carry a little of each item's own signal
  (on Scientific, +0.002 test NDCG@10 over three seeds: reports/quality/README.md, section 2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.config import Uniqueness
from model.data.jsonio import read_json
from model.errors import SimGRError

SPACE_FILE = "sid_space.json"
LETTERS = "abcdefgh"


class SidSpace(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sizes: tuple[int, ...] = Field(min_length=1, max_length=8)  # codes per level, uniqueness level last
    uniqueness: Uniqueness = "lowest"  # how the last level separates items that share a prefix (free_code)

    def write(self, data_dir: Path) -> Path:
        path = data_dir / SPACE_FILE
        path.write_text(self.model_dump_json() + "\n")
        return path

    def tokens(self) -> list[str]:
        """Every token of the space, level by level: ['<a_0>', ..., '<a_255>', '<b_0>', ...]."""
        return [f"<{LETTERS[lvl]}_{c}>" for lvl, size in enumerate(self.sizes) for c in range(size)]

    def check(self, codes: np.ndarray) -> str | None:
        """Why (N, L) ``codes`` do not fit the space, or None."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != len(self.sizes):
            return f"a semantic ID has {len(self.sizes)} codes, got {codes.shape[-1] if codes.ndim else 0}"
        bad = (codes < 0) | (codes >= np.asarray(self.sizes)[None, :])
        if bad.any():
            row, lvl = map(int, np.argwhere(bad)[0])
            return f"code {int(codes[row, lvl])} at level {lvl} is outside [0, {self.sizes[lvl]})"
        return None


def observed_space(codes: np.ndarray) -> SidSpace:
    """The smallest space holding ``codes`` (N, L): max code + 1 per level."""
    return SidSpace(sizes=tuple(int(c) + 1 for c in np.asarray(codes).max(axis=0)))


def load_sid_space(data_dir: Path, codes: np.ndarray) -> SidSpace:
    """DATA_DIR/sid_space.json widened to hold ``codes``; the observed space when the file is absent."""
    seen = observed_space(codes)
    path = data_dir / SPACE_FILE
    if not path.is_file():
        return seen
    try:
        space = SidSpace.model_validate(read_json(path, missing="missing"))
    except ValidationError as e:
        raise SimGRError(f"{path}: {e.errors()[0]['msg']}") from None
    if len(space.sizes) != len(seen.sizes):
        raise SimGRError(f"{path}: {len(space.sizes)} levels but the semantic IDs have {len(seen.sizes)}")
    return SidSpace(sizes=tuple(max(a, b) for a, b in zip(space.sizes, seen.sizes, strict=True)),
                    uniqueness=space.uniqueness)


def lowest_free(used: Collection[int], size: int) -> int | None:
    """The lowest code in [0, size) not in ``used`` (None when all are taken).

    Example: lowest_free({0, 1, 3}, 8) -> 2
    """
    return next((c for c in range(size) if c not in used), None)


def spread_start(prefix: Sequence[int], size: int) -> int:
    """Where ``spread`` starts looking under ``prefix``: a stable hash of the codes (the same in every
    process and release), modulo ``size``. Example: spread_start((1, 2), 256) -> 174"""
    digest = hashlib.blake2b(",".join(str(int(c)) for c in prefix).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % size


def free_code(prefix: Sequence[int], used: Collection[int], size: int, rule: Uniqueness) -> int | None:
    """The uniqueness code of the next item under ``prefix`` (None when all ``size`` codes are taken).

    Example (spread_start((1, 2), 8) == 6): free_code((1, 2), set(), 8, "spread") -> 6,
    free_code((1, 2), {6, 7}, 8, "spread") -> 0, free_code((1, 2), {6, 7}, 8, "lowest") -> 0
    """
    if rule == "lowest":
        return lowest_free(used, size)
    start = spread_start(prefix, size)
    return next((c for c in (*range(start, size), *range(start)) if c not in used), None)


def code_token(level: int, code: int) -> str:
    """The token of one code. Example: code_token(1, 3) -> '<b_3>'"""
    return f"<{LETTERS[level]}_{int(code)}>"


def sid_tokens(codes: Sequence[int]) -> list[str]:
    """One semantic ID as tokens. Example: [12, 3, 0] -> ['<a_12>', '<b_3>', '<c_0>']"""
    return [code_token(lvl, c) for lvl, c in enumerate(codes)]
