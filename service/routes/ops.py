"""GET /healthz, /readyz, /info (key), /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from model.training.allocator import process_malloc
from service.auth import require_key
from service.recommender import Recommender
from service.routes import ERRORS, recommender
from service.schemas import (
    BatchingInfo,
    CanaryInfo,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    ReadyResponse,
)

router = APIRouter()
Rec = Annotated[Recommender, Depends(recommender)]


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "Model or index not loaded"}},
)
async def readyz(rec: Rec) -> Response:
    """Readiness: 200 once model and index are loaded; Redis is reported, never fatal."""
    redis = "disabled" if rec.store.kind != "redis" else ("ok" if await rec.store.ping() else "down")
    state = rec.state
    if state is None:
        status = "loading" if rec.load_error is None else "failed"
        body = {"error": rec.load_error or "the model is still loading", "error_type": "not_ready",
                "status": status, "model_version": None, "redis": redis}
        return JSONResponse(body, status_code=503)
    ready = ReadyResponse(status="ready", model_version=state.model_version, redis=redis)  # type: ignore[arg-type]
    return JSONResponse(ready.model_dump())


@router.get("/info", response_model=InfoResponse, dependencies=[Depends(require_key)], responses=ERRORS)  # type: ignore[arg-type]
async def info(rec: Rec) -> InfoResponse:
    """Model version(s), catalogue size, embedding dim, batching settings, the session store, whether
    /admin/* is enabled, and the publish root being followed."""
    state = rec.require_state()
    s = rec.settings
    canary = rec.canary
    return InfoResponse(
        model_version=state.model_version,
        serving_since=rec.serving_since,
        n_items=len(state.model.item_lookup),  # live items
        dim=state.model.dim,
        max_history=state.model.max_history,
        encoder=s.encoder,
        device=s.resolved_device(),
        index_on_gpu=state.index.on_gpu,
        artifacts=str(state.artifacts) if state.artifacts else None,
        batching=BatchingInfo(
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
            request_timeout_ms=s.request_timeout_ms,
            queue_size=rec.batcher.queue_size,
        ),
        session_store=rec.store.kind,  # type: ignore[arg-type]
        auth=s.auth_enabled,
        admin="enabled" if s.admin_enabled else "disabled",
        root=str(s.root) if s.root else None,
        canary=None if canary is None else CanaryInfo(
            model_version=canary.model_version, percent=s.canary_percent,
            artifacts=str(canary.artifacts) if canary.artifacts else None,
        ),
        malloc=process_malloc(),
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)
