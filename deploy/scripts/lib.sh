# Shared by deploy/scripts/up and deploy/scripts/test: make sure the machine has what the
# service needs (a Rust toolchain, libpq, Redis, Postgres), reaching the servers at their
# default URLs or starting them, installing Debian packages where they are missing.
# Sourced, not run.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# On the loopback, TLS protects nothing and costs about a millisecond per job (every statement
# of a job's life is encrypted both ways): the local default turns it off. A managed database
# elsewhere wants `sslmode=require` or `verify-full` instead (ecs/README.md).
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/portfolio_mc?sslmode=disable}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (install sudo or run as root)"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 \
    || die "missing $*; this script installs with apt-get (Debian/Ubuntu). Install them by hand."
  say "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; } \
    || die "could not install $*"
}

ensure_toolchain() {
  command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] \
    || die "cargo not found: install Rust 1.89 or newer (https://rustup.rs) and run again"
  command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
  command -v cc >/dev/null 2>&1 || apt_install build-essential
  # diesel links libpq.
  if ! { command -v pg_config >/dev/null 2>&1 && [ -e "$(pg_config --libdir)/libpq.so" ]; }; then
    apt_install libpq-dev
  fi
  command -v pkg-config >/dev/null 2>&1 || apt_install pkg-config
}

# host and port of a URL like scheme://user@host:port/db
url_host() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; echo "${u%%:*}"; }
url_port() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; [[ "$u" == *:* ]] && echo "${u##*:}" || echo "$2"; }

postgres_up() {
  command -v pg_isready >/dev/null 2>&1 || return 1
  pg_isready -q -h "$(url_host "$DATABASE_URL")" -p "$(url_port "$DATABASE_URL" 5432)"
}

ensure_postgres() {
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  if postgres_up; then return; fi
  local host; host="$(url_host "$DATABASE_URL")"
  [ "$host" = 127.0.0.1 ] || [ "$host" = localhost ] \
    || die "Postgres at $host is not reachable; start it or point DATABASE_URL elsewhere"
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    # A fresh Debian cluster asks for passwords on TCP; a local development server trusts
    # local connections, as the default DATABASE_URL expects.
    local hba; hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)"
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  say "starting Postgres"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start \
    || as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main restart
  for _ in $(seq 50); do postgres_up && return; sleep 0.2; done
  die "Postgres did not start (see /var/log/postgresql)"
}

redis_up() {
  command -v redis-cli >/dev/null 2>&1 || return 1
  [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" = PONG ]
}

ensure_redis() {
  if redis_up; then return; fi
  local host port
  host="$(url_host "$REDIS_URL")"; port="$(url_port "$REDIS_URL" 6379)"
  [ "$host" = 127.0.0.1 ] || [ "$host" = localhost ] \
    || die "Redis at $host is not reachable; start it or point REDIS_URL elsewhere"
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  say "starting Redis on port $port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis_up && return; sleep 0.1; done
  die "Redis did not start"
}

# DATABASE_URL naming database $1 instead, its query (sslmode=…) kept.
database_url_for() {
  local base="${DATABASE_URL%%\?*}" query=""
  [[ "$DATABASE_URL" == *\?* ]] && query="?${DATABASE_URL#*\?}"
  printf '%s/%s%s' "${base%/*}" "$1" "$query"
}

ensure_database() {
  local name="${DATABASE_URL##*/}"; name="${name%%\?*}"
  local admin; admin="$(database_url_for postgres)"
  if [ "$(psql "$admin" -Atc "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    say "creating database $name"
    psql "$admin" -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}
