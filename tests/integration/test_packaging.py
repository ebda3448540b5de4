"""`pip install .` installs every package of the project and a working command for the chat
and for each tool; each command calls itself by the name it was started with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.procs import ROOT

pytestmark = pytest.mark.e2e  # pip and the installed commands, as processes

# A mistake each command reports itself (not argparse), and what its line says after the name.
MISTAKES = {
    "chatapp-sniff": (["-r", "missing.pcap"], "cannot read missing.pcap"),
    "chatapp-replay": (["missing.pcap", "--to", "127.0.0.1:9"], "cannot read missing.pcap"),
    "chatapp-proxy": (["--listen", "127.0.0.1:0", "--server", "127.0.0.1:9", "--rule", "bounce"], "unknown action"),
}


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

    def run(name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(target / "bin" / name), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)

    for name in scripts:
        helped = run(name, "--help")
        assert helped.returncode == 0 and helped.stdout.startswith(f"usage: {name} "), (name, helped.stdout[:80], helped.stderr)
        script = scripts[name].partition(":")[0].rpartition(".")[2] + ".py"  # tools.sniff:main -> sniff.py
        assert script not in helped.stdout, f"{name} --help calls itself {script}"  # examples too
        wrong = run(name, "--no-such-option")
        assert wrong.returncode in (1, 2) and "Traceback" not in wrong.stderr, (name, wrong.stderr)
        assert wrong.stderr.startswith(f"usage: {name} "), (name, wrong.stderr)
        assert wrong.stderr.splitlines()[-1].startswith(f"{name}: error: "), (name, wrong.stderr)
        if name in MISTAKES:
            args, message = MISTAKES[name]
            failed = run(name, *args)
            assert failed.returncode in (1, 2) and failed.stderr.startswith(f"{name}: {message}"), (name, failed.stderr)


@pytest.mark.parametrize("script", ["ChatApp.py", "tools/sniff.py", "tools/replay.py", "tools/lossy_proxy.py", "tools/bench.py"])
def test_a_script_run_from_the_checkout_says_its_file_name(script):
    name = os.path.basename(script)
    helped = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith(f"usage: {name} "), helped.stdout[:80]
    wrong = subprocess.run([sys.executable, script, "--no-such-option"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert wrong.stderr.splitlines()[-1].startswith(f"{name}: error: "), wrong.stderr
