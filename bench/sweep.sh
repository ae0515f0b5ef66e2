#!/usr/bin/env bash
# Issue 14's benchmark in one command: a 21 × 21 sweep of 10,000 scenarios × 30 years (441
# cells), submit → succeeded, with one worker and then with two, against the sum of the cells'
# own engine times (each cell's `elapsed_ms`, measured by the engine inside the worker). Prints
# the wall times, the overhead of the fleet machinery (queue, claims, storing: the fleet's time,
# wall × workers, over the sum of the engine times), and the speed-up over the first run.
#
#   bench/sweep.sh [--cells-per-axis 21] [--scenarios 10000] [--years 30] [--workers 1,2]
#                  [--threads N]
#
# `--threads 1` gives each worker one engine thread (WORKER_THREADS), as a fleet of one-vCPU
# tasks would have: on a 2-core machine that is what shows a second worker's speed-up; with the
# default (every core per worker) two workers on 2 cores share the same cores.
#
# Environment: SKIP_BUILD=1 (use target/release as it is). Sets up its own scratch database and
# a private Redis on a free port, both removed at exit; MAX_JOB_COST is raised so the sweep
# (441 × 3.6 M scenario-months) is accepted. Each worker runs one unit at a time
# (WORKER_CONCURRENCY=1): a cell then has the engine to itself, so its `elapsed_ms` is its own
# engine time and their sum the work the fleet had to do; every other setting is the default.
source "$(dirname "$0")/../deploy/scripts/lib.sh"

PER_AXIS=21 SCENARIOS=10000 YEARS=30 WORKERS=1,2 THREADS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cells-per-axis) PER_AXIS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --years) YEARS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
OUT="$ROOT/.run/bench-sweep"
mkdir -p "$OUT"

ensure_toolchain
ensure_postgres
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
if [ "${SKIP_BUILD:-}" != 1 ]; then
  say "building (release)"
  (cd "$ROOT" && cargo build --release --locked -p portfolio-api -p portfolio-worker)
fi
BIN="$ROOT/target/release"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=() WORKER_PIDS=() REDIS_PORT="" DB="pmc_bench_sweep_$$"
export ADMIN_DATABASE_URL="$(database_url_for postgres)"
cleanup() {
  set +e
  for p in "${WORKER_PIDS[@]}" "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${WORKER_PIDS[@]}" "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  [ -n "$REDIS_PORT" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
  psql "$ADMIN_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --daemonize no >"$OUT/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 50); do [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
export DATABASE_URL="$(database_url_for $DB)" REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export QUEUE_NAMESPACE="pmc-bench-sweep-$$" MAX_JOB_COST=100000000000 LOG_FORMAT=pretty
export WORKER_CONCURRENCY=1 WORKER_THREADS=$THREADS
psql "$ADMIN_DATABASE_URL" -qc "CREATE DATABASE $DB" >/dev/null
"$BIN/portfolio-api" migrate >"$OUT/migrate.log" 2>&1
KEY=$("$BIN/portfolio-api" keys create --name bench --scope simulate | tail -n 1)
export API_BIND="127.0.0.1:$(free_port)"
URL="http://$API_BIND"
METRICS_BIND="127.0.0.1:$(free_port)" "$BIN/portfolio-api" serve >"$OUT/api.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 150); do curl -fsS "$URL/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$URL/ready" >/dev/null || die "the API did not become ready (see $OUT/api.log)"

rm -f "$OUT/first-wall"
say "measuring ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ))"
for n in ${WORKERS//,/ }; do
  for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p"; wait "$p" 2>/dev/null; done
  WORKER_PIDS=()
  for i in $(seq "$n"); do
    WORKER_NAME="bench-$n-$i" METRICS_BIND="127.0.0.1:$(free_port)" \
      "$BIN/portfolio-worker" run >"$OUT/worker-$n-$i.log" 2>&1 &
    WORKER_PIDS+=("$!")
  done
  # Until every worker is in the queue's registry, so none starts late.
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$REDIS_PORT" zcard "$QUEUE_NAMESPACE:workers" 2>/dev/null)" -ge "$n" ] 2>/dev/null && break
    sleep 0.1
  done
  OUT="$OUT" BENCH_URL="$URL" BENCH_KEY="$KEY" python3 - "$n" "$PER_AXIS" "$SCENARIOS" "$YEARS" <<'PY'
import json, os, sys, time, urllib.request, subprocess
workers, per_axis, scenarios, years = (int(a) for a in sys.argv[1:])
url, key = os.environ["BENCH_URL"], os.environ["BENCH_KEY"]
def call(method, path, body=None):
    req = urllib.request.Request(url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=90) as r:
        return json.load(r)
body = {"starting_portfolio": 1_000_000, "monthly_spending": 4_000, "years": years,
        "n_scenarios": scenarios, "seed": 7,
        "sweep": {"axes": [{"field": "monthly_spending", "from": 2500, "to": 6500, "steps": per_axis},
                           {"field": "allocation.stocks", "from": 0, "to": 1, "steps": per_axis}]}}
started = time.perf_counter()
job = call("POST", "/simulations", body)
while True:
    job = call("GET", f"/results/{job['id']}?wait=30")
    if job["status"] in ("succeeded", "failed", "cancelled"):
        break
wall = time.perf_counter() - started
assert job["status"] == "succeeded", job
sql = ("SELECT count(*), sum((result->>'elapsed_ms')::float8), count(DISTINCT worker), "
       f"count(DISTINCT unit_id) FROM sweep_cells WHERE sweep_id = '{job['id']}'")
cells, engine_ms, used, units = subprocess.check_output(
    ["psql", os.environ["DATABASE_URL"], "-Atc", sql], text=True).strip().split("|")
engine = float(engine_ms) / 1000
# The fleet's time (wall × workers) over the engine's own: what the queue, claims and storing add.
overhead = (wall * workers / engine - 1) * 100
first = os.path.join(os.environ["OUT"], "first-wall")
if not os.path.exists(first):
    open(first, "w").write(str(wall))
speedup = float(open(first).read()) / wall
print(f"workers={workers} threads={os.environ['WORKER_THREADS']} cells={cells} units={units} "
      f"workers_used={used} wall={wall:.2f}s engine_sum={engine:.2f}s "
      f"overhead={overhead:+.1f}% speedup_vs_first={speedup:.2f}x")
PY
done
say "done (load average $(cut -d' ' -f1-3 /proc/loadavg))"
