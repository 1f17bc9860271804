# Shared by perf/run.sh, perf/callgrind.sh, perf/pgo.sh and perf/ab.sh (sourced, not run).

# render_template TEMPLATE OUT: fill a perf/peers template's @NAME@ placeholders from the
# caller's variables (RUN_DIR, HOST_IP, PORT, HTTP_PORT, ADMIN_PORT, BACKEND, CERTS, JWT_DIR).
# A placeholder the template uses whose variable the caller did not set, or one this function
# does not know, is an error naming the template, the line and the variable, not a config the
# proxy rejects later with a less helpful message. Comment lines are left alone (they may name
# the syntax itself: "@NAME@ placeholders are filled …").
render_template() {
  local template="$1" out="$2" name line
  local backend="${BACKEND:-}"
  local -A value=(
    [RUN]="${RUN_DIR:-}" [HOST]="${HOST_IP:-}" [PORT]="${PORT:-}" [HTTP_PORT]="${HTTP_PORT:-}"
    [ADMIN_PORT]="${ADMIN_PORT:-}" [BACKEND]="$backend"
    [BACKEND_HOST]="${backend:+${backend%:*}}" [BACKEND_PORT]="${backend:+${backend##*:}}"
    [CERT]="${CERTS:+$CERTS/tls.crt}" [KEY]="${CERTS:+$CERTS/tls.key}"
    [PEM]="${RUN_DIR:+$RUN_DIR/haproxy.pem}" [JWT_PUBLIC]="${JWT_DIR:+$JWT_DIR/public.pem}"
  )
  local -A source=(
    [RUN]=RUN_DIR [HOST]=HOST_IP [PORT]=PORT [HTTP_PORT]=HTTP_PORT [ADMIN_PORT]=ADMIN_PORT
    [BACKEND]=BACKEND [BACKEND_HOST]=BACKEND [BACKEND_PORT]=BACKEND [CERT]=CERTS [KEY]=CERTS
    [PEM]=RUN_DIR [JWT_PUBLIC]=JWT_DIR
  )
  [ -r "$template" ] || { echo "render_template: cannot read $template" >&2; return 1; }
  local args=(-e '')
  for name in $(grep -v '^[[:space:]]*#' "$template" | grep -oE '@[A-Z_]+@' | tr -d @ | sort -u); do
    line="$(grep -n "@$name@" "$template" | grep -v '^[0-9]*:[[:space:]]*#' | sed -n '1s/:.*//p')"
    if [ -z "${source[$name]:-}" ]; then
      echo "render_template: $template:$line: unknown placeholder @$name@" >&2
      return 1
    fi
    if [ -z "${value[$name]}" ]; then
      echo "render_template: $template:$line: @$name@ needs \$${source[$name]}, which is not set" >&2
      return 1
    fi
    args+=(-e "s|@$name@|${value[$name]}|g")
  done
  sed "${args[@]}" "$template" >"$out"
}
