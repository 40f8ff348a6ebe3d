#!/usr/bin/env bash
# The OTLP sink's TLS test makes a private CA and a server certificate with
# the openssl command. Idempotent.
set -euo pipefail
command -v openssl >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends openssl; then
    apt-get update
    apt-get install -y --no-install-recommends openssl
fi
