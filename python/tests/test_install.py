"""The package installs with pip from the repository and works when installed."""

import os
import shutil
import subprocess
import sys

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pip_installs_from_the_repository(tmp_path):
    target = tmp_path / "site"
    # Built from a copy: building in place would leave build/ and
    # *.egg-info in the repository.
    source = tmp_path / "source"
    shutil.copytree(PYTHON_DIR, source, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    # No build isolation: the build backend (setuptools) is taken from this
    # interpreter instead of being downloaded, and the package has no
    # dependencies to fetch.
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-c", "import plumb, sys; print(plumb.__file__); print(plumb.EXIT_EVICTED)"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(target)), cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    where, code = r.stdout.split()
    assert where.startswith(str(target)) and code == "75"
