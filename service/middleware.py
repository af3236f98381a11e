"""Pure-ASGI middleware around every HTTP request:

- X-Request-ID: echo a well-formed incoming one, else generate one.
- Timing headers on every response: x-queue-time, x-inference-time, x-search-time, x-total-time (ms)
  (TEI's names); x-simgr-degraded when the session store was skipped.
- Body limit: 413 on Content-Length or on the streamed byte count.
- Metrics: simgr_requests_total{endpoint,status,model_version} and
  simgr_request_duration_seconds{endpoint,model_version}, with endpoint = the route template (bounded
  cardinality; "unmatched" for 404s) and model_version = the bundle that answered ("" when none did).
- Any exception that escapes the app becomes a 500 ``{"error", "error_type": "internal"}``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response
from service.metrics import Metrics
from service.schemas import RequestTiming

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        timing = RequestTiming()
        state = scope.setdefault("state", {})
        state["request_id"], state["timing"] = request_id, timing
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                out = MutableHeaders(scope=message)
                out["x-request-id"] = request_id
                out["x-queue-time"] = f"{timing.queue_ms:.3f}"
                out["x-inference-time"] = f"{timing.inference_ms:.3f}"
                out["x-search-time"] = f"{timing.search_ms:.3f}"
                out["x-total-time"] = f"{(time.perf_counter() - t0) * 1e3:.3f}"
                if timing.degraded:
                    out["x-simgr-degraded"] = ",".join(timing.degraded)
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413)  # FastAPI re-raises it; the 413 handler answers
            return message

        try:
            early = self._check_length(headers.get("content-length"))
            if early is not None:
                self.metrics.failures.labels(error_type=early[0]).inc()
                await error_response(*early)(scope, receive, send_with_headers)
            else:
                await self.app(scope, limited_receive, send_with_headers)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            self.metrics.failures.labels(error_type="internal").inc()
            await error_response("internal", "internal server error")(scope, receive, send_with_headers)
        finally:
            self._observe(scope, status, timing.model_version, time.perf_counter() - t0)

    def _observe(self, scope: Scope, status: int, version: str, seconds: float) -> None:
        endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.requests.labels(endpoint=endpoint, status=str(status), model_version=version).inc()
        self.metrics.request_duration.labels(endpoint=endpoint, model_version=version).observe(seconds)

    def _check_length(self, value: str | None) -> tuple[str, str] | None:
        if value is None or not value.isdigit():  # servers reject malformed lengths before the app
            return None
        if int(value) > self.max_body_bytes:
            return "payload_too_large", f"body over {self.max_body_bytes} bytes"
        return None
