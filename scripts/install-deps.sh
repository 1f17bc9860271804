#!/usr/bin/env bash
# Installs the system packages the build, the stack and the tests need, skipping what is present.
# `--tests` adds what only the tests need (scripts/test.sh passes it; `make up` does not).
# Works as root or through sudo; Debian/Ubuntu only.
source "$(dirname "$0")/lib.sh"

PACKAGES=(
  build-essential cmake clang libclang-dev pkg-config protobuf-compiler
  postgresql postgresql-contrib redis-server
  curl ca-certificates openssl nghttp2-client procps psmisc iproute2 python3 python3-venv
  util-linux
)
if [ "${1:-}" = "--tests" ]; then
  # The web app's browser tests (edge/tests/browser.rs): headless Chromium and its WebDriver.
  PACKAGES+=(chromium chromium-driver)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  # Compared, not piped into `grep -q`: under pipefail an early-exiting grep can fail the pipeline.
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "    system packages: all present"
else
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} by hand"
  echo "    installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # policy-rc.d keeps Debian from starting the system-wide postgres/redis services:
  # we run our own on private ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! cargo --version >/dev/null 2>&1; then
  die "cargo not found: install Rust with rustup (https://rustup.rs), then re-run"
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
