"""deploy/smoke.sh's HTTP side, stdlib only (runs with any Python >= 3.10, no project imports).

    python deploy/smoke_driver.py COMMAND ARGS...   (see COMMANDS at the bottom)

Each command prints its result on stdout for the shell, or one `smoke: FAIL: ...` line and exits 1.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, NoReturn


def fail(msg: str) -> NoReturn:
    sys.stderr.write(f"smoke: FAIL: {msg}\n")
    sys.exit(1)


def emit(*values: object) -> None:
    """The command's result, one line on stdout, read by the shell."""
    sys.stdout.write(" ".join(map(str, values)) + "\n")


API_KEY = os.environ.get("SMOKE_API_KEY", "")


def call(method: str, url: str, body: Any = None, timeout: float = 10.0, key: bool = True) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key and API_KEY:
        headers["Authorization"] = f"Bearer {API_KEY}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def free_ports(n: str) -> None:
    """Print n distinct free TCP ports on 127.0.0.1."""
    socks = [socket.socket() for _ in range(int(n))]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    emit(*ports)


def redis_command(port: str, command: str) -> str:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1.0) as s:
            s.sendall(command.encode() + b"\r\n")
            return s.recv(64).decode(errors="replace").strip()
    except OSError as e:
        fail(f"redis on 127.0.0.1:{port}: {e}")


def redis_ping(port: str) -> None:
    answer = redis_command(port, "PING")
    if answer != "+PONG":
        fail(f"redis on 127.0.0.1:{port} answered {answer!r} to PING")


def wait_http(url: str, timeout: str) -> None:
    deadline = time.monotonic() + float(timeout)
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = call("GET", url, timeout=2.0)
        if status == 200:
            return
        time.sleep(0.5)
    fail(f"{url} not 200 after {timeout}s (last: {status} {body[:200]})")


def get_json(base: str, path: str, *, key: bool = True) -> dict[str, Any]:
    status, text = call("GET", base + path, key=key)
    if status != 200:
        fail(f"GET {path} -> {status} {text[:300]}")
    return json.loads(text)


def _check_service(base: str) -> None:
    """Ready with Redis as the session store; with auth on, data routes need the key and /metrics does not."""
    ready = get_json(base, "/readyz", key=False)
    if ready.get("redis") != "ok":
        fail(f"/readyz says redis is {ready.get('redis')!r}, not 'ok': {ready}")
    info = get_json(base, "/info")
    if info.get("session_store") != "redis":
        fail(f"/info says the session store is {info.get('session_store')!r}, not 'redis'")
    if API_KEY:
        status, _ = call("POST", base + "/recommend", {"history": [], "k": 1}, key=False)
        if status != 401:
            fail(f"POST /recommend without the API key -> {status}, expected 401")
        status, _ = call("GET", base + "/metrics", key=False)
        if status != 200:
            fail(f"GET /metrics without a key -> {status}; Prometheus could not scrape it")


def _item_ids(bundle: str) -> list[str]:
    with open(f"{bundle}/items.jsonl") as f:
        item_ids = [json.loads(line)["item_id"] for line in f if line.strip()]
    if len(item_ids) < 10:
        fail(f"{bundle}/items.jsonl has only {len(item_ids)} items")
    return item_ids


def _send_checked(base: str, method: str, path: str, kind: str, body: dict[str, Any]) -> None:
    """One data request; recommendations must hold items, a cold user's must come from popularity."""
    status, text = call(method, base + path, body)
    if not 200 <= status < 300:
        fail(f"{method} {path} {json.dumps(body)} -> {status} {text[:300]}")
    answer = json.loads(text)
    if kind in ("recommend", "cold") and not (isinstance(answer.get("items"), list) and answer["items"]):
        fail(f"{method} {path} returned no items: {text[:300]}")
    if kind == "cold" and answer.get("fallback") != "popular":
        fail(f"{method} {path} for a cold user: fallback {answer.get('fallback')!r}, expected 'popular'")


def _round_requests(i: int, user: str, item_ids: list[str], rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, kind, body) of round ``i``: an event, a session and a history recommendation, and every
    tenth round a user with no session and no history (the popularity fallback)."""
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("/events", "events", {"user_id": user, "item_ids": rng.sample(item_ids, 3)}),
        ("/recommend", "recommend", {"user_id": user, "k": 10}),
        ("/recommend", "recommend", {"history": rng.sample(item_ids, 5), "k": 5}),
    ]
    if i % 10 == 0:
        requests.append(("/recommend", "cold", {"user_id": f"smoke-cold-{i}", "k": 5}))
    return requests


def _check_state(base: str, user: str, redis_port: str) -> None:
    """The session is readable back and stored in Redis; /healthz and /metrics answer."""
    session = get_json(base, f"/sessions/{user}")
    if not session.get("items"):
        fail(f"GET /sessions/{user} is empty after POST /events: {session}")
    n_keys = redis_command(redis_port, "DBSIZE")
    if not n_keys.startswith(":") or int(n_keys[1:]) < 1:
        fail(f"the sessions did not reach redis (DBSIZE answered {n_keys!r})")
    get_json(base, "/healthz")
    status, text = call("GET", base + "/metrics", key=False)
    if status != 200 or "simgr_requests_total" not in text:
        fail(f"GET /metrics -> {status}; simgr_requests_total missing from the exposition")


def traffic(base: str, bundle: str, n: str, redis_port: str) -> None:
    """Send the smoke traffic with checks on every answer; print how many data requests were sent."""
    _check_service(base)
    item_ids = _item_ids(bundle)
    rng = random.Random(0)
    users = [f"smoke-user-{u}" for u in range(8)]
    sent = 0
    # two waves, so the counters change across several 1 s scrapes and rate() has data
    rounds = int(n)
    for wave, indices in enumerate([range(0, rounds // 2), range(rounds // 2, rounds)]):
        for i in indices:
            for path, kind, body in _round_requests(i, users[i % len(users)], item_ids, rng):
                _send_checked(base, "POST", path, kind, body)
                sent += 1
        if wave == 0:
            time.sleep(1.5)
    _check_state(base, users[0], redis_port)
    emit(sent)


def prom_query(prom: str, query: str) -> tuple[list[dict[str, Any]] | None, str]:
    """(result, "") on success, (None, why) when the query does not evaluate."""
    status, text = call("GET", f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    if status != 200:
        return None, f"{status} {text[:300]}"
    payload = json.loads(text)
    if payload.get("status") != "success":
        return None, text[:300]
    return payload["data"]["result"], ""


def prom_wait(prom: str, at_least: str, timeout: str) -> None:
    """Wait until simgr_requests_total has series and their sum reaches `at_least`."""
    deadline = time.monotonic() + float(timeout)
    total, n_series, err = 0.0, 0, ""
    while time.monotonic() < deadline:
        result, err = prom_query(prom, "simgr_requests_total")
        if result:
            n_series = len(result)
            total = sum(float(r["value"][1]) for r in result)
            if total >= float(at_least):
                emit(n_series, f"{total:g}")
                return
        time.sleep(1.0)
    fail(
        f"Prometheus never saw the traffic within {timeout}s: simgr_requests_total has {n_series} series, "
        f"sum {total:g} < {at_least} {err}"
    )


# Queries whose metrics the smoke traffic must have produced (others, e.g. fallbacks, may be empty).
MUST_HAVE_DATA = ("simgr_requests_total", "simgr_request_duration_seconds", "simgr_batch_size",
                  "simgr_queue_size", "simgr_model_info", "simgr_fallback_total", "simgr_request_failures_total")


def dashboard(prom: str, path: str, timeout: str) -> None:
    """Every query must evaluate; the MUST_HAVE_DATA ones must return series (retried until timeout:
    rate() needs two scrapes after the traffic)."""
    with open(path) as f:
        dash = json.load(f)
    targets = [(panel["title"], t["expr"]) for panel in dash["panels"] for t in panel.get("targets", [])]
    deadline = time.monotonic() + float(timeout)
    while True:
        with_data, problems, empty = 0, [], []
        for title, expr in targets:
            query = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "5m")
            result, err = prom_query(prom, query)
            if result is None:
                problems.append(f"panel {title!r}: query failed: {expr} -> {err}")
            elif result:
                with_data += 1
            elif any(m in expr for m in MUST_HAVE_DATA):
                problems.append(f"panel {title!r}: no data for {expr}")
            else:
                empty.append(f"{title}: {expr}")
        if not problems:
            for line in empty:  # allowed: nothing in the smoke traffic produces these series
                sys.stderr.write(f"smoke: no data yet (fine): {line}\n")
            emit(len(targets), with_data)
            return
        if any("query failed" in p for p in problems) or time.monotonic() > deadline:
            fail("dashboard queries:\n  " + "\n  ".join(problems))
        time.sleep(1.0)


COMMANDS: dict[str, Callable[..., None]] = {
    "free-ports": free_ports,  # N
    "redis-ping": redis_ping,  # PORT
    "wait-http": wait_http,  # URL TIMEOUT_S
    "traffic": traffic,  # API_BASE BUNDLE_DIR ROUNDS REDIS_PORT
    "prom-wait": prom_wait,  # PROM_BASE AT_LEAST TIMEOUT_S
    "dashboard": dashboard,  # PROM_BASE DASHBOARD_JSON TIMEOUT_S
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        fail(f"usage: smoke_driver.py {{{','.join(COMMANDS)}}} ARGS...")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
