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


class _Exchange:
    """One HTTP request's context: its id and timings, the response status, the body bytes received."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, max_body_bytes: int) -> None:
        self.t0 = time.perf_counter()
        incoming = Headers(scope=scope).get("x-request-id", "")
        self.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        self.timing = RequestTiming()
        state = scope.setdefault("state", {})
        state["request_id"], state["timing"] = self.request_id, self.timing
        self.status = 500  # until the app starts a response
        self.started = False  # whether the response has started (then no error body can follow)
        self.received = 0  # body bytes read so far
        self._receive, self._send, self._max_body_bytes = receive, send, max_body_bytes

    async def send(self, message: Message) -> None:
        """``send`` with the request id and timing headers added to the response start."""
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            out = MutableHeaders(scope=message)
            out["x-request-id"] = self.request_id
            out["x-queue-time"] = f"{self.timing.queue_ms:.3f}"
            out["x-inference-time"] = f"{self.timing.inference_ms:.3f}"
            out["x-search-time"] = f"{self.timing.search_ms:.3f}"
            out["x-total-time"] = f"{(time.perf_counter() - self.t0) * 1e3:.3f}"
            if self.timing.degraded:
                out["x-simgr-degraded"] = ",".join(self.timing.degraded)
        await self._send(message)

    async def receive(self) -> Message:
        """``receive`` that stops a body once it streams past the limit."""
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self._max_body_bytes:
                raise HTTPException(413)  # FastAPI re-raises it; the 413 handler answers
        return message


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ex = _Exchange(scope, receive, send, max_body_bytes=self.max_body_bytes)
        try:
            early = self._check_length(Headers(scope=scope).get("content-length"))
            if early is not None:
                self.metrics.failures.labels(error_type=early[0]).inc()
                await error_response(*early)(scope, receive, ex.send)
            else:
                await self.app(scope, ex.receive, ex.send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if ex.started:
                raise
            self.metrics.failures.labels(error_type="internal").inc()
            await error_response("internal", "internal server error")(scope, receive, ex.send)
        finally:
            self._observe(scope, ex.status, ex.timing.model_version, time.perf_counter() - ex.t0)

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
