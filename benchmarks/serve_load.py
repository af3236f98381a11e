"""Load benchmark of the online service (not a test). Prints ONE JSON line.

    python benchmarks/serve_load.py [--artifacts DIR] [--duration 5] [--rate R]

Without --artifacts it exports a random-init bundle (4 layers, d=256, 5,000 items: one batch-1
forward costs a few ms here, so model compute dominates HTTP overhead). Then, in one run:

  (a) model limit  raw in-process batched forward + search, batch sizes 1, 8, 32, 64 (no HTTP)
  served           the server (max batch 32) under closed-loop concurrency 1, 8, 32, 64 and one
                   open-loop arrival rate (default: half the served throughput at concurrency 32)
  (b) HTTP floor   the same server with the noop encoder (no forward pass), concurrency 32
  (c) no batching  the same server with max batch 1, concurrency 32

Load comes from a separate process, benchmarks/http_load.py (a minimal keep-alive HTTP/1.1 client on
asyncio streams, far cheaper than a full client library, so it steals little CPU from the server). Every request is a
full-length history (max_history random items), k=10. Mean batch size comes from the server's
simgr_batch_size histogram.

``LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/serve_load.py`` measures the server on tcmalloc (the
Docker image's default): the servers and the model limit inherit the preload, the load generator never does.
The line's ``setup.malloc`` is the malloc the server process actually mapped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCIES = (1, 8, 32, 64)
SERVE = (
    "import sys, argparse; from service.cli import serve as serve_cmd; p = argparse.ArgumentParser(); "
    "serve_cmd.add_arguments(p); sys.exit(serve_cmd.run(p.parse_args(sys.argv[1:])))"
)


# ---------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


class Server:
    def __init__(self, artifacts: Path, *flags: str, threads: int) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGR_")}
        env |= {"SIMGR_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-c", SERVE, "--artifacts", str(artifacts), "--port", str(self.port),
               "--log-level", "warning", *flags]
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in __exit__, after the server stops)
            prefix="simgr_bench_server_", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + Path(self.log.name).read_text()[-2000:])
            try:
                if http_get(self.port, "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def malloc(self) -> str:
        """The malloc the server process runs on (a preloaded tcmalloc or jemalloc, else "system")."""
        from model.training.allocator import malloc_in_use

        return malloc_in_use(Path(f"/proc/{self.proc.pid}/maps"))

    def batch_stats(self) -> tuple[float, float]:
        text = http_get(self.port, "/metrics")[1]
        vals = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln.startswith("simgr_batch_size_")}
        return vals.get("simgr_batch_size_sum", 0.0), vals.get("simgr_batch_size_count", 0.0)

    def load(self, bodies_file: Path, *, concurrency: int = 0, rate: float = 0.0, duration: float,
             warmup: float) -> dict[str, Any]:
        s0, c0 = self.batch_stats()
        cmd = [sys.executable, str(Path(__file__).resolve().with_name("http_load.py")), "--port", str(self.port),
               "--bodies", str(bodies_file), "--duration", str(duration), "--warmup", str(warmup)]
        cmd += ["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # the client on glibc's malloc, always:
        # a preload measures the server it reaches (Server inherits it), not a cheaper client on the same cores
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=duration + warmup + 120,
                             env=env)
        res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        s1, c1 = self.batch_stats()
        res["mean_batch"] = round((s1 - s0) / (c1 - c0), 2) if c1 > c0 else None
        return res


def model_limit(artifacts: Path, histories: list[list[int]], sizes: tuple[int, ...], threads: int) -> dict[str, Any]:
    """(a) raw batched forward + search of the bundle, in process, no HTTP, same torch threads."""
    import torch

    torch.set_num_threads(threads)
    from index import ItemIndex
    from model.export.bundle import Bundle

    bundle = Bundle.load(artifacts)
    index = ItemIndex.load(artifacts, expect=bundle.manifest.index, matrix=bundle.embeddings)
    out: dict[str, Any] = {}
    for b in sizes:
        batch = [histories[i % len(histories)] for i in range(b)]
        fwd, total = [], []
        with torch.inference_mode():
            bundle.encode_users(batch)  # warm
            reps = max(3, min(20, int(64 / b)))
            for _ in range(reps):
                t0 = time.perf_counter()
                q = bundle.encode_users(batch)
                t1 = time.perf_counter()
                index.search(q, 10, exclude=[set(h) for h in batch])
                fwd.append(t1 - t0)
                total.append(time.perf_counter() - t0)
        out[str(b)] = {"forward_ms": round(statistics.median(fwd) * 1e3, 2),
                       "total_ms": round(statistics.median(total) * 1e3, 2),
                       "prompts_per_s": round(b / statistics.median(total), 1)}
    return out


def bench_main(a: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="simgr_bench_"))
    if a.artifacts:
        artifacts = Path(a.artifacts)
    else:
        from model.export.synthetic import make_random_bundle

        artifacts = make_random_bundle(tmp / "bundle", n_items=a.items, layers=a.layers, dim=a.dim, seed=0,
                                       index=a.index)
    items = json.loads((artifacts / "popularity.json").read_text())
    max_history = json.loads((artifacts / "manifest.json").read_text())["prompt"]["max_history"]
    lookup = {iid: i for i, iid in enumerate(
        json.loads(line)["item_id"] for line in (artifacts / "items.jsonl").read_text().splitlines() if line)}
    rng = random.Random(0)
    id_hist = [rng.sample(items, min(max_history, len(items))) for _ in range(512)]
    bodies_file = tmp / "bodies.json"
    bodies_file.write_text(json.dumps([json.dumps({"history": h, "k": 10}) for h in id_hist]))

    limit = model_limit(artifacts, [[lookup[i] for i in h] for h in id_hist], CONCURRENCIES, a.threads)
    d, w = a.duration, a.warmup
    served: dict[str, Any] = {}
    t = a.threads
    with Server(artifacts, "--max-batch-size", "32", threads=t) as srv:
        for c in CONCURRENCIES:
            served[f"c{c}"] = srv.load(bodies_file, concurrency=c, duration=d, warmup=w)
        rate = a.rate or max(1.0, 0.5 * served["c32"]["rps"])
        malloc = srv.malloc()
        served["open_loop"] = srv.load(bodies_file, rate=rate, duration=d, warmup=0)
    with Server(artifacts, "--encoder", "noop", "--max-batch-size", "32", threads=t) as srv:
        floor = {f"c{c}": srv.load(bodies_file, concurrency=c, duration=d, warmup=w) for c in (1, 32)}
    with Server(artifacts, "--max-batch-size", "1", threads=t) as srv:
        nobatch = {"c32": srv.load(bodies_file, concurrency=32, duration=d, warmup=w)}

    s32 = served["c32"]["rps"]
    result = {
        "throughput_vs_limit": round(s32 / limit["32"]["prompts_per_s"], 3),
        "batching_speedup": round(s32 / nobatch["c32"]["rps"], 2) if nobatch["c32"]["rps"] else None,
        "p99_c8_over_p50_c1": round(served["c8"]["p99_ms"] / served["c1"]["p50_ms"], 2),
        "errors": sum(r["errors"] for r in served.values()),
        "http_floor_rps": floor["c32"]["rps"],
        "model_ms_b1": limit["1"]["forward_ms"],
        "served": served,
        "model_limit": limit,
        "http_floor": floor,
        "no_batching": nobatch,
        "setup": {"artifacts": str(artifacts) if a.artifacts else "random", "items": len(items),
                  "max_history": max_history, "duration_s": d, "cpus": os.cpu_count(), "torch_threads": t,
                  "malloc": malloc, "loadavg_1m": round(os.getloadavg()[0], 2)},
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--artifacts", type=Path, help="bundle to serve (default: export a random one)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per load level")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    p.add_argument("--rate", type=float, default=0.0, help="open-loop arrivals/s (default: half of served c32)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, model limit and servers alike (1 leaves a core for HTTP on 2 cores)")
    p.add_argument("--items", type=int, default=5000, help="random bundle: catalogue size")
    p.add_argument("--layers", type=int, default=4, help="random bundle: decoder layers")
    p.add_argument("--dim", type=int, default=256, help="random bundle: hidden size")
    p.add_argument("--index", default="flat", help="random bundle: its export --index type (e.g. sid-exact)")
    return bench_main(p.parse_args(argv))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
