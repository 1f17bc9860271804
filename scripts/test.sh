#!/usr/bin/env bash
# `make test`: everything CI runs. `test.sh lint` stops after fmt and clippy.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
started=$(date +%s)

step "install system packages" "$LOGS/install-deps.log"
"$ROOT/scripts/install-deps.sh" --tests > "$LOGS/install-deps.log" 2>&1

step "cargo fmt --check"
cargo fmt --all -- --check

if [ "${1:-}" = "lint" ]; then
  step "cargo clippy -D warnings" "$LOGS/clippy.log"
  cargo clippy --workspace --all-targets --locked -- -D warnings 2>&1 | tee "$LOGS/clippy.log"
  exit 0
fi

step "start PostgreSQL, Redis and the cache Redis" "$LOGS/datastores.log"
"$ROOT/scripts/datastores.sh" up > "$LOGS/datastores.log" 2>&1

# Clippy runs as the compiler of the workspace's own crates while they are built for the
# tests: the lints of `cargo clippy --all-targets -- -D warnings` without its separate
# check-only compile of every dependency, which on a cold cache cost as much as the build.
CLIPPY_DRIVER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
[ -n "$CLIPPY_DRIVER" ] || die "clippy-driver not found: rustup component add clippy"
export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER"
export CLIPPY_ARGS="-Dwarnings"
step "cargo build, every target, with clippy -D warnings" "$LOGS/test-build.log"
if ! cargo test --workspace --all-targets --locked --no-run > "$LOGS/test-build.log" 2>&1; then
  grep -Ev '^ +(Compiling|Checking|Fresh|Downloaded|Downloading|Blocking|Updating|Locking) ' "$LOGS/test-build.log" >&2
  die "build or clippy failed (whole log: $LOGS/test-build.log)"
fi
# Cross-crate integration tests spawn sibling binaries (auth, records, edge, certs-tool).
cargo build --workspace --bins --locked >> "$LOGS/test-build.log" 2>&1

step "install the interop and browser clients (grpcio, aioquic, selenium)" "$LOGS/interop-tools.log"
"$ROOT/scripts/interop-tools.sh" > "$LOGS/interop-tools.log" 2>&1

step "cargo test --workspace"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

if [ -x "$ROOT/scripts/k8s-validate.sh" ]; then
  step "validate k8s manifests" "$LOGS/k8s-validate.log"
  "$ROOT/scripts/k8s-validate.sh"
fi

step "done"
echo "==> all green in $(( $(date +%s) - started ))s"
