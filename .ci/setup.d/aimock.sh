#!/usr/bin/env bash
# Installs @copilotkit/aimock (an independent Chat Completions server used by
# crates/agents' tests) into <workspace>/.tools/aimock. Idempotent.
set -euo pipefail
VERSION="1.43.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PREFIX="$ROOT/.tools/aimock"
BIN="$PREFIX/node_modules/.bin/aimock"
if ! command -v npm >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq nodejs npm
    else
        echo "aimock.sh: npm not found and apt-get unavailable; install Node.js >= 20" >&2
        exit 1
    fi
fi
if [ -x "$BIN" ] && [ "$(cat "$PREFIX/.version" 2>/dev/null)" = "$VERSION" ]; then
    exit 0
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --silent "@copilotkit/aimock@$VERSION"
"$BIN" --help >/dev/null 2>&1 || { echo "aimock.sh: installed but $BIN does not run" >&2; exit 1; }
echo "$VERSION" > "$PREFIX/.version"
echo "aimock $VERSION installed in $PREFIX"
