#!/usr/bin/env bash
# Runs the whole platform locally with one command:
#
#   scripts/run.sh                # the three services as separate processes (the production shape)
#   scripts/run.sh --one-process  # the three in one process (loyalty-dev), one build less
#
# 1. Postgres and NATS with JetStream up (scripts/services.sh),
# 2. release binaries built, migrations applied,
# 3. command-service (with the relay to JetStream), projector and query-service started and
#    waited for (/readyz),
# 4. a demo org seeded: a program (tiers, stamp card, rewards), two locations, three members
#    with a few purchases, an API key of every role, a publishable key and a signing secret,
# 5. the URLs and keys printed, among them the storefront widget's demo page and the analyst
#    dashboard. Ctrl-C stops everything cleanly.
#
# The query service runs with WIDGET_DEMO=true: its /widget-demo page signs customer tokens
# for any member it is asked for. That is for this local demo only, never for production.
#
# The seed is idempotent (fixed ids and Idempotency-Keys): a rerun changes nothing but adds
# fresh API keys (keys are shown only once, so every run creates its own).
#
# Settings come from the environment or from a `.env` file in the repository root (see
# .env.example). Each service listens on its own address:
#   COMMAND_LISTEN_ADDR    (default 127.0.0.1:8080)  command-service: the POS / admin API
#   PROJECTOR_LISTEN_ADDR  (default 127.0.0.1:8081)  projector: health and metrics
#   QUERY_LISTEN_ADDR      (default 127.0.0.1:8082)  query-service: GraphQL
#   DEMO_ORG               (default demo)            org to seed; SEED=0 skips seeding
# SKIP_SERVICES=1 uses DATABASE_URL / NATS_URL as given without running services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

ONE_PROCESS=0
for arg in "$@"; do
    case "$arg" in
    --one-process) ONE_PROCESS=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

if [ -f .env ]; then
    set -a
    # shellcheck disable=SC1091
    . ./.env
    set +a
fi
: "${COMMAND_LISTEN_ADDR:=127.0.0.1:8080}"
: "${PROJECTOR_LISTEN_ADDR:=127.0.0.1:8081}"
: "${QUERY_LISTEN_ADDR:=127.0.0.1:8082}"
: "${DEMO_ORG:=demo}"
: "${SEED:=1}"
export COMMAND_LISTEN_ADDR PROJECTOR_LISTEN_ADDR QUERY_LISTEN_ADDR
# The widget demo page (see above), unless .env or the environment says otherwise.
: "${WIDGET_DEMO:=true}"
export WIDGET_DEMO
# One LISTEN_ADDR would make the three services collide: each gets --listen instead.
unset LISTEN_ADDR

say() { echo "run: $*"; }
die() {
    echo "run: error: $*" >&2
    exit 1
}

if [ "${SKIP_SERVICES:-0}" != 1 ]; then
    scripts/services.sh
fi

BIN=target/release
PACKAGES=(-p command-service -p projector -p query-service)
[ "$ONE_PROCESS" = 1 ] && PACKAGES=(-p command-service -p loyalty-dev)
say "building release binaries (the first build takes several minutes)"
cargo build --release --quiet "${PACKAGES[@]}"

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
    local deadline=$((SECONDS + 25))
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

# start <name> <binary> <args...>. Each service runs in its own session, so a Ctrl-C reaches
# only this script, which then stops them in order (TERM, a grace period, then KILL) instead of
# every process reacting on its own.
start() {
    local name=$1
    shift
    setsid "$@" &
    PIDS+=("$!")
    NAMES+=("$name")
}

# host:port to probe for an address a service listens on (0.0.0.0 / [::] mean this host).
probe_target() {
    local host=${1%:*} port=${1##*:}
    case "$host" in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
    echo "$host $port"
}
url() { echo "http://$(probe_target "$1" | tr ' ' ':')"; }

ready() {
    curl -fsS -o /dev/null --max-time 2 "$(url "$1")/readyz" 2>/dev/null
}

for addr in "$COMMAND_LISTEN_ADDR" "$PROJECTOR_LISTEN_ADDR" "$QUERY_LISTEN_ADDR"; do
    # Something already serving there would pass the readiness checks below in our place.
    if curl -s -o /dev/null --max-time 1 "$(url "$addr")/healthz" 2>/dev/null; then
        die "$addr is already in use (another scripts/run.sh?): stop it or set the *_LISTEN_ADDR variables"
    fi
done

# redeemReward (the widget's redeem button) goes to the command API wherever it listens.
: "${COMMAND_API_URL:=$(url "$COMMAND_LISTEN_ADDR")}"
export COMMAND_API_URL

if [ "$ONE_PROCESS" = 1 ]; then
    start loyalty-dev "$BIN/loyalty-dev"
else
    start command-service "$BIN/command-service" serve --listen "$COMMAND_LISTEN_ADDR"
    start projector "$BIN/projector" run --listen "$PROJECTOR_LISTEN_ADDR"
    start query-service "$BIN/query-service" --listen "$QUERY_LISTEN_ADDR"
fi

for addr in "$COMMAND_LISTEN_ADDR" "$PROJECTOR_LISTEN_ADDR" "$QUERY_LISTEN_ADDR"; do
    deadline=$((SECONDS + 60))
    until ready "$addr"; do
        for i in "${!PIDS[@]}"; do
            kill -0 "${PIDS[$i]}" 2>/dev/null || die "${NAMES[$i]} exited during startup (see its log above)"
        done
        [ "$SECONDS" -lt "$deadline" ] || die "nothing answered $(url "$addr")/readyz within 60s"
        sleep 0.3
    done
done

COMMAND_URL=$(url "$COMMAND_LISTEN_ADDR")
QUERY_URL=$(url "$QUERY_LISTEN_ADDR")
GRAPHQL_URL="$QUERY_URL/graphql"

# --- demo data ----------------------------------------------------------------------------------
declare -A KEYS=()

# api <method> <path> <key> <idempotency-key> <json>: the response body; fails on an HTTP error
# other than 409 (409 = already there from an earlier run, e.g. after the idempotency window).
api() {
    local out status
    out=$(curl -sS --max-time 10 -X "$1" "$COMMAND_URL$2" \
        -H "Authorization: Bearer $3" -H "Idempotency-Key: $4" \
        -H 'Content-Type: application/json' -d "$5" -w '\n%{http_code}') ||
        die "$1 $2: request failed"
    status=${out##*$'\n'}
    out=${out%$'\n'*}
    case "$status" in
    2?? | 409) echo "$out" ;;
    *) die "$1 $2 answered $status: $out" ;;
    esac
}

seed() {
    local org=$DEMO_ORG role key
    for role in pos admin storefront analyst; do
        key=$("$BIN/command-service" keys create --org "$org" --role "$role" 2>/dev/null | tail -n 1)
        [ -n "$key" ] || die "could not create a $role key for $org"
        KEYS[$role]=$key
    done
    KEYS[publishable]=$("$BIN/command-service" keys create --org "$org" --role publishable 2>/dev/null | tail -n 1)
    [ -n "${KEYS[publishable]}" ] || die "could not create a publishable key for $org"
    # The demo page signs its customer tokens with the org's newest secret.
    "$BIN/command-service" keys signing-secret create --org "$org" >/dev/null 2>&1 ||
        die "could not create a signing secret for $org"
    local admin=${KEYS[admin]} pos=${KEYS[pos]}

    api PUT "/v1/orgs/$org/program" "$admin" "demo-program-1" '{
        "currency": "EUR", "earn_rate": 1,
        "stamp_cards": [{"card_id": "coffee-card", "name": "Coffee card", "stamps_required": 8,
                         "reward_id": "free-coffee", "min_amount_minor": 300}],
        "rewards": [{"reward_id": "free-coffee", "name": "Free coffee", "points_cost": 40},
                    {"reward_id": "tote-bag", "name": "Tote bag", "points_cost": 250},
                    {"reward_id": "gift-card-10", "name": "10 EUR gift card", "points_cost": 1000}],
        "expiry_days": 365}' >/dev/null
    api POST "/v1/orgs/$org/locations" "$admin" "demo-location-1" \
        '{"location_id": "main-street", "name": "Main Street"}' >/dev/null
    api POST "/v1/orgs/$org/locations" "$admin" "demo-location-2" \
        '{"location_id": "harbour", "name": "Harbour"}' >/dev/null

    local n name member now
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    n=0
    for name in Ada Grace Linus; do
        n=$((n + 1))
        member="00000000-0000-4000-8000-00000000000$n"
        api POST "/v1/orgs/$org/members" "$pos" "demo-enrol-$n" \
            "{\"member_id\": \"$member\", \"external_id\": \"card-000$n\", \"display_name\": \"$name\"}" >/dev/null
        api POST "/v1/orgs/$org/members/$member/purchases" "$pos" "demo-purchase-$n-1" \
            "{\"transaction_id\": \"demo-$n-1\", \"location_id\": \"main-street\", \"amount_minor\": $((n * 2350)), \"currency\": \"EUR\", \"occurred_at\": \"$now\"}" >/dev/null
        api POST "/v1/orgs/$org/members/$member/purchases" "$pos" "demo-purchase-$n-2" \
            "{\"transaction_id\": \"demo-$n-2\", \"location_id\": \"harbour\", \"amount_minor\": $((n * 4100 + 990)), \"currency\": \"EUR\", \"occurred_at\": \"$now\"}" >/dev/null
    done
    api POST "/v1/orgs/$org/members/00000000-0000-4000-8000-000000000003/redemptions" "$pos" "demo-redeem-3-1" \
        '{"redemption_id": "demo-3-1", "reward_id": "free-coffee"}' >/dev/null
    say "seeded org $org: program, locations main-street and harbour, members card-0001..card-0003"
}

if [ "$SEED" = 1 ]; then
    seed
fi

if [ "$ONE_PROCESS" = 1 ]; then MODE="one process (loyalty-dev)"; else MODE="three processes"; fi
cat <<INFO

  Loyalty platform running: $MODE

  command API   $COMMAND_URL/v1            OpenAPI: $COMMAND_URL/openapi.json
  GraphQL       $GRAPHQL_URL    (GraphiQL: open it in a browser)
  projector     $(url "$PROJECTOR_LISTEN_ADDR")/readyz
  metrics       /metrics on each of the three
INFO
if [ "$SEED" = 1 ]; then
    cat <<INFO

  demo org      $DEMO_ORG
  API keys      pos         ${KEYS[pos]}
                admin       ${KEYS[admin]}
                storefront  ${KEYS[storefront]}
                analyst     ${KEYS[analyst]}
                publishable ${KEYS[publishable]}

  widget demo   $QUERY_URL/widget-demo?org=$DEMO_ORG&key=${KEYS[publishable]}
  dashboard     $QUERY_URL/dashboard    (org $DEMO_ORG, the analyst key above)

  try           curl -s $GRAPHQL_URL -H 'Authorization: Bearer ${KEYS[storefront]}' \\
                  -H 'Content-Type: application/json' \\
                  -d '{"query": "{ member(orgId: \"$DEMO_ORG\", externalId: \"card-0001\") { displayName balance { points } tier { name } } }"}'
INFO
fi
cat <<INFO

  more keys     $BIN/command-service keys create --org <org> --role <pos|admin|storefront|analyst|publishable>
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
