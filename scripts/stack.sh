#!/usr/bin/env bash
# `make up` / `make down` / `make status` / `make certs`: the whole dev stack on this machine.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
# The edge last: its readiness needs every required cluster (web included) healthy.
SERVICES=(auth records web edge)

database_url() {
  echo "postgres://postgres:$(cat "$SECRETS/pg-password")@127.0.0.1:${PG_PORT}/record_platform"
}

ready_url() {
  case "$1" in
    auth) echo "http://127.0.0.1:4001/readyz" ;;
    records) echo "http://127.0.0.1:4002/readyz" ;;
    web) echo "http://127.0.0.1:4003/readyz" ;;
    edge) echo "http://127.0.0.1:9000/readyz" ;;
  esac
}

service_args() {
  case "$1" in
    auth) echo "serve --key-dir $DEV/keys" ;;
    records) echo "serve" ;;
    web) echo "--listen 127.0.0.1:4003 --assets-dir $ROOT/services/web/assets" ;;
    edge) echo "--config $ROOT/edge/config/dev.toml" ;;
  esac
}

stop_service() {
  local name="$1" pidfile="$RUN/$1.pid" i=0
  if pid_alive "$pidfile"; then
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    while pid_alive "$pidfile" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if pid_alive "$pidfile"; then kill -KILL "$(cat "$pidfile")" 2>/dev/null || true; fi
    echo "    $name stopped"
  fi
  rm -f "$pidfile"
}

start_service() {
  local name="$1" bin="$BIN/$1" pidfile="$RUN/$1.pid" log="$LOGS/$1.log"
  if [ ! -x "$bin" ]; then
    echo "    $name: no binary yet, skipped"
    return
  fi
  # Idempotent: a running service is left alone unless its binary was rebuilt since.
  if pid_alive "$pidfile"; then
    if [ "$bin" -nt "$pidfile" ]; then
      echo "    $name: binary rebuilt, restarting"
      stop_service "$name"
    else
      echo "    $name already running (pid $(cat "$pidfile"))"
      return
    fi
  fi
  step "start $name" "$log"
  # RECORDS_CACHE_REDIS_URL: records' search cache in the cache Redis (only records reads it).
  # shellcheck disable=SC2046
  DATABASE_URL="$(database_url)" REDIS_URL="redis://127.0.0.1:${REDIS_PORT}" \
    RECORDS_CACHE_REDIS_URL="redis://127.0.0.1:${REDIS_CACHE_PORT}" \
    IDENTITY_KEY_DIR="$SECRETS/identity" \
    setsid nohup "$bin" $(service_args "$name") >> "$log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  if ! wait_http "$(ready_url "$name")" 90; then
    echo "$name did not become ready on $(ready_url "$name")" >&2
    false
  fi
  echo "    $name ready (pid $(cat "$pidfile"))"
}

make_certs() {
  local tool="$BIN/certs-tool"
  [ -x "$tool" ] || tool="${CARGO_TARGET_DIR:-$ROOT/target}/debug/certs-tool"
  [ -x "$tool" ] || die "certs-tool is not built; run make up"
  step "dev certificates in .dev/ca and .dev/certs" "$LOGS/certs.log"
  if [ ! -s "$DEV/ca/ca.crt" ]; then
    "$tool" ca init --dir "$DEV/ca" --name "Record Platform dev CA" > "$LOGS/certs.log" 2>&1
    echo "    dev CA created"
  fi
  if [ ! -s "$DEV/certs/tls.crt" ]; then
    "$tool" issue --ca "$DEV/ca" --out "$DEV/certs" \
      --san localhost --san 127.0.0.1 --san record.local >> "$LOGS/certs.log" 2>&1
    echo "    leaf certificate issued"
  else
    echo "    certificates present (rotate: certs-tool rotate --ca .dev/ca --out .dev/certs)"
  fi
}

up() {
  local started
  started=$(date +%s)
  step "install system packages" "$LOGS/install-deps.log"
  "$ROOT/scripts/install-deps.sh" > "$LOGS/install-deps.log" 2>&1

  step "build the workspace (release)" "$LOGS/build.log"
  # Only the shipped binaries: building the whole workspace would unify in the test
  # harness's features (a second TLS stack for its clients) into them.
  cargo build --release --locked -p edge -p auth -p records -p web -p certs-tool > "$LOGS/build.log" 2>&1

  make_certs
  step "secrets in .dev/secrets"
  # The identity key edge/config/dev.toml signs with (key_id = "dev-1"); auth and records
  # accept every *.key of the directory (docs/identity-rotation.md).
  (umask 077 && mkdir -p "$SECRETS/identity")
  ensure_secret identity/dev-1.key
  # The edge admin's bearer token (admin.token_file): POST /config/reload, /certs/reload.
  ensure_secret admin-token
  mkdir -p "$DEV/keys" && chmod 700 "$DEV/keys"

  step "PostgreSQL, Redis and the cache Redis" "$LOGS/datastores.log"
  "$ROOT/scripts/datastores.sh" up > "$LOGS/datastores.log" 2>&1

  for svc in auth records; do
    if [ -x "$BIN/$svc" ]; then
      step "migrations: $svc" "$LOGS/migrate.log"
      DATABASE_URL="$(database_url)" "$BIN/$svc" migrate >> "$LOGS/migrate.log" 2>&1
    fi
  done

  for svc in "${SERVICES[@]}"; do start_service "$svc"; done

  cat <<EOF

Record Platform is up ($(( $(date +%s) - started ))s). Logs: .dev/logs/   Stop: make down

  the collectors' web app        https://localhost:8443/     (trust .dev/certs/ca.crt in the browser)

  edge HTTPS (h1, h2) + HTTP/3   https://localhost:8443      (TCP and UDP 8443)
  edge plain HTTP                http://localhost:8080       (/healthz, 308 to https)
  edge admin                     http://127.0.0.1:9000       (/metrics /readyz /config /certs)
  auth                           http://127.0.0.1:4001       gRPC 127.0.0.1:50051
  records                        http://127.0.0.1:4002       gRPC 127.0.0.1:50052
  web (the app's files)          http://127.0.0.1:4003
  PostgreSQL / Redis             127.0.0.1:${PG_PORT} / 127.0.0.1:${REDIS_PORT}
  cache Redis (records search)   127.0.0.1:${REDIS_CACHE_PORT}   (64 MB, allkeys-lru)
  dev CA (trust it in clients)   .dev/certs/ca.crt

Try it:
  CA=.dev/certs/ca.crt; API=https://localhost:8443/api
  curl --cacert \$CA \$API/healthz
  curl --cacert \$CA -X POST \$API/auth/register -H 'content-type: application/json' \\
       -d '{"email":"me@example.com","password":"correct horse battery"}'
  TOKEN=\$(curl -s --cacert \$CA -X POST \$API/auth/login -H 'content-type: application/json' \\
       -d '{"email":"me@example.com","password":"correct horse battery"}' \\
       | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl --cacert \$CA -X POST \$API/records -H "authorization: Bearer \$TOKEN" \\
       -H 'content-type: application/json' -d '{"artist":"Aphex Twin","name":"SAW 85-92","format":"LP"}'
  curl --cacert \$CA "\$API/records/search?q=aphex" -H "authorization: Bearer \$TOKEN"

Rotate the certificate live: target/release/certs-tool rotate --ca .dev/ca --out .dev/certs
EOF
}

down() {
  step "stop services"
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_service "${SERVICES[$i]}"; done
  step "stop PostgreSQL and both Redis servers"
  "$ROOT/scripts/datastores.sh" down
}

status() {
  for svc in "${SERVICES[@]}"; do
    if pid_alive "$RUN/$svc.pid"; then
      printf '%-8s running (pid %s)\n' "$svc" "$(cat "$RUN/$svc.pid")"
    else
      printf '%-8s stopped\n' "$svc"
    fi
  done
  "$ROOT/scripts/datastores.sh" status
}

# `stack.sh restart auth records`: stop and start services of a running stack, e.g. so
# they load a new identity key (docs/identity-rotation.md).
restart() {
  [ "$#" -gt 0 ] || die "usage: $0 restart SERVICE..."
  for svc in "$@"; do
    case " ${SERVICES[*]} " in *" $svc "*) ;; *) die "unknown service $svc" ;; esac
    stop_service "$svc"
    start_service "$svc"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  certs) make_certs ;;
  restart) shift; restart "$@" ;;
  *) die "usage: $0 up|down|status|certs|restart SERVICE..." ;;
esac
