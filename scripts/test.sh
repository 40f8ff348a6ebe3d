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

# agent-audit-rig lives in its own workspace (rig turns on serde_json's
# preserve_order, which must not reach the main workspace's crates), with
# its own lock file and its own target subdirectory.
RIG=integrations/rig/Cargo.toml
RIG_TARGET="${CARGO_TARGET_DIR:-target}/rig"
echo "== agent-audit-rig: fmt, clippy, test"
cargo fmt --manifest-path "$RIG" -- --check
CARGO_TARGET_DIR="$RIG_TARGET" cargo clippy --manifest-path "$RIG" --all-targets --quiet -- -D warnings
CARGO_TARGET_DIR="$RIG_TARGET" cargo test --manifest-path "$RIG" --no-fail-fast
