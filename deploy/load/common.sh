# Shared by deploy/load/run and deploy/load/capacity: the venv with the pinned locust, and the
# local stack (deploy/scripts/up) restarted with limits sized for a load test. Sourced, not run.

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

LOAD_DIR="$ROOT/deploy/load"
OUT="$ROOT/.run/load"
VENV="${LOAD_VENV:-$ROOT/.run/load-venv}"
export API_BIND="${API_BIND:-127.0.0.1:8080}"
URL="http://$API_BIND"
mkdir -p "$OUT"

# The per-tenant limits of a real deployment (120 submits and 1,200 reads a minute, 200
# unfinished jobs) would answer most of a 100-user run with 429: the load test is one tenant
# (the local key) standing for many. The queue-depth ceiling is raised to its maximum so that a
# backlog the worker has not yet caught up with shows as a backlog, not as refused submits.
export RATE_LIMIT_SUBMITS_PER_MINUTE="${RATE_LIMIT_SUBMITS_PER_MINUTE:-1000000}"
export RATE_LIMIT_READS_PER_MINUTE="${RATE_LIMIT_READS_PER_MINUTE:-10000000}"
export QUEUE_DEPTH_CEILING="${QUEUE_DEPTH_CEILING:-7000}"
export MAX_UNFINISHED_JOBS_PER_KEY="${MAX_UNFINISHED_JOBS_PER_KEY:-6900}"

ensure_venv() {
  local pin; pin="$(grep -E '^locust==' "$LOAD_DIR/requirements.txt")"
  if [ "$("$VENV/bin/python" -c 'import locust; print("locust==" + locust.__version__)' 2>/dev/null)" != "$pin" ]; then
    say "making the venv $VENV ($pin)"
    python3 -m venv "$VENV"
    nice -n 10 "$VENV/bin/pip" install -q -r "$LOAD_DIR/requirements.txt"
  fi
}

# Restarts the local stack (one API, one worker) with the limits above, unless SKIP_UP=1 says
# a stack is already up at $URL with them.
stack_up() {
  say "load-test limits: RATE_LIMIT_SUBMITS_PER_MINUTE=$RATE_LIMIT_SUBMITS_PER_MINUTE" \
    "RATE_LIMIT_READS_PER_MINUTE=$RATE_LIMIT_READS_PER_MINUTE" \
    "QUEUE_DEPTH_CEILING=$QUEUE_DEPTH_CEILING MAX_UNFINISHED_JOBS_PER_KEY=$MAX_UNFINISHED_JOBS_PER_KEY"
  if [ "${SKIP_UP:-}" = 1 ]; then
    say "SKIP_UP=1: using the stack already up at $URL (started with the limits above?)"
  else
    # The release build is niced (the machine may be shared with other builds); the API and
    # the worker are not: started under nice, they would be measured yielding to compilers.
    ensure_toolchain
    say "building (release, niced)"
    (cd "$ROOT" && nice -n 10 cargo build --release --locked -p portfolio-api -p portfolio-worker)
    say "(re)starting the local stack with them (deploy/scripts/up; its default limits come back with a plain deploy/scripts/up)"
    "$ROOT/deploy/scripts/up" >&2
  fi
  curl -fsS "$URL/ready" >/dev/null || die "the API at $URL is not ready"
  KEY="${LOAD_API_KEY:-$(cat "$ROOT/.run/api-key")}"
  export LOAD_API_KEY="$KEY"
}

load_average() { cut -d' ' -f1-3 /proc/loadavg; }
