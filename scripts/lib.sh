# Shared helpers for the scripts the Makefile calls. Source it; do not run it.
# shellcheck shell=bash

set -Eeuo pipefail  # -E: the ERR trap (on_error) also fires inside functions

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV="$ROOT/.dev"
LOGS="$DEV/logs"
RUN="$DEV/run"
SECRETS="$DEV/secrets"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# cargo from rustup lives in ~/.cargo/bin, which a non-login shell may not have on PATH.
case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH="$HOME/.cargo/bin:$PATH" ;; esac
PATH="$PATH:/usr/sbin:/sbin"
export PATH

PG_PORT="${RECORD_PG_PORT:-55432}"
REDIS_PORT="${RECORD_REDIS_PORT:-56379}"
# records' search cache: a Redis of its own (allkeys-lru), so it can never fill the one above.
REDIS_CACHE_PORT="${RECORD_REDIS_CACHE_PORT:-56380}"

CURRENT_STEP="(none)"
CURRENT_LOG=""

mkdir -p "$LOGS" "$RUN" "$SECRETS"
chmod 700 "$SECRETS"

# step NAME LOGFILE: announce a step; on failure the trap names it and shows its log tail.
# Each step prints how long the previous one took, so slow steps show up in CI logs.
step() {
  local now
  now=$(date +%s)
  if [ -n "${STEP_STARTED:-}" ]; then
    printf '    (%s: %ss)\n' "$CURRENT_STEP" "$(( now - STEP_STARTED ))"
  fi
  STEP_STARTED=$now
  CURRENT_STEP="$1"
  CURRENT_LOG="${2:-}"
  printf '==> %s\n' "$CURRENT_STEP"
}

on_error() {
  local rc=$?
  printf '\n!! step failed: %s (exit %s)\n' "$CURRENT_STEP" "$rc" >&2
  if [ -n "$CURRENT_LOG" ] && [ -f "$CURRENT_LOG" ]; then
    printf '!! last lines of %s:\n' "$CURRENT_LOG" >&2
    tail -n 30 "$CURRENT_LOG" | sed 's/^/   | /' >&2
  fi
  exit "$rc"
}
trap on_error ERR

die() {
  printf '!! %s\n' "$*" >&2
  exit 1
}

# Run as root directly, else through sudo (non-interactive in CI).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@" 2>/dev/null || sudo "$@"
  else
    die "need root for: $* (run as root or install sudo)"
  fi
}

# A random secret as base64 (32 bytes), created once and kept.
ensure_secret() {
  local file="$SECRETS/$1"
  if [ ! -s "$file" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 > "$file.tmp" && mv "$file.tmp" "$file")
  fi
}

pid_alive() {
  local pidfile="$1"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# wait_http URL SECONDS: poll until URL answers 2xx.
wait_http() {
  local url="$1" seconds="${2:-60}" i=0
  while [ "$i" -lt $((seconds * 5)) ]; do
    if curl -fsS -o /dev/null --max-time 2 -k "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
    i=$((i + 1))
  done
  return 1
}

# The dev/test PostgreSQL superuser password is per machine user, not per checkout, so a
# second checkout (e.g. CI's clean clone) can use a cluster another checkout started.
ensure_pg_password() {
  local store="${XDG_CONFIG_HOME:-$HOME/.config}/record-platform"
  mkdir -p "$store"
  chmod 700 "$store"
  if [ ! -s "$store/pg-password" ]; then
    if [ -s "$SECRETS/pg-password" ]; then
      install -m 600 "$SECRETS/pg-password" "$store/pg-password"
    else
      (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$store/pg-password")
    fi
  fi
  install -m 600 "$store/pg-password" "$SECRETS/pg-password"
}
