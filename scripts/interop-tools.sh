#!/usr/bin/env bash
# Independent clients for the interop and browser tests (run by `make test` through
# scripts/test.sh; runs alone too), each pinned in a requirements file, installed from PyPI
# once into a venv of its own under .dev/tools/ and reused while the requirements file and
# the Python version stay the same:
#   interop: grpcio (gRPC C-core) and aioquic (HTTP/3)  edge/tests/interop/requirements.txt
#   browser: selenium (drives Debian's chromium)        edge/tests/browser/requirements.txt
# Separate venvs: a change to one set never reinstalls the other under a running test.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v python3 >/dev/null || die "python3 not found: run scripts/install-deps.sh --tests"

# ensure_venv NAME REQUIREMENTS IMPORTS: .dev/tools/NAME/venv with REQUIREMENTS installed,
# checked by importing IMPORTS (a Python import list).
ensure_venv() {
  local name="$1" requirements="$ROOT/$2" imports="$3"
  local venv="$DEV/tools/$name/venv"
  local stamp="$venv/.requirements.sha256"
  local want_stamp
  want_stamp="$(sha256sum "$requirements" | cut -d' ' -f1) $(python3 --version 2>&1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ]; then
    echo "    $name clients ready in ${venv#"$ROOT/"}"
    return
  fi
  echo "    installing $2 into ${venv#"$ROOT/"} (PyPI, once)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" || die "python3 -m venv failed: install python3-venv (scripts/install-deps.sh)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --only-binary=:all: \
    -r "$requirements" || die "pip install -r $2 failed"
  "$venv/bin/python" -c "import $imports" || die "$imports do not import after install"
  echo "$want_stamp" > "$stamp"
}

ensure_venv interop edge/tests/interop/requirements.txt "grpc, aioquic"
ensure_venv browser edge/tests/browser/requirements.txt "selenium"

# The browser tests drive Debian's chromium through its chromedriver (install-deps.sh --tests).
for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh --tests"
done
