"""Continuous /recommend load for deploy/replicas.py, in its own process (stdlib only).

    python deploy/replicas_load.py URL OUT STOP_FILE VERSIONS [--threads 4] [--items 200]

Each thread keeps one HTTP/1.1 connection to URL (nginx) and sends POST /recommend until STOP_FILE
exists. Every answer is checked: 200, a model_version in VERSIONS (comma list), k distinct catalogue
items with scores; anything else, or a connection error, is a failure. One JSON line per request
({t0, t1, ok, status, version, error}) goes to OUT, written when the thread stops.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse
from typing import Any

K = 5


def check(status: int, body: bytes, versions: set[str], n_items: int) -> tuple[str | None, str | None]:
    """(model_version, error); error is None for a complete answer from a fully loaded bundle."""
    if status != 200:
        return None, f"status {status}: {body[:200]!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return None, "not JSON"
    version, items = doc.get("model_version"), doc.get("items", [])
    if version not in versions:
        return version, f"unknown model_version {version!r}"
    ids = [it.get("item_id") for it in items]
    if len(ids) != K or len(set(ids)) != K or any(it.get("score") is None for it in items):
        return version, f"incomplete answer: {items!r}"
    if any(not str(i).startswith("item-") or not 0 <= int(str(i)[5:]) < n_items for i in ids):
        return version, f"items outside the catalogue: {ids}"
    return version, None


def worker(n: int, url: str, stop_file: str, versions: set[str], n_items: int, out: list[dict[str, Any]]) -> None:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    rng = random.Random(n)
    conn = http.client.HTTPConnection(host, parts.port, timeout=30)
    while not os.path.exists(stop_file):
        user = f"user-{rng.randrange(10_000)}"
        body = json.dumps({"user_id": user, "history": [f"item-{rng.randrange(n_items)}" for _ in range(3)], "k": K})
        t0 = time.time()
        try:
            conn.request("POST", "/recommend", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            status, data = resp.status, resp.read()
            version, error = check(status, data, versions, n_items)
        except (OSError, http.client.HTTPException) as exc:
            status, version, error = 0, None, f"{type(exc).__name__}: {exc}"
            conn.close()
            conn = http.client.HTTPConnection(host, parts.port, timeout=30)
        out.append({"t0": t0, "t1": time.time(), "ok": error is None, "status": status, "version": version,
                    "error": error})
    conn.close()


def main(argv: list[str]) -> int:
    url, out_path, stop_file, versions = argv[:4]
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 4
    n_items = int(argv[argv.index("--items") + 1]) if "--items" in argv else 200
    results: list[list[dict[str, Any]]] = [[] for _ in range(threads)]
    pool = [threading.Thread(target=worker, args=(n, url, stop_file, set(versions.split(",")), n_items, results[n]))
            for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    with open(out_path, "w") as f:
        for rows in results:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
