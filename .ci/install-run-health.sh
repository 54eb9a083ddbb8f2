#!/usr/bin/env bash
# Installs what the run health tests (crates/plumb/tests/run_health.rs)
# need: stress-ng (Debian package), which makes real memory, I/O and CPU
# pressure for a few bounded seconds. Idempotent.
set -euo pipefail

if ! command -v stress-ng >/dev/null 2>&1; then
    echo "install-run-health: installing stress-ng (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends stress-ng
fi
