#!/usr/bin/env bash
# Creates the Secrets the dev overlay references, from material generated on this machine into
# the checkout's .dev/k8s/ (git-ignored) — nothing secret is ever written under k8s/.
#
#   k8s/overlays/dev/create-secrets.sh [--namespace NS] [--force] [--print]
#
#   edge-tls             tls.crt, tls.key, ca.crt   leaf for record.local + localhost from the dev CA
#   edge-dev-ca          ca.crt, ca.key             the dev CA (for the cert-rotation CronJob)
#   identity-key         k1.key (one <kid>.key each) base64 of 32 random bytes (edge + services);
#                                                   add .dev/k8s/identity/k2.key and --force to rotate
#   edge-admin-token     token                      base64 of 32 random bytes (edge admin bearer)
#   auth-signing-keys    current.pem                the JWT signing key (Ed25519)
#   postgres-credentials username, password         hex password (URL-safe for DATABASE_URL)
#
# Existing Secrets are left alone (edge-tls may have been rotated since) unless --force.
# --print writes the manifests to stdout instead of applying them (no cluster needed).
# Uses certs-tool and auth from target/{release,debug} or PATH when present, else openssl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
OUT="${K8S_SECRETS_DIR:-$ROOT/.dev/k8s}"
NAMESPACE=record-platform
FORCE=0
PRINT=0
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) NAMESPACE="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --print) PRINT=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "create-secrets.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

find_bin() {
  local name="$1" dir
  for dir in "${CARGO_TARGET_DIR:-$ROOT/target}/release" "${CARGO_TARGET_DIR:-$ROOT/target}/debug"; do
    if [ -x "$dir/$name" ]; then echo "$dir/$name"; return 0; fi
  done
  command -v "$name" 2>/dev/null || true
}
CERTS_TOOL="$(find_bin certs-tool)"
AUTH_BIN="$(find_bin auth)"

umask 077
mkdir -p "$OUT/ca" "$OUT/tls" "$OUT/auth-keys"
chmod 700 "$OUT"

# --- dev CA and leaf ---
if [ ! -s "$OUT/ca/ca.key" ]; then
  if [ -n "$CERTS_TOOL" ]; then
    "$CERTS_TOOL" ca init --dir "$OUT/ca" --name "Record Platform Dev CA (k8s)" --exist-ok >/dev/null
  else
    openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/ca/ca.key"
    openssl req -x509 -new -key "$OUT/ca/ca.key" -sha256 -days 3650 \
      -subj "/CN=Record Platform Dev CA (k8s)" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$OUT/ca/ca.crt"
  fi
fi
if [ ! -s "$OUT/tls/tls.key" ]; then
  if [ -n "$CERTS_TOOL" ]; then
    "$CERTS_TOOL" issue --ca "$OUT/ca" --out "$OUT/tls" --layout flat \
      --san record.local --san localhost --san 127.0.0.1 >/dev/null
  else
    openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/tls/tls.key"
    openssl req -new -key "$OUT/tls/tls.key" -subj "/CN=record.local" -out "$OUT/tls/tls.csr"
    printf 'subjectAltName=DNS:record.local,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' > "$OUT/tls/ext.cnf"
    openssl x509 -req -in "$OUT/tls/tls.csr" -CA "$OUT/ca/ca.crt" -CAkey "$OUT/ca/ca.key" \
      -CAcreateserial -days 90 -sha256 -extfile "$OUT/tls/ext.cnf" -out "$OUT/tls/tls.crt"
    cp "$OUT/ca/ca.crt" "$OUT/tls/ca.crt"
    rm -f "$OUT/tls/tls.csr" "$OUT/tls/ext.cnf"
  fi
fi

# --- identity key, signing key, database password ---
# The key the base edge.toml signs with (key_id = "k1"); every *.key in the directory goes
# into the Secret, so a rotation adds its new key there (docs/identity-rotation.md).
mkdir -p "$OUT/identity"
[ -s "$OUT/identity/k1.key" ] || head -c 32 /dev/urandom | base64 > "$OUT/identity/k1.key"
[ -s "$OUT/edge-admin-token" ] || head -c 32 /dev/urandom | base64 > "$OUT/edge-admin-token"
if [ ! -s "$OUT/auth-keys/current.pem" ]; then
  if [ -n "$AUTH_BIN" ]; then
    "$AUTH_BIN" rotate-key --key-dir "$OUT/auth-keys" --jwt-alg EdDSA >/dev/null
  else
    openssl genpkey -algorithm ed25519 -out "$OUT/auth-keys/current.pem"
  fi
fi
[ -s "$OUT/postgres-password" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$OUT/postgres-password"

SECRETS=(edge-tls edge-dev-ca identity-key edge-admin-token auth-signing-keys postgres-credentials)

manifest() {
  local create=(kubectl create secret -n "$NAMESPACE" --dry-run=client -o yaml)
  case "$1" in
    edge-tls)
      "${create[@]}" tls edge-tls --cert="$OUT/tls/tls.crt" --key="$OUT/tls/tls.key" \
        | sed '/^data:/a\  ca.crt: '"$(base64 -w0 < "$OUT/tls/ca.crt")" ;;
    edge-dev-ca)
      "${create[@]}" generic edge-dev-ca \
        --from-file=ca.crt="$OUT/ca/ca.crt" --from-file=ca.key="$OUT/ca/ca.key" ;;
    identity-key)
      local files=()
      for key in "$OUT"/identity/*.key; do files+=(--from-file="$(basename "$key")=$key"); done
      "${create[@]}" generic identity-key "${files[@]}" ;;
    edge-admin-token)
      "${create[@]}" generic edge-admin-token --from-file=token="$OUT/edge-admin-token" ;;
    auth-signing-keys)
      local keys=(--from-file=current.pem="$OUT/auth-keys/current.pem")
      if [ -s "$OUT/auth-keys/previous.pem" ]; then
        keys+=(--from-file=previous.pem="$OUT/auth-keys/previous.pem")
      fi
      "${create[@]}" generic auth-signing-keys "${keys[@]}" ;;
    postgres-credentials)
      "${create[@]}" generic postgres-credentials \
        --from-literal=username=record_platform --from-file=password="$OUT/postgres-password" ;;
  esac
}

command -v kubectl >/dev/null || { echo "create-secrets.sh: kubectl not found" >&2; exit 1; }
if [ "$PRINT" = 1 ]; then
  for name in "${SECRETS[@]}"; do manifest "$name"; echo ---; done
  exit 0
fi

kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"
for name in "${SECRETS[@]}"; do
  if [ "$FORCE" = 0 ] && kubectl -n "$NAMESPACE" get secret "$name" >/dev/null 2>&1; then
    echo "secret $NAMESPACE/$name exists; kept (--force replaces it)"
  else
    manifest "$name" | kubectl apply -f - >/dev/null
    echo "secret $NAMESPACE/$name applied"
  fi
done
echo "dev CA: $OUT/ca/ca.crt (trust it, or: curl --cacert $OUT/tls/ca.crt --resolve record.local:443:<node-ip> https://record.local/api/healthz)"
