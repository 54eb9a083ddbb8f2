#!/usr/bin/env bash
# Installs what the dashboard tests (crates/plumb/tests/dashboard.rs) need:
# Debian's chromium, node and npm if `node` is missing, and playwright-core
# (pinned in tests/dashboard/package-lock.json) to drive chromium headless.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! command -v node >/dev/null 2>&1; then need+=(nodejs npm); fi
if [ "${#need[@]}" -gt 0 ]; then
    echo "install-dashboard: installing ${need[*]} (apt)"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}" fonts-dejavu-core
fi

if [ ! -d tests/dashboard/node_modules/playwright-core ]; then
    echo "install-dashboard: installing playwright-core (npm ci in tests/dashboard)"
    (cd tests/dashboard && npm ci --no-audit --no-fund)
fi
