#!/usr/bin/env bash
# The browser code's own tools (query-service/assets: the storefront widget, the analyst
# dashboard): npm with the committed package-lock.json. The files the service serves are
# committed and embedded in its binary, so building and testing never need npm or a network;
# only these checks and a deliberate ECharts upgrade do.
#
#   scripts/web.sh check    ESLint (no markup from strings, among others), Prettier, and that
#                           vendor/echarts.min.js is the file the lockfile pins (default)
#   scripts/web.sh format   rewrites the sources with Prettier
#   scripts/web.sh vendor   copies ECharts from node_modules into vendor/ (after a bump in
#                           package.json and `npm install`)
#
# Installs Node.js and npm with apt-get when missing; runs `npm ci` when node_modules does not
# match the lockfile.
set -euo pipefail
cd "$(dirname "$0")/../query-service/assets"

say() { echo "web: $*" >&2; }
die() {
    echo "web: error: $*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
        die "need root (or sudo) to run: $*"
    fi
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null ||
        die "apt-get install nodejs npm failed"
    say "installed nodejs $(node --version) and npm $(npm --version)"
fi
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 18) ? 0 : 1)' ||
    die "ESLint 9 needs Node.js >= 18.18 (this is $(node --version))"

STAMP=node_modules/.lockfile-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
    echo "$want" >"$STAMP"
    say "installed the locked npm packages"
fi

case "${1:-check}" in
check)
    npx --no-install eslint --max-warnings=0 .
    npx --no-install prettier --check --log-level=warn .
    for file in echarts.min.js:dist/echarts.min.js echarts.LICENSE:LICENSE echarts.NOTICE:NOTICE; do
        cmp -s "vendor/${file%%:*}" "node_modules/echarts/${file#*:}" ||
            die "vendor/${file%%:*} is not the ECharts that package-lock.json pins: run scripts/web.sh vendor"
    done
    echo "web: eslint, prettier and the vendored ECharts are clean"
    ;;
format) npx --no-install prettier --write --log-level=warn . ;;
vendor)
    cp node_modules/echarts/dist/echarts.min.js vendor/echarts.min.js
    cp node_modules/echarts/LICENSE vendor/echarts.LICENSE
    cp node_modules/echarts/NOTICE vendor/echarts.NOTICE
    say "vendored ECharts $(node -p 'require("echarts/package.json").version')"
    ;;
*) die "unknown command $1 (check, format or vendor)" ;;
esac
