#!/usr/bin/env bash
# Installs what the OTLP ingest tests need: the OpenTelemetry Python SDK and
# its OTLP/HTTP exporter (PyPI), used as a real, unmodified OTLP client in
# crates/plumb/tests/otlp_*.rs and by `plumb demo`. Idempotent.
set -euo pipefail

if ! command -v python3 >/dev/null; then
    echo "install-otlp: installing python3 python3-pip (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-pip
fi

if ! python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
    pkgs=(opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2)
    echo "install-otlp: installing ${pkgs[*]} (pip)"
    python3 -m pip install --quiet "${pkgs[@]}" \
        || python3 -m pip install --quiet --break-system-packages "${pkgs[@]}"
fi
