#!/usr/bin/env bash
# Installs strace, which tests/tests/guarantees_crash.rs uses to prove that a
# Durable receipt comes only after fdatasync(2) of the record's bytes (the
# order of operations a power-loss guarantee rests on). Idempotent.
set -euo pipefail
if command -v strace >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq strace
else
    echo "strace.sh: strace not found and apt-get unavailable; install strace" >&2
    exit 1
fi
command -v strace >/dev/null 2>&1 || { echo "strace.sh: strace still missing after install" >&2; exit 1; }
