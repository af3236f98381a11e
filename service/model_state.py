"""What the pipeline serves from: a user encoder plus its item index, loaded and warmed as one unit.

A ``ModelState`` is immutable. Reload builds a new one off the event loop and swaps one reference;
requests keep the state they started with, so in-flight work finishes on the old bundle.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index import IndexFormatError, ItemIndex
from model.errors import SimGRError
from model.export.integrity import VerifyMode
from service.encoder import UserEncoder

log = logging.getLogger(__name__)


Loader = Callable[[Path | None], UserEncoder]


@dataclass(frozen=True, eq=False)
class ModelState:
    model: UserEncoder
    index: ItemIndex
    artifacts: Path | None
    loaded_at: float = field(default_factory=time.time)
    pop_order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n_live,) popular first
    pop_rank: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (N,) idx -> place in pop_order

    @property
    def model_version(self) -> str:
        return self.model.model_version

    @classmethod
    def build(cls, model: UserEncoder, *, artifacts: Path | None, use_gpu: bool = False) -> ModelState:
        """Pair ``model`` with its bundle's item index (type and files checked against the manifest; the item
        matrix shared with the model, not copied). Export is the index's only writer: a bundle without one is
        refused, never re-indexed here. Only an encoder with no bundle directory at all (``artifacts`` None,
        an in-process encoder such as ``DummyEncoder``) gets a flat index built from its embeddings."""
        if artifacts is None:
            index = ItemIndex.build(model.embeddings)
        else:
            expect = None
            if (artifacts / "manifest.json").is_file():
                from model.export.manifest import BundleManifest

                expect = BundleManifest.read(artifacts / "manifest.json").index
            try:
                index = ItemIndex.load(artifacts, expect=expect, matrix=model.embeddings, use_gpu=use_gpu)
            except IndexFormatError as e:
                raise SimGRError(str(e)) from None
        if index.ntotal != model.n_items or index.dim != model.dim:
            raise SimGRError(
                f"{artifacts}: index holds {index.ntotal} x {index.dim}, the model has {model.n_items} x {model.dim}"
            )
        return cls(model=model, index=index, artifacts=artifacts, **_popularity(model))

    def with_model(self, model: UserEncoder) -> ModelState:
        """The same index (changed in place by the caller) with ``model``'s catalogue."""
        return dataclasses.replace(self, model=model, **_popularity(model))

    def warmup(self, max_batch_size: int) -> float:
        """Forward + search at batch sizes 1, max/2, max (full-length histories); returns seconds."""
        t0 = time.perf_counter()
        hist = self.pop_order[: max(1, self.model.max_history)].tolist()
        for b in sorted({1, max(1, max_batch_size // 2), max_batch_size}):
            q = self.model.encode_users([hist] * b)
            if q.shape != (b, self.model.dim) or not np.isfinite(q).all():
                raise SimGRError(f"{self.artifacts}: warm-up produced bad embeddings (shape {q.shape})")
            self.index.search(q, min(10, self.index.ntotal), exclude=[set(hist)] * b)
        seconds = time.perf_counter() - t0
        log.info("warm-up of %s done in %.2f s", self.model_version, seconds)
        return seconds


def _popularity(model: UserEncoder) -> dict[str, Any]:
    """Every live item idx, popular first, then the rest; and each one's rank (N for a dead row)."""
    order = np.asarray(model.popularity, dtype=np.int64)
    if len(order) < len(model.item_lookup):  # a partial popularity list (in-process encoders): the rest by idx
        seen = set(order.tolist())
        rest = sorted(i for i in model.item_lookup.values() if i not in seen)
        order = np.concatenate([order, np.asarray(rest, dtype=np.int64)])
    rank = np.full(model.n_items, model.n_items, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return {"pop_order": order, "pop_rank": rank}


def default_loader(*, device: str, encoder: str, noop_sleep_ms: float, verify: VerifyMode = "quick") -> Loader:
    """Verify the bundle's digests and load ``model.export.bundle.Bundle`` from a directory (wrapped in the
    noop encoder when asked)."""

    def load(artifacts: Path | None) -> UserEncoder:
        if artifacts is None:
            raise SimGRError("no bundle directory given (--artifacts / SIMGR_ARTIFACTS)")
        if not artifacts.is_dir():
            raise SimGRError(f"{artifacts}: not a directory")
        from model.export.bundle import Bundle

        bundle: UserEncoder = Bundle.load(artifacts, device=device, verify=verify)
        if encoder == "noop":
            from service.dummy import DummyEncoder

            return DummyEncoder.wrap(bundle, sleep_ms=noop_sleep_ms)
        return bundle

    return load
