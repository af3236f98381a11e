"""POST /admin/reload (admin key)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from service.auth import require_admin
from service.durable_log import LogUnavailable
from service.recommender import Recommender
from service.routes import ERRORS, recommender
from service.schemas import ErrorResponse, ReloadRequest, ReloadResponse

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)], responses=ERRORS)  # type: ignore[arg-type]


@router.post(
    "/reload",
    response_model=ReloadResponse,
    responses={
        403: {"model": ErrorResponse, "description": "Not an admin key"},
        409: {"model": ErrorResponse, "description": "A reload is already running"},
        500: {"model": ErrorResponse, "description": "The bundle crashed while loading"},
    },
)
async def reload(
    request: Request,
    rec: Annotated[Recommender, Depends(recommender)],
    body: Annotated[ReloadRequest | None, Body()] = None,
) -> ReloadResponse:
    """Load, warm up and atomically swap in a bundle; the old one keeps serving if it fails. The
    catalogue change log is then replayed onto the new bundle (the follower retries if the log is down)."""
    artifacts = body.artifacts if body is not None else None
    out = await rec.reload(Path(artifacts) if artifacts else None)
    with contextlib.suppress(LogUnavailable):
        await request.app.state.catalog.catch_up()
    return out
