#!/usr/bin/env bash
# Runs the platform locally: Postgres and NATS (services.sh), migrations, and the three
# services in release mode. Ctrl-C stops them all.
#
# Settings come from the environment or from a `.env` file in the repository root (see
# .env.example). Each service listens on its own address:
#   COMMAND_LISTEN_ADDR    (default 127.0.0.1:8080)  command-service: the POS / admin API
#   PROJECTOR_LISTEN_ADDR  (default 127.0.0.1:8081)  projector: health and metrics
#   QUERY_LISTEN_ADDR      (default 127.0.0.1:8082)  query-service: GraphQL
# SKIP_SERVICES=1 uses DATABASE_URL / NATS_URL as given without running services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f .env ]; then
    set -a
    # shellcheck disable=SC1091
    . ./.env
    set +a
fi
: "${COMMAND_LISTEN_ADDR:=127.0.0.1:8080}"
: "${PROJECTOR_LISTEN_ADDR:=127.0.0.1:8081}"
: "${QUERY_LISTEN_ADDR:=127.0.0.1:8082}"
# One LISTEN_ADDR would make the three services collide: each gets --listen instead.
unset LISTEN_ADDR

say() { echo "run: $*"; }

if [ "${SKIP_SERVICES:-0}" != 1 ]; then
    scripts/services.sh
fi

say "building release binaries (the first build takes several minutes)"
cargo build --release --quiet -p command-service -p projector -p query-service
BIN=target/release

say "applying migrations"
"$BIN/command-service" migrate

PIDS=()
NAMES=()
stop_all() {
    trap - INT TERM EXIT
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them time to finish in-flight work, then insist.
    local deadline=$((SECONDS + 15))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    say "stopped"
}
trap 'echo; say "stopping"; stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

start() {
    local name=$1 addr=$2
    "$BIN/$name" --listen "$addr" &
    PIDS+=("$!")
    NAMES+=("$name")
}

# host:port to probe for an address a service listens on (0.0.0.0 / [::] mean this host).
probe_target() {
    local host=${1%:*} port=${1##*:}
    case "$host" in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
    echo "$host $port"
}

healthy() {
    local host port
    read -r host port <<<"$(probe_target "$1")"
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n" "$0" >&3
        IFS= read -r status <&3
        [[ $status == *" 200 "* ]]' "$host" "$port" 2>/dev/null
}

start command-service "$COMMAND_LISTEN_ADDR"
start projector "$PROJECTOR_LISTEN_ADDR"
start query-service "$QUERY_LISTEN_ADDR"

ADDRS=("$COMMAND_LISTEN_ADDR" "$PROJECTOR_LISTEN_ADDR" "$QUERY_LISTEN_ADDR")
for i in "${!PIDS[@]}"; do
    deadline=$((SECONDS + 30))
    until healthy "${ADDRS[$i]}"; do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            say "error: ${NAMES[$i]} exited during startup (see its log above)"
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "error: ${NAMES[$i]} did not answer /healthz on ${ADDRS[$i]} within 30s"
            exit 1
        fi
        sleep 0.3
    done
done

url() { echo "http://$(probe_target "$1" | tr ' ' ':')"; }
cat <<INFO

  command API   $(url "$COMMAND_LISTEN_ADDR")/v1       (health: /healthz /readyz, metrics: /metrics)
  GraphQL       $(url "$QUERY_LISTEN_ADDR")/graphql
  projector     $(url "$PROJECTOR_LISTEN_ADDR")/healthz

  API key:      $BIN/command-service keys create --org <org> --role <pos|admin|storefront|analyst>
  Press Ctrl-C to stop.

INFO

# Returns when any service exits (or on Ctrl-C, through the trap).
set +e
wait -n "${PIDS[@]}"
status=$?
set -e
for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
        say "error: ${NAMES[$i]} exited (status $status); stopping the others"
    fi
done
exit 1
