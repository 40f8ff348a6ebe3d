#!/usr/bin/env bash
# PostgreSQL from Debian: the SQL sink's tests (crates/sql, crates/cli's
# sql_*.rs) start a throwaway server of their own with initdb and postgres
# (agent_audit_tests::postgres). Nothing is started here; this only makes
# sure the binaries are there.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup: installing postgresql (the SQL sink's tests start a server of their own)"
if ! apt-get install -y -qq --no-install-recommends postgresql; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql
fi
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || {
    echo "setup: initdb still missing after installing postgresql" >&2
    exit 1
}
