"""Several replicas on this machine: one Redis, N `simgr serve --root ROOT`, nginx in front, load from
another process; kill a replica, publish a new version, roll back, and count failed requests.

    python deploy/replicas.py [--replicas 3] [--items 200] [--follow-interval 1.0] [--phase-s 3] [--keep]

Everything binds 127.0.0.1. Bundles are tiny random-init ones (model/export/synthetic.py). Prints ONE
JSON line {requests, failures, killed_replica, publish_converge_s, rollback_converge_s, versions_seen,
...}; exits 1 on any failed request, a stale answer after convergence, or a replica that never converges.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LOCATIONS = ROOT / "deploy" / "nginx" / "simgr-locations.conf"


def log(msg: str) -> None:
    sys.stderr.write(f"replicas: {msg}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    """Child processes with their logs in WORK/<name>.log; all stopped on exit."""

    def __init__(self, work: Path) -> None:
        self.work, self.procs = work, {}  # type: ignore[var-annotated]
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "SIMGR_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(self.work / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.work / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # raises on non-2xx
        return json.loads(r.read())


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get_json(url)
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"pid {proc.pid} exited with {proc.returncode} before {url} answered") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {timeout_s} s") from None
            time.sleep(0.1)


def nginx_conf(work: Path, lb_port: int, ports: list[int]) -> Path:
    temp = work / "nginx-tmp"
    temp.mkdir(exist_ok=True)
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in ports)
    temps = "\n".join(f"    {kind}_temp_path {temp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read the 0700 work dir
    conf = work / "nginx.conf"
    conf.write_text(f"""{user}worker_processes 1;
pid {work / "nginx.pid"};
events {{ worker_connections 512; }}
http {{
    access_log off;
{temps}
    upstream simgr_api {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{lb_port};
        include {LOCATIONS};
    }}
}}
""")
    return conf


def start_replica(procs: Procs, n: int, port: int, a: argparse.Namespace, redis_url: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "service.cli.main", "serve", "--root", str(a.root), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--redis-url", redis_url, "--redis-prefix", "replicas:sess:",
           "--follow-interval-s", str(a.follow_interval), "--rollout-channel", a.channel, "--max-batch-size", "8",
           "--log-level", "info"]
    return procs.start(f"replica{n}", cmd)


def served(ports: list[int]) -> list[tuple[str | None, float]]:
    """(model_version, serving_since) of each replica's /info."""
    out: list[tuple[str | None, float]] = []
    for p in ports:
        try:
            info = get_json(f"http://127.0.0.1:{p}/info")
            out.append((info["model_version"], info["serving_since"]))
        except OSError:
            out.append((None, 0.0))
    return out


def converge(ports: list[int], want: str, t0: float, timeout_s: float) -> float:
    """Seconds from ``t0`` (wall clock) until the last replica swapped ``want`` in (its /info's
    serving_since: the moment itself, not when this poll happened to see it)."""
    while True:
        now = served(ports)
        if all(v == want for v, _ in now):
            return max(since for _, since in now) - t0
        if time.time() - t0 > timeout_s:
            raise RuntimeError(f"replicas serve {served(ports)}, not {want}, {timeout_s} s after the move")
        time.sleep(0.02)


def moved_at(root: Path) -> float:
    """When CURRENT last moved: convergence is timed from there, not from the CLI's start-up."""
    return os.lstat(root / "CURRENT").st_mtime


def simgr_cli(procs: Procs, *argv: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "service.cli.main", *argv], env=procs.env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"simgr {argv[0]} failed: {out.stderr.strip()}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_stack(procs: Procs, a: argparse.Namespace) -> dict[str, Any]:
    """Bundles v1 + v2, Redis, ROOT with v1 published, N replicas and nginx, all ready."""
    from model.export.release import publish
    from model.export.synthetic import make_random_bundle

    work = procs.work
    bundles = [make_random_bundle(work / f"bundle{s}", n_items=a.items, seed=s) for s in (0, 1)]
    versions = [json.loads((b / "manifest.json").read_text())["model_version"] for b in bundles]
    redis_port = free_port()
    redis = procs.start("redis", [a.redis_server, "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                  "--appendonly", "no", "--dir", str(work)])
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    publish(bundles[0], a.root)
    ports = [free_port() for _ in range(a.replicas)]
    replicas = [start_replica(procs, n, p, a, redis_url) for n, p in enumerate(ports)]
    for p, proc in zip(ports, replicas, strict=True):
        wait_ready(f"http://127.0.0.1:{p}/readyz", proc, a.ready_timeout)
    if redis.poll() is not None:
        raise RuntimeError(f"redis-server exited: {procs.tail('redis')}")
    lb_port = free_port()
    conf = nginx_conf(work, lb_port, ports)
    nginx = procs.start("nginx", [a.nginx, "-p", str(work), "-c", str(conf), "-e", str(work / "nginx-error.log"),
                                  "-g", "daemon off;"])
    wait_ready(f"http://127.0.0.1:{lb_port}/readyz", nginx, 30)
    log(f"{a.replicas} replicas on {ports} behind nginx on {lb_port}, serving {versions[0]}")
    return {"bundles": bundles, "versions": versions, "redis_url": redis_url, "ports": ports, "lb_port": lb_port}


def scenario(procs: Procs, a: argparse.Namespace, stack: dict[str, Any]) -> dict[str, Any]:
    """Load on; kill a replica (and restart it); publish v2; roll back to v1. Returns phase times."""
    v1, v2 = stack["versions"]
    ports, url = stack["ports"], f"http://127.0.0.1:{stack['lb_port']}"
    nudge = ["--redis-url", stack["redis_url"], "--channel", a.channel]
    stop, results = procs.work / "stop", procs.work / "load.jsonl"
    loader = procs.start("load", [sys.executable, str(ROOT / "deploy" / "replicas_load.py"), url, str(results),
                                  str(stop), f"{v1},{v2}", "--threads", str(a.threads), "--items", str(a.items)])
    time.sleep(a.phase_s)  # steady load before the first fault
    killed = random.Random(a.seed).randrange(a.replicas)
    victim, sig = procs.procs[f"replica{killed}"], signal.Signals[f"SIG{a.kill_signal}"]
    victim.send_signal(sig)
    log(f"killed replica {killed} ({sig.name})")
    time.sleep(a.phase_s)  # load with one replica gone: nginx must route around it
    victim.wait(timeout=60)
    proc = start_replica(procs, killed, ports[killed], a, stack["redis_url"])
    wait_ready(f"http://127.0.0.1:{ports[killed]}/readyz", proc, a.ready_timeout)
    simgr_cli(procs, "publish", str(stack["bundles"][1]), "--root", str(a.root), *nudge)
    publish_s = converge(ports, v2, moved_at(a.root), a.converge_timeout)
    log(f"publish {v2}: every replica serves it after {publish_s:.2f} s")
    t_pub_done = time.time()
    time.sleep(a.phase_s)
    simgr_cli(procs, "rollback", "--root", str(a.root), *nudge)
    t_rb = moved_at(a.root)
    rollback_s = converge(ports, v1, t_rb, a.converge_timeout)
    log(f"rollback to {v1}: every replica serves it after {rollback_s:.2f} s")
    t_rb_done = time.time()
    time.sleep(a.phase_s)
    stop.touch()
    loader.wait(timeout=120)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    # an answer that started after every replica had switched must come from the new version
    stale = sum(1 for r in rows if r["ok"] and ((t_pub_done < r["t0"] < t_rb and r["version"] != v2)
                                                or (r["t0"] > t_rb_done and r["version"] != v1)))
    return {"rows": rows, "killed": killed, "publish_s": publish_s, "rollback_s": rollback_s, "stale": stale}


def summary(a: argparse.Namespace, out: dict[str, Any]) -> dict[str, Any]:
    rows = out["rows"]
    failures = [r for r in rows if not r["ok"]]
    for r in failures[:5]:
        log(f"failed request: {r['error']}")
    return {"requests": len(rows), "failures": len(failures), "killed_replica": out["killed"],
            "publish_converge_s": round(out["publish_s"], 3), "rollback_converge_s": round(out["rollback_s"], 3),
            "versions_seen": sorted({r["version"] for r in rows if r["version"]}),
            "stale_answers": out["stale"], "replicas": a.replicas, "follow_interval_s": a.follow_interval}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--items", type=int, default=200, help="items per random bundle")
    p.add_argument("--follow-interval", type=float, default=1.0, help="SIMGR_FOLLOW_INTERVAL_S of the replicas")
    p.add_argument("--phase-s", type=float, default=3.0, help="seconds of load between steps")
    p.add_argument("--threads", type=int, default=3, help="load threads (one connection each)")
    p.add_argument("--ready-timeout", type=float, default=240.0)
    p.add_argument("--converge-timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0, help="picks the replica to kill")
    p.add_argument("--kill-signal", choices=["TERM", "KILL"], default="TERM",
                   help="TERM stops a replica as Kubernetes and compose do (it drains, then exits); KILL can cut "
                        "a response that is half written, which nginx cannot retry once it relayed the header")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, ROOT)")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    for tool in (a.nginx, a.redis_server):
        if shutil.which(tool) is None:
            log(f"FAIL: {tool} not found (apt-get install nginx-light redis-server)")
            return 2
    work = Path(tempfile.mkdtemp(prefix="simgr-replicas-"))
    a.root, a.channel = work / "root", f"replicas:rollout:{os.getpid()}"
    procs = Procs(work)
    try:
        result = summary(a, scenario(procs, a, start_stack(procs, a)))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log(f"FAIL: {exc}")
        for name in procs.procs:
            log(f"---- {name}.log ----\n{procs.tail(name)}")
        return 1
    finally:
        procs.stop_all()
        if a.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(json.dumps(result) + "\n")
    ok = result["failures"] == 0 and result["stale_answers"] == 0 and len(result["versions_seen"]) == 2
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
