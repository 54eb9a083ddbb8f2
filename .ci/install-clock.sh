#!/usr/bin/env bash
# Installs what the clock tests need: libfaketime (Debian package
# `faketime`, which pulls in `libfaketime`), whose LD_PRELOAD library runs
# a `plumb` process on a shifted clock. Idempotent.
set -euo pipefail

lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
if [ ! -e "$lib" ] && ! ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then
    echo "install-clock: installing faketime (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends faketime
fi
