#!/usr/bin/env bash
# Installs what the stack snapshot and timeout tests (crates/plumb/tests/stack.rs)
# need: py-spy (PyPI) for Python stacks, elfutils (Debian, for eu-stack)
# for native stacks, perf (linux-perf) for native CPU profiles, gcc to build
# the blocked C program, python3. Idempotent.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v python3 >/dev/null || missing+=(python3 python3-pip)
command -v eu-stack >/dev/null || missing+=(elfutils)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v perf >/dev/null || missing+=(linux-perf)
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-stack: installing ${missing[*]} (apt)"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! command -v py-spy >/dev/null; then
    echo "install-stack: installing py-spy (pip)"
    python3 -m pip install --quiet py-spy \
        || python3 -m pip install --quiet --break-system-packages py-spy
fi
