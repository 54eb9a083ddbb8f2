#!/usr/bin/env bash
# Installs what the error-group and slow-run tests (crates/plumb/tests/insights.rs)
# need beyond .ci/install-otlp.sh: python3, unshare (util-linux) to give each
# simulated node its own host name, and promtool (prometheus) to check
# /metrics. Idempotent.
set -euo pipefail

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v unshare >/dev/null || missing+=(util-linux)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-insights: installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
