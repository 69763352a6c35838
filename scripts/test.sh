#!/usr/bin/env bash
# Runs the whole test suite against real Postgres and NATS (made available by services.sh).
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p loyalty-tests -- schema`.
#
# Environment: SKIP_SERVICES=1 to use already-provided servers (TEST_DATABASE_ADMIN_URL,
# NATS_URL) without running services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SKIP_SERVICES:-0}" != 1 ]; then
    scripts/services.sh
fi
scripts/fuzz-deps.sh >/dev/null # the fuzz tests' schemathesis, installed when missing
scripts/browser-deps.sh          # the browser tests' chromium and chromedriver, likewise
# The chaos test runs the services' binaries as processes of their own: build them with the
# same features as the tests (every target of the workspace), so that nothing is built twice.
cargo build --workspace --all-targets
exec cargo test --workspace "$@"
