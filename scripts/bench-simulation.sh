#!/usr/bin/env bash
# The what-if simulation's figures of BENCHMARKS.md (SPEC §9, issue 12), on this machine:
#
#   scripts/bench-simulation.sh          # ~5 minutes on 2 cores; also run as the last step of scripts/bench.sh
#
# One org with BENCH_SIM_EVENTS member events [1000000] is seeded (`loadgen seed`: every event
# decided by the domain, appended in bulk), then, each under /usr/bin/time -v:
#   - baseline: reading the org's log in log order with psql (\copy to /dev/null), the floor
#     under any replay;
#   - `projector simulate --draft` of a draft with three promotions (a multiplier, a stackable
#     bonus with a budget, a first-purchase bonus), an earn cap and two achievements over the
#     whole history: purchases replayed per second and peak memory (max RSS);
#   - `projector simulate --in-force`: the programs really in force (every point reproduced).
# Results in $BENCH_OUT [bench-out/<UTC time>-simulation]/: the commands, their outputs, and
# simulation.md with the table.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${BENCH_OUT:-bench-out/$(date -u +%Y%m%dT%H%M%SZ)-simulation}
DB=${BENCH_SIM_DB:-loyalty_bench_sim}
EVENTS=${BENCH_SIM_EVENTS:-1000000}
MEMBERS=${BENCH_SIM_MEMBERS:-10000}
export PGPASSWORD=postgres
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres)
export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$DB"
export NATS_URL=nats://127.0.0.1:4222
export NATS_STREAM=BENCH_SIM_EVENTS
export NATS_SUBJECT_PREFIX=bench.sim
export RUST_LOG=${RUST_LOG:-warn}
ADDR=127.0.0.1:28090
BIN=${CARGO_TARGET_DIR:-target}/release

say() { echo "bench-simulation: $*" >&2; }
# js_delete_stream NAME
. scripts/jetstream.sh
mkdir -p "$OUT"
: >"$OUT/commands.txt"
timed() {
    local name=$1
    shift
    printf '%s\t%s\n' "$name" "$*" >>"$OUT/commands.txt"
    say "$name: $*"
    /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out"
}
wall_s() { awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$1"; }
rss_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$1"; }

if [ "${BENCH_SIM_NO_SETUP:-0}" != 1 ]; then
    scripts/services.sh >&2
    say "building release binaries"
    cargo build --release --quiet -p command-service -p projector -p loadgen
fi
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB" >/dev/null
"$BIN/command-service" migrate
"$BIN/command-service" serve --listen "$ADDR" 2>"$OUT/command-service.log" &
SERVICE=$!
cleanup() {
    kill -TERM "$SERVICE" 2>/dev/null || true
    wait "$SERVICE" 2>/dev/null || true
    js_delete_stream "$NATS_STREAM"
    [ "${BENCH_KEEP:-0}" = 1 ] || "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null --max-time 2 "http://$ADDR/readyz" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { say "the command service did not start"; exit 1; }
    sleep 0.3
done

timed seed "$BIN/loadgen" seed --command-url "http://$ADDR" --graphql-url "http://127.0.0.1:1/graphql" \
    --no-progress --events "$EVENTS" --orgs 1 --members "$MEMBERS" --json "$OUT/seed.json"
ORG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["orgs"][0])' "$OUT/seed.json")
"${PSQL[@]}" -d "$DB" -Atc "SELECT count(*) FROM events WHERE aggregate_id LIKE '$ORG/%'" >"$OUT/org_events.txt"
# The command service was needed for the seed's set-up only; left running, its relay would
# still be publishing the bulk-appended log to JetStream while the replays below run.
kill -TERM "$SERVICE"
wait "$SERVICE" 2>/dev/null || true
# The history a marketer simulates is weeks old: vacuumed, its pages' hint bits set, long
# checkpointed. A log bulk-loaded a second ago is none of these (and autovacuum may be off, as
# on CI machines). Settle it as autovacuum and the checkpointer would have. (The first replays
# of a fresh seed were still slower than later ones of the same log: BENCHMARKS.md, 8a.)
"${PSQL[@]}" -d "$DB" -c "VACUUM (ANALYZE) events" -c "CHECKPOINT"

# The draft: the org's program with three promotions, an earn cap and two achievements.
"${PSQL[@]}" -d "$DB" -Atc "SELECT payload -> 'ProgramConfigured' -> 'config' FROM events
    WHERE aggregate_type = 'program' AND aggregate_id = '$ORG' AND event_type = 'ProgramConfigured'
    ORDER BY sequence DESC LIMIT 1" | python3 -c '
import json, sys
program = json.load(sys.stdin)
program["earn_cap"] = {"points": 400, "period": "day"}
program["promotions"] = [
    {"promotion_id": "double-weekend", "name": "Double weekends", "starts_at": "2000-01-01T00:00:00Z",
     "schedule": {"days": ["sat", "sun"], "from": "00:00", "to": "23:59"},
     "effect": {"multiplier": {"multiplier_bps": 20000}}},
    {"promotion_id": "big-basket", "name": "Big basket bonus", "starts_at": "2000-01-01T00:00:00Z",
     "conditions": {"min_amount_minor": 5000}, "effect": {"bonus": {"points": 50}},
     "stackable": True, "budget_points": 2000000},
    {"promotion_id": "welcome", "name": "Welcome", "starts_at": "2000-01-01T00:00:00Z",
     "conditions": {"first_purchase": True}, "effect": {"bonus": {"points": 100}}, "stackable": True}]
program["achievements"] = [
    {"achievement_id": "ten", "name": "Ten visits", "criteria": {"purchases": {"count": 10}}, "reward_points": 100},
    {"achievement_id": "spender", "name": "Spender", "criteria": {"spend": {"amount_minor": 100000}},
     "window_days": 90, "reward_points": 250}]
print(json.dumps(program))' >"$OUT/draft.json"

timed read_log "${PSQL[@]}" -d "$DB" -c "\\copy (SELECT aggregate_id, event_type, event_version, payload, metadata, committed_at FROM events WHERE aggregate_id = '$ORG' OR aggregate_id LIKE '$ORG/%' ORDER BY global_position) TO '/dev/null'"
timed simulate_draft "$BIN/projector" simulate --org "$ORG" --draft "$OUT/draft.json" --from 2000-01-01T00:00:00Z --json
timed simulate_in_force "$BIN/projector" simulate --org "$ORG" --in-force --from 2000-01-01T00:00:00Z --json

events=$(cat "$OUT/org_events.txt")
{
    echo "| run | wall s | events/s | purchases replayed/s | peak RSS MB |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    w=$(wall_s "$OUT/read_log.time")
    echo "| read the org's log (psql \\copy, baseline) | $w | $(python3 -c "print(round($events / max($w, 0.001)))") | | $(rss_mb "$OUT/read_log.time") |"
    for run in simulate_draft simulate_in_force; do
        w=$(wall_s "$OUT/$run.time")
        purchases=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["purchases"])' "$OUT/$run.out")
        echo "| \`projector simulate\` ${run#simulate_} | $w | $(python3 -c "print(round($events / max($w, 0.001)))") | $(python3 -c "print(round($purchases / max($w, 0.001)))") | $(rss_mb "$OUT/$run.time") |"
    done
    python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
draft = json.load(open(f"{out}/simulate_draft.out"))
in_force = json.load(open(f"{out}/simulate_in_force.out"))
print()
print(f"{draft['events_read']} member events, {draft['members']} members, {draft['purchases']} purchases.")
print(f"In force: actual {in_force['actual_points']} = simulated {in_force['draft_points']} points, "
      f"{in_force['purchases_changed']} purchases changed, liability delta {in_force['liability_delta']}.")
print(f"Draft: {draft['actual_points']} -> {draft['draft_points']} points, {draft['purchases_changed']} purchases changed, "
      f"{draft['tier_changes_total']} tier changes, liability delta {draft['liability_delta']}, "
      f"rewards {draft['draft_reward_points']}.")
EOF
} | tee "$OUT/simulation.md"
