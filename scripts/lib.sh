# Shared by scripts/test, scripts/demo and scripts/bench: make sure what gatehouse needs is
# installed and running. Idempotent; works as root on a fresh Debian machine.

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

apt_install() {
  log "installing $* (apt)"
  if [ -z "${GATEHOUSE_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq >/dev/null
    export GATEHOUSE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# ensure_redis URL: use a Redis that answers at URL's host:port, else start one there.
ensure_redis() {
  local hostport host port
  hostport=$(printf '%s' "$1" | sed -E 's#^rediss?://([^@/]*@)?##; s#/.*$##')
  host=${hostport%:*}; port=${hostport##*:}
  [ "$host" = "$hostport" ] && port=6379
  ensure_redis_tools
  if redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG; then
    return 0
  fi
  log "starting redis-server on $host:$port"
  redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
    --dir /tmp --logfile "/tmp/gatehouse-redis-$port.log"
  for _ in $(seq 1 50); do
    redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  log "redis-server did not come up on $host:$port"; return 1
}

# ensure_redis_tools: redis-server and redis-cli (tests start servers of their own: TLS, ACL,
# cluster; Debian's are built with TLS), and openssl, which makes the tests' CA and certificates.
ensure_redis_tools() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
  command -v openssl >/dev/null || apt_install openssl
}

# ensure_postgres: a PostgreSQL for the directory's tests (tests/api/databases.rs), exported as
# GATEHOUSE_TEST_POSTGRES_URL (a superuser's URL; each test creates its own database). A URL
# already set that answers is used as is. Otherwise a throwaway cluster is started: Debian's
# postgresql package (installed when missing), initdb and pg_ctl from /usr/lib/postgresql/<v>/bin,
# in a temp dir on a free 127.0.0.1 port, as the postgres user when run as root (initdb refuses
# root); it is stopped and removed when the calling script exits. The machine's own server on
# 5432, if any, is never assumed.
ensure_postgres() {
  if [ -n "${GATEHOUSE_TEST_POSTGRES_URL:-}" ]; then
    command -v psql >/dev/null || apt_install postgresql-client
    if psql "$GATEHOUSE_TEST_POSTGRES_URL" -Atqc 'select 1' >/dev/null 2>&1; then
      return 0
    fi
    log "GATEHOUSE_TEST_POSTGRES_URL does not answer; starting a throwaway PostgreSQL instead"
  fi
  local bin
  bin=$(postgres_bin)
  if [ -z "$bin" ]; then
    apt_install postgresql
    bin=$(postgres_bin)
  fi
  [ -n "$bin" ] || { log "no initdb under /usr/lib/postgresql/*/bin"; return 1; }
  GATEHOUSE_PG_BIN=$bin
  GATEHOUSE_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-pg.XXXXXX")
  [ "$(id -u)" = 0 ] && chown postgres: "$GATEHOUSE_PG_DIR"
  as_postgres "$bin/initdb" -D "$GATEHOUSE_PG_DIR/data" -U postgres --auth=trust -E UTF8 \
    >"$GATEHOUSE_PG_DIR/initdb.log" 2>&1 || { cat "$GATEHOUSE_PG_DIR/initdb.log" >&2; return 1; }
  # A port free when looked at may be taken by the time the server binds it (other programs
  # pick ports too): try a few.
  local port started=
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    log "starting a throwaway PostgreSQL on 127.0.0.1:$port ($GATEHOUSE_PG_DIR)"
    # Durability is not what the tests test: no fsync makes the cluster much faster.
    if as_postgres "$bin/pg_ctl" -D "$GATEHOUSE_PG_DIR/data" -l "$GATEHOUSE_PG_DIR/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $GATEHOUSE_PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null; then
      started=1
      break
    fi
  done
  [ -n "$started" ] || { cat "$GATEHOUSE_PG_DIR/server.log" >&2; return 1; }
  trap stop_postgres EXIT
  export GATEHOUSE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
  [ -n "${GATEHOUSE_PG_DIR:-}" ] || return 0
  as_postgres "$GATEHOUSE_PG_BIN/pg_ctl" -D "$GATEHOUSE_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$GATEHOUSE_PG_DIR"
  GATEHOUSE_PG_DIR=
}

# The newest installed server's binaries, or nothing.
postgres_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && printf '%s\n' "$dir"
  return 0
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# free_port: a TCP port on 127.0.0.1 where nothing listens.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  return 1
}

# ensure_idp_deps: the pinned development OpenID provider (tests/idp) and Node.js.
ensure_idp_deps() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  if [ ! -d tests/idp/node_modules/oidc-provider ]; then
    log "installing the development OpenID provider (npm ci in tests/idp)"
    (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

# ensure_proxies: the nginx and caddy binaries, which the tests start with generated configs
# (tests/api/nginx.rs, tests/api/caddy.rs: the shipped files in front of gatehouse). Only the
# binaries are used: the packages' own services are not needed.
ensure_proxies() {
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
  command -v caddy >/dev/null || apt_install caddy
}

# ensure_browser: headless Chromium from Debian (/usr/bin/chromium; never a downloaded browser)
# and the pinned playwright-core that drives it (npm ci in tests/browser, again whenever the
# installed version differs from package-lock.json), for the browser journeys
# (tests/api/browser.rs, tests/browser/journeys.mjs).
ensure_browser() {
  [ -x /usr/bin/chromium ] || apt_install chromium chromium-driver
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  local want have
  want=$(node -p "require('./tests/browser/package-lock.json').packages['node_modules/playwright-core'].version")
  have=$(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    log "installing playwright-core $want (npm ci in tests/browser; no browser download)"
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

# ensure_rust_tools: cargo with rustfmt and clippy, and the C linker cargo links with.
ensure_rust_tools() {
  command -v cargo >/dev/null || { log "cargo is required (https://rustup.rs)"; return 1; }
  ensure_linker
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

# ensure_linker: cargo links through the system's C compiler (`cc`), which rustup does not
# bring; a fresh Debian has none.
ensure_linker() {
  command -v cc >/dev/null || apt_install gcc libc6-dev
}

# ensure_curl: the scripts wait for their servers with curl.
ensure_curl() {
  command -v curl >/dev/null || apt_install curl
}

# wait_http URL [tries]: until URL answers any HTTP status.
wait_http() {
  local tries=${2:-100}
  for _ in $(seq 1 "$tries"); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}
