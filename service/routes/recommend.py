"""POST /recommend, POST /events, GET/DELETE /sessions/{user_id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from service.auth import require_key
from service.recommender import Recommender
from service.routes import ERRORS, recommender, request_id, timing
from service.schemas import (
    MAX_ID_LEN,
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    RecommendRequest,
    RecommendResponse,
    RequestTiming,
    SessionDeleted,
    SessionResponse,
)

router = APIRouter(dependencies=[Depends(require_key)], responses=ERRORS)  # type: ignore[arg-type]
Rec = Annotated[Recommender, Depends(recommender)]
UserPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN)]


@router.post(
    "/recommend",
    response_model=RecommendResponse,
    responses={429: {"model": ErrorResponse, "description": "Queue full (see Retry-After)"}},
)
async def recommend(
    body: RecommendRequest,
    rec: Rec,
    rid: Annotated[str, Depends(request_id)],
    t: Annotated[RequestTiming, Depends(timing)],
) -> RecommendResponse:
    """Top-k items for a history (request history, plus the stored session when user_id is given)."""
    return await rec.recommend(body, request_id=rid, timing=t)


@router.post("/events", response_model=EventsResponse)
async def events(body: EventsRequest, rec: Rec) -> EventsResponse:
    """Append interactions to a user's session."""
    return await rec.add_events(body)


@router.get("/sessions/{user_id}", response_model=SessionResponse)
async def get_session(user_id: UserPath, rec: Rec) -> SessionResponse:
    """The stored session of a user, oldest first (empty when none)."""
    return SessionResponse(user_id=user_id, items=await rec.get_session(user_id))


@router.delete("/sessions/{user_id}", response_model=SessionDeleted)
async def delete_session(user_id: UserPath, rec: Rec) -> SessionDeleted:
    """Erase a user's session."""
    return SessionDeleted(user_id=user_id, deleted=await rec.delete_session(user_id))
