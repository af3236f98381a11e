#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 for the tests; start one (Debian's redis-server) if not.
set -euo pipefail
PORT="${SIMGR_TEST_REDIS_PORT:-6379}"
ping() { redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -q PONG; }
if command -v redis-cli >/dev/null && ping; then
  echo "redis: answering on 127.0.0.1:$PORT"
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "redis: installing redis-server (Debian package)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi
redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
  --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/simgr-test-redis.log"
for _ in $(seq 50); do ping && { echo "redis: started on 127.0.0.1:$PORT"; exit 0; }; sleep 0.1; done
echo "redis: failed to start (see ${TMPDIR:-/tmp}/simgr-test-redis.log)" >&2
exit 1
