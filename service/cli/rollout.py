"""``simgr publish`` and ``simgr rollback``: move a publish root's pointers (model/export/release.py) and
nudge the followers over Redis when a URL is configured (they poll anyway)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("simgr")


def _nudge(a: argparse.Namespace, result: dict[str, str | None]) -> bool:
    """PUBLISH on the rollout channel; False (and a warning) when Redis is unset or unreachable."""
    if not a.redis_url:
        return False
    import redis

    from service.follow import nudge_message

    try:
        client = redis.Redis.from_url(a.redis_url, socket_connect_timeout=1.0, socket_timeout=1.0)
        client.publish(a.channel, nudge_message(result))
        client.close()
    except redis.RedisError as exc:
        log.warning("pointer moved, but the Redis nudge failed (%s); replicas see it on their next poll", exc)
        return False
    return True


def cmd_publish(a: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> int:
    from model.export.release import publish

    result = publish(a.bundle, a.root, pointer="CANARY" if a.canary else "CURRENT", link=a.link, verify=a.verify)
    emit({**result, "nudged": _nudge(a, result)})
    return 0


def cmd_rollback(a: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> int:
    from model.export.release import rollback

    result = rollback(a.root, pointer="CANARY" if a.canary else "CURRENT")
    emit({**result, "nudged": _nudge(a, result)})
    return 0


def _common(s: argparse.ArgumentParser) -> None:
    s.add_argument("--root", required=True, type=Path, help="publish root the servers follow (simgr serve --root)")
    s.add_argument("--redis-url", default=os.environ.get("SIMGR_REDIS_URL") or None,
                   help="nudge the followers over this Redis (default: $SIMGR_REDIS_URL; unset: they poll)")
    s.add_argument("--channel", default=os.environ.get("SIMGR_ROLLOUT_CHANNEL", "simgr:rollout"),
                   help="Redis pub/sub channel (default: $SIMGR_ROLLOUT_CHANNEL or simgr:rollout)")


def add_parsers(sub: Any, emit: Callable[[dict[str, Any]], None]) -> None:
    s = sub.add_parser("publish", help="copy a bundle into a publish root and point CURRENT (or CANARY) at it")
    s.add_argument("bundle", type=Path, help="export bundle directory")
    _common(s)
    s.add_argument("--canary", action="store_true", help="move CANARY instead of CURRENT")
    s.add_argument("--link", action="store_true", help="hard-link the files instead of copying (same filesystem)")
    s.add_argument("--verify", default="full", choices=["quick", "full"], help="digest check of the bundle first")
    s.set_defaults(func=lambda a: cmd_publish(a, emit))
    s = sub.add_parser("rollback", help="move CURRENT back to the previously published version (or end a canary)")
    _common(s)
    s.add_argument("--canary", action="store_true", help="remove the CANARY pointer instead")
    s.set_defaults(func=lambda a: cmd_rollback(a, emit))
