#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (a real
# OpenTelemetry collector, a Chat Completions mock server, a browser), then
# checks formatting and lints, then runs the whole suite. A component that
# cannot be installed or started fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

for setup in .ci/setup.d/*.sh; do
    [ -e "$setup" ] || continue
    echo "== setup: $setup"
    bash "$setup"
done

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test"
cargo test --workspace --no-fail-fast
