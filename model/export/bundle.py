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
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import StrictStr

from index.catalog import Catalog
from model.data.jsonio import read_indexed_jsonl, read_validated
from model.errors import SimGRError
from model.export.integrity import VerifyMode, verify_bundle
from model.export.living import AddedLevels, ItemEmbedder, catalog_from_records, trained_token_rows
from model.export.manifest import BundleItem, BundleManifest, NetworkSpec
from model.network.model import SimGR
from model.network.prompt import PromptVocab, build_prompt, collate
from model.semantic_ids.quantizer import QUANTIZER_DIR, ItemQuantizer
from model.semantic_ids.space import SidSpace, observed_space, sid_tokens

log = logging.getLogger(__name__)

_MISSING = "missing from the bundle"


def _read_items(path: Path) -> list[BundleItem]:
    items = read_indexed_jsonl(path, BundleItem, what="bundle item", missing=_MISSING)
    if not items:
        raise SimGRError(f"{path}: no items")
    return items


class Bundle:
    """A loaded bundle. ``encode_users`` is the only compute: one batched forward pass. ``with_catalog``
    gives the same model over a changed catalogue (items added or retired while serving)."""

    def __init__(self, *, root: Path, manifest: BundleManifest, model: SimGR, vocab: PromptVocab,
                 tokenizer: Any, catalog: Catalog, device: torch.device) -> None:
        self.root, self.manifest, self.model, self.tokenizer = root, manifest, model, tokenizer
        self.device = device
        self.model_version: str = manifest.model_version
        self.max_history: int = vocab.cfg.max_history
        codes = np.asarray([r.sid for r in catalog.rows])
        self.space = SidSpace(sizes=tuple(manifest.sid_space)) if manifest.sid_space else observed_space(codes)
        self._quantizer: ItemQuantizer | None = None
        self._vocab0 = vocab
        self._set_catalog(catalog)

    def _set_catalog(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.item_ids: list[str] = [r.item_id for r in catalog.rows]  # by row; dead rows keep their id
        self.titles: list[str | None] = [r.title for r in catalog.rows]
        self.item_lookup: dict[str, int] = catalog.lookup  # live items only
        self.embeddings = catalog.embeddings  # (M, D) float32
        self.popularity = catalog.popularity
        self.n_items, self.dim = self.embeddings.shape
        table = tuple(tuple(self.token_ids(sid_tokens(r.sid))) for r in catalog.rows)
        self.vocab = dataclasses.replace(self._vocab0, sid_token_ids=table)
        with warnings.catch_warnings():  # a read-only map: the table is only ever read
            warnings.simplefilter("ignore", UserWarning)
            self._table = torch.from_numpy(self.embeddings).to(self.device)  # item inputs for the ``items`` layout

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

    def embedder(self, levels: AddedLevels = "trained") -> ItemEmbedder:
        trained = trained_token_rows(self.catalog, self.token_ids)
        return ItemEmbedder(model=self.model, token_id=self.token_ids, trained_rows=trained, levels=levels)

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
        items = _read_items(root / "items.jsonl")
        try:
            embeddings = np.load(root / "item_embeddings.npy", mmap_mode="r")  # one copy, shared with the index
        except FileNotFoundError:
            raise SimGRError(f"{root}/item_embeddings.npy: missing from the bundle") from None
        except ValueError as e:
            raise SimGRError(f"{root}/item_embeddings.npy: unreadable ({e})") from None
        if embeddings.dtype != np.float32 or embeddings.ndim != 2 or embeddings.shape[0] != len(items):
            raise SimGRError(f"{root}/item_embeddings.npy: a {embeddings.dtype} array of shape {embeddings.shape}, "
                             f"expected float32 ({len(items)}, D) for {len(items)} items")
        bdir = root / "model" / "backbone"
        hf_logging.disable_progress_bar()  # no per-load weight bars in server logs
        try:
            tokenizer = AutoTokenizer.from_pretrained(bdir, local_files_only=True)
            backbone = AutoModel.from_pretrained(bdir, local_files_only=True, attn_implementation="sdpa")
        except (OSError, ValueError) as e:
            raise SimGRError(f"{bdir}: cannot load the model ({e})") from None
        vocab = PromptVocab.from_tokenizer(tokenizer, [it.sid for it in items], pcfg)
        model = SimGR(backbone=backbone, sid_token_ids=torch.tensor(vocab.sid_token_ids), cfg=mcfg, prompt=pcfg)
        agg = root / "model" / "aggregator.safetensors"
        if agg.is_file():
            from safetensors.torch import load_file

            model.aggregator.load_state_dict(load_file(str(agg)))
        dev = torch.device(device)
        model = model.to(dev, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32).eval()
        lookup = {it.item_id: i for i, it in enumerate(items)}
        popular = read_validated(root / "popularity.json", list[StrictStr], what="popularity", missing=_MISSING)
        popularity = [lookup[i] for i in popular if i in lookup]
        log.info("loaded bundle %s: %d items, D=%d, version %s", root, len(items), embeddings.shape[1],
                 manifest.model_version)
        return cls(root=root, manifest=manifest, model=model, vocab=vocab, tokenizer=tokenizer,
                   catalog=catalog_from_records(items, embeddings, popularity), device=dev)

    @torch.inference_mode()
    def encode_users(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(B, D) float32 user embeddings; histories are item indices, oldest first, each non-empty."""
        prompts = [build_prompt(h, self.vocab) for h in histories]
        batch = collate(prompts, pad_id=self.vocab.pad_id).to(self.device)
        h = self.model.user_embeddings(batch, self._table)  # (B, D)
        return h.float().cpu().numpy()
