#!/usr/bin/env bash
# Installs chattr/lsattr (Debian's e2fsprogs), which tests/tests/guarantees_faults.rs
# uses to revoke write permission from an open audit log in a way that also
# stops root (the immutable attribute). Idempotent.
set -euo pipefail
if command -v chattr >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq e2fsprogs
else
    echo "e2fsprogs.sh: chattr not found and apt-get unavailable; install e2fsprogs" >&2
    exit 1
fi
command -v chattr >/dev/null 2>&1 || { echo "e2fsprogs.sh: chattr still missing after install" >&2; exit 1; }
