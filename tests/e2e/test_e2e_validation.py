"""The command line: every mistake is one clear line on stderr and exit status 1."""

from __future__ import annotations

import socket

import pytest

from tests.procs import HOST, free_port, run_plain


def assert_refused(result, line: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "", result.stdout
    assert result.stderr.splitlines() == [line], result.stderr


def client_args(name="Ann", server_ip=HOST, server_port=None, client_port=None):
    server_port = free_port() if server_port is None else server_port
    client_port = free_port() if client_port is None else client_port
    return ["-c", name, server_ip, str(server_port), str(client_port), "--bind", HOST]


BAD_PORTS = ["abc", "1023", "0", "65536", "99999", "-5", "", "12.5", "0x1388", "123456", "+6000", " 6000", "６０６１"]


@pytest.mark.parametrize("port", BAD_PORTS)
def test_bad_server_port_for_server(port):
    assert_refused(run_plain("-s", port, "--bind", HOST), "Invalid server port number")


@pytest.mark.parametrize("port", ["abc", "1023", "65536", ""])
def test_bad_server_port_for_client(port):
    assert_refused(run_plain(*client_args(server_port=port)), "Invalid server port number")


@pytest.mark.parametrize("port", ["abc", "1023", "65536", "", "-1"])
def test_bad_client_port(port):
    args = ["-c", "Ann", HOST, str(free_port()), port, "--bind", HOST]
    assert_refused(run_plain(*args), "Invalid client port number")


@pytest.mark.parametrize("address", ["127.0.9999.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", "no-such-host.invalid"])
def test_bad_server_address(address):
    assert_refused(run_plain(*client_args(server_ip=address)), "Invalid server ip address. Try again.")


@pytest.mark.parametrize("name", ["", "server", "A B", "A\tB", " A", "A;B", ";", "x" * 33])
def test_bad_username(name):
    assert_refused(run_plain(*client_args(name=name)), "Invalid username")


def test_client_port_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((HOST, 0))
        port = holder.getsockname()[1]
        result = run_plain(*client_args(client_port=port))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(port) in lines[0] and "in use" in lines[0], result.stderr


def test_server_port_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((HOST, 0))
        port = holder.getsockname()[1]
        result = run_plain("-s", str(port), "--bind", HOST)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(port) in lines[0] and "in use" in lines[0], result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-s"],
        ["-c", "Ann", HOST, "6000"],
        ["-c", "Ann", HOST],
        ["-s", "6000", "extra"],
        ["-c", "Ann", HOST, "6000", "6001", "extra"],
        ["-s", "6000", "-c", "Ann", HOST, "6000", "6001"],
        ["-x"],
    ],
)
def test_wrong_arguments_give_usage(args):
    result = run_plain(*args)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: ChatApp.py"), result.stderr
    assert lines[-1].startswith("ChatApp.py: error: "), result.stderr


@pytest.mark.parametrize("flags", [["--ack-timeout", "0"], ["--ack-timeout", "-1"], ["--retries", "0"]])
def test_bad_retry_flags(flags):
    result = run_plain("-s", str(free_port()), "--bind", HOST, *flags)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("flags", [["--ack-timeout", "soon"], ["--retries", "many"]])
def test_unparsable_retry_flags(flags):
    result = run_plain("-s", str(free_port()), "--bind", HOST, *flags)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith("ChatApp.py: error: "), result.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    result = run_plain(flag)
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert result.stdout.startswith("usage: ChatApp.py")
    for word in ("-s PORT", "-c NAME SERVER_IP SERVER_PORT CLIENT_PORT", "--ack-timeout", "--retries"):
        assert word in result.stdout


def test_host_name_is_resolved(cluster):
    """`localhost` is a resolvable host name: the client gets through to the server."""
    server = cluster.server()
    port = free_port()
    proc = cluster.spawn(["-c", "Ann", "localhost", str(server.port), str(port), "--bind", HOST], "Ann")
    proc.expect_line(">>> Welcome, You are registered.")
    assert proc.expect_clients({"Ann": "online"})["Ann"] == (HOST, port, "online")
