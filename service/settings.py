"""Runtime settings of the online service: env vars ``SIMGR_*``, each with a ``simgr serve`` flag twin.

Precedence: CLI flag > environment variable > default (see service/cli/serve.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.export.added import AddedEmbedding


class Settings(BaseSettings):
    """Every knob of ``simgr serve``; ``SIMGR_<NAME>`` in the environment, ``--<name>`` on the CLI."""

    model_config = SettingsConfigDict(env_prefix="SIMGR_", extra="ignore", frozen=True)

    # where and what to serve
    artifacts: Path | None = Field(default=None, description="export bundle directory (this or --root is required)")
    root: Path | None = Field(
        default=None, description="publish root: serve ROOT/CURRENT (and ROOT/CANARY) and follow them (simgr publish)"
    )
    follow_interval_s: float = Field(default=2.0, gt=0, le=3600, description="how often --root pointers are re-read")  # Redis nudges make it sooner
    rollout_channel: str = Field(default="simgr:rollout", min_length=1, description="Redis pub/sub channel `simgr publish` nudges")
    verify: Literal["quick", "full", "off"] = Field(
        default="quick", description="bundle digests checked at load: quick = sizes + small files + index, full = all"
    )
    canary_artifacts: Path | None = Field(default=None, description="second bundle for a share of users (else ROOT/CANARY)")
    canary_percent: float = Field(default=0.0, ge=0, le=100, description="percent of users (stable hash) sent to the canary")
    host: str = Field(default="127.0.0.1", description="bind address (loopback by default; 0.0.0.0 in a container)")
    port: int = Field(default=8000, ge=0, le=65535, description="bind port (0 picks a free one)")
    device: str = Field(default="auto", description="cpu | cuda[:N] | auto (cuda when available: bf16 model + GPU index)")
    encoder: Literal["model", "noop"] = Field(
        default="model", description="noop: skip the forward pass (mean of history item vectors); the HTTP-floor benchmark"
    )
    noop_sleep_ms: float = Field(default=0.0, ge=0, description="sleep per batch of the noop encoder (load shaping)")
    warmup: bool = Field(default=True, description="forward + search at batch 1, max/2, max before reporting ready")
    background_load: bool = Field(
        default=False, description="accept connections while loading (/healthz 200, /readyz 503 until loaded)"
    )

    # dynamic batching (TEI / infinity style): flush at max_batch_size or after max_wait_ms
    max_batch_size: int = Field(default=32, ge=1, le=4096, description="prompts per forward pass")  # CPU gains flatten ~32
    max_wait_ms: float = Field(default=2.0, ge=0, le=10_000, description="longest wait for a batch to fill")  # short: under load batches fill while the model runs
    max_queue: int = Field(default=1024, ge=1, description="waiting prompts before 429")  # bounded: vllm#18826 (unbounded = OOM)
    request_timeout_ms: float = Field(default=5000.0, gt=0, description="deadline per request; past it 503 timeout")
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After seconds sent with 429")

    # sessions: Redis when a URL is given, else a bounded in-process LRU
    redis_url: str | None = Field(default=None, description="redis://host:port/db; unset = in-process LRU store")
    redis_prefix: str = Field(default="simgr:sess:", description="Redis key prefix (key = prefix + user_id)")
    redis_timeout_ms: float = Field(default=250.0, gt=0, description="per-operation Redis timeout")  # mcp-context-forge#4074 uses 500
    redis_connect_timeout_ms: float = Field(default=250.0, gt=0, description="Redis connect timeout")  # a dead host fails fast
    redis_max_connections: int = Field(default=64, ge=1, description="Redis pool size (blocking pool)")  # redis-py#2517
    redis_retry_s: float = Field(default=1.0, ge=0, description="after a Redis failure, skip Redis this long")  # circuit breaker
    session_ttl_s: int = Field(default=7 * 24 * 3600, ge=1, description="session TTL, refreshed on each write")
    session_max_history: int = Field(default=0, ge=0, description="items kept per user (0 = the bundle's max_history)")
    local_max_users: int = Field(default=100_000, ge=1, description="users kept by the in-process LRU store")

    # the interaction log: every accepted POST /events, for retraining (service/durable_log.py)
    state_dir: Path | None = Field(
        default=None, description="directory of the service's files; the interaction log and the catalogue journal live here without Redis"
    )
    event_log: bool = Field(default=True, description="append accepted /events to the durable interaction log")
    event_log_prefix: str = Field(default="simgr:", description="Redis key prefix of the log (stream {prefix}log:events)")
    event_log_maxlen: int = Field(
        default=10_000_000, ge=0, description="approximate Redis stream length kept (0 = unbounded)"
    )  # ~100 B per entry: 10M entries is ~1 GB of Redis memory

    # living catalogue: changes go to a Redis Stream (with redis_url) or a fsynced journal under state_dir
    catalog_log: str = Field(default="catalog", min_length=1, max_length=128, description="catalogue change-log name (stream {redis_prefix}log:NAME, or STATE_DIR/NAME.jsonl)")
    added_item_levels: Literal["all", "trained", "semantic"] = Field(
        default="trained", description="code rows an added item's embedding averages (benchmarks/cold_items.py)")
    added_item_gain: float = Field(
        default=1.0, gt=0, le=10, description="scale of an added item's vector: above 1 lifts new items against "
        "trained ones, at the trained ones' expense (README, Cold items)")
    added_item_neighbours: int = Field(
        default=0, ge=0, le=1000, description="k > 0: an added item takes the trained vectors of the k items nearest "
        "in the item quantizer's space, not its code rows (needs a quantizer; README, Cold items)")
    added_item_neighbour_temperature: float = Field(
        default=0.01, gt=0, le=10, description="softmax temperature over those neighbours' latent cosines")

    # limits and security
    max_body_bytes: int = Field(default=1_000_000, ge=1, description="request body limit (413 beyond)")  # TEI: 2 MB
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), repr=False, description="comma list of Bearer keys for the data routes (unset = open)"
    )
    admin_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), repr=False, description="comma list of Bearer keys for /admin/* (also valid on data routes)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="log level")
    shutdown_timeout_s: float = Field(default=30.0, ge=0, description="SIGTERM: longest wait for in-flight requests")

    def added_embedding(self) -> AddedEmbedding:
        """The SIMGR_ADDED_ITEM_* settings as the value the bundle's embedder takes."""
        return AddedEmbedding(levels=self.added_item_levels, gain=self.added_item_gain,
                              neighbours=self.added_item_neighbours,
                              temperature=self.added_item_neighbour_temperature)

    @field_validator("artifacts", "root", "canary_artifacts", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # compose passes ${VAR:-} as ""; Path("") would be "."

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> Settings:
        if any(len(k) < 8 for k in (*self.api_keys, *self.admin_keys)):
            raise ValueError("API keys must be at least 8 characters")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.admin_keys)

    @property
    def admin_enabled(self) -> bool:
        """/admin/* exists only with an admin key: never open to anyone who can reach the port."""
        return bool(self.admin_keys)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def public_dict(self) -> dict[str, object]:
        """Settings safe to show (no keys, no Redis credentials)."""
        out = self.model_dump(mode="json", exclude={"api_keys", "admin_keys", "redis_url"})
        out["auth"] = self.auth_enabled
        out["admin"] = self.admin_enabled
        return out
