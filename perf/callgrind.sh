#!/usr/bin/env bash
# Instructions per request under valgrind's callgrind: the edge against bare Pingora (or any
# of them alone), counts that do not depend on the machine's noise (issue 13: profile before
# optimizing). Needs a release build (perf/run.sh makes one) and valgrind + h2load.
#
# usage: perf/callgrind.sh [--proxies "edge pingora"] [--scenarios "h1 h2 h3"] [--requests N]
#                          [--top K] [--out DIR] [--bin DIR]
#
# For each proxy and scenario: start it under callgrind, uninstrumented, warm up (TLS
# handshakes, the upstream pool), switch instrumentation on, send N requests with h2load over 4
# connections (h2: 10 streams each; h3: h3load, the same shape; edge only), dump, and print
# total instructions / N plus the K
# functions with the most self cost. Raw profiles stay in DIR (.dev/perf/callgrind) for
# `callgrind_annotate` / kcachegrind. CALLGRIND_OPTS adds valgrind options, e.g.
# CALLGRIND_OPTS=--cache-sim=yes for simulated cache misses per function (about twice as slow).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=perf/lib.sh
source perf/lib.sh
PROXIES="edge pingora"
SCENARIOS="h1 h2"
REQUESTS=4000
TOP=25
DEV="$ROOT/.dev/perf"
OUT="$DEV/callgrind"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
HOST_IP=127.0.0.1
# Ports of their own, so this runs beside perf/run.sh and `make up`.
PORT=29443
HTTP_PORT=29080
ADMIN_PORT=29901
BACKEND="$HOST_IP:28080"

while [ $# -gt 0 ]; do
  case "$1" in
    --proxies) PROXIES="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --top) TOP="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "callgrind.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

die() { echo "callgrind.sh: $*" >&2; exit 1; }
for tool in valgrind callgrind_control callgrind_annotate h2load curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install valgrind nghttp2-client curl)"
done
for bin in edge bare-pingora perf-backend h3load; do
  [ -x "$BIN/$bin" ] || die "$BIN/$bin missing: cargo build --release -p edge -p perf -p certs-tool -p records (the set perf/run.sh builds: one feature set)"
done
CERTS="$DEV/certs"
[ -f "$CERTS/tls.crt" ] || die "no certificate in $CERTS: run perf/run.sh once (it makes one)"

RUN_DIR="$OUT/run"
mkdir -p "$OUT" "$RUN_DIR"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_https() { # url: up to 120 s (valgrind starts slowly)
  for _ in $(seq 1 600); do
    curl -sk -o /dev/null --max-time 5 "$1" && return 0
    sleep 0.2
  done
  return 1
}

"$BIN/perf-backend" --listen "$BACKEND" >"$OUT/backend.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://$BACKEND/bench" && break; sleep 0.1; done

load() { # scenario requests
  if [ "$1" = h3 ]; then
    "$BIN/h3load" -c 4 -m 10 -n "$2" --ca-file "$CERTS/ca.crt" --server-name localhost \
      "https://localhost:$PORT/bench" >"$OUT/h3load.log" 2>&1 \
      || { cat "$OUT/h3load.log" >&2; die "h3load failed"; }
    grep -q " 0 other status, 0 errors" "$OUT/h3load.log" \
      || { cat "$OUT/h3load.log" >&2; die "not every request succeeded"; }
    return 0
  fi
  local args=(-t1 -c4 --tls13-ciphers=TLS_AES_128_GCM_SHA256 -n "$2")
  case "$1" in
    h1) args+=(--h1) ;;
    h2) args+=(-m10) ;;
    *) die "unknown scenario $1" ;;
  esac
  h2load "${args[@]}" "https://$HOST_IP:$PORT/bench" >"$OUT/h2load.log" 2>&1 \
    || { cat "$OUT/h2load.log" >&2; die "h2load failed"; }
  grep -q "$2 succeeded" "$OUT/h2load.log" || { cat "$OUT/h2load.log" >&2; die "not every request succeeded"; }
}

printf '%-8s %-4s %14s\n' proxy scen "instr/request"
for proxy in $PROXIES; do
  for scenario in $SCENARIOS; do
    if [ "$proxy" = pingora ] && [ "$scenario" = h3 ]; then continue; fi  # no HTTP/3 there
    profile="$OUT/$proxy-$scenario.callgrind"
    rm -f "$profile"*
    case "$proxy" in
      edge)
        render_template perf/peers/edge.toml "$RUN_DIR/edge.toml" || die "could not render perf/peers/edge.toml"
        cmd=("$BIN/edge" --config "$RUN_DIR/edge.toml") ;;
      pingora)
        cmd=("$BIN/bare-pingora" --listen "$HOST_IP:$PORT" --upstream "$BACKEND"
             --cert "$CERTS/tls.crt" --key "$CERTS/tls.key") ;;
      *) die "unknown proxy $proxy (edge, pingora)" ;;
    esac
    # shellcheck disable=SC2086 # CALLGRIND_OPTS is a list of options
    valgrind --tool=callgrind --instr-atstart=no ${CALLGRIND_OPTS:-} --callgrind-out-file="$profile" \
      "${cmd[@]}" >"$OUT/$proxy-$scenario.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_https "https://$HOST_IP:$PORT/bench" || { tail -20 "$OUT/$proxy-$scenario.log" >&2; die "$proxy did not start"; }
    load "$scenario" 400
    callgrind_control --instr=on "$pid" >/dev/null
    load "$scenario" "$REQUESTS"
    callgrind_control --instr=off "$pid" >/dev/null
    # Valgrind takes a command only while the program runs code. The edge's control threads
    # wake it anyway; bare Pingora idles in epoll_wait and the dump waited forever, so a TCP
    # connect (not counted: instrumentation is off) wakes it until the dump is written.
    callgrind_control --dump="$proxy-$scenario" "$pid" >/dev/null &
    dumper=$!
    for _ in $(seq 1 240); do
      kill -0 "$dumper" 2>/dev/null || break
      (exec 3<>"/dev/tcp/$HOST_IP/$PORT") 2>/dev/null || true
      sleep 0.5
    done
    if kill -0 "$dumper" 2>/dev/null; then
      kill "$dumper" 2>/dev/null || true
      die "callgrind did not write the dump of $proxy within 120 s"
    fi
    wait "$dumper" || die "callgrind_control failed to dump $proxy"
    # SIGINT: Pingora's fast shutdown (SIGTERM waits out the graceful period, 5 min by default).
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    # The part written by the dump above (the other part, at exit, holds nothing).
    dump="$(grep -l "^desc: Trigger: dump" "$profile"* | sed -n 1p)"
    total="$(sed -n 's/^totals: //p' "$dump" | awk '{print $1}')"
    printf '%-8s %-4s %14.0f\n' "$proxy" "$scenario" "$(echo "$total / $REQUESTS" | bc -l)"
    callgrind_annotate --inclusive=no "$dump" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n "2,$((TOP + 2))p" \
      >"$OUT/$proxy-$scenario.top.txt"
  done
done
echo "top functions by self cost: $OUT/<proxy>-<scenario>.top.txt; profiles: $OUT"
