#!/usr/bin/env bash
# System packages the collector's tests need: promtool (Debian package
# prometheus) checks /metrics; openssl is not needed (rcgen makes certs).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-collector: installing prometheus (apt, for promtool)"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus
