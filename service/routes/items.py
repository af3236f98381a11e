"""PUT /items, DELETE /items/{item_id} (admin key), GET /items/{item_id} (any key): the living catalogue."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from model.semantic_ids.space import sid_tokens
from service.auth import require_admin, require_key
from service.catalog import CatalogService, outcome_sid
from service.errors import ServiceError
from service.recommender import Recommender
from service.routes import ERRORS, recommender
from service.schemas import MAX_ID_LEN, ErrorResponse, ItemStatus, ItemView, PutItemsRequest, PutItemsResponse

router = APIRouter(responses=ERRORS)  # type: ignore[arg-type]
ItemPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "No live item with this id"}}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "Not an admin key"},
    409: {"model": ErrorResponse, "description": "Fixed catalogue, or no free uniqueness code"},
}


def catalog_service(request: Request) -> CatalogService:
    svc: CatalogService = request.app.state.catalog
    return svc


Catalog = Annotated[CatalogService, Depends(catalog_service)]


@router.put("/items", response_model=PutItemsResponse, dependencies=[Depends(require_admin)], responses=_WRITE_ERRORS)  # type: ignore[arg-type]
async def put_items(body: PutItemsRequest, catalog: Catalog) -> PutItemsResponse:
    """Add or update up to 1,000 items; durable (logged) before the 200, recommendable right after it."""
    outcomes, version = await catalog.upsert(body.items)
    items = [ItemStatus(item_id=o.item_id, sid=outcome_sid(o), status=o.status) for o in outcomes]  # type: ignore[arg-type]
    return PutItemsResponse(items=items, model_version=version)


@router.delete("/items/{item_id}", response_model=ItemStatus, dependencies=[Depends(require_admin)],
               responses={**_WRITE_ERRORS, **_NOT_FOUND})  # type: ignore[arg-type]
async def delete_item(item_id: ItemPath, catalog: Catalog) -> ItemStatus:
    """Retire an item: it appears in no recommendation after the 200."""
    o = await catalog.retire(item_id)
    return ItemStatus(item_id=o.item_id, sid=outcome_sid(o), status="retired")


@router.get("/items/{item_id}", response_model=ItemView, dependencies=[Depends(require_key)], responses=_NOT_FOUND)  # type: ignore[arg-type]
async def get_item(item_id: ItemPath, rec: Annotated[Recommender, Depends(recommender)]) -> ItemView:
    """A live item's semantic ID, metadata, attributes and origin."""
    state = rec.require_state()
    catalog = getattr(state.model, "catalog", None)
    idx = state.model.item_lookup.get(item_id)
    if catalog is None or idx is None:
        raise ServiceError("item_not_found", f"no live item {item_id!r}")
    row = catalog.rows[idx]
    return ItemView(item_id=row.item_id, sid=sid_tokens(row.sid), title=row.title, text=row.text,
                    categories=list(row.categories), attributes=dict(row.attributes), origin=row.origin)
