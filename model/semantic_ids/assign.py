"""Semantic IDs: every item gets a unique tuple of L codes, written as tokens ``<a_12><b_201><c_7><d_0>``.

Two sources (``build_semantic_ids``):
- ``rqvae``: item text -> sentence embedding (model/text_encoder.py) -> RQ-VAE codes (model/rqvae.py),
  then a uniqueness level is appended (TIGER): a counter within each group of items sharing a tuple.
- ``given``: precomputed IDs (LC-Rec ``X.index.json`` / ``given_sids.json``: {item_id: [tokens]}); the
  length L is kept and colliding items get the lowest free last-level code under their (L-1)-prefix.

Pure helpers (no I/O) come first; each docstring has a worked example.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from model.config import RQVAEConfig
from model.data.dataset import load_items
from model.data.jsonio import read_validated
from model.data.sources.records import SidMap
from model.errors import SimGRError
from model.semantic_ids.space import SidSpace, free_code, lowest_free

log = logging.getLogger(__name__)

LEVEL_LETTERS = "abcdefgh"  # token letter per level; at most 8 levels
TOKEN_RE = re.compile(r"^<([a-h])_(\d+)>$")
SIDS_FILE = "semantic_ids.json"
REPORT_FILE = "semantic_ids_report.json"


class CollisionStats(NamedTuple):
    collision_rate: float  # fraction of items whose code tuple is shared with another item
    max_group: int  # size of the largest group of items sharing one tuple (1 = all unique)
    n_colliding_tuples: int  # distinct tuples used by more than one item


def collision_stats(codes: np.ndarray) -> CollisionStats:
    """Collision summary of an (N, L) code matrix.

    Example: [[1, 2], [1, 2], [3, 4]] -> CollisionStats(collision_rate=0.667, max_group=2, n_colliding_tuples=1)
    """
    if len(codes) == 0:
        return CollisionStats(0.0, 0, 0)
    counts = Counter(map(tuple, np.asarray(codes).tolist()))
    shared = sum(c for c in counts.values() if c > 1)
    return CollisionStats(shared / len(codes), max(counts.values()), sum(1 for c in counts.values() if c > 1))


def dedup_append_level(codes: np.ndarray) -> np.ndarray:
    """Append a counter level: 0 for the first item of each tuple, 1 for the second, ... (TIGER).

    Example: [[1, 2], [1, 2], [3, 4], [1, 2]] -> [[1, 2, 0], [1, 2, 1], [3, 4, 0], [1, 2, 2]]
    """
    codes = np.asarray(codes, dtype=np.int64)
    seen: Counter[tuple[int, ...]] = Counter()
    extra = np.zeros((len(codes), 1), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes.tolist())):
        extra[i, 0] = seen[row]
        seen[row] += 1
    return np.concatenate([codes.reshape(len(codes), -1), extra], axis=1)


def dedup_spread_level(codes: np.ndarray, size: int) -> np.ndarray:
    """Append a uniqueness level by the ``spread`` rule (``free_code``): items sharing a tuple take the free
    codes from the tuple's own offset on, so codes cover the level evenly instead of piling up on 0.

    Example (size 8; spread_start((1, 2), 8) == 6): [[1, 2], [1, 2], [1, 2]] -> [[1, 2, 6], [1, 2, 7], [1, 2, 0]]
    """
    codes = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
    used: defaultdict[tuple[int, ...], set[int]] = defaultdict(set)
    extra = np.zeros((len(codes), 1), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes.tolist())):
        code = free_code(row, used[row], size, "spread")
        if code is None:
            raise SimGRError(f"more than {size} items share the codes {row}: raise --unique-codes")
        extra[i, 0] = code
        used[row].add(code)
    return np.concatenate([codes, extra], axis=1)


def dedup_reassign_last(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Make tuples unique keeping length L: the 2nd..nth items of a colliding group get the lowest
    last-level code in [0, codebook_size) not yet used under the same (L-1)-prefix. Groups are handled in
    order of first appearance, items in row order. If a prefix runs out of codes, the leftover duplicates
    are separated by ``dedup_append_level`` (length L+1).

    Example (codebook_size=4): [[1, 2, 3], [1, 2, 3], [1, 2, 0], [4, 5, 6]]
        -> [[1, 2, 3], [1, 2, 1], [1, 2, 0], [4, 5, 6]]   (prefix (1, 2) already uses 3 and 0)
    """
    out = np.array(codes, dtype=np.int64, copy=True)
    rows = list(map(tuple, out.tolist()))
    taken: defaultdict[tuple[int, ...], set[int]] = defaultdict(set)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        taken[row[:-1]].add(row[-1])
        groups.setdefault(row, []).append(i)
    full = False
    for row, members in groups.items():
        used = taken[row[:-1]]
        for i in members[1:]:
            free = lowest_free(used, codebook_size)
            if free is None:
                full = True
                break
            out[i, -1] = free
            used.add(free)
    return dedup_append_level(out) if full else out


def codes_to_tokens(codes: np.ndarray) -> list[list[str]]:
    """Codes -> tokens, level l written with letter 'abcdefgh'[l].

    Example: [[12, 201, 7, 0]] -> [['<a_12>', '<b_201>', '<c_7>', '<d_0>']]
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] > len(LEVEL_LETTERS) or (codes < 0).any():
        raise ValueError(f"codes must be (N, L<=8) non-negative, got shape {codes.shape}")
    return [[f"<{LEVEL_LETTERS[lvl]}_{c}>" for lvl, c in enumerate(row)] for row in codes.tolist()]


def tokens_to_codes(tokens: Sequence[Sequence[str]]) -> np.ndarray:
    """Tokens -> (N, L) int64 codes; ValueError on a malformed token, a wrong level letter or ragged rows.

    Example: [['<a_12>', '<b_201>'], ['<a_3>', '<b_0>']] -> array([[12, 201], [3, 0]])
    """
    length = len(tokens[0]) if tokens else 0
    out = np.zeros((len(tokens), length), dtype=np.int64)
    for i, row in enumerate(tokens):
        if len(row) != length:
            raise ValueError(f"row {i} has {len(row)} tokens, row 0 has {length}")
        try:
            out[i] = sid_codes(row)
        except ValueError as e:
            raise ValueError(f"row {i}: {e}") from None
    return out


def sid_codes(tokens: Sequence[str]) -> tuple[int, ...]:
    """One semantic ID's tokens -> its codes (no array: the per-item path of a million-item load).

    Example: ['<a_12>', '<b_201>'] -> (12, 201)
    """
    out = []
    for lvl, tok in enumerate(tokens):
        m = TOKEN_RE.match(tok) if isinstance(tok, str) else None
        if m is None or lvl >= len(LEVEL_LETTERS) or m.group(1) != LEVEL_LETTERS[lvl]:
            letter = LEVEL_LETTERS[lvl] if lvl < len(LEVEL_LETTERS) else "?"
            raise ValueError(f"token {tok!r} is not <{letter}_N>")
        out.append(int(m.group(2)))
    return tuple(out)


def utilization(codes: np.ndarray, sizes: Sequence[int]) -> list[float]:
    """Distinct codes used per level / codebook size.

    Example: utilization([[0, 1], [0, 2], [3, 2]], [4, 4]) -> [0.5, 0.5]
    """
    codes = np.asarray(codes)
    return [len(np.unique(codes[:, lvl])) / size for lvl, size in enumerate(sizes)]


# ---- files ---------------------------------------------------------------------------------------------


def read_item_texts(data_dir: Path) -> tuple[list[str], list[str], int]:
    """(item_ids, texts, n_fallback) from DATA_DIR/items.jsonl; text falls back to title, then item_id."""
    item_ids: list[str] = []
    texts: list[str] = []
    n_fallback = 0
    for item in load_items(data_dir / "items.jsonl"):
        text = (item.text or "").strip() or (item.title or "").strip()
        if not text:
            text, n_fallback = item.item_id, n_fallback + 1
        item_ids.append(item.item_id)
        texts.append(text)
    if not item_ids:
        raise SimGRError(f"{data_dir / 'items.jsonl'}: no items")
    return item_ids, texts, n_fallback


def _read_sid_file(path: Path, item_ids: Sequence[str]) -> np.ndarray:
    """{item_id: [tokens]} file -> (N, L) codes in ``item_ids`` order (SimGRError naming the file)."""
    data = read_validated(path, SidMap, what="semantic-ID", missing="not found")
    missing = [i for i in item_ids if i not in data]
    if missing:
        raise SimGRError(f"{path}: {len(missing)} of {len(item_ids)} items have no semantic ID "
                         f"(first: {', '.join(map(repr, missing[:3]))})")
    if not item_ids:
        raise SimGRError(f"{path}: no items requested")
    try:
        codes = tokens_to_codes([data[i] for i in item_ids])
    except (ValueError, TypeError) as exc:
        raise SimGRError(f"{path}: {exc}") from exc
    if codes.shape[1] == 0:
        raise SimGRError(f"{path}: empty semantic IDs")
    return codes


def load_semantic_ids(data_dir_or_file: str | Path, item_ids: Sequence[str]) -> list[list[str]]:
    """Validated tokens per item, in ``item_ids`` order: every item present, same length, unique."""
    path = Path(data_dir_or_file)
    if path.is_dir():
        path = path / SIDS_FILE
    codes = _read_sid_file(path, item_ids)
    stats = collision_stats(codes)
    if stats.max_group > 1:
        raise SimGRError(f"{path}: semantic IDs are not unique ({stats.n_colliding_tuples} shared tuples, "
                         f"largest group {stats.max_group}); rebuild with `simgr semantic-ids`")
    return codes_to_tokens(codes)


def _write_json_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_semantic_ids(data_dir: Path, item_ids: Sequence[str], codes: np.ndarray) -> Path:
    """Write DATA_DIR/semantic_ids.json, one item per line, in item order."""
    lines = [f"{json.dumps(i)}: {json.dumps(t)}" for i, t in zip(item_ids, codes_to_tokens(codes), strict=True)]
    path = data_dir / SIDS_FILE
    _write_json_atomic(path, "{\n" + ",\n".join(lines) + "\n}\n")
    return path


# ---- build -------------------------------------------------------------------------------------------


def build_semantic_ids(
    *,
    data_dir: str | Path,
    cfg: RQVAEConfig = RQVAEConfig(),
    given: Path | None = None,
    encoder_dir: Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Build unique semantic IDs for every item of DATA_DIR; writes semantic_ids.json and the report."""
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    item_ids, texts, n_fallback = read_item_texts(data_dir)
    report: dict[str, Any]
    if given is not None:
        raw = _read_sid_file(Path(given), item_ids)
        shutil.rmtree(data_dir / "quantizer", ignore_errors=True)  # given IDs: no quantizer can code new items
        final = dedup_reassign_last(raw, cfg.given_codebook_size)
        report = {"source": "given", "given_file": str(given), "recon_loss": None,
                  "utilization_per_level": utilization(raw, [cfg.given_codebook_size] * raw.shape[1])}
    else:
        raw, report = _rqvae_codes(data_dir, texts, cfg=cfg, encoder_dir=encoder_dir, device=device)
        report["items_without_text"] = n_fallback
        if n_fallback:
            log.warning("%d of %d items have no text or title; their item_id is encoded instead",
                        n_fallback, len(item_ids))
        final = dedup_append_level(raw) if cfg.uniqueness == "lowest" else dedup_spread_level(raw, cfg.unique_codes)
    before, after = collision_stats(raw), collision_stats(final)
    assert after.max_group == 1, "dedup left collisions"  # both dedup rules guarantee uniqueness
    write_semantic_ids(data_dir, item_ids, final)
    last = cfg.given_codebook_size if given is not None else cfg.unique_codes
    sizes = [*(cfg.codebook_sizes if given is None else [cfg.given_codebook_size] * (final.shape[1] - 1)), last]
    sizes = [max(s, int(c) + 1) for s, c in zip(sizes, final.max(axis=0), strict=True)]
    SidSpace(sizes=tuple(sizes), uniqueness="lowest" if given is not None else cfg.uniqueness).write(data_dir)
    report.update({
        "n_items": len(item_ids), "n_levels": int(final.shape[1]),
        "collision_rate_before_dedup": before.collision_rate, "max_collision_group": before.max_group,
        "colliding_tuples_before_dedup": before.n_colliding_tuples,
        "collision_rate_after_dedup": after.collision_rate,
        "seconds": round(time.perf_counter() - t0, 2),
    })
    _write_json_atomic(data_dir / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")
    log.info("semantic ids: %s", report)
    return report


def _rqvae_codes(data_dir: Path, texts: list[str], *, cfg: RQVAEConfig, encoder_dir: Path | None,
                 device: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Encode, train the RQ-VAE, save it as DATA_DIR/quantizer and code every item with the saved
    quantizer (the same ``codes_from_embeddings`` the server uses)."""
    from model.semantic_ids.quantizer import QUANTIZER_DIR, ItemQuantizer
    from model.semantic_ids.rqvae import train_rqvae
    from model.semantic_ids.text_encoder import default_encoder_dir, encode_texts_cached

    t_enc = time.perf_counter()
    folder = Path(encoder_dir).resolve() if encoder_dir is not None else default_encoder_dir()
    emb = encode_texts_cached(texts, cache_dir=data_dir / "cache", model_dir=folder, device=device)
    encode_seconds = time.perf_counter() - t_enc
    result = train_rqvae(emb, cfg=cfg, device=device)
    quantizer = ItemQuantizer.from_training(
        rqvae=result.model, center=result.center, scale=result.scale, unique_codes=cfg.unique_codes,
        max_text_chars=cfg.max_text_chars, encoder_dir=folder, max_length=256)
    quantizer.save(data_dir / QUANTIZER_DIR)
    raw = quantizer.codes_from_embeddings(emb)
    report = {"source": "rqvae", "recon_loss": result.recon_loss,
              "utilization_per_level": utilization(raw, cfg.codebook_sizes),
              "encode_seconds": round(encode_seconds, 2), "train_seconds": round(result.seconds, 2),
              "epochs": cfg.epochs, "reseeded_codes": result.reseeded, "quantizer": str(data_dir / QUANTIZER_DIR)}
    return raw, report
