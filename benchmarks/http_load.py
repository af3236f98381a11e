"""HTTP load generator for serve_load.py (a separate process, so it steals little CPU from the server).

    python benchmarks/http_load.py --port P --bodies BODIES.json [--concurrency C | --rate R] [--duration 5]

A minimal keep-alive HTTP/1.1 client on asyncio streams posts the JSON bodies round-robin to
/recommend, closed-loop at a fixed concurrency or open-loop at a fixed arrival rate, and prints ONE
JSON line: requests, rps, p50/p95/p99 latency in ms, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def build_requests(host: str, port: int, bodies: list[str]) -> list[bytes]:
    out = []
    for body in bodies:
        raw = body.encode()
        head = (f"POST /recommend HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(raw)}\r\n\r\n")
        out.append(head.encode() + raw)
    return out


async def closed_loop(host: str, port: int, reqs: list[bytes], concurrency: int, duration: float,
                      warmup: float) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + duration

    async def worker(w: int) -> None:
        nonlocal errors
        conn = await Conn.open(host, port)
        i = w
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                break
            try:
                status = await conn.post(reqs[i % len(reqs)])
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                status = -1
                conn.close()
                conn = await Conn.open(host, port)
            t1 = time.perf_counter()
            if t0 >= t_measure:
                lat.append(t1 - t0)
                errors += status != 200
            i += concurrency
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return summarize(lat, errors, duration)


async def open_loop(host: str, port: int, reqs: list[bytes], rate: float, duration: float) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s; latency counts from the scheduled arrival (no coordinated omission)."""
    idle: list[Conn] = []
    lat: list[float] = []
    errors = 0
    rng = random.Random(0)

    async def one(i: int, t_sched: float) -> None:
        nonlocal errors
        conn = idle.pop() if idle else await Conn.open(host, port)
        try:
            status = await conn.post(reqs[i % len(reqs)])
            idle.append(conn)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            status = -1
            conn.close()
        lat.append(time.perf_counter() - t_sched)
        errors += status != 200

    tasks = []
    t = time.perf_counter()
    t_end = t + duration
    i = 0
    while t < t_end:
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, t)))
        i += 1
        t += rng.expovariate(rate)
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    out = summarize(lat, errors, duration)
    out["offered_rps"] = round(rate, 1)
    return out


def summarize(lat: list[float], errors: int, duration: float) -> dict[str, Any]:
    if not lat:
        return {"requests": 0, "rps": 0.0, "errors": errors}
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [lat[0]] * 99
    return {
        "requests": len(lat),
        "rps": round((len(lat) - errors) / duration, 1),
        "p50_ms": round(q[49] * 1e3, 2),
        "p95_ms": round(q[94] * 1e3, 2),
        "p99_ms": round(q[98] * 1e3, 2),
        "errors": errors,
    }


def drive_main(a: argparse.Namespace) -> int:
    bodies = json.loads(Path(a.bodies).read_text())
    reqs = build_requests(a.host, a.port, bodies)
    if a.rate:
        res = asyncio.run(open_loop(a.host, a.port, reqs, a.rate, a.duration))
    else:
        res = asyncio.run(closed_loop(a.host, a.port, reqs, a.concurrency, a.duration, a.warmup))
    sys.stdout.write(json.dumps(res) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bodies", required=True, help="JSON list of request bodies (strings)")
    p.add_argument("--concurrency", type=int, default=1, help="closed loop: requests in flight")
    p.add_argument("--rate", type=float, default=0.0, help="open loop: arrivals per second (overrides concurrency)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    return drive_main(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
