#!/usr/bin/env bash
# Installs the rotel OpenTelemetry collector (PyPI wheel rotel==0.0.1a15,
# which carries the binary rotel/rotel-agent) into
# <workspace>/.tools/rotel-venv for the OTLP sink's tests and benchmark, plus
# Debian's libpython3.11, which rotel-agent links against to run Python log
# processors. Idempotent: does nothing when both are already present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.tools/rotel-venv"
VERSION="0.0.1a15"

if ! ldconfig -p 2>/dev/null | grep -q 'libpython3\.11\.so\.1\.0'; then
    echo "rotel.sh: installing libpython3.11 (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends libpython3.11; then
        apt-get update
        apt-get install -y --no-install-recommends libpython3.11
    fi
fi

# The venv uses Debian's python3.11 so the interpreter matches the
# libpython rotel-agent embeds.
PY=/usr/bin/python3.11
if [ ! -x "$PY" ]; then
    PY="$(command -v python3.11 || command -v python3)"
fi

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("rotel"))' 2>/dev/null || true
}

if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$ROOT/.tools"
    "$PY" -m venv "$VENV"
fi
if [ "$(installed_version)" != "$VERSION" ]; then
    echo "rotel.sh: installing rotel==$VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "rotel==$VERSION"
fi

AGENT="$("$VENV/bin/python" - <<'PY'
import os, rotel
print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))
PY
)"
if [ ! -x "$AGENT" ]; then
    echo "rotel.sh: rotel-agent not found in the wheel (looked at $AGENT)" >&2
    exit 1
fi
# A stable path the tests look for.
ln -sfn "$AGENT" "$ROOT/.tools/rotel-agent"
"$ROOT/.tools/rotel-agent" --version >/dev/null 2>&1 || "$ROOT/.tools/rotel-agent" --help >/dev/null
echo "rotel.sh: rotel-agent ready at $ROOT/.tools/rotel-agent"
