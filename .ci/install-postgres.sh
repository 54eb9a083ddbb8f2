#!/usr/bin/env bash
# Installs what the PostgreSQL store's tests need: the machine's own
# PostgreSQL server programs (initdb, pg_ctl; Debian's postgresql package).
# The tests make and start a private cluster of their own on a loopback port
# (crates/plumb-store-postgres/src/testing.rs) and `cargo xtask test` stops
# it; nothing here starts a server. Idempotent.
set -euo pipefail

if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    exit 0
fi
echo "install-postgres: installing postgresql (apt)"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends postgresql
