#!/usr/bin/env bash
# Our own PostgreSQL (127.0.0.1:55432, data in .dev/pg), Redis (127.0.0.1:56379, data in
# .dev/redis) and the cache Redis for records' search cache (127.0.0.1:56380, .dev/redis-cache),
# shared by `make up` and `make test`. Usage: datastores.sh up|down|status|psql
source "$(dirname "$0")/lib.sh"

PG_DB="${RECORD_PG_DB:-record_platform}"

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "PostgreSQL server binaries not found (scripts/install-deps.sh installs them)"
  echo "$dir"
}

# PostgreSQL refuses to run as root: when we are root it runs as the `postgres` user, which
# must be able to reach its data directory. If it cannot traverse the checkout (e.g. under
# /root), the cluster lives under /var/tmp and .dev/pg is a symlink to it.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_home() {
  if [ -L "$DEV/pg" ] || [ -d "$DEV/pg" ]; then
    readlink -f "$DEV/pg"
    return
  fi
  local home="$DEV/pg"
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$DEV" 2>/dev/null; then
    home="/var/tmp/record-platform-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
    mkdir -p "$home"
    ln -sfn "$home" "$DEV/pg"
  else
    mkdir -p "$home"
  fi
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$home"; fi
  chmod 700 "$home"
  readlink -f "$DEV/pg"
}

pg_up() {
  local bin home data
  bin=$(pg_bindir)
  home=$(pg_home)
  data="$home/data"
  ensure_pg_password
  ln -sfn "$home/postgres.log" "$LOGS/postgres.log"
  step "PostgreSQL: cluster in .dev/pg" "$LOGS/postgres.log"
  if [ ! -f "$data/PG_VERSION" ]; then
    local pwfile="$home/.pwfile"
    install -m 600 /dev/null "$pwfile"
    cat "$SECRETS/pg-password" > "$pwfile"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$pwfile"; fi
    as_pg "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 > "$LOGS/initdb.log" 2>&1 \
      || { CURRENT_LOG="$LOGS/initdb.log"; false; }
    rm -f "$pwfile"
  fi
  if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    echo "    PostgreSQL already running on 127.0.0.1:$PG_PORT"
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then
      # Another checkout's cluster (the password is per machine user) serves as well.
      if PGPASSWORD=$(cat "$SECRETS/pg-password") psql -h 127.0.0.1 -p "$PG_PORT" -U postgres \
           -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
        echo "    using the PostgreSQL already running on 127.0.0.1:$PG_PORT"
      else
        die "port $PG_PORT is taken by something that is not our PostgreSQL; stop it or set RECORD_PG_PORT"
      fi
    else
    # Settings for a dev/test cluster: loopback only, enough connections for parallel tests,
    # and shared_buffers that hold perf/pgbench's 1M-record dataset (≈ 500 MB; the prod
    # overlay gives 2 GB). At 128 MB every search read part of its pages back from the OS
    # cache: 7 % fewer searches per second (perf/README.md, "Records search at 1M rows").
    as_pg "$bin/pg_ctl" -D "$data" -l "$home/postgres.log" -w -t 60 start -o \
      "-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$home \
       -c max_connections=400 -c shared_buffers=640MB -c log_min_messages=warning" >/dev/null
    echo "    PostgreSQL started on 127.0.0.1:$PG_PORT"
    fi
  fi
  step "PostgreSQL: database $PG_DB" "$LOGS/postgres.log"
  local exists
  exists=$(PGPASSWORD=$(cat "$SECRETS/pg-password") psql -h 127.0.0.1 -p "$PG_PORT" -U postgres \
    -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")
  if [ "$exists" != "1" ]; then
    PGPASSWORD=$(cat "$SECRETS/pg-password") psql -h 127.0.0.1 -p "$PG_PORT" -U postgres \
      -d postgres -qc "CREATE DATABASE $PG_DB" >/dev/null
  fi
}

pg_down() {
  local bin data
  [ -e "$DEV/pg" ] || return 0
  bin=$(pg_bindir)
  data="$(readlink -f "$DEV/pg")/data"
  if [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "    PostgreSQL stopped"
  fi
}

# redis_server_up NAME PORT PORT_VAR DIR -- ARGS...: start one of our redis-servers (idempotent),
# or use a Redis already answering on PORT. Data in .dev/DIR, .dev/run/DIR.pid, .dev/logs/DIR.log.
redis_server_up() {
  local name="$1" port="$2" port_var="$3" dir="$4"
  shift 5
  step "$name: server in .dev/$dir" "$LOGS/$dir.log"
  mkdir -p "$DEV/$dir"
  if pid_alive "$RUN/$dir.pid"; then
    echo "    $name already running on 127.0.0.1:$port"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    if [ "$(redis-cli -p "$port" ping 2>/dev/null || true)" = PONG ]; then
      echo "    using the Redis already running on 127.0.0.1:$port"
      return
    fi
    die "port $port is taken by something that is not Redis; stop it or set $port_var"
  fi
  redis-server --port "$port" --bind 127.0.0.1 --dir "$DEV/$dir" --daemonize yes \
    --pidfile "$RUN/$dir.pid" --logfile "$LOGS/$dir.log" "$@" >/dev/null
  local i=0
  until [ "$(redis-cli -p "$port" ping 2>/dev/null || true)" = PONG ]; do
    i=$((i + 1))
    [ "$i" -lt 150 ] || { echo "$name did not answer PING" >&2; false; }
    sleep 0.2
  done
  echo "    $name started on 127.0.0.1:$port"
}

# redis_server_down NAME PORT DIR
redis_server_down() {
  local name="$1" port="$2" dir="$3"
  if pid_alive "$RUN/$dir.pid"; then
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$RUN/$dir.pid")"
    local i=0
    while pid_alive "$RUN/$dir.pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    echo "    $name stopped"
  fi
  rm -f "$RUN/$dir.pid"
}

redis_up() {
  # appendonly: revocations written by logout must survive a Redis restart. noeviction (the
  # default): evicting a revocation would let a logged-out token through again.
  redis_server_up Redis "$REDIS_PORT" RECORD_REDIS_PORT redis -- --appendonly yes --save ""
}

redis_cache_up() {
  # A cache: bounded, least-recently-used entries evicted, nothing persisted.
  redis_server_up "cache Redis" "$REDIS_CACHE_PORT" RECORD_REDIS_CACHE_PORT redis-cache -- \
    --maxmemory 64mb --maxmemory-policy allkeys-lru --appendonly no --save ""
}

redis_down() { redis_server_down Redis "$REDIS_PORT" redis; }
redis_cache_down() { redis_server_down "cache Redis" "$REDIS_CACHE_PORT" redis-cache; }

case "${1:-}" in
  up) pg_up; redis_up; redis_cache_up ;;
  down) redis_cache_down; redis_down; pg_down ;;
  status)
    bin=$(pg_bindir)
    if [ -e "$DEV/pg" ] && as_pg "$bin/pg_ctl" -D "$(readlink -f "$DEV/pg")/data" status >/dev/null 2>&1; then
      echo "PostgreSQL: running on 127.0.0.1:$PG_PORT"
    else
      echo "PostgreSQL: stopped"
    fi
    if pid_alive "$RUN/redis.pid"; then echo "Redis: running on 127.0.0.1:$REDIS_PORT"; else echo "Redis: stopped"; fi
    if pid_alive "$RUN/redis-cache.pid"; then
      echo "cache Redis: running on 127.0.0.1:$REDIS_CACHE_PORT"
    else
      echo "cache Redis: stopped"
    fi
    ;;
  psql)
    shift
    PGPASSWORD=$(cat "$SECRETS/pg-password") exec psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$PG_DB" "$@"
    ;;
  *) die "usage: $0 up|down|status|psql" ;;
esac
