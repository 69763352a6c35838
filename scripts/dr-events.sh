#!/usr/bin/env bash
# Disaster recovery of the event store (README "Disaster recovery"): the `events` table is the
# only state that cannot be rebuilt, so it is the only thing dumped; every other table is rebuilt
# from it.
#
#   scripts/dr-events.sh dump    <database-url> <file>   the events table, data only (pg_dump -Fc)
#   scripts/dr-events.sh restore <file> <database-url>   into a migrated database without events
#
# restore loads the rows in one transaction with the triggers on, so the command side's
# indexes (command_members, command_transaction_claims) are rebuilt with them, and the identity
# of global_position continues after the restored rows. It then gives every restored row the
# restoring transaction as tx_id: tx_ids come from the old server, and on a new one they can be
# ahead of every transaction so far, which would hide the rows from the relay (it publishes rows
# of finished transactions only). In one transaction the relay's order is global_position, which
# keeps each aggregate's events in sequence.
#
# Needs pg_dump / pg_restore / psql of the server's major version (apt-get install
# postgresql-client-15); installs postgresql-client when they are missing.
set -euo pipefail

die() {
    echo "dr-events: error: $*" >&2
    exit 1
}
usage() { die "usage: $0 dump <database-url> <file> | restore <file> <database-url>"; }

ensure_client() {
    command -v pg_dump >/dev/null && command -v pg_restore >/dev/null && command -v psql >/dev/null && return
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null ||
        die "apt-get install postgresql-client failed"
}

[ $# -eq 3 ] || usage
ensure_client
case "$1" in
dump)
    pg_dump --format=custom --data-only --table=public.events --file="$3" --dbname="$2"
    pg_restore --list "$3" | grep -q 'TABLE DATA public events' || die "$3 holds no events table data"
    echo "dr-events: dumped the events table to $3 ($(du -h "$3" | cut -f1))"
    ;;
restore)
    [ -r "$2" ] || die "cannot read $2"
    existing=$(psql -X -qtA -v ON_ERROR_STOP=1 --dbname="$3" -c 'SELECT count(*) FROM public.events') ||
        die "cannot count events in the target database (migrations applied? command-service migrate)"
    [ "$existing" = 0 ] || die "the target database already holds $existing events: restore into an empty one"
    # Through a file, not a pipe: a pg_restore that fails half-way must not feed psql a
    # truncated script that would then be committed.
    sql=$(mktemp)
    trap 'rm -f "$sql"' EXIT
    pg_restore --data-only --exit-on-error --file="$sql" "$2"
    # pg_restore empties search_path for the load; the insert trigger that indexes members and
    # transaction claims (migration 0003) names its tables unqualified, so load with `public`.
    grep -qx "SELECT pg_catalog.set_config('search_path', '', false);" "$sql" ||
        die "unexpected pg_restore output: no search_path line (pg_restore $(pg_restore --version))"
    sed -i "s/^SELECT pg_catalog.set_config('search_path', '', false);\$/SET search_path = public;/" "$sql"
    psql -X -q -v ON_ERROR_STOP=1 --single-transaction --dbname="$3" -o /dev/null -f "$sql" \
            -c 'ALTER TABLE public.events DISABLE TRIGGER events_append_only' \
            -c 'UPDATE public.events SET tx_id = pg_current_xact_id()' \
            -c 'ALTER TABLE public.events ENABLE TRIGGER events_append_only'
    echo "dr-events: restored $(psql -X -qtA --dbname="$3" -c 'SELECT count(*) FROM public.events') events into the target database"
    ;;
*) usage ;;
esac
