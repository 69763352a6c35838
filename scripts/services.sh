#!/usr/bin/env bash
# Makes PostgreSQL and NATS (with JetStream) available on 127.0.0.1:5432 and 127.0.0.1:4222.
#
# Idempotent: uses servers that already run, starts installed-but-stopped ones, installs missing
# ones from Debian packages. Then makes sure the role `postgres` can log in over TCP with password
# `postgres` and that the database `loyalty` exists. Prints one line per thing it changed.
#
# Environment:
#   SERVICES_TIMEOUT  seconds to wait for each server to accept connections (default 60)
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
PG_PASSWORD=postgres
PG_DATABASE=loyalty
NATS_HOST=127.0.0.1
NATS_PORT=4222
NATS_BIN=/usr/sbin/nats-server
NATS_STORE=/var/lib/nats-server
NATS_LOG=/var/log/nats-server.log
TIMEOUT=${SERVICES_TIMEOUT:-60}

say() { echo "services: $*"; }
die() {
    echo "services: error: $*" >&2
    exit 1
}

# Commands that need root run directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres -- "$@"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "$* missing and apt-get not available: install it by hand"
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
            die "apt-get update failed"
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        die "apt-get install $* failed"
    say "installed $*"
}

# True when something accepts TCP connections on host:port.
tcp_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# The INFO line a NATS server sends on connect (empty when nothing answers).
nats_info() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$NATS_HOST/$NATS_PORT && IFS= read -r line <&3 && echo \"\$line\"" 2>/dev/null || true
}

pg_ready() {
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1
}

# Runs $1 until it succeeds or TIMEOUT seconds pass.
wait_for() {
    local check=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
    until "$check"; do
        [ "$SECONDS" -lt "$deadline" ] || die "$what did not accept connections within ${TIMEOUT}s"
        sleep 0.5
    done
}

nats_up() { [ -n "$(nats_info)" ]; }

ensure_postgres() {
    if ! command -v pg_lsclusters >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1 ||
        ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        if tcp_open "$PG_HOST" "$PG_PORT"; then
            die "something listens on $PG_HOST:$PG_PORT but the PostgreSQL tools are not installed (apt-get install postgresql-client)"
        fi
        apt_install postgresql
    fi
    if pg_ready; then
        return
    fi

    # The cluster that owns port 5432, else create one for the newest installed version.
    local cluster version name status
    cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2, $4; exit }')
    if [ -z "$cluster" ]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        [ -n "$version" ] || die "no PostgreSQL version found under /usr/lib/postgresql"
        if pg_lsclusters -h 2>/dev/null | awk '{ print $1, $2 }' | grep -qx "$version main"; then
            die "cluster $version/main exists but does not use port $PG_PORT: fix its port in /etc/postgresql/$version/main/postgresql.conf"
        fi
        as_root pg_createcluster --port "$PG_PORT" "$version" main >/dev/null ||
            die "pg_createcluster $version main failed"
        say "created PostgreSQL cluster $version/main"
        cluster="$version main down"
    fi
    read -r version name status <<<"$cluster"
    if [ "$status" != "online" ]; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start ||
            die "could not start PostgreSQL cluster $version/$name (see /var/log/postgresql/postgresql-$version-$name.log)"
        say "started PostgreSQL $version/$name"
    fi
    wait_for pg_ready "PostgreSQL on $PG_HOST:$PG_PORT"
}

ensure_nats() {
    local info
    info=$(nats_info)
    if [ -z "$info" ]; then
        if tcp_open "$NATS_HOST" "$NATS_PORT"; then
            die "something listens on $NATS_HOST:$NATS_PORT but does not speak NATS"
        fi
        [ -x "$NATS_BIN" ] || apt_install nats-server
        # The Debian package may start its own service; only start one if nothing answers yet.
        if ! nats_up; then
            as_root mkdir -p "$NATS_STORE"
            as_root start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
                -a "$NATS_HOST" -p "$NATS_PORT" -js -sd "$NATS_STORE" -l "$NATS_LOG" ||
                die "could not start $NATS_BIN"
            say "started nats-server with JetStream"
        fi
        wait_for nats_up "NATS on $NATS_HOST:$NATS_PORT (log: $NATS_LOG)"
        info=$(nats_info)
    fi
    case "$info" in
    *'"jetstream":true'*) ;;
    *) die "the NATS server on $NATS_HOST:$NATS_PORT runs without JetStream: restart it with -js" ;;
    esac
}

psql_tcp() {
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 \
        -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"
}

ensure_database() {
    # With trust auth any password works; with scram/md5 (a fresh Debian install) the role needs
    # one. Set it only when the login over TCP fails, through the local socket (peer auth).
    if ! psql_tcp -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
        as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres \
            -c "ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD'" >/dev/null ||
            die "could not set the password of role $PG_USER through the local socket"
        psql_tcp -d postgres -tAc 'SELECT 1' >/dev/null ||
            die "role $PG_USER still cannot log in at $PG_HOST:$PG_PORT: check pg_hba.conf"
        say "set the password of PostgreSQL role $PG_USER"
    fi
    if [ "$(psql_tcp -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" != 1 ]; then
        psql_tcp -d postgres -c "CREATE DATABASE $PG_DATABASE" >/dev/null ||
            die "could not create database $PG_DATABASE"
        say "created database $PG_DATABASE"
    fi
}

ensure_postgres
ensure_nats
ensure_database
say "ready: postgres://$PG_USER:***@$PG_HOST:$PG_PORT/$PG_DATABASE, nats://$NATS_HOST:$NATS_PORT (JetStream)"
