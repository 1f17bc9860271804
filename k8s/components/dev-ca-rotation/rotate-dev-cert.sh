#!/usr/bin/env bash
# Renews the edge's serving certificate from the dev CA when it is within WARN_DAYS of expiry,
# and writes the new pair into the Secret $SECRET_NAME through the API (PATCH, allowed by the
# Role cert-rotation for that one Secret only). The kubelet then swaps the Secret volume's
# `..data` link on every node and each edge hot-reloads it without dropping a connection.
#
# Inputs (mounted read-only): /current = the Secret edge-tls, /ca = the Secret edge-dev-ca.
# Env: WARN_DAYS (30), CERT_DAYS (90), SECRET_NAME (edge-tls), POD_NAMESPACE, CERT_SANS (used only
# when the current set is unusable, space-separated), DRY_RUN=1 (print instead of PATCH; tests).
# Exit: 0 nothing to do or renewed; non-zero on any failure (the Job shows it, the alert
# EdgeCertificateExpiringSoon follows if it keeps failing).
set -euo pipefail

WARN_DAYS="${WARN_DAYS:-30}"
CERT_DAYS="${CERT_DAYS:-90}"
SECRET_NAME="${SECRET_NAME:-edge-tls}"
CURRENT="${CURRENT_DIR:-/current}"
CA="${CA_DIR:-/ca}"
WORK="${WORK_DIR:-/work}"
SA=/var/run/secrets/kubernetes.io/serviceaccount

log() { printf 'cert-rotation: %s\n' "$*"; }

set +e
certs-tool check --dir "$CURRENT" --warn-days "$WARN_DAYS"
verdict=$?
set -e
case "$verdict" in
  0) log "certificate valid for more than $WARN_DAYS days; nothing to do"; exit 0 ;;
  1) log "certificate expires within $WARN_DAYS days; renewing" ;;
  *) log "current certificate set is unusable (exit $verdict); re-issuing" ;;
esac

# certs-tool writes lock files and new files: work on writable copies (Secret volumes are
# read-only). ca.key never leaves this pod's memory-backed emptyDir.
rm -rf "$WORK/ca" "$WORK/out"
mkdir -p "$WORK/ca" "$WORK/out"
chmod 700 "$WORK/ca" "$WORK/out"
install -m 0644 "$CA/ca.crt" "$WORK/ca/ca.crt"
install -m 0600 "$CA/ca.key" "$WORK/ca/ca.key"
for extra in ca-cross.crt ca-previous.crt; do
  if [ -f "$CA/$extra" ]; then install -m 0644 "$CA/$extra" "$WORK/ca/$extra"; fi
done

if [ "$verdict" = 1 ]; then
  install -m 0644 "$CURRENT/tls.crt" "$WORK/out/tls.crt"
  install -m 0600 "$CURRENT/tls.key" "$WORK/out/tls.key"
  install -m 0644 "$CURRENT/ca.crt" "$WORK/out/ca.crt"
  certs-tool rotate --ca "$WORK/ca" --out "$WORK/out" --layout flat --days "$CERT_DAYS"
else
  [ -n "${CERT_SANS:-}" ] || { log "CERT_SANS is empty: cannot re-issue without names"; exit 2; }
  sans=()
  for san in $CERT_SANS; do sans+=(--san "$san"); done
  certs-tool issue --ca "$WORK/ca" --out "$WORK/out" --layout flat --days "$CERT_DAYS" "${sans[@]}"
fi

# Never publish a set that would not pass the edge's own validation.
certs-tool check --dir "$WORK/out" --warn-days "$WARN_DAYS"

b64() { base64 -w0 < "$1"; }
patch_body() {
  printf '{"data":{"tls.crt":"%s","tls.key":"%s","ca.crt":"%s"}}' \
    "$(b64 "$WORK/out/tls.crt")" "$(b64 "$WORK/out/tls.key")" "$(b64 "$WORK/out/ca.crt")"
}

if [ "${DRY_RUN:-0}" = 1 ]; then
  log "DRY_RUN: would PATCH secret $SECRET_NAME with $(patch_body | wc -c) bytes"
  certs-tool inspect "$WORK/out/tls.crt" | head -n 20
  exit 0
fi

api="https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}"
namespace="${POD_NAMESPACE:-$(cat "$SA/namespace")}"
patch_body | curl --silent --show-error --fail-with-body \
  --cacert "$SA/ca.crt" \
  --header "Authorization: Bearer $(cat "$SA/token")" \
  --header 'Content-Type: application/merge-patch+json' \
  --request PATCH --data-binary @- \
  --output /dev/null \
  "$api/api/v1/namespaces/$namespace/secrets/$SECRET_NAME"
log "secret $namespace/$SECRET_NAME updated; the edges reload it when the kubelet syncs the volume (about a minute)"
rm -rf "$WORK/ca" "$WORK/out"
