#!/usr/bin/env bash
# What identity costs a request: GET /results/{id} through wrk against two API processes on
# the same database and Redis, one with AUTH_MODE=api_key (a key looked up on the primary and
# a rate-limit script in Redis per request) and one with AUTH_MODE=disabled, in alternating
# rounds of the same invocation; prints requests/s and p50/p99 latency of each and their ratio.
#
#   bench/auth_overhead.sh [ROUNDS=3] [SECONDS=10]
#
# Needs the release binaries (cargo build --release -p portfolio-api), wrk, psql, and the
# local Postgres and Redis; makes a database of its own and drops it.
set -euo pipefail
ROUNDS="${1:-3}" SECS="${2:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release"
DB="pmc_bench_auth_$$"
ADMIN="postgres://postgres@127.0.0.1:5432/postgres"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" QUEUE_NAMESPACE="pmc-bench-auth-$$"
export LOG_FORMAT=json RUST_LOG=warn RATE_LIMIT_READS_PER_MINUTE=100000000
psql "$ADMIN" -qc "CREATE DATABASE $DB"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  redis-cli --scan --pattern "$QUEUE_NAMESPACE:*" | xargs -r redis-cli DEL >/dev/null
}
trap cleanup EXIT
"$BIN/portfolio-api" migrate >/dev/null 2>&1
KEY=$("$BIN/portfolio-api" keys create --name bench | tail -n 1)
start() { # port metrics-port mode
  API_BIND="127.0.0.1:$1" METRICS_BIND="127.0.0.1:$2" AUTH_MODE="$3" "$BIN/portfolio-api" serve >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return; sleep 0.1; done
  echo "API on $1 did not start" >&2; exit 1
}
start 18081 19081 api_key
start 18082 19082 disabled
BODY='{"starting_portfolio":1000000,"monthly_spending":4000,"years":30,"n_scenarios":1000}'
ID=$(curl -s -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d "$BODY" \
  http://127.0.0.1:18081/simulations | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
run() { # port [header]
  wrk -t 2 -c 16 -d "${SECS}s" --latency ${2:+-H "$2"} "http://127.0.0.1:$1/results/$ID" \
    | awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print r, p50, p99}'
}
for round in $(seq "$ROUNDS"); do
  read -r kr k50 k99 < <(run 18081 "Authorization: Bearer $KEY")
  read -r dr d50 d99 < <(run 18082)
  python3 -c "print(f'round $round: api_key {float(\"$kr\"):.0f} req/s (p50 $k50, p99 $k99)  disabled {float(\"$dr\"):.0f} req/s (p50 $d50, p99 $d99)  ratio {float(\"$kr\")/float(\"$dr\"):.2f}')"
done
