"""The one table from error type to HTTP status, and the error every layer raises.

Every error body is ``{"error": str, "error_type": str}`` (TEI's shape). Handlers for FastAPI's
validation errors, Starlette's HTTP errors (404, 405, 413) and unexpected exceptions all go
through :func:`error_response`, so no response escapes the table.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi.responses import JSONResponse

ERROR_STATUS: dict[str, int] = {
    "bad_request": 400,  # a body the framework cannot read at all (broken stream)
    "unauthorized": 401,  # missing or wrong Bearer key (with WWW-Authenticate: Bearer)
    "forbidden": 403,  # a valid data key used on /admin/*
    "admin_disabled": 403,  # /admin/* with no admin key configured (disabled, not open)
    "not_found": 404,  # unknown route
    "method_not_allowed": 405,
    "item_not_found": 404,  # GET/DELETE /items/{id} of an id not in the live catalogue
    "catalog_unsupported": 409,  # catalogue changes on the noop encoder's fixed catalogue
    "catalog_full": 409,  # no free uniqueness code left under the item's prefix
    "reload_in_progress": 409,  # a second /admin/reload while one is loading
    "payload_too_large": 413,  # body over max_body_bytes
    "validation": 422,  # malformed JSON, wrong types, NaN, out-of-range k, too many / too long ids
    "bad_bundle": 422,  # /admin/reload named a bundle that does not load; the old one keeps serving
    "overloaded": 429,  # batch queue full (with Retry-After)
    "internal": 500,  # a genuine server fault (a bug); never for input we can validate
    "reload_failed": 500,  # the bundle looked fine but loading or warm-up crashed
    "not_ready": 503,  # model and index not loaded yet
    "timeout": 503,  # waited past request_timeout_ms; the work was dropped from the queue
    "session_store_unavailable": 503,  # Redis down on /events or /sessions (never silently lost)
    "event_log_unavailable": 503,  # the interaction log refused an /events append; nothing was stored
    "catalog_unavailable": 503,  # the catalogue change log (Redis / journal) could not be written: nothing changed
}

_BY_STATUS: dict[int, str] = {}
for _type, _status in ERROR_STATUS.items():
    _BY_STATUS.setdefault(_status, _type)


class ServiceError(Exception):
    """An error with a type from :data:`ERROR_STATUS`; the handler turns it into the JSON body."""

    def __init__(self, error_type: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        if error_type not in ERROR_STATUS:
            raise ValueError(f"unknown error type {error_type!r}")
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.error_type]


def type_for_status(status: int) -> str:
    """The error type for a bare HTTP status raised by the framework (404, 405, 413, ...)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return "internal" if status >= 500 else "bad_request"


def error_response(error_type: str, message: str, *, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": message, "error_type": error_type}, status_code=ERROR_STATUS[error_type], headers=dict(headers or {})
    )
