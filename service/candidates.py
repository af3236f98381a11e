"""Candidate rules shared by the model path and the popularity fallback: attribute filters, popularity
order under filters, and id de-duplication."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from service.errors import ServiceError
from service.model_state import ModelState
from service.schemas import ItemFilter


def filtered(state: ModelState, flt: ItemFilter, allow: frozenset[int] | None) -> frozenset[int]:
    """The live items passing ``flt`` (and ``allow`` when given)."""
    catalog = getattr(state.model, "catalog", None)
    if catalog is None:
        raise ServiceError("validation", "filter: this encoder has no item metadata (noop encoder)")
    attrs = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in (flt.attributes or {}).items()}
    ids = catalog.matching(flt.categories_any, attrs)
    return frozenset(ids if allow is None else ids & allow)


def dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def popular(state: ModelState, k: int, exclude: set[int], allow: frozenset[int] | None) -> list[int]:
    """The k most popular items passing the filters (exactly k when at least k remain)."""
    if allow is not None:
        return sorted((i for i in allow if i not in exclude), key=state.pop_rank.__getitem__)[:k]
    out: list[int] = []
    for i in state.pop_order:  # stops after k (plus the excluded ones it skips)
        if i not in exclude:
            out.append(int(i))
            if len(out) == k:
                break
    return out
