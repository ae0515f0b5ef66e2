#!/usr/bin/env bash
# Issue 11's end-to-end benchmark in one command: our stack (one release portfolio-api and one
# portfolio-worker, started as deploy/scripts/up starts them) against the Celery peer
# (../shared/peers/celery: two prefork processes running the numpy kernel), in the same
# invocation, for 1,000 and 10,000 scenarios × 30 years. Prints one table (single-job
# submit → result p50/p95 with `Prefer: wait` and with polling every 2 ms, jobs/s for a burst,
# ratios) and the CPU per job of each process in the bursts.
#
#   bench/e2e_vs_celery.sh [client options]     e.g. --sizes 1000 --single 30 --burst 300
#
# Client options: see `bench/e2e_vs_celery.py --help`. Environment: PEER_DIR (default
# ../shared/peers/celery), BENCH_VENV (default .run/bench-venv), SKIP_BUILD=1.
#
# What it sets up, all its own and all removed at exit: a scratch database (migrated by
# `portfolio-api migrate`), a private Redis on a free port (both stacks use it, so its CPU is
# theirs alone and no one else's Celery pool can take the peer's tasks), an API key, free
# ports. Settings are the defaults a new user gets, except the per-tenant limits a burst of 300
# would hit (submits per minute, reads per minute, unfinished jobs per key).
source "$(dirname "$0")/../deploy/scripts/lib.sh"

# The peers live beside the checkout (../shared/peers); from a git worktree elsewhere, beside
# the main checkout.
if [ -z "${PEER_DIR:-}" ]; then
  PEER_DIR="$ROOT/../shared/peers/celery"
  [ -d "$PEER_DIR" ] || PEER_DIR="$(cd "$ROOT" && cd "$(git rev-parse --git-common-dir)/../.." && pwd)/shared/peers/celery"
fi
PEER_DIR="$(cd "$PEER_DIR" && pwd)" || die "no Celery peer at $PEER_DIR (set PEER_DIR)"
VENV="${BENCH_VENV:-$ROOT/.run/bench-venv}"
OUT="$ROOT/.run/bench-e2e"
mkdir -p "$OUT"

ensure_toolchain
ensure_postgres
command -v redis-server >/dev/null 2>&1 || apt_install redis-server

if [ "${SKIP_BUILD:-}" != 1 ]; then
  say "building (release)"
  (cd "$ROOT" && cargo build --release --locked -p portfolio-api -p portfolio-worker)
fi
BIN="$ROOT/target/release"

if ! "$VENV/bin/python" -c 'import numpy, celery, redis, requests' 2>/dev/null; then
  say "making the venv $VENV (numpy, celery[redis], requests)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy "celery[redis]" requests
fi

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Everything below is torn down by this trap, whatever happens.
PIDS=()
REDIS_PORT=""
DB="pmc_bench_e2e_$$"
export ADMIN_DATABASE_URL="$(database_url_for postgres)"
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  [ -n "$REDIS_PORT" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
  psql "$ADMIN_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REDIS_PORT=$(free_port)
say "starting a private Redis on port $REDIS_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --daemonize no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 50); do [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done

export DATABASE_URL="$(database_url_for $DB)" REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export QUEUE_NAMESPACE="pmc-bench-e2e-$$"
export RATE_LIMIT_SUBMITS_PER_MINUTE="${RATE_LIMIT_SUBMITS_PER_MINUTE:-1000000}"
export RATE_LIMIT_READS_PER_MINUTE="${RATE_LIMIT_READS_PER_MINUTE:-100000000}"
export MAX_UNFINISHED_JOBS_PER_KEY="${MAX_UNFINISHED_JOBS_PER_KEY:-2000}"
say "creating and migrating the database $DB"
psql "$ADMIN_DATABASE_URL" -qc "CREATE DATABASE $DB" >/dev/null
LOG_FORMAT=pretty "$BIN/portfolio-api" migrate >"$OUT/migrate.log" 2>&1
KEY=$(LOG_FORMAT=pretty "$BIN/portfolio-api" keys create --name bench --scope simulate | tail -n 1)

API_PORT=$(free_port)
export API_BIND="127.0.0.1:$API_PORT"
URL="http://$API_BIND"
say "starting the API on $API_BIND and one worker (logs in $OUT)"
METRICS_BIND="127.0.0.1:$(free_port)" "$BIN/portfolio-api" serve >"$OUT/api.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
METRICS_BIND="127.0.0.1:$(free_port)" "$BIN/portfolio-worker" run >"$OUT/worker.log" 2>&1 &
WORKER_PID=$!
PIDS+=("$WORKER_PID")
for _ in $(seq 150); do curl -fsS "$URL/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$URL/ready" >/dev/null || { tail -20 "$OUT/api.log"; die "the API did not become ready"; }

# The peer's tasks.py names Redis databases 3 and 4 of the default server; Celery's own
# variables point it at the private one instead, without touching the peer's code.
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/3"
export CELERY_RESULT_BACKEND="redis://127.0.0.1:$REDIS_PORT/4"
export PYTHONDONTWRITEBYTECODE=1   # the peer's directory stays as it is
say "starting the Celery pool (2 prefork processes) from $PEER_DIR"
(cd "$PEER_DIR" && PYTHONPATH="$PEER_DIR" exec "$VENV/bin/celery" -A tasks worker \
  --concurrency 2 --loglevel warning >"$OUT/celery.log" 2>&1) &
CELERY_PID=$!
PIDS+=("$CELERY_PID")

say "measuring ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ))"
API_PID=$API_PID WORKER_PID=$WORKER_PID REDIS_PID=$REDIS_PID CELERY_PID=$CELERY_PID \
  BENCH_URL="$URL" BENCH_KEY="$KEY" BENCH_DB="$DB" PEER_DIR="$PEER_DIR" \
  "$VENV/bin/python" "$ROOT/bench/e2e_vs_celery.py" --request "$PEER_DIR/../request-default.json" \
  --json-out "$OUT/figures.json" "$@"
say "done (load average $(cut -d' ' -f1-3 /proc/loadavg)); figures also in $OUT/figures.json"
