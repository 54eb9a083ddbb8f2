#!/usr/bin/env bash
# What plumb-record's exception and fingerprint tests need besides cargo:
# a real python3 with pip installed (its distributions are listed), and git
# (temporary repositories are created). Installs only what is missing.
set -euo pipefail
need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import importlib.metadata as m; m.version("pip")' >/dev/null 2>&1 || need+=(python3-pip)
command -v git >/dev/null 2>&1 || need+=(git)
if [ "${#need[@]}" -gt 0 ]; then
    echo "install-record-capture: installing ${need[*]} (apt)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
python3 -c 'import importlib.metadata as m; print("python3", m.version("pip"))' >/dev/null
git --version >/dev/null
