#!/usr/bin/env bash
# CPU per request of proxy variants, alternated in one session (issue 13: "ratios measured in
# one run"). Each variant is started in turn on CPU 1, warmed up, then loaded with h2load (or
# h3load) on CPU 0 beside perf-backend; its CPU time (all threads, /proc/PID/stat utime+stime)
# over the measured requests gives µs per request. Rounds alternate the variants, so a slow
# phase of the machine hits all of them; the medians over rounds are printed last.
#
# usage: perf/ab.sh [--rounds N] [--requests N] [--warmup N] [--scenarios "h1 h2 h3 fixed"]
#                   [--bin DIR] VARIANT...
# fixed: h2 at a fixed 2 000 requests/s for --requests / 2 000 s (h2load -c20 -m10 --rps=100, as make bench's
# fixed-rate-2k), which also prints p50 / p99 latency in µs (perf-tool latency).
# VARIANT is NAME=KIND[@DIR][:ARG...]:
#   edge            the edge with perf/peers/edge.toml
#   edge:KEY=VALUE  ... with KEY = VALUE added to its [server] section (a key the template
#                   does not set already: TOML refuses a key twice)
#   pingora         bare Pingora; pingora:--pool=128 passes that flag on
#   @DIR            that variant's binary from DIR instead of --bin (two builds side by side)
# e.g. perf/ab.sh before=edge@/tmp/old-release after=edge bare=pingora
#      perf/ab.sh pool1024=edge pool128=edge:upstream_keepalive_pool_size=128
# Needs a release build (the set perf/run.sh builds) and h2load; ports 39443/39080/39901/38080.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=perf/lib.sh
source perf/lib.sh
ROUNDS=3
REQUESTS=150000
WARMUP=5000
SCENARIOS="h1 h2"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
DEV="$ROOT/.dev/perf"
HOST_IP=127.0.0.1
PORT=39443
HTTP_PORT=39080
ADMIN_PORT=39901
BACKEND="$HOST_IP:38080"
VARIANTS=()

die() { echo "ab.sh: $*" >&2; exit 1; }
count() { # option value: a positive whole number, or a clear error
  [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "$1 takes a positive whole number, got '${2:-}'"
  echo "$2"
}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$(count "$1" "${2:-}")"; shift 2 ;;
    --requests) REQUESTS="$(count "$1" "${2:-}")"; shift 2 ;;
    --warmup) WARMUP="$(count "$1" "${2:-}")"; shift 2 ;;
    --scenarios) SCENARIOS="${2:?--scenarios takes a list}"; shift 2 ;;
    --bin) BIN="${2:?--bin takes a directory}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *=*) VARIANTS+=("$1"); shift ;;
    *) die "a variant is NAME=KIND[:ARG...], got $1" ;;
  esac
done
[ "${#VARIANTS[@]}" -gt 0 ] || die "name at least one variant (see --help)"
for tool in h2load taskset curl; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
for bin in edge bare-pingora perf-backend h3load perf-tool; do
  [ -x "$BIN/$bin" ] || die "$BIN/$bin missing: cargo build --release -p edge -p perf -p certs-tool -p records"
done
CERTS="$DEV/certs"
[ -f "$CERTS/tls.crt" ] || die "no certificate in $CERTS: run perf/run.sh once (it makes one)"
RUN_DIR="$(mktemp -d)"
PIDS=()
BACKEND_PID=
cleanup() {
  # SIGINT: Pingora's fast shutdown. perf-backend, started in the background by a
  # non-interactive shell, ignores SIGINT, so it gets SIGKILL (it keeps no state).
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  [ -n "$BACKEND_PID" ] && kill -KILL "$BACKEND_PID" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT

taskset -c 0 "$BIN/perf-backend" --listen "$BACKEND" >"$RUN_DIR/backend.log" 2>&1 &
BACKEND_PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://$BACKEND/bench" && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

load() { # scenario requests
  local out="$RUN_DIR/load.log"
  if [ "$1" = h3 ]; then
    taskset -c 0 "$BIN/h3load" -c 16 -m 10 -n "$2" --ca-file "$CERTS/ca.crt" --server-name localhost \
      "https://localhost:$PORT/bench" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
    grep -q " 0 other status, 0 errors" "$out" || { cat "$out" >&2; return 1; }
    DONE="$2"
    return 0
  fi
  local args=(-t1 -c16 --tls13-ciphers=TLS_AES_128_GCM_SHA256 -n "$2")
  case "$1" in
    h1) args+=(--h1) ;;
    h2) args+=(-m10) ;;
    fixed)
      rm -f "$RUN_DIR/fixed.log"
      args=(-t1 -c20 -m10 --rps=100 -D "$(( ($2 + 1999) / 2000 ))" --tls13-ciphers=TLS_AES_128_GCM_SHA256
            --log-file="$RUN_DIR/fixed.log") ;;
    *) die "unknown scenario $1" ;;
  esac
  taskset -c 0 h2load "${args[@]}" "https://$HOST_IP:$PORT/bench" >"$out" 2>&1 || { cat "$out" >&2; return 1; }
  if [ "$1" = fixed ]; then
    grep -q " 0 failed, 0 errored, 0 timeout" "$out" || { cat "$out" >&2; return 1; }
    DONE="$(sed -n 's/^requests: .* \([0-9]*\) done,.*/\1/p' "$out")"
  else
    grep -q "$2 succeeded" "$out" || { cat "$out" >&2; return 1; }
    DONE="$2"
  fi
}

start_variant() { # spec -> sets pid
  local spec="$1" kind extra=() bin="$BIN"
  kind="${spec%%:*}"
  [ "$kind" != "$spec" ] && IFS=: read -r -a extra <<<"${spec#*:}"
  if [ "${kind#*@}" != "$kind" ]; then
    bin="${kind#*@}"
    kind="${kind%%@*}"
  fi
  case "$kind" in
    edge)
      render_template perf/peers/edge.toml "$RUN_DIR/edge.toml" || die "could not render the edge config"
      local kv
      for kv in "${extra[@]}"; do
        sed -i "/^\[server\]/a ${kv%%=*} = ${kv#*=}" "$RUN_DIR/edge.toml"
      done
      [ -x "$bin/edge" ] || die "$bin/edge missing"
      taskset -c 1 "$bin/edge" --config "$RUN_DIR/edge.toml" >"$RUN_DIR/proxy.log" 2>&1 & ;;
    pingora)
      [ -x "$bin/bare-pingora" ] || die "$bin/bare-pingora missing"
      taskset -c 1 "$bin/bare-pingora" --listen "$HOST_IP:$PORT" --upstream "$BACKEND" \
        --cert "$CERTS/tls.crt" --key "$CERTS/tls.key" "${extra[@]}" >"$RUN_DIR/proxy.log" 2>&1 & ;;
    *) die "unknown kind $kind (edge, pingora)" ;;
  esac
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 200); do
    curl -sk -o /dev/null --max-time 2 "https://$HOST_IP:$PORT/bench" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$RUN_DIR/proxy.log" >&2
  die "$spec did not start"
}

RESULTS="$RUN_DIR/results"
: >"$RESULTS"
hz="$(getconf CLK_TCK)"
printf '%-6s %-5s %-12s %12s %10s %10s\n' round scen variant "CPU µs/req" "p50 µs" "p99 µs"
for round in $(seq 1 "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    for variant in "${VARIANTS[@]}"; do
      name="${variant%%=*}"
      spec="${variant#*=}"
      # Bare Pingora has no HTTP/3.
      if [ "$scenario" = h3 ] && [ "${spec%%[@:]*}" = pingora ]; then continue; fi
      start_variant "$spec"
      load "$scenario" "$WARMUP" || die "$name: warm-up failed"
      before="$(cpu_ticks "$pid")"
      load "$scenario" "$REQUESTS" || die "$name: load failed"
      after="$(cpu_ticks "$pid")"
      kill -INT "$pid"; wait "$pid" 2>/dev/null || true
      us="$(echo "($after - $before) * 1000000 / $hz / $DONE" | bc -l)"
      p50=-; p99=-
      if [ "$scenario" = fixed ]; then
        "$BIN/perf-tool" latency --kind h2load "$RUN_DIR/fixed.log" >"$RUN_DIR/fixed.json"
        p50="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["p50_us"])' "$RUN_DIR/fixed.json")"
        p99="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["p99_us"])' "$RUN_DIR/fixed.json")"
      fi
      printf '%-6s %-5s %-12s %12.2f %10s %10s\n' "$round" "$scenario" "$name" "$us" "$p50" "$p99"
      echo "$scenario $name $us $p50 $p99" >>"$RESULTS"
    done
  done
done
echo "medians over $ROUNDS rounds ($REQUESTS requests each, after $WARMUP of warm-up):"
median() { # scenario name column
  awk -v s="$1" -v n="$2" -v c="$3" '$1 == s && $2 == n && $c != "-" {print $c}' "$RESULTS" \
    | sort -n | awk '{a[NR] = $1} END {if (NR == 0) print "-"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
for scenario in $SCENARIOS; do
  for variant in "${VARIANTS[@]}"; do
    name="${variant%%=*}"
    cpu="$(median "$scenario" "$name" 3)"
    [ "$cpu" = - ] && continue  # not run in this scenario (bare Pingora and h3)
    printf '%-5s %-12s %12.2f %10s %10s\n' "$scenario" "$name" "$cpu" \
      "$(median "$scenario" "$name" 4)" "$(median "$scenario" "$name" 5)"
  done
done
