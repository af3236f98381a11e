"""Follow a publish root (model/export/release.py): serve ROOT/CURRENT, and ROOT/CANARY as the canary.

Every ``follow_interval_s`` (sooner when ``simgr publish`` nudges the Redis channel) the pointers are
re-read; a moved pointer is loaded and warmed off the event loop, then swapped in, exactly like
/admin/reload. A version that fails to load is logged once and not retried until its pointer moves
again; the old bundle keeps serving. Redis is optional: without it, or while it is down, polling alone
converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from model.errors import SimGRError
from model.export.release import POINTERS, PointerName, read_pointer
from service.errors import ServiceError
from service.recommender import Recommender
from service.settings import Settings

log = logging.getLogger(__name__)

_REDIS_RETRY_S = 5.0  # wait before re-subscribing after a Redis failure


class Follower:
    def __init__(self, rec: Recommender, settings: Settings) -> None:
        if settings.root is None:
            raise ValueError("Follower needs settings.root")
        self.rec, self.settings, self.root = rec, settings, settings.root
        self._wake = asyncio.Event()
        self._rejected: dict[PointerName, Path] = {}  # pointer -> the target that failed to load
        self.nudges = 0  # Redis messages received (tests and logs)

    def target(self, name: PointerName) -> Path | None:
        try:
            return read_pointer(self.root, name)
        except SimGRError as exc:
            log.error("%s", exc)
            return None

    def nudge(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Poll (and listen) until cancelled."""
        listener = None
        if self.settings.redis_url:
            listener = asyncio.get_running_loop().create_task(self._listen(self.settings.redis_url))
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.follow_interval_s)
                self._wake.clear()
                await self.sync()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def sync(self) -> None:
        """Bring each slot to where its pointer points (CANARY only when no explicit canary is set)."""
        for name in POINTERS:
            if name == "CANARY" and self.settings.canary_artifacts is not None:
                continue
            target = self.target(name)
            served = self.rec.state if name == "CURRENT" else self.rec.canary
            if target is None:
                if name == "CANARY" and served is not None:
                    self.rec.drop_canary()
                continue  # a missing CURRENT keeps the served bundle
            if (served is not None and served.artifacts == target) or self._rejected.get(name) == target:
                continue
            try:
                out = await self.rec.reload(target, canary=name == "CANARY", wait=True)
            except ServiceError as exc:
                self._rejected[name] = target
                log.error("%s -> %s not loaded (%s): %s", name, target.name, exc.error_type, exc.message)
                continue
            self._rejected.pop(name, None)
            log.info("%s: now serving %s (was %s) in %.2f s", name, out.model_version, out.previous_version,
                     out.seconds)

    async def _listen(self, url: str) -> None:
        import redis.asyncio as aioredis

        while True:
            client = aioredis.Redis.from_url(url, socket_connect_timeout=1.0)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.settings.rollout_channel)
                    self.nudge()  # a publish may have happened while we were not subscribed
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.nudges += 1
                            self.nudge()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or gone: polling goes on; subscribe again later
                log.warning("rollout channel %s unavailable (%s); polling every %.1f s", self.settings.rollout_channel,
                            type(exc).__name__, self.settings.follow_interval_s)
                await asyncio.sleep(_REDIS_RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()


def nudge_message(result: dict[str, str | None]) -> str:
    """What `simgr publish` / `rollback` send on the channel (followers only need the wake-up)."""
    return json.dumps({k: result.get(k) for k in ("pointer", "model_version")})
