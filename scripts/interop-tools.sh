#!/usr/bin/env bash
# Independent clients for the edge's interop tests (run by `make test` through scripts/test.sh;
# runs alone too): grpcio (gRPC C-core) and aioquic (HTTP/3), pinned in
# edge/tests/interop/requirements.txt, installed from PyPI once into .dev/tools/interop/venv
# and reused while the requirements file and the Python version stay the same.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

VENV="$DEV/tools/interop/venv"
requirements="$ROOT/edge/tests/interop/requirements.txt"
stamp="$VENV/.requirements.sha256"
command -v python3 >/dev/null || die "python3 not found: run scripts/install-deps.sh"
want_stamp="$(sha256sum "$requirements" | cut -d' ' -f1) $(python3 --version 2>&1)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ]; then
  echo "    interop clients ready in ${VENV#"$ROOT/"}"
  exit 0
fi
echo "    installing grpcio and aioquic into ${VENV#"$ROOT/"} (PyPI, once)"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv (scripts/install-deps.sh)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input --only-binary=:all: \
  -r "$requirements" || die "pip install -r edge/tests/interop/requirements.txt failed"
"$VENV/bin/python" -c 'import grpc, aioquic' || die "grpcio/aioquic do not import after install"
echo "$want_stamp" > "$stamp"
