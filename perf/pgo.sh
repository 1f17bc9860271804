#!/usr/bin/env bash
# A profile-guided (PGO) release build of the edge: build it instrumented, run it under the
# perf suite's traffic mix on loopback, merge the counts, build it again with them.
#
# usage: perf/pgo.sh [--requests N] [--out DIR] [--keep-profile]
#
# Writes DIR/edge (default: $CARGO_TARGET_DIR/pgo/bin/edge), DIR/bare-pingora (the same
# optimised build: the edge's profile for the Pingora code they share), DIR/edge.profdata and
# DIR/source (`git describe --always --dirty` of what was built; perf/run.sh --pgo warns when
# it is not the checkout's). The training
# mix, each against perf-backend through perf/peers/edge.toml (and edge-chain.toml): h1 and h2
# over TLS, HTTP/3, gRPC, micro-cache hits, and h2 with the JWT + rate-limit chain, N requests
# each (default 20 000), so no one protocol's paths are the only ones laid out hot. Needs the
# release tools perf/run.sh builds (perf-backend, h3load, perf-tool, certs-tool) and
# llvm-profdata from rustup's llvm-tools component (installed if missing: it must match
# rustc's LLVM). Three builds in all (tools, instrumented, optimised): about three times a
# release build. perf/README.md ("Profile-guided build") has what it buys, measured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=perf/lib.sh
source perf/lib.sh
REQUESTS=20000
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQUESTS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --keep-profile) KEEP=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "pgo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
TARGET="$(realpath -m "$TARGET")"
OUT="$(realpath -m "${OUT:-$TARGET/pgo/bin}")"
die() { echo "pgo.sh: $*" >&2; exit 1; }
log() { echo "==> $*"; }

HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST_TRIPLE/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  log "installing rustup's llvm-tools (llvm-profdata matching rustc's LLVM)"
  rustup component add llvm-tools >/dev/null || die "rustup component add llvm-tools failed"
fi
[ -x "$PROFDATA" ] || die "no llvm-profdata at $PROFDATA"
for tool in h2load curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed (perf/run.sh installs it: apt-get install nghttp2-client curl)"
done

# What the builds below compile (a checkout edited while they run is not noticed).
SOURCE="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"

# One package set for every build: cargo unifies features per build, and a profile only
# matches the code of the same feature set (perf/README.md, "Build the binaries you compare").
PACKAGES=(-p edge -p perf -p certs-tool -p records)
TOOLS="$TARGET/release"
log "release tools (cargo build --release ${PACKAGES[*]})"
cargo build --release --locked "${PACKAGES[@]}" || die "release build failed"

PGO_DIR="$TARGET/pgo"
RAW="$PGO_DIR/raw"
rm -rf "$RAW"
mkdir -p "$RAW" "$OUT"
# --target keeps RUSTFLAGS off build scripts and proc macros (they would write profiles at
# build time); the two PGO builds have target directories of their own so that switching
# flags does not rebuild the plain release one.
log "instrumented build"
CARGO_TARGET_DIR="$PGO_DIR/gen" RUSTFLAGS="-Cprofile-generate=$RAW" \
  cargo build --release --locked --target "$HOST_TRIPLE" "${PACKAGES[@]}" || die "instrumented build failed"
GEN_EDGE="$PGO_DIR/gen/$HOST_TRIPLE/release/edge"

DEV="$ROOT/.dev/perf"
CERTS="$DEV/certs"
JWT_DIR="$DEV/jwt"
if [ ! -f "$CERTS/tls.crt" ]; then
  "$TOOLS/certs-tool" ca init --dir "$DEV/ca" --name "Record Platform Perf CA" --exist-ok >/dev/null
  "$TOOLS/certs-tool" issue --ca "$DEV/ca" --out "$CERTS" --san localhost --san 127.0.0.1 \
    --key ecdsa-p256 --layout flat >/dev/null
fi
[ -s "$JWT_DIR/token" ] || "$TOOLS/perf-tool" jwt --dir "$JWT_DIR" >/dev/null

# Ports of their own, so this runs beside perf/run.sh, perf/callgrind.sh and `make up`.
HOST_IP=127.0.0.1
PORT=27443
HTTP_PORT=27080
ADMIN_PORT=27901
BACKEND="$HOST_IP:27081"
RUN_DIR="$PGO_DIR/run"
mkdir -p "$RUN_DIR"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$TOOLS/perf-backend" --listen "$BACKEND" >"$RUN_DIR/backend.log" 2>&1 &
PIDS+=($!)
ready=0
for _ in $(seq 1 100); do curl -s -o /dev/null "http://$BACKEND/bench" && { ready=1; break; }; sleep 0.1; done
[ "$ready" = 1 ] || { tail -5 "$RUN_DIR/backend.log" >&2; die "perf-backend did not answer on $BACKEND"; }

h2load_ok() { # label h2load-args...
  local label="$1"; shift
  h2load -t1 -c16 --tls13-ciphers=TLS_AES_128_GCM_SHA256 -n "$REQUESTS" "$@" >"$RUN_DIR/$label.log" 2>&1 \
    || { cat "$RUN_DIR/$label.log" >&2; die "training load $label failed"; }
  grep -q "$REQUESTS succeeded" "$RUN_DIR/$label.log" \
    || { tail -5 "$RUN_DIR/$label.log" >&2; die "training load $label: not every request succeeded"; }
  echo "    $label: $REQUESTS requests"
}

train() { # config-template, then the loads for it
  local template="$1"; shift
  render_template "$template" "$RUN_DIR/edge.toml" || die "could not render $template"
  "$GEN_EDGE" --config "$RUN_DIR/edge.toml" >"$RUN_DIR/edge.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local ready=(-sk -o /dev/null --max-time 5)
  [ "$template" = perf/peers/edge-chain.toml ] && ready+=(-H "authorization: Bearer $(cat "$JWT_DIR/token")")
  local up=0
  for _ in $(seq 1 200); do curl "${ready[@]}" "https://$HOST_IP:$PORT/bench" && { up=1; break; }; sleep 0.1; done
  [ "$up" = 1 ] || { tail -5 "$RUN_DIR/edge.log" >&2; die "the instrumented edge did not answer 200 on :$PORT ($template)"; }
  "$@"
  # SIGINT: Pingora's fast shutdown; the profile is written when the process exits.
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
}

plain_mix() {
  local url="https://$HOST_IP:$PORT"
  h2load_ok h1 --h1 "$url/bench"
  h2load_ok h2 -m10 "$url/bench"
  h2load_ok cache-hit -m10 "$url/cached/bench"
  "$TOOLS/perf-tool" grpc-frame "$RUN_DIR/grpc.bin"
  h2load_ok grpc -m10 -d "$RUN_DIR/grpc.bin" -H 'content-type: application/grpc' -H 'te: trailers' "$url/bench.Bench/Unary"
  "$TOOLS/h3load" -c 16 -m 10 -n "$REQUESTS" --ca-file "$CERTS/ca.crt" --server-name localhost \
    "https://localhost:$PORT/bench" >"$RUN_DIR/h3.log" 2>&1 \
    || { cat "$RUN_DIR/h3.log" >&2; die "training load h3 failed"; }
  grep -q " 0 other status, 0 errors" "$RUN_DIR/h3.log" \
    || { tail -5 "$RUN_DIR/h3.log" >&2; die "training load h3: not every request succeeded"; }
  echo "    h3: $REQUESTS requests"
}
chain_mix() {
  h2load_ok chain -m10 -H "authorization: Bearer $(cat "$JWT_DIR/token")" "https://$HOST_IP:$PORT/bench"
}

log "training the instrumented edge ($REQUESTS requests per load)"
train perf/peers/edge.toml plain_mix
train perf/peers/edge-chain.toml chain_mix
compgen -G "$RAW/*.profraw" >/dev/null || die "the instrumented edge wrote no profile into $RAW"

PROFILE="$OUT/edge.profdata"
"$PROFDATA" merge -o "$PROFILE" "$RAW"/*.profraw || die "llvm-profdata merge failed"
[ "$KEEP" = 1 ] || rm -rf "$RAW"

# The flags name the profile by its content: cargo fingerprints RUSTFLAGS, not the file they
# point at, so a new profile under the old name would leave the crates built with the old one.
PROFILE_USED="$PGO_DIR/profiles/edge-$(sha256sum "$PROFILE" | cut -c1-16).profdata"
mkdir -p "$PGO_DIR/profiles"
rm -f "$PGO_DIR"/profiles/edge-*.profdata  # earlier runs' copies (≈ 20 MB each)
cp "$PROFILE" "$PROFILE_USED"
log "optimised build with the profile"
CARGO_TARGET_DIR="$PGO_DIR/use" RUSTFLAGS="-Cprofile-use=$PROFILE_USED -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --locked --target "$HOST_TRIPLE" "${PACKAGES[@]}" || die "PGO build failed"
for bin in edge bare-pingora; do
  cp "$PGO_DIR/use/$HOST_TRIPLE/release/$bin" "$OUT/$bin.new" && mv -f "$OUT/$bin.new" "$OUT/$bin"
done
echo "$SOURCE" >"$OUT/source"
log "done: $OUT/edge and $OUT/bare-pingora of $SOURCE (profile $PROFILE)"
