#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (a real
# OpenTelemetry collector, a Chat Completions mock server, a browser), then
# checks formatting and lints, then runs the whole suite. A component that
# cannot be installed or started fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh clone gains nothing from incremental artefacts; they doubled the
# target directory. Say the free disk up front: a full disk fails the build
# with an LLVM I/O error far from its cause.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "== disk: $(df -h . | awk 'NR==2 {print $4 " free on " $6}')"

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
