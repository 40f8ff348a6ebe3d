#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium (/usr/bin/chromium) for the
# review crate's HTML report test, which opens the report in a real browser,
# dumps the rendered DOM and takes a screenshot. Idempotent: does nothing
# when /usr/bin/chromium is already there; runs `apt-get update` only when
# the package lists cannot find the package.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "chromium.sh: installing chromium (Debian)"
# Fonts are needed for text to render in the screenshot.
PACKAGES=(chromium fonts-dejavu-core)
if ! apt-get install -y --no-install-recommends "${PACKAGES[@]}"; then
    apt-get update
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "chromium.sh: apt-get finished but /usr/bin/chromium is missing" >&2
    exit 1
fi
