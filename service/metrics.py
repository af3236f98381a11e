"""Prometheus metrics, one ``CollectorRegistry`` per app (so tests can build many apps).

Names follow TEI's structure (``te_request_duration`` ...) under the ``simgr_`` prefix; duration
buckets are geometric from 0.1 ms to ~10 s with ratio 1.5, fine enough for millisecond targets.
Label values are bounded: ``endpoint`` is the route template, ``status`` an HTTP code,
``error_type`` a key of service/errors.py, ``reason`` a fixed fallback reason, ``model_version`` one
of the (at most two) bundles served, "" for requests no model answered, ``role`` primary | canary.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


def geometric_buckets(start: float = 1e-4, stop: float = 10.0, ratio: float = 1.5) -> tuple[float, ...]:
    """start, start*ratio, ... up to the first value >= stop."""
    out = [start]
    while out[-1] < stop:
        out.append(out[-1] * ratio)
    return tuple(round(b, 7) for b in out)


DURATION_BUCKETS = geometric_buckets()  # 30 buckets, 0.1 ms .. ~12.8 s
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096)


class Metrics:
    """All service metrics on a private registry; ``render()`` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.request_duration = Histogram(
            "simgr_request_duration_seconds", "HTTP request latency", ["endpoint", "model_version"], buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "simgr_queue_duration_seconds", "Time a prompt waited for its batch", buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "simgr_inference_duration_seconds", "Batched forward pass time", buckets=DURATION_BUCKETS, registry=r,
        )
        self.search_duration = Histogram(
            "simgr_search_duration_seconds", "Batched FAISS search time", buckets=DURATION_BUCKETS, registry=r,
        )
        self.batch_size = Histogram("simgr_batch_size", "Prompts per forward pass", buckets=BATCH_BUCKETS, registry=r)
        self.queue_size = Gauge("simgr_queue_size", "Prompts waiting for a batch", registry=r)
        self.requests = Counter(
            "simgr_requests_total", "HTTP requests by route, status and model version", ["endpoint", "status", "model_version"],
            registry=r,
        )
        self.failures = Counter(
            "simgr_request_failures_total", "Error responses by error type", ["error_type"], registry=r,
        )
        self.fallbacks = Counter(
            "simgr_fallback_total", "Degraded answers by reason and model version", ["reason", "model_version"], registry=r,
        )
        self.session_store_errors = Counter(
            "simgr_session_store_errors_total", "Failed session store operations", registry=r,
        )
        self.model_info = Gauge(
            "simgr_model_info", "The bundles being served (value 1)", ["model_version", "role"], registry=r,
        )
        self.catalog_items = Gauge("simgr_catalog_items", "Live catalogue items by origin", ["origin"], registry=r)
        self.catalog_changes = Counter(
            "simgr_catalog_changes_total", "Catalogue changes applied from the change log, by operation", ["op"], registry=r)
        self.catalog_lag = Gauge(
            "simgr_catalog_follower_lag_seconds", "Age of the last change-log entry when it was applied", registry=r)
        self.canary_percent = Gauge("simgr_canary_percent", "Percent of users routed to the canary", registry=r)
        self.reloads = Counter("simgr_reloads_total", "Bundle reloads by outcome", ["outcome"], registry=r)

    def set_models(self, primary: str | None, canary: str | None, canary_percent: float) -> None:
        self.model_info.clear()
        for role, version in (("primary", primary), ("canary", canary)):
            if version is not None:
                self.model_info.labels(model_version=version, role=role).set(1)
        self.canary_percent.set(canary_percent if canary is not None else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
