#!/usr/bin/env bash
# Installs what the chaos tests need: libfaketime (see install-clock.sh),
# stress-ng (see install-run-health.sh; the cpu and memory faults' load),
# iproute2 and nftables (the network faults inside namespaces) and
# chaostoolkit (PyPI), in a virtualenv of its own at
# /opt/plumb-ci/chaostoolkit, whose `chaos` the test that compares verdicts
# with chaostoolkit's runs (or set PLUMB_CHAOSTOOLKIT to another `chaos`).
# Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/.ci/install-clock.sh"
"$root/.ci/install-run-health.sh"

missing=()
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-chaos: installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

venv=/opt/plumb-ci/chaostoolkit
if [ ! -x "$venv/bin/chaos" ]; then
    echo "install-chaos: installing chaostoolkit==1.19.0 (pip, into $venv)"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet chaostoolkit==1.19.0
fi
