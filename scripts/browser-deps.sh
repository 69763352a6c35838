#!/usr/bin/env bash
# Installs what the browser tests drive (tests/tests/browser_*.rs): Debian's Chromium and its
# ChromeDriver (`apt-get install chromium chromium-driver`). Idempotent: does nothing when both
# are there. Prints one line per change.
#
# Environment: CHROMIUM and CHROMEDRIVER name other binaries (then nothing is installed).
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}

say() { echo "browser-deps: $*" >&2; }
die() {
    echo "browser-deps: error: $*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        die "need root (or sudo) to run: $*"
    fi
}

if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null ||
        die "apt-get install chromium chromium-driver failed"
    say "installed chromium and chromium-driver"
fi
"$CHROMEDRIVER" --version >/dev/null || die "$CHROMEDRIVER does not run"
