"""Semantic IDs: every item gets a unique tuple of L codes, written as tokens ``<a_12><b_201><c_7><d_0>``.

Two sources (``build_semantic_ids``):
- ``rqvae``: item text -> sentence embedding (model/text_encoder.py) -> RQ-VAE codes (model/rqvae.py),
  then a uniqueness level is appended (model/semantic_ids/dedup.py): TIGER's counter within each group of
  items sharing a tuple, or with ``uniqueness="spread"`` codes from a per-tuple offset.
- ``given``: precomputed IDs (LC-Rec ``X.index.json`` / ``given_sids.json``: {item_id: [tokens]}); the
  length L is kept and colliding items get the lowest free last-level code under their (L-1)-prefix.
  With ``uniqueness="spread"`` a spread level is then appended, so every item also gets a row it shares
  with only a few unrelated items.

``shuffle_semantic_ids`` deals either source's IDs out again over the items: the control that measures
what the text behind them is worth.

Pure helpers (no I/O) come first; each docstring has a worked example.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.config import RQVAEConfig
from model.data.dataset import load_items
from model.data.jsonio import read_validated, write_atomic
from model.data.sources.records import SidMap
from model.errors import SimGRError
from model.semantic_ids.dedup import (
    collision_stats,
    dedup_append_level,
    dedup_reassign_last,
    dedup_spread_level,
)
from model.semantic_ids.space import SidSpace

log = logging.getLogger(__name__)

LEVEL_LETTERS = "abcdefgh"  # token letter per level; at most 8 levels
TOKEN_RE = re.compile(r"^<([a-h])_(\d+)>$")
SIDS_FILE = "semantic_ids.json"
REPORT_FILE = "semantic_ids_report.json"


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


def permute_ids(codes: np.ndarray, seed: int) -> np.ndarray:
    """Every item takes another item's whole row: ``codes[perm]`` for a permutation drawn from ``seed``.
    The rows, so every count of codes and collisions, stay; which item holds which row does not.

    Example: permute_ids([[0, 0], [1, 0], [2, 1]], seed=0) -> [[2, 1], [0, 0], [1, 0]]
    """
    codes = np.asarray(codes)
    return codes[np.random.default_rng(seed).permutation(len(codes))]


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


def write_semantic_ids(data_dir: Path, item_ids: Sequence[str], codes: np.ndarray) -> Path:
    """Write DATA_DIR/semantic_ids.json, one item per line, in item order."""
    lines = [f"{json.dumps(i)}: {json.dumps(t)}" for i, t in zip(item_ids, codes_to_tokens(codes), strict=True)]
    path = data_dir / SIDS_FILE
    write_atomic(path, "{\n" + ",\n".join(lines) + "\n}\n")
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
        if cfg.uniqueness == "spread":
            final = dedup_spread_level(final, cfg.unique_codes)
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
    last = cfg.given_codebook_size if given is not None and cfg.uniqueness == "lowest" else cfg.unique_codes
    sizes = [*(cfg.codebook_sizes if given is None else [cfg.given_codebook_size] * (final.shape[1] - 1)), last]
    sizes = [max(s, int(c) + 1) for s, c in zip(sizes, final.max(axis=0), strict=True)]
    SidSpace(sizes=tuple(sizes), uniqueness=cfg.uniqueness).write(data_dir)
    report.update({
        "n_items": len(item_ids), "n_levels": int(final.shape[1]),
        "collision_rate_before_dedup": before.collision_rate, "max_collision_group": before.max_group,
        "colliding_tuples_before_dedup": before.n_colliding_tuples,
        "collision_rate_after_dedup": after.collision_rate,
        "seconds": round(time.perf_counter() - t0, 2),
    })
    write_atomic(data_dir / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")
    log.info("semantic ids: %s", report)
    return report


def shuffle_semantic_ids(data_dir: str | Path, *, seed: int) -> dict[str, Any]:
    """The control for what an item's text gives its semantic ID: DATA_DIR's IDs dealt out again by
    ``permute_ids``, so each item holds another item's ID. Rewrites semantic_ids.json, adds
    ``shuffled_seed`` to the report and removes DATA_DIR/quantizer, whose codes for a new item would
    follow its text again."""
    data_dir = Path(data_dir)
    item_ids, _, _ = read_item_texts(data_dir)
    codes = tokens_to_codes(load_semantic_ids(data_dir, item_ids))
    write_semantic_ids(data_dir, item_ids, permute_ids(codes, seed))
    shutil.rmtree(data_dir / "quantizer", ignore_errors=True)
    report = json.loads((data_dir / REPORT_FILE).read_text())
    report["shuffled_seed"] = seed
    write_atomic(data_dir / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")
    log.info("semantic ids shuffled over the items (seed %d)", seed)
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
