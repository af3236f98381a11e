"""FAISS item index: exact inner-product top-K with allow/deny filters (``ItemIndex``)."""

from index.item_index import ItemIndex, exact_topk

__all__ = ["ItemIndex", "exact_topk"]
