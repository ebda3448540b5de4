"""`pip install .` installs every package of the project and a working command for the chat
and for each tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

from tests.procs import ROOT


def test_pip_install_gives_every_package_and_command(tmp_path):
    # From a copy: a build/ folder left in the checkout by an earlier install would be reused.
    source, target = tmp_path / "source", tmp_path / "site"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "docs"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    packages = sorted(path.parent.relative_to(ROOT) for top in ("proto", "node", "tools")
                      for path in (ROOT / top).rglob("__init__.py"))
    assert packages, "no packages found"
    for package in packages:
        assert (target / package / "__init__.py").exists(), f"{package} was not installed"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"chatapp", "chatapp-sniff", "chatapp-proxy", "chatapp-replay", "chatapp-bench"} <= set(scripts)
    env = dict(os.environ, PYTHONPATH=str(target), NO_COLOR="1")  # the installed copy, not this checkout
    for name in scripts:
        run = subprocess.run([str(target / "bin" / name), "--help"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0 and run.stdout.startswith("usage: "), (name, run.stderr)
