"""POST /admin/reload (admin key)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends

from service.auth import require_admin
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
    rec: Annotated[Recommender, Depends(recommender)],
    body: Annotated[ReloadRequest | None, Body()] = None,
) -> ReloadResponse:
    """Load, warm up and atomically swap in a bundle; the old one keeps serving if it fails."""
    artifacts = body.artifacts if body is not None else None
    return await rec.reload(Path(artifacts) if artifacts else None)
