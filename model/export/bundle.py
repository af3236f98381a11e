"""The export bundle: everything the online service needs, loaded without recomputing anything.

ARTIFACT_DIR/
  manifest.json          format version, model version hash, backbone, D, tau, prompt settings, metrics...
  model/backbone/        the merged decoder (safetensors) + its tokenizer
  model/aggregator.safetensors  aggregator weights (absent for the parameter-free mean)
  model/simgr.json       ModelConfig + PromptConfig
  items.jsonl            {"idx", "item_id", "sid", "title", "text", "categories", "attributes", "origin"}
  quantizer/             the item tokenizer (model/semantic_ids/quantizer.py), when the IDs came from text
  item_embeddings.npy    (N, D) float32, the one item matrix (memory-mapped by the server)
  index.json             the item index: type, parameters, measured recall@10 (also in manifest.json)
  index.faiss | index_sid_codes.npz   the index's own file (none for flat), ids = item idx
  popularity.json        item ids, most popular first (cold start)
  popularity_by_category.json  {category: item ids, most popular first}

manifest.json is written last and lists the sha256 + size of every other file; export builds the
directory beside its target and renames it into place only after it loads and checks (atomic.py).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import StrictStr

from index.catalog import Catalog
from index.rows import BaseRows
from model.data.jsonio import iter_indexed_jsonl, read_validated
from model.errors import SimGRError
from model.export.added import AddedEmbedding, TrainedNeighbours
from model.export.integrity import VerifyMode, verify_bundle
from model.export.living import ItemEmbedder, catalog_row, trained_token_rows
from model.export.manifest import BundleItem, BundleManifest, NetworkSpec
from model.network.model import SimGR
from model.network.prompt import PromptVocab, build_prompt, collate
from model.semantic_ids.quantizer import QUANTIZER_DIR, ItemQuantizer
from model.semantic_ids.space import SidSpace, code_token, observed_space

log = logging.getLogger(__name__)

_MISSING = "missing from the bundle"


def _read_catalog(root: Path, embeddings: np.ndarray) -> Catalog:
    """items.jsonl streamed into the columnar catalogue (no object per item is kept) + popularity.json."""
    path = root / "items.jsonl"
    rows = map(catalog_row, iter_indexed_jsonl(path, BundleItem, what="bundle item", missing=_MISSING))
    try:
        base = BaseRows.build(rows)
    except ValueError as e:
        raise SimGRError(f"{path}: {e}") from None
    if not len(base):
        raise SimGRError(f"{path}: no items")
    if embeddings.shape[0] != len(base):
        raise SimGRError(f"{root}/item_embeddings.npy: a {embeddings.dtype} array of shape {embeddings.shape}, "
                         f"expected float32 ({len(base)}, D) for {len(base)} items")
    popular = read_validated(root / "popularity.json", list[StrictStr], what="popularity", missing=_MISSING)
    order = np.fromiter((-1 if (r := base.last_row(i)) is None else r for i in popular), dtype=np.int64,
                        count=len(popular))  # no int object per item outlives this line
    del popular
    order = order[order >= 0]
    return Catalog(base, embeddings, order[base.live[order]])


def token_table(lut: Sequence[np.ndarray], codes: np.ndarray) -> np.ndarray:
    """(M, L) codes -> (M, L) int64 token ids through one look-up array per level."""
    out = np.empty((len(codes), len(lut)), dtype=np.int64)
    for lvl, table in enumerate(lut):  # filled in place: no (M,) temporaries left for malloc to keep
        np.take(table, codes[:, lvl], out=out[:, lvl], mode="clip")
    return out


def _token_lut(tokenizer: Any, space: SidSpace) -> list[np.ndarray]:
    """Per level, the token id of every code in the space (-1 where the tokenizer lacks the token)."""
    out = []
    for lvl, size in enumerate(space.sizes):
        ids = tokenizer.convert_tokens_to_ids([code_token(lvl, c) for c in range(size)])
        out.append(np.asarray([-1 if t is None else t for t in ids], dtype=np.int64))
    return out


class Bundle:
    """A loaded bundle. ``encode_users`` is the only compute: one batched forward pass. ``with_catalog``
    gives the same model over a changed catalogue (items added or retired while serving)."""

    def __init__(self, *, root: Path, manifest: BundleManifest, model: SimGR, vocab: PromptVocab,
                 tokenizer: Any, catalog: Catalog, space: SidSpace, lut: list[np.ndarray],
                 device: torch.device) -> None:
        self.root, self.manifest, self.model, self.tokenizer = root, manifest, model, tokenizer
        self.device = device
        self.model_version: str = manifest.model_version
        self.max_history: int = vocab.cfg.max_history
        self.space = space
        self._lut = lut  # code -> token id, per level (_token_lut)
        self._quantizer: ItemQuantizer | None = None
        self._vocab0 = vocab
        self.vocab: PromptVocab = vocab
        self.catalog: Catalog = catalog
        self.n_items = 0
        self._trained_rows: set[int] | None = None  # token ids some trained item uses (never changes)
        self._neighbours: TrainedNeighbours | None = None  # trained latents + vectors (never change)
        self._set_catalog(catalog, table=model.sid_token_ids.cpu().numpy())

    def _set_catalog(self, catalog: Catalog, table: np.ndarray | None = None) -> None:
        """Serve ``catalog``; ``table`` is its (M, L) token-id table when already built (shared, not copied)."""
        if table is None and catalog.base is self.catalog.base and len(catalog) >= self.n_items:
            prev = self.vocab.sid_token_ids  # rows keep their IDs: only rows past the served table need tokens
            table = np.concatenate([prev, token_table(self._lut, catalog.codes_from(len(prev)))])
        elif table is None:
            table = token_table(self._lut, catalog.codes)
        self.catalog = catalog
        self.item_ids: Sequence[str] = catalog.ids  # by row; dead rows keep their id
        self.item_lookup: Mapping[str, int] = catalog.lookup  # live items only
        self.popularity = catalog.popularity  # (n_live,) every live row, most popular first
        self.n_items, self.dim = len(catalog), catalog.dim
        self.vocab = dataclasses.replace(self._vocab0, sid_token_ids=table)

    @property
    def embeddings(self) -> np.ndarray:
        """(M, D) float32 item matrix (the memory-mapped file until items are added; see Catalog.embeddings)."""
        return self.catalog.embeddings

    def with_catalog(self, catalog: Catalog) -> Bundle:
        """The same model (shared, not copied) serving ``catalog``."""
        out = copy.copy(self)
        out._set_catalog(catalog)
        return out

    def token_ids(self, tokens: list[str]) -> list[int]:
        return list(self.tokenizer.convert_tokens_to_ids(tokens))

    @property
    def quantizer(self) -> ItemQuantizer | None:
        """The item tokenizer saved with the bundle (None when its semantic IDs were given)."""
        if self._quantizer is None and self.manifest.quantizer:
            self._quantizer = ItemQuantizer.load(self.root / QUANTIZER_DIR)
        return self._quantizer

    def embedder(self, spec: AddedEmbedding = AddedEmbedding()) -> ItemEmbedder:
        """How this bundle embeds items added to it. Neighbours need the item quantizer: a bundle of given
        IDs embeds added items by their code rows whatever ``spec.neighbours`` says."""
        if self._trained_rows is None:
            self._trained_rows = trained_token_rows(self.catalog, self.token_ids)
        q = self.quantizer if spec.neighbours else None
        return ItemEmbedder(model=self.model, token_id=self.token_ids, trained_rows=self._trained_rows, spec=spec,
                            neighbours=self._trained_neighbours(q) if q else None)

    def _trained_neighbours(self, q: ItemQuantizer) -> TrainedNeighbours | None:
        """The trained items' quantised latents and vectors, built on the first neighbour look-up (None when
        the bundle holds no trained item)."""
        if self._neighbours is None:
            base = self.catalog.base
            trained = np.flatnonzero(~base.added)  # (T,) rows trained into the bundle
            semantic = base.codes[trained, : len(q.spec.codebook_sizes)]  # (T, L-1)
            self._neighbours = TrainedNeighbours(encode=q.latents, codes=semantic, rows=trained,
                                                 vectors=self.catalog.base_vectors)
        return self._neighbours if len(self._neighbours.rows) else None

    @classmethod
    def load(cls, root: str | Path, *, device: str = "cpu", verify: VerifyMode = "quick") -> Bundle:
        """Verify the files against the manifest's digests (see model/export/integrity.py), then load."""
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        root = Path(root)
        if not root.is_dir():
            raise SimGRError(f"{root}: bundle directory not found; run `simgr export` first")
        manifest = BundleManifest.read(root / "manifest.json")
        verify_bundle(root, manifest, verify)
        spec = read_validated(root / "model" / "simgr.json", NetworkSpec, what="network spec", missing=_MISSING)
        mcfg, pcfg = spec.model, spec.prompt
        try:
            embeddings = np.load(root / "item_embeddings.npy", mmap_mode="r")  # one copy, shared with the index
        except FileNotFoundError:
            raise SimGRError(f"{root}/item_embeddings.npy: missing from the bundle") from None
        except ValueError as e:
            raise SimGRError(f"{root}/item_embeddings.npy: unreadable ({e})") from None
        if embeddings.dtype != np.float32 or embeddings.ndim != 2:
            raise SimGRError(f"{root}/item_embeddings.npy: a {embeddings.dtype} array of shape {embeddings.shape}, "
                             "expected float32 (N, D)")
        catalog = _read_catalog(root, embeddings)
        bdir = root / "model" / "backbone"
        hf_logging.disable_progress_bar()  # no per-load weight bars in server logs
        try:
            tokenizer = AutoTokenizer.from_pretrained(bdir, local_files_only=True)
            backbone = AutoModel.from_pretrained(bdir, local_files_only=True, attn_implementation="sdpa")
        except (OSError, ValueError) as e:
            raise SimGRError(f"{bdir}: cannot load the model ({e})") from None
        space = (SidSpace(sizes=tuple(manifest.sid_space), uniqueness=manifest.sid_uniqueness) if manifest.sid_space
                 else observed_space(catalog.codes))
        vocab = PromptVocab.from_tokenizer(tokenizer, [], pcfg)
        lut = _token_lut(tokenizer, space)
        table = token_table(lut, catalog.codes)  # (N, L)
        model = SimGR(backbone=backbone, sid_token_ids=torch.from_numpy(table), cfg=mcfg, prompt=pcfg)
        agg = root / "model" / "aggregator.safetensors"
        if agg.is_file():
            from safetensors.torch import load_file

            model.aggregator.load_state_dict(load_file(str(agg)))
        dev = torch.device(device)
        model = model.to(dev, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32).eval()
        log.info("loaded bundle %s: %d items, D=%d, version %s", root, len(catalog), embeddings.shape[1],
                 manifest.model_version)
        return cls(root=root, manifest=manifest, model=model, vocab=vocab, tokenizer=tokenizer, catalog=catalog,
                   space=space, lut=lut, device=dev)

    @torch.inference_mode()
    def encode_users(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(B, D) float32 user embeddings; histories are item indices, oldest first, each non-empty."""
        prompts = [build_prompt(h, self.vocab) for h in histories]
        batch = collate(prompts, pad_id=self.vocab.pad_id)
        table = None
        if self.vocab.cfg.layout == "items":  # only the rows of the items in these prompts, renumbered
            is_slot = batch.item_slots >= 0
            needed, local = torch.unique(batch.item_slots[is_slot], return_inverse=True)
            table = torch.from_numpy(self.catalog.vectors(needed.numpy())).to(self.device)  # (U, D)
            batch = batch._replace(item_slots=batch.item_slots.masked_scatter(is_slot, local))
        h = self.model.user_embeddings(batch.to(self.device), table)  # (B, D)
        return h.float().cpu().numpy()
