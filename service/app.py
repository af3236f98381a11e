"""The FastAPI app: ``create_app`` wires settings, session store, metrics, auth, the recommender and
routes; the lifespan starts the batcher, loads + warms the bundle, and drains on shutdown.

    uvicorn service.app:create_app --factory      # settings from SIMGR_* env vars
    simgr serve --artifacts DIR                   # the same, with CLI flags (service/cli/serve.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.errors import SimGRError
from model.export.release import read_pointer
from model.training.allocator import process_malloc
from service.auth import Auth
from service.catalog import CatalogService
from service.durable_log import DurableLog, open_log
from service.errors import ServiceError, error_response, type_for_status
from service.follow import Follower
from service.metrics import Metrics
from service.middleware import RequestContextMiddleware
from service.model_state import Loader, default_loader
from service.recommender import Recommender
from service.routes import admin, items, ops, recommend
from service.sessions import SessionStore, make_store
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, loader: Loader | None = None, store: SessionStore | None = None
) -> FastAPI:
    """A ready-to-serve app. ``loader`` (artifacts dir -> encoder) and ``store`` are for tests."""
    settings = settings or Settings()
    metrics = Metrics()
    store = store or make_store(settings)
    device = settings.resolved_device()
    loader = loader or default_loader(device=device, encoder=settings.encoder, noop_sleep_ms=settings.noop_sleep_ms,
                                      verify=settings.verify)
    rec = Recommender(settings=settings, store=store, metrics=metrics, loader=loader,
                      event_log=open_event_log(settings))
    catalog = CatalogService(rec=rec, settings=settings, metrics=metrics)

    app = FastAPI(
        title="SimGR recommender",
        version="1",
        summary="Next-item recommendations from an LLM user embedding and exact top-K search.",
        lifespan=_lifespan,
    )
    app.state.settings, app.state.metrics, app.state.recommender = settings, metrics, rec
    app.state.catalog = catalog
    app.state.auth = Auth(settings)
    app.state.background = set()  # strong references to fire-and-forget tasks
    app.state.startup_error = None  # set when the initial load fails (the serve command reports it)
    app.state.follower = None  # a Follower when serving a publish root
    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    _add_error_handlers(app)
    for module in (recommend, items, ops, admin):
        app.include_router(module.router)
    return app


def open_event_log(settings: Settings) -> DurableLog | None:
    """The interaction log of POST /events: a Redis Stream, else a journal in state_dir, else none."""
    if not settings.event_log or not (settings.redis_url or settings.state_dir):
        if settings.event_log:
            log.warning("no interaction log: set SIMGR_REDIS_URL or SIMGR_STATE_DIR to keep /events for retraining")
        return None
    return open_log(name="events", redis_url=settings.redis_url, state_dir=settings.state_dir,
                    redis_prefix=settings.event_log_prefix, maxlen=settings.event_log_maxlen or None)


# errors: every path ends in error_response(), i.e. the one table in service/errors.py


def _fail(request: Request, error_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    request.app.state.metrics.failures.labels(error_type=error_type).inc()
    return error_response(error_type, message, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return _fail(request, exc.error_type, exc.message, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _fail(request, "validation", _describe(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error_type = type_for_status(exc.status_code)
        headers = dict(exc.headers or {})
        message = str(exc.detail)
        if exc.status_code == 400:  # FastAPI's body parser: undecodable bytes are malformed JSON too
            error_type, message = "validation", "malformed JSON body (not valid UTF-8 JSON)"
        elif error_type == "payload_too_large":
            message = f"body over {request.app.state.settings.max_body_bytes} bytes"
        return _fail(request, error_type, message, headers)

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def _describe(errors: Any) -> str:
    """First validation error as one line: ``body.k: Input should be less than or equal to 200``."""
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"malformed JSON body: {first.get('ctx', {}).get('error', 'decode error')}"
    loc = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {first.get('msg', 'invalid')}{more}"


# lifecycle


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    rec: Recommender = app.state.recommender
    loop = asyncio.get_running_loop()
    rec.batcher.start()
    log.info("session store: %s", rec.store.kind)
    if settings.background_load:
        _spawn(app, _initial_load(app))
    else:
        try:
            await _start_serving(app)  # a broken bundle fails startup (uvicorn exits non-zero)
        except Exception as exc:
            app.state.startup_error = str(exc) or type(exc).__name__
            log.error("cannot serve %s: %s", settings.root or settings.artifacts, app.state.startup_error)
            await rec.batcher.stop()
            raise
    _spawn(app, app.state.catalog.follow())
    hup = _install_sighup(app, loop)
    try:
        yield
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for task in list(app.state.background):
            task.cancel()
        await rec.batcher.stop()  # uvicorn has drained in-flight requests; finish anything queued
        await rec.store.close()
        await app.state.catalog.close()
        if rec.event_log is not None:
            await rec.event_log.close()
        log.info("stopped")


async def _replay(app: FastAPI) -> None:
    """Apply the catalogue change log onto the freshly loaded bundle before reporting ready."""
    from service.durable_log import LogUnavailable

    try:
        n = await app.state.catalog.catch_up()
        if n:
            log.info("catalogue: replayed %d change-log entries", n)
    except LogUnavailable as exc:
        log.warning("catalogue change log unavailable at start (the follower retries): %s", exc)


def _initial_targets(settings: Settings) -> tuple[Path | None, Path | None]:
    """(primary, canary) bundle directories: the flags, or what the publish root points at."""
    if settings.root is None:
        return settings.artifacts, settings.canary_artifacts
    current = read_pointer(settings.root, "CURRENT")
    if current is None:
        raise SimGRError(f"{settings.root}/CURRENT: missing; publish a bundle first: "
                         f"simgr publish BUNDLE --root {settings.root}")
    return current, settings.canary_artifacts or read_pointer(settings.root, "CANARY")


async def _start_serving(app: FastAPI) -> None:
    """Load the primary bundle (fatal on failure), then the canary (logged on failure), then follow."""
    settings: Settings = app.state.settings
    rec: Recommender = app.state.recommender
    primary, canary = _initial_targets(settings)
    await rec.load(primary)
    await _replay(app)
    log.info("ready: serving %s (malloc: %s)", rec.state.model_version if rec.state else None, process_malloc())
    if canary is not None:
        try:
            await rec.load(canary, canary=True)
            log.info("canary %s for %.2f%% of users", rec.canary.model_version if rec.canary else None,
                     settings.canary_percent)
        except Exception as exc:
            rec.metrics.reloads.labels(outcome="rejected").inc()
            log.error("canary %s not loaded: %s", canary, exc)
    if settings.root is not None:
        app.state.follower = Follower(rec, settings)
        _spawn(app, app.state.follower.run())


async def _initial_load(app: FastAPI) -> None:
    rec: Recommender = app.state.recommender
    try:
        await _start_serving(app)
    except Exception as exc:
        rec.load_error = str(exc) or type(exc).__name__
        log.error("loading %s failed: %s", app.state.settings.artifacts, rec.load_error)


def _spawn(app: FastAPI, coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    app.state.background.add(task)
    task.add_done_callback(app.state.background.discard)


def _install_sighup(app: FastAPI, loop: asyncio.AbstractEventLoop) -> bool:
    """SIGHUP = /admin/reload of the current bundle directory (main thread only)."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return False

    async def reload() -> None:
        try:
            out = await app.state.recommender.reload(None)
            log.info("SIGHUP reload: serving %s", out.model_version)
        except ServiceError as exc:
            log.error("SIGHUP reload failed (%s): %s", exc.error_type, exc.message)

    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: _spawn(app, reload()))
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True
