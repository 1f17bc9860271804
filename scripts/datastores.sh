#!/usr/bin/env bash
# Our own PostgreSQL (127.0.0.1:55432, data in .dev/pg) and Redis (127.0.0.1:56379, data in
# .dev/redis), shared by `make up` and `make test`. Usage: datastores.sh up|down|status|psql
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
    # Settings for a dev/test cluster: loopback only, enough connections for parallel tests.
    as_pg "$bin/pg_ctl" -D "$data" -l "$home/postgres.log" -w -t 60 start -o \
      "-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$home \
       -c max_connections=400 -c shared_buffers=128MB -c log_min_messages=warning" >/dev/null
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

redis_up() {
  step "Redis: server in .dev/redis" "$LOGS/redis.log"
  mkdir -p "$DEV/redis"
  if pid_alive "$RUN/redis.pid"; then
    echo "    Redis already running on 127.0.0.1:$REDIS_PORT"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
    if [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ]; then
      echo "    using the Redis already running on 127.0.0.1:$REDIS_PORT"
      return
    fi
    die "port $REDIS_PORT is taken by something that is not Redis; stop it or set RECORD_REDIS_PORT"
  fi
  # appendonly: revocations written by logout must survive a Redis restart.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEV/redis" --daemonize yes \
    --pidfile "$RUN/redis.pid" --logfile "$LOGS/redis.log" --appendonly yes --save "" >/dev/null
  local i=0
  until [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ]; do
    i=$((i + 1))
    [ "$i" -lt 150 ] || { echo "Redis did not answer PING" >&2; false; }
    sleep 0.2
  done
  echo "    Redis started on 127.0.0.1:$REDIS_PORT"
}

redis_down() {
  if pid_alive "$RUN/redis.pid"; then
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$RUN/redis.pid")"
    local i=0
    while pid_alive "$RUN/redis.pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    echo "    Redis stopped"
  fi
  rm -f "$RUN/redis.pid"
}

case "${1:-}" in
  up) pg_up; redis_up ;;
  down) redis_down; pg_down ;;
  status)
    bin=$(pg_bindir)
    if [ -e "$DEV/pg" ] && as_pg "$bin/pg_ctl" -D "$(readlink -f "$DEV/pg")/data" status >/dev/null 2>&1; then
      echo "PostgreSQL: running on 127.0.0.1:$PG_PORT"
    else
      echo "PostgreSQL: stopped"
    fi
    if pid_alive "$RUN/redis.pid"; then echo "Redis: running on 127.0.0.1:$REDIS_PORT"; else echo "Redis: stopped"; fi
    ;;
  psql)
    shift
    PGPASSWORD=$(cat "$SECRETS/pg-password") exec psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$PG_DB" "$@"
    ;;
  *) die "usage: $0 up|down|status|psql" ;;
esac
