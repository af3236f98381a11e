"""The HTTP protocol: request/response models (pydantic, strict) and the per-request timing record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from model.export.items import MAX_BATCH, AttrValue, ItemUpsert
from model.training.allocator import Malloc

MAX_K = 200  # largest k a client may ask for
MAX_HISTORY_IDS = 1000  # ids in a request history / events batch
MAX_FILTER_IDS = 10_000  # ids in exclude / allow (the 1 MB body limit bounds them anyway)
MAX_ID_LEN = 128  # characters in an item or user id

FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN)]


class _Strict(BaseModel):
    # strict: no "5" -> 5 or true -> 1 coercion; forbid: a typo'd field is an error, not ignored
    model_config = ConfigDict(strict=True, extra="forbid")


class Range(_Strict):
    min: StrictInt | FiniteFloat | None = None
    max: StrictInt | FiniteFloat | None = None


AttrCond = AttrValue | Annotated[list[AttrValue], Field(min_length=1, max_length=1000)] | Range


class ItemFilter(_Strict):
    categories_any: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(
        None, min_length=1, max_length=1000, description="Items in at least one of these categories.")
    attributes: dict[str, AttrCond] | None = Field(
        None, max_length=64, description="name: value | [values] (any) | {min?, max?} (inclusive); all must hold.")


class RecommendRequest(_Strict):
    user_id: UserId | None = Field(None, description="Adds the stored session (oldest first) before `history`.")
    history: list[ItemId] = Field(
        default_factory=list, max_length=MAX_HISTORY_IDS, description="Recent item ids, oldest first."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="Number of items to return.")
    exclude_seen: bool = Field(True, description="Drop the items of the effective history.")
    exclude: list[ItemId] | None = Field(None, max_length=MAX_FILTER_IDS, description="Never return these.")
    allow: list[ItemId] | None = Field(None, max_length=MAX_FILTER_IDS, description="Return only these.")
    filter: ItemFilter | None = Field(None, description="Restrict candidates by category and attributes.")


class PutItemsRequest(_Strict):
    items: list[ItemUpsert] = Field(min_length=1, max_length=MAX_BATCH, description="Items to add or update.")

    @model_validator(mode="after")
    def _unique_ids(self) -> PutItemsRequest:
        seen: set[str] = set()
        for it in self.items:
            if it.item_id in seen:
                raise ValueError(f"item_id {it.item_id!r} appears twice in one batch")
            seen.add(it.item_id)
        return self


class ItemStatus(BaseModel):
    item_id: str
    sid: list[str] | None
    status: Literal["created", "updated", "unchanged", "retired"]


class PutItemsResponse(BaseModel):
    items: list[ItemStatus]
    model_version: str


class ItemView(BaseModel):
    item_id: str
    sid: list[str]
    title: str | None
    text: str | None
    categories: list[str]
    attributes: dict[str, str | int | float | bool]
    origin: Literal["trained", "added"]


class RecommendedItem(BaseModel):
    item_id: str
    score: float | None = Field(description="<h, e_i>; null for the popularity fallback.")
    rank: int = Field(description="1 = best.")


class RecommendResponse(BaseModel):
    request_id: str
    model_version: str
    items: list[RecommendedItem]
    history_used: list[str] = Field(description="The effective history (known ids, oldest first).")
    unknown_items: list[str] = Field(description="Ids in the request or session not in the catalogue.")
    fallback: Literal["popular"] | None = Field(description="'popular' when the effective history was empty.")


class EventsRequest(_Strict):
    user_id: UserId
    item_ids: list[ItemId] = Field(min_length=1, max_length=MAX_HISTORY_IDS, description="Oldest first.")


class EventsResponse(BaseModel):
    accepted: int = Field(description="Ids appended to the session (known items only).")
    unknown_items: list[str]


class SessionResponse(BaseModel):
    user_id: str
    items: list[str] = Field(description="Stored history, oldest first.")


class SessionDeleted(BaseModel):
    user_id: str
    deleted: bool = Field(description="False when there was no session.")


class ReloadRequest(_Strict):
    artifacts: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        None, description="Bundle directory; default: the one being served (re-read from disk)."
    )


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str | None
    n_items: int
    seconds: float


class ErrorResponse(BaseModel):
    error: str
    error_type: str


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready", "loading", "failed"]
    model_version: str | None
    redis: Literal["ok", "down", "disabled"]
    error: str | None = None


class BatchingInfo(BaseModel):
    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    request_timeout_ms: float
    queue_size: int


class CanaryInfo(BaseModel):
    model_version: str
    percent: float
    artifacts: str | None


class InfoResponse(BaseModel):
    model_version: str
    serving_since: float = Field(description="Unix time this model_version was swapped in (after load + warm-up).")
    n_items: int
    dim: int
    max_history: int
    encoder: str
    device: str
    index_on_gpu: bool
    artifacts: str | None
    batching: BatchingInfo
    session_store: Literal["redis", "memory"]
    auth: bool
    admin: Literal["enabled", "disabled"] = Field(
        description="/admin/*: disabled (403 admin_disabled) unless SIMGR_ADMIN_KEYS is set"
    )
    root: str | None = Field(description="publish root being followed (ROOT/CURRENT, ROOT/CANARY)")
    canary: CanaryInfo | None = Field(description="the second bundle and its share of users, when one is loaded")
    malloc: Malloc = Field(description="the malloc this process runs on; the Docker image preloads tcmalloc "
                                       "(LD_PRELOAD), which serves more requests/s than glibc's under load")


@dataclass
class RequestTiming:
    """Filled by the pipeline, read by the middleware for the x-*-time headers (milliseconds)."""

    queue_ms: float = 0.0
    inference_ms: float = 0.0
    search_ms: float = 0.0
    model_version: str = ""  # the bundle that answered (metrics label); "" when none did
    degraded: list[str] = field(default_factory=list)  # e.g. ["session-store"]
