"""Catalogue changes on a bundle, shared by ``PUT /items`` and ``simgr catalog apply``:

    records (ItemUpsert) --code_upserts--> index.catalog.Upsert (codes from the given sid or the quantizer)
    Catalog.apply(changes, unique=lowest free code, embed=ItemEmbedder) -> next catalogue + index delta

An added item's embedding is the aggregate of its code-token rows, like a trained item's. Rows that no
trained item uses were never trained (random init, shrunk by weight decay). ``ItemEmbedder`` therefore
averages, for added items, only rows that some trained item uses (policy "trained", the default). "all"
is the plain mean; "semantic" also leaves out the uniqueness level, the one row that holds no text.
With ``neighbours`` (model/export/added.py) an added item takes instead the vectors of the trained items
nearest to it in the item quantizer's space. The README's cold-items section has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from index.catalog import Catalog, CatalogRow, Upsert
from model.export.added import AddedEmbedding, TrainedNeighbours
from model.export.items import ItemUpsert
from model.export.manifest import BundleItem
from model.semantic_ids.assign import sid_codes, tokens_to_codes
from model.semantic_ids.quantizer import ItemQuantizer
from model.semantic_ids.space import SidSpace, code_token, free_code, sid_tokens


class CatalogInputError(ValueError):
    """A change that cannot be applied as given (bad sid, no quantizer, ...); nothing was changed."""


def catalog_row(r: BundleItem) -> CatalogRow:
    return CatalogRow(r.item_id, sid_codes(r.sid), r.origin, title=r.title,
                      text=r.text, categories=tuple(r.categories), attributes=tuple(sorted(r.attributes.items())))


class ItemEmbedder:
    """Semantic IDs -> item vectors with the model's own token rows and aggregator (SimGR, arXiv 2602.07847),
    or, with ``spec.neighbours`` and ``neighbours`` given, from the nearest trained items (model/export/added.py)."""

    def __init__(self, *, model: Any, token_id: Callable[[list[str]], list[int]], trained_rows: set[int],
                 spec: AddedEmbedding = AddedEmbedding(), neighbours: TrainedNeighbours | None = None) -> None:
        self.model, self.token_id, self.spec = model, token_id, spec
        self.trained_rows = trained_rows  # token ids of codes used by a trained item
        self.neighbours = neighbours  # the bundle's trained items in the quantizer's space, if it has both

    @torch.inference_mode()
    def __call__(self, sids: list[tuple[int, ...]]) -> np.ndarray:
        """(n,) semantic IDs -> (n, D) float32, normalised like the trained item table, times the gain."""
        if self.spec.neighbours and self.neighbours is not None:
            semantic = np.array([s[:-1] for s in sids], dtype=np.int64)  # (n, L-1): the RQ-VAE codes
            e = torch.from_numpy(self.neighbours.mix(semantic, k=self.spec.neighbours,
                                                     temperature=self.spec.temperature))  # (n, D)
        else:
            e = self._code_mean(sids)
        if self.model.cfg.normalize:
            e = torch.nn.functional.normalize(e, dim=-1)
        return (self.spec.gain * e).cpu().numpy().astype(np.float32)

    def _code_mean(self, sids: list[tuple[int, ...]]) -> torch.Tensor:
        """(n, D) the aggregate of the items' code rows, over the rows ``spec.levels`` keeps."""
        ids = torch.tensor([self.token_id(sid_tokens(s)) for s in sids], dtype=torch.long)  # (n, L)
        emb_layer = self.model.input_embeddings()
        rows = emb_layer(ids.to(emb_layer.weight.device)).float()  # (n, L, D)
        if self.model.cfg.aggregator != "mean" or self.spec.levels == "all":
            return self.model.aggregator(rows.to(emb_layer.weight.dtype)).float()  # type: ignore[no-any-return]
        keep = torch.tensor([[t in self.trained_rows for t in row] for row in ids.tolist()])  # (n, L)
        if self.spec.levels == "semantic":
            keep[:, -1] = False
        keep[keep.sum(1) == 0] = True  # nothing trained: fall back to every row
        w = keep.to(rows).unsqueeze(-1)  # (n, L, 1)
        return (rows * w).sum(1) / w.sum(1)  # (n, D)


def unique_code(space: SidSpace) -> Callable[[tuple[int, ...], set[int]], int | None]:
    """The offline uniqueness rule (``space.uniqueness``) bound to the space's range."""
    size = space.sizes[-1]
    return lambda prefix, used: free_code(prefix, used, size, space.uniqueness)


def _given_codes(rec: ItemUpsert, space: SidSpace) -> tuple[int, ...]:
    assert rec.sid is not None
    try:
        codes = tokens_to_codes([rec.sid])
    except ValueError as exc:
        raise CatalogInputError(f"item {rec.item_id!r}: sid: {exc}") from None
    why = space.check(codes)
    if why:
        raise CatalogInputError(f"item {rec.item_id!r}: sid: {why}")
    return tuple(int(c) for c in codes[0])


def _quantizer_text(rec_title: str | None, rec_text: str | None, categories: Sequence[str],
                    quantizer: ItemQuantizer) -> str:
    return quantizer.item_text(title=rec_title, text=rec_text, categories=categories)


def code_upserts(records: Sequence[ItemUpsert], catalog: Catalog, *, space: SidSpace,
                 quantizer: ItemQuantizer | None) -> list[Upsert]:
    """Records -> catalogue upserts with codes where an ID must be made: a given sid, or the quantizer's
    codes of the item's text for a new item and for an added item whose text changed. A trained item
    keeps its ID. Raises CatalogInputError (before any encoding work is wasted on a bad batch)."""
    need_text: list[int] = []
    codes: list[tuple[int, ...] | None] = [None] * len(records)
    full = [False] * len(records)
    for n, rec in enumerate(records):
        if rec.sid is not None:
            codes[n], full[n] = _given_codes(rec, space), True
            continue
        idx = catalog.last_row(rec.item_id)
        row = catalog.row(idx) if idx is not None else None
        if row is not None and (row.origin == "trained" or _same_text(row, rec)):
            continue
        if quantizer is None:
            raise CatalogInputError(
                f"item {rec.item_id!r}: this bundle's semantic IDs were given, not made by a quantizer; "
                "a new item must come with its `sid`")
        need_text.append(n)
    if need_text:
        assert quantizer is not None
        texts = [_quantizer_text(records[n].title, records[n].text, records[n].categories or (), quantizer)
                 for n in need_text]
        for n, row_codes in zip(need_text, quantizer.assign_codes(texts).tolist(), strict=True):
            codes[n] = tuple(int(c) for c in row_codes)
    return [Upsert(rec.item_id, title=rec.title, text=rec.text, categories=tuple(rec.categories or ()),
                   attributes=rec.attribute_pairs(), codes=codes[n], full=full[n])
            for n, rec in enumerate(records)]


def _same_text(row: CatalogRow, rec: ItemUpsert) -> bool:
    """Whether the quantizer would see the same text (title, text, categories) as when ``row`` was coded."""
    return (row.title, row.text, row.categories) == (rec.title, rec.text, tuple(rec.categories or ()))


def trained_token_rows(catalog: Catalog, token_id: Callable[[list[str]], list[int]]) -> set[int]:
    """Token ids of every code some trained item uses: the rows training has updated."""
    codes = catalog.base.codes[~catalog.base.added]  # (T, L); rows added while serving are never trained
    tokens = [code_token(lvl, c) for lvl in range(codes.shape[1]) for c in np.unique(codes[:, lvl]).tolist()]
    return set(token_id(tokens)) if tokens else set()
