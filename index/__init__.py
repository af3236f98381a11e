"""Item index: top-K inner-product search over item embeddings, exact (flat, sid-exact) or approximate
(FAISS HNSW / IVF / IVF-PQ), with allow/deny filters and catalogue changes (``ItemIndex``)."""

from index.errors import IndexFormatError, RecallTargetError
from index.item_index import ItemIndex, exact_topk
from index.spec import IndexChoice, IndexSpec, SidCodes

__all__ = ["IndexChoice", "IndexFormatError", "IndexSpec", "ItemIndex", "RecallTargetError", "SidCodes", "exact_topk"]
