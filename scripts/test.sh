#!/usr/bin/env bash
# `make test`: everything CI runs. `test.sh lint` stops after fmt and clippy.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
started=$(date +%s)

step "install system packages" "$LOGS/install-deps.log"
"$ROOT/scripts/install-deps.sh" > "$LOGS/install-deps.log" 2>&1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings" "$LOGS/clippy.log"
cargo clippy --workspace --all-targets --locked -- -D warnings 2>&1 | tee "$LOGS/clippy.log"

if [ "${1:-}" = "lint" ]; then exit 0; fi

step "start PostgreSQL and Redis" "$LOGS/datastores.log"
"$ROOT/scripts/datastores.sh" up > "$LOGS/datastores.log" 2>&1

# Cross-crate integration tests spawn sibling binaries (auth, records, edge, certs-tool).
step "cargo build --workspace" "$LOGS/test-build.log"
cargo build --workspace --bins --locked > "$LOGS/test-build.log" 2>&1

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
