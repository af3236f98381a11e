"""Append-only, durable logs: a Redis Stream in the stack's Redis (AOF), or a JSON-lines journal file.

A write is acknowledged only once it is durable: ``append`` returns after Redis answered the XADDs (one
MULTI/EXEC, so a batch is all-or-nothing) or after the journal file was fsynced. Anything else raises
``LogUnavailable``, which callers turn into a 503 that changed nothing.

Entry ids are strings ordered like the log: Redis stream ids (``"1700000000000-0"``) or, for the journal,
the 1-based line number. ``read(after=...)`` returns the entries after an id; ``"0"`` means from the start.
``wait`` blocks up to ``timeout_s`` for entries after an id (XREAD BLOCK, or polling the file), which is how
a replica follows a log that another process writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

_FIELD = "r"  # the one stream field that holds an entry's JSON record


class LogUnavailable(Exception):
    """The log could not be written or read (Redis down, disk error); nothing was acknowledged."""


@dataclass(frozen=True)
class LogEntry:
    id: str  # ordered like the log; pass it as ``after`` to read what follows
    record: dict[str, Any]


class DurableLog(Protocol):
    kind: str  # "redis" | "file"

    async def append(self, records: Sequence[Mapping[str, Any]]) -> list[str]: ...

    async def read(self, after: str = "0", *, count: int = 1000) -> list[LogEntry]: ...

    async def wait(self, after: str, *, timeout_s: float, count: int = 1000) -> list[LogEntry]: ...

    async def close(self) -> None: ...


class RedisStreamLog:
    """One Redis Stream at ``key``; ``maxlen`` trims approximately (XADD MAXLEN ~) when set."""

    kind = "redis"

    def __init__(self, *, url: str, key: str, maxlen: int | None = None, timeout_s: float = 1.0) -> None:
        import redis.asyncio as redis

        self.key, self.maxlen, self.timeout_s = key, maxlen, timeout_s
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                            decode_responses=True)

    async def append(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for rec in records:
                    pipe.xadd(self.key, {_FIELD: json.dumps(rec, sort_keys=True)},
                              maxlen=self.maxlen, approximate=self.maxlen is not None)
                ids = await asyncio.wait_for(pipe.execute(), timeout=2 * self.timeout_s)
        except Exception as exc:  # redis errors, OSError, timeouts: the write is not acknowledged
            raise LogUnavailable(f"redis stream {self.key}: append failed ({type(exc).__name__})") from exc
        return [str(i) for i in ids]

    async def read(self, after: str = "0", *, count: int = 1000) -> list[LogEntry]:
        start = "-" if after == "0" else f"({after}"
        try:
            rows: Any = await self._client.xrange(self.key, min=start, max="+", count=count)
        except Exception as exc:
            raise LogUnavailable(f"redis stream {self.key}: read failed ({type(exc).__name__})") from exc
        return _entries(rows)

    async def wait(self, after: str, *, timeout_s: float, count: int = 1000) -> list[LogEntry]:
        try:
            got: Any = await self._client.xread({self.key: after}, count=count, block=max(1, int(timeout_s * 1000)))
        except Exception as exc:
            raise LogUnavailable(f"redis stream {self.key}: wait failed ({type(exc).__name__})") from exc
        return [e for _, rows in got or [] for e in _entries(rows)]

    async def close(self) -> None:
        await self._client.aclose()


def _entries(rows: Any) -> list[LogEntry]:
    """XRANGE/XREAD rows ``[(id, {field: json}), ...]`` -> entries."""
    return [LogEntry(str(i), json.loads(f[_FIELD])) for i, f in rows]


class FileJournal:
    """JSON lines at ``path``, fsynced on every append; safe for one writing process (a thread lock
    serialises appends). A torn last line, left by a crash mid-write, is ignored and overwritten."""

    kind = "file"

    def __init__(self, *, path: Path, poll_s: float = 0.05) -> None:
        self.path, self.poll_s = path, poll_s
        self._lock = threading.Lock()

    def _append_sync(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        with self._lock:
            try:
                n = self._truncate_torn_tail()
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, payload)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise LogUnavailable(f"{self.path}: append failed ({exc.strerror})") from exc
            return [str(n + i + 1) for i in range(len(records))]

    def _truncate_torn_tail(self) -> int:
        """Drop a partial last line (no newline); return the number of complete lines."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(end)
        return data.count(b"\n", 0, end)

    def _read_sync(self, after: str, count: int) -> list[LogEntry]:
        skip = int(after)
        out: list[LogEntry] = []
        try:
            with open(self.path, encoding="utf-8") as f:
                for n, line in enumerate(f, start=1):
                    if n <= skip or not line.endswith("\n"):
                        continue
                    out.append(LogEntry(str(n), json.loads(line)))
                    if len(out) >= count:
                        break
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise LogUnavailable(f"{self.path}: read failed ({exc})") from exc
        return out

    async def append(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        return await asyncio.to_thread(self._append_sync, records)

    async def read(self, after: str = "0", *, count: int = 1000) -> list[LogEntry]:
        return await asyncio.to_thread(self._read_sync, after, count)

    async def wait(self, after: str, *, timeout_s: float, count: int = 1000) -> list[LogEntry]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            got = await self.read(after, count=count)
            if got or asyncio.get_running_loop().time() >= deadline:
                return got
            await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        return None


def open_log(*, name: str, redis_url: str | None, state_dir: Path | None, redis_prefix: str = "simgr:",
             maxlen: int | None = None) -> DurableLog:
    """The log called ``name``: a Redis Stream ``{redis_prefix}log:{name}`` when Redis is configured, else
    ``{state_dir}/{name}.jsonl``. Raises ValueError when neither is configured."""
    if redis_url:
        return RedisStreamLog(url=redis_url, key=f"{redis_prefix}log:{name}", maxlen=maxlen)
    if state_dir is None:
        raise ValueError(f"log {name!r} needs SIMGR_REDIS_URL or SIMGR_STATE_DIR")
    return FileJournal(path=Path(state_dir) / f"{name}.jsonl")
