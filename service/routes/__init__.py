"""HTTP routes, one module per surface; each route is a thin call into ``Recommender``."""

from __future__ import annotations

from fastapi import Request

from service.recommender import Recommender
from service.schemas import ErrorResponse, RequestTiming

ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
    413: {"model": ErrorResponse, "description": "Body over the size limit"},
    422: {"model": ErrorResponse, "description": "Invalid request"},
    503: {"model": ErrorResponse, "description": "Not ready, timed out, or session store down"},
}


def recommender(request: Request) -> Recommender:
    rec: Recommender = request.app.state.recommender
    return rec


def timing(request: Request) -> RequestTiming:
    t: RequestTiming = request.state.timing
    return t


def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid
