#!/usr/bin/env bash
# Installs what the plumb-checkpoint and python/ tests need: pytest to run
# python/tests, and wheel beside setuptools so that test_install.py can
# `pip install --no-build-isolation` the package without downloading a build
# backend during the test. mount/umount (util-linux) for the disk-full tests
# are part of the base system. Idempotent.
set -euo pipefail

if ! command -v python3 >/dev/null; then
    echo "install-checkpoint: installing python3 python3-pip (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-pip
fi

pip_install() {
    echo "install-checkpoint: installing $* (pip)"
    python3 -m pip install --quiet "$@" \
        || python3 -m pip install --quiet --break-system-packages "$@"
}

python3 -c 'import pytest' 2>/dev/null || pip_install 'pytest>=8'
python3 -c 'import wheel' 2>/dev/null || pip_install wheel
python3 -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 61)' 2>/dev/null \
    || pip_install 'setuptools>=61'
