"""FAISS item index: exact inner-product top-K with allow/deny filters (``ItemIndex``)."""

from index.errors import IndexFormatError
from index.item_index import ItemIndex, exact_topk

__all__ = ["IndexFormatError", "ItemIndex", "exact_topk"]
