#!/usr/bin/env bash
# Installs what the chaos tests need: libfaketime (see install-clock.sh),
# stress-ng (see install-run-health.sh; the cpu and memory faults' load)
# and chaostoolkit (PyPI), in a virtualenv of its own at
# /opt/plumb-ci/chaostoolkit, whose `chaos` the test that compares verdicts
# with chaostoolkit's runs (or set PLUMB_CHAOSTOOLKIT to another `chaos`).
# Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/.ci/install-clock.sh"
"$root/.ci/install-run-health.sh"

venv=/opt/plumb-ci/chaostoolkit
if [ ! -x "$venv/bin/chaos" ]; then
    echo "install-chaos: installing chaostoolkit==1.19.0 (pip, into $venv)"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet chaostoolkit==1.19.0
fi
