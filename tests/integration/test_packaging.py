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


# Each command as the README runs it, and arguments that reach past its argument parsing.
WITHOUT_DEPENDENCIES = {
    "ChatApp.py": ["-s", "6666"],
    "tools/sniff.py": ["-r", "docs/demo.pcap"],
    "tools/replay.py": ["docs/demo.pcap", "--to", "127.0.0.1:9"],
    "tools/lossy_proxy.py": ["--listen", "127.0.0.1:0", "--server", "127.0.0.1:9"],
    "tools/bench.py": ["--quick", "codec"],
}


def _without_site_packages(*args: str) -> subprocess.CompletedProcess:
    # -S: no site-packages, so none of scapy, rich, prompt_toolkit (as with a bare python3); -E: no
    # PYTHONPATH either.  Nothing is installed or removed.
    return subprocess.run([sys.executable, "-E", "-S", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _says_how_to_set_up(done: subprocess.CompletedProcess, name: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{name}: the Python package '") and "is missing" in lines[0], lines[0]
    assert "./dev" in lines[0] and "pip install ." in lines[0], lines[0]


@pytest.mark.parametrize("script", sorted(WITHOUT_DEPENDENCIES))
def test_a_script_run_by_a_python_without_the_dependencies_says_how_to_set_up(script):
    done = _without_site_packages(script, *WITHOUT_DEPENDENCIES[script])
    _says_how_to_set_up(done, os.path.basename(script))


def test_an_installed_command_without_the_dependencies_says_how_to_set_up():
    # What a console script does (`from tools.sniff import main; sys.exit(main())`), under its own name.
    starter = ("import sys; sys.path.insert(0, '.'); sys.argv = ['chatapp-sniff', '-r', 'docs/demo.pcap'];"
               " from tools.sniff import main; sys.exit(main())")
    _says_how_to_set_up(_without_site_packages("-c", starter), "chatapp-sniff")


def test_the_dissector_without_the_dependencies_is_an_error_not_an_empty_file(tmp_path):
    lua = tmp_path / "chat.lua"
    with lua.open("w") as out:
        done = subprocess.run([sys.executable, "-E", "-S", "tools/sniff.py", "--wireshark-dissector"], cwd=ROOT,
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    _says_how_to_set_up(done, "sniff.py")


DOCUMENTS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def _documented_commands(document: str) -> list[list[str]]:
    """The command lines in a document's shell code blocks (```sh, or no language; ```text is output):
    the words of each, without a prompt or sudo."""
    commands, inside, shell = [], False, False
    for line in (ROOT / document).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            shell = inside and line.strip().removeprefix("```") in ("", "sh", "shell", "console")
            continue
        words = line.split()
        while inside and words and words[0] in ("$", "sudo"):
            words = words[1:]
        if shell and words and ("/" in words[0] or words[0].startswith("python")):
            commands.append(words)
    return commands


def test_the_readme_shows_commands_of_both_kinds():
    commands = _documented_commands("README.md")
    assert any(words[0] == "./dev" for words in commands) and any(words[0].startswith(".venv/bin/") for words in commands)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_a_document_shows_runs_in_what_dev_sets_up(document):
    # ./dev builds .venv with the dependencies and the console scripts; a bare python3 has neither.
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    commands = _documented_commands(document)
    for words in commands:
        program = words[0]
        assert program == "./dev" or program.removeprefix(".venv/bin/") in scripts | {"python"}, " ".join(words)
    for program in sorted({words[0] for words in commands if words[0].startswith(".venv/bin/chatapp")}):
        helped = subprocess.run([str(ROOT / program), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert helped.returncode == 0 and helped.stdout.startswith(f"usage: {os.path.basename(program)} "), helped.stderr
