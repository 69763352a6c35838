#!/usr/bin/env bash
# Installs the fuzzing tools the test suite drives: schemathesis (PyPI), pinned, in a venv under
# .tools/ (git-ignored). Idempotent: does nothing when the pinned version is already there.
# Prints the path of the schemathesis executable on its last line.
#
# Environment:
#   SCHEMATHESIS_VERSION  the version to install (default below; bump it deliberately)
#   FUZZ_TOOLS_DIR        where the venv lives (default <repo>/.tools)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
TOOLS=${FUZZ_TOOLS_DIR:-$PWD/.tools}
VENV=$TOOLS/schemathesis-$VERSION
BIN=$VENV/bin/schemathesis

say() { echo "fuzz-deps: $*" >&2; }
die() {
    echo "fuzz-deps: error: $*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        die "need root (or sudo) to run: $*"
    fi
}

if [ ! -x "$BIN" ]; then
    command -v python3 >/dev/null 2>&1 || {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
    }
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
        die "schemathesis $VERSION needs Python >= 3.9 (python3 is $(python3 --version))"
    # Debian's python3 ships venv without ensurepip unless python3-venv is installed.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
            die "apt-get install python3-venv failed"
        say "installed python3-venv"
    fi
    rm -rf "$VENV"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" ||
        die "pip install schemathesis==$VERSION failed"
    say "installed schemathesis $VERSION in $VENV"
fi
"$BIN" --version >/dev/null || die "$BIN does not run"
echo "$BIN"
