#!/usr/bin/env bash
# SimGR deployment smoke test WITHOUT Docker: the docker-compose stack's api + redis + prometheus,
# run as local processes on 127.0.0.1 (free ports), then real traffic and a Prometheus query.
#
#   deploy/smoke.sh [--artifacts DIR] [--requests N] [--keep]
#
#   --artifacts DIR   export bundle to serve (default: a random-init tiny bundle built with
#                     `python -m model.export.synthetic` into a temp dir)
#   --requests N      traffic rounds (default 40); each sends POST /events and two POST /recommend
#   --keep            keep the temp dir (logs, configs, TSDB) for inspection
#
# Steps: (1) redis-server, prometheus (1 s scrape of the local simgr) and `simgr serve` with an API key;
# wait for /readyz. (2) POST /events and /recommend traffic; every response must be 2xx, sessions must
# land in redis, a request without the key must get 401, /metrics must stay public. (3) Ask Prometheus
# for simgr_requests_total until it has the traffic (bounded wait). (4) Evaluate every PromQL query
# of deploy/grafana/dashboards/simgr.json against that Prometheus. Exit 0 only if all of it worked.
# Processes are always stopped on exit (trap). The HTTP side is deploy/smoke_driver.py (stdlib only).
#
# Environment: SIMGR_PYTHON (interpreter; default .venv/bin/python, then python3),
#   REDIS_SERVER / PROMETHEUS (binaries), SIMGR_SMOKE_READY_TIMEOUT (s, default 240),
#   SIMGR_SMOKE_SCRAPE_TIMEOUT (s, default 60). A missing prometheus is installed with apt-get
#   when running as root, otherwise the script stops and says so.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARTIFACTS=""
N_REQUESTS=40
KEEP=0
READY_TIMEOUT="${SIMGR_SMOKE_READY_TIMEOUT:-240}"
SCRAPE_TIMEOUT="${SIMGR_SMOKE_SCRAPE_TIMEOUT:-60}"

log() { printf 'smoke: %s\n' "$*" >&2; }
die() { printf 'smoke: FAIL: %s\n' "$*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --artifacts) [[ $# -ge 2 ]] || die "--artifacts needs a directory"; ARTIFACTS="$2"; shift 2 ;;
        --artifacts=*) ARTIFACTS="${1#*=}"; shift ;;
        --requests) [[ $# -ge 2 ]] || die "--requests needs a number"; N_REQUESTS="$2"; shift 2 ;;
        --requests=*) N_REQUESTS="${1#*=}"; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$N_REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "--requests must be a positive integer, got '$N_REQUESTS'"
if [[ -n "$ARTIFACTS" ]]; then
    [[ -f "$ARTIFACTS/manifest.json" ]] || die "--artifacts $ARTIFACTS: no manifest.json (not a simgr export bundle)"
    ARTIFACTS="$(cd "$ARTIFACTS" && pwd)"
fi

# ---- tools ------------------------------------------------------------------------------------
if [[ -n "${SIMGR_PYTHON:-}" ]]; then PY="$SIMGR_PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
else PY="$(command -v python3 || true)"
fi
if [[ -z "$PY" ]] || ! "$PY" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
    die "no Python >= 3.10 (set SIMGR_PYTHON or create .venv)"
fi
if [[ -x "$(dirname "$PY")/simgr" ]]; then SIMGR=("$(dirname "$PY")/simgr")
else SIMGR=("$PY" -c 'import sys; from service.cli.main import main; sys.argv[0] = "simgr"; sys.exit(main())')
fi

REDIS_SERVER="${REDIS_SERVER:-redis-server}"
command -v "$REDIS_SERVER" >/dev/null || die "redis-server not found (apt-get install redis-server, or set REDIS_SERVER)"
PROMETHEUS="${PROMETHEUS:-prometheus}"
if ! command -v "$PROMETHEUS" >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "prometheus not found; installing Debian's package"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >&2 \
            || die "apt-get install prometheus failed"
        PROMETHEUS=prometheus
    else
        die "prometheus not found: apt-get install prometheus (or set PROMETHEUS=/path/to/prometheus)"
    fi
fi

# ---- process bookkeeping ----------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/simgr-smoke.XXXXXX")"
PIDS=()
NAMES=()

cleanup() {
    local rc=$? i pid
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    if [[ $rc != 0 ]]; then
        for i in "${!NAMES[@]}"; do
            [[ -s "$WORK/${NAMES[$i]}.log" ]] || continue
            printf -- '---- last lines of %s.log ----\n' "${NAMES[$i]}" >&2
            tail -n 25 "$WORK/${NAMES[$i]}.log" >&2
        done
    fi
    if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {  # start NAME CMD... : run in the background, log to $WORK/NAME.log, remember the pid
    local name="$1"; shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
}

alive() {  # alive NAME : die with the log tail if the process has exited
    local i
    for i in "${!NAMES[@]}"; do
        [[ "${NAMES[$i]}" == "$1" ]] || continue
        kill -0 "${PIDS[$i]}" 2>/dev/null || die "$1 exited early (see its log below)"
    done
}

# The HTTP side (stdlib only): polling, traffic, Prometheus API, dashboard queries.
drive() { "$PY" "$ROOT/deploy/smoke_driver.py" "$@"; }

read -r REDIS_PORT PROM_PORT API_PORT < <(drive free-ports 3)
SMOKE_API_KEY="smoke-$RANDOM$RANDOM$RANDOM"  # auth on, as in production; /metrics must stay public
export SMOKE_API_KEY
API="http://127.0.0.1:$API_PORT"
PROM="http://127.0.0.1:$PROM_PORT"

# ---- (1) redis, prometheus, bundle, simgr serve ------------------------------------------------
log "redis-server on 127.0.0.1:$REDIS_PORT"
start redis "$REDIS_SERVER" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK"
for _ in $(seq 50); do
    alive redis
    drive redis-ping "$REDIS_PORT" 2>/dev/null && break
    sleep 0.2
done
drive redis-ping "$REDIS_PORT" || die "redis-server does not answer PING on 127.0.0.1:$REDIS_PORT"

cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: simgr
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$API_PORT"]
EOF
log "prometheus on $PROM (scraping 127.0.0.1:$API_PORT every 1s)"
start prometheus "$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn

if [[ -z "$ARTIFACTS" ]]; then
    ARTIFACTS="$WORK/bundle"
    log "building a random-init tiny bundle (model.export.synthetic, 300 items) in $ARTIFACTS"
    (cd "$ROOT" && SIMGR_NO_PROGRESS=1 "$PY" -m model.export.synthetic --out "$ARTIFACTS" --items 300 --preset tiny) \
        >"$WORK/synthetic.log" 2>&1 || { tail -n 25 "$WORK/synthetic.log" >&2; die "model.export.synthetic failed"; }
fi

log "simgr serve on $API (bundle $ARTIFACTS)"
(
    cd "$ROOT"
    unset SIMGR_ADMIN_KEYS
    export SIMGR_API_KEYS="$SMOKE_API_KEY" SIMGR_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" SIMGR_LOG_LEVEL=info SIMGR_NO_PROGRESS=1 \
        HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    # tcmalloc where installed, as the Docker image runs it (its startup line says which malloc it got)
    if "$PY" -c "import ctypes; ctypes.CDLL('libtcmalloc_minimal.so.4')" 2>/dev/null; then
        export LD_PRELOAD=libtcmalloc_minimal.so.4
    fi
    exec "${SIMGR[@]}" serve --artifacts "$ARTIFACTS" --host 127.0.0.1 --port "$API_PORT"
) >"$WORK/simgr.log" 2>&1 &
PIDS+=("$!")
NAMES+=("simgr")

deadline=$((SECONDS + READY_TIMEOUT))
until drive wait-http "$API/readyz" 2 2>/dev/null; do
    alive simgr
    alive prometheus
    ((SECONDS < deadline)) || die "simgr not ready: $API/readyz not 200 after ${READY_TIMEOUT}s"
done
drive wait-http "$PROM/-/ready" 30
log "simgr ready after ${SECONDS}s"

# ---- (2) traffic ------------------------------------------------------------------------------
SENT="$(drive traffic "$API" "$ARTIFACTS" "$N_REQUESTS" "$REDIS_PORT")"
log "sent $SENT requests (POST /events; POST /recommend by user, by history, cold) with an API key, all 2xx"
log "sessions stored in redis; no key -> 401; /metrics public"

# ---- (3) Prometheus sees it ---------------------------------------------------------------------
read -r N_SERIES TOTAL < <(drive prom-wait "$PROM" "$SENT" "$SCRAPE_TIMEOUT")
log "prometheus: simgr_requests_total has $N_SERIES series, sum $TOTAL"

# ---- (4) every dashboard query evaluates ------------------------------------------------------
read -r N_QUERIES N_WITH_DATA < <(drive dashboard "$PROM" "$ROOT/deploy/grafana/dashboards/simgr.json" "$SCRAPE_TIMEOUT")
log "dashboard: $N_QUERIES queries evaluate, $N_WITH_DATA with data"

alive simgr
log "OK"
