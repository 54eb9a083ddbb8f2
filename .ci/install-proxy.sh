#!/usr/bin/env bash
# Installs what the plumb-proxy client tests need: toxiproxy-python (PyPI)
# and toxiproxy-node-client (npm, into the gitignored
# crates/plumb-proxy/tests/clients/node_modules). Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v python3 >/dev/null || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-proxy: installing python3 python3-pip nodejs npm (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-pip nodejs npm
fi

if ! python3 -c 'import toxiproxy' 2>/dev/null; then
    echo "install-proxy: installing toxiproxy-python==0.1.1 (pip)"
    python3 -m pip install --quiet toxiproxy-python==0.1.1 \
        || python3 -m pip install --quiet --break-system-packages toxiproxy-python==0.1.1
fi

clients="$root/crates/plumb-proxy/tests/clients"
if [ ! -f "$clients/node_modules/toxiproxy-node-client/package.json" ]; then
    echo "install-proxy: installing toxiproxy-node-client@4.1.0 (npm)"
    (cd "$clients" && npm install --no-save --no-package-lock --no-audit --no-fund toxiproxy-node-client@4.1.0)
fi
