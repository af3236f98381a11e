#!/usr/bin/env bash
# Multi-replica rollout test on this machine, no Docker: one Redis, three `simgr serve --root ROOT`,
# nginx round-robin in front (passive retries), continuous load from a separate process; kills a
# replica, publishes a new version, rolls back; prints one JSON line and exits non-zero on any failed
# request. All the work is in deploy/replicas.py (flags: --help); this wrapper picks the interpreter
# and installs nginx / redis-server from Debian's packages when running as root without them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${SIMGR_PYTHON:-}" ]]; then PY="$SIMGR_PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3)"
fi
bash "$ROOT/scripts/ensure_nginx.sh" >&2
exec "$PY" "$ROOT/deploy/replicas.py" "$@"
