#!/usr/bin/env bash
# Data-layer benchmark: pgbench runs the records search (trigram) and CRUD queries against the
# 1M-record dataset and reports them like the original platform's golden baseline: clients, tps,
# p50/p95/p99/max latency, failures.
#
#   perf/pgbench/run.sh [--quick] [--csv FILE] [--clients "1 8 16"] [--seconds 20]
#
# Uses the shared PostgreSQL (PGHOST/PGPORT/PGUSER, default 127.0.0.1:55432 postgres, password
# from .dev/secrets/pg-password) and its own database $PERF_PG_DB (default perf_records): created
# when missing, migrated with `records migrate`, filled by perf-dataset (skipped when the dataset
# is already there). Nothing else is dropped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${PERF_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
QUICK=0
CSV=""
CLIENTS=""
SECONDS_PER_RUN=""
USERS="${PERF_PG_USERS:-1000}"
RECORDS="${PERF_PG_RECORDS:-1000000}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --csv) CSV="$2"; shift ;;
    --clients) CLIENTS="$2"; shift ;;
    --seconds) SECONDS_PER_RUN="$2"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "pgbench/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  CLIENTS="${CLIENTS:-8}"; SECONDS_PER_RUN="${SECONDS_PER_RUN:-8}"
else
  CLIENTS="${CLIENTS:-1 8 16}"; SECONDS_PER_RUN="${SECONDS_PER_RUN:-20}"
fi

die() { echo "pgbench/run.sh: $*" >&2; exit 1; }
for tool in psql pgbench; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install postgresql-client)"
done
for bin in records perf-dataset perf-tool; do
  [ -x "$BIN/$bin" ] || die "$BIN/$bin is missing: cargo build --release --workspace --bins --locked"
done

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-55432}" PGUSER="${PGUSER:-postgres}"
if [ -z "${PGPASSWORD:-}" ]; then
  [ -r "$ROOT/.dev/secrets/pg-password" ] || die "no PGPASSWORD and no .dev/secrets/pg-password (make datastores)"
  PGPASSWORD="$(cat "$ROOT/.dev/secrets/pg-password")"
fi
export PGPASSWORD
DB="${PERF_PG_DB:-perf_records}"
[[ "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "PERF_PG_DB must be a plain lower-case name"
pg_isready -q -h "$PGHOST" -p "$PGPORT" || die "PostgreSQL is not answering on $PGHOST:$PGPORT (make datastores)"

if ! psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  echo "pgbench: creating database $DB"
  psql -d postgres -qc "CREATE DATABASE $DB"
fi
URL="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$DB"
"$BIN/records" migrate --database-url "$URL" >/dev/null || die "records migrate failed on $DB"
DATABASE_URL="$URL" "$BIN/perf-dataset" --users "$USERS" --records "$RECORDS" \
  || die "perf-dataset failed"

WORK="$(mktemp -d /tmp/perf-pgbench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
HOST="$(hostname)"
# The records service's session options (services/records/src/main.rs SESSION_OPTIONS).
export PGOPTIONS="-c statement_timeout=5000 -c pg_trgm.word_similarity_threshold=0.4 -c constraint_exclusion=off"

printf '\n%-8s %7s %9s %8s %8s %8s %8s %8s\n' script clients tps p50_ms p95_ms p99_ms max_ms failures
for script in search crud; do
  for c in $CLIENTS; do
    jobs=$(( c < 2 ? c : 2 ))
    prefix="$WORK/$script-c$c"
    out="$prefix.out"
    # As the service sends them (store.rs): its CRUD statements are prepared once per
    # connection, its search is planned with each call's values.
    mode=prepared
    [ "$script" = search ] && mode=simple
    if ! pgbench -n -M "$mode" -d "$DB" -f "$ROOT/perf/pgbench/$script.sql" -D users="$USERS" -D records="$RECORDS" \
        -c "$c" -j "$jobs" -T "$SECONDS_PER_RUN" -l --log-prefix="$prefix" >"$out" 2>&1; then
      cat "$out" >&2
      die "pgbench $script with $c clients failed"
    fi
    tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -1)"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out" | head -1)"
    failed="${failed:-0}"
    lat="$("$BIN/perf-tool" latency --kind pgbench "$prefix".[0-9]*)"
    get() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$lat"; }
    ms() { awk -v v="$1" 'BEGIN { printf "%.2f", v / 1000 }'; }
    printf '%-8s %7s %9s %8s %8s %8s %8s %8s\n' "$script" "$c" "$tps" \
      "$(ms "$(get p50_us)")" "$(ms "$(get p95_us)")" "$(ms "$(get p99_us)")" "$(ms "$(get max_us)")" "$failed"
    if [ -n "$CSV" ]; then
      status=ok
      [ "$failed" = 0 ] || status=void
      # date,host,scenario,proxy,run,status,rps,cpu_us_per_req,p50_us,p95_us,p99_us,p999_us,max_us,rss_kib,per_conn_kib,completed,non2xx,errors,note
      echo "$DATE,$HOST,pg-$script,c$c,1,$status,$tps,,$(get p50_us),$(get p95_us),$(get p99_us),$(get p999_us),$(get max_us),,,$(get count),,$failed,$c" >>"$CSV"
    fi
  done
done
