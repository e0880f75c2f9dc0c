"""The node commands as a user runs them: `pymesh run`, `rpc`, `discovery`, `names`.

Headless nodes in real OS processes on a private port mapper. `pymesh rpc`
prints the repr of a value and fails with one line and a non-zero status for a
down node, a wrong cookie or a remote exception; `pymesh discovery` shows a
static topology finding and connecting a node that starts later.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port

HOST = socket.gethostname().split(".")[0]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    environ = {
        **os.environ,
        "PYMESH_EPMD_PORT": str(port),
        "PYMESH_COOKIE": "disco-cli",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    epmd = subprocess.Popen([sys.executable, "-m", "pymesh", "epmd", "--port", str(port)], env=environ)
    try:
        time.sleep(0.3)
        yield environ
    finally:
        epmd.send_signal(signal.SIGKILL)
        epmd.wait()


def _node(env: dict[str, str], name: str, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pymesh", "run", "--sname", name, *extra],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "ready" in line, line
    return proc


def _pymesh(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pymesh", *argv], env=env, capture_output=True, text=True, timeout=30
    )


def _discovery(env: dict[str, str], node: str) -> subprocess.CompletedProcess[str]:
    return _pymesh(env, "discovery", node)


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_rpc_prints_values_and_fails_with_one_line(env: dict[str, str]) -> None:
    name = f"rpc{os.getpid()}"
    node = f"{name}@{HOST}"
    procs = [_node(env, name)]
    try:
        ok = _pymesh(env, "rpc", node, "(Node.self(), Node.list(), 6 * 7)")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == f"('{node}', [], 42)"  # the rpc node itself is hidden
        awaited = _pymesh(env, "rpc", name, "await Node.ping(Node.self())")  # short name, awaitable
        assert awaited.stdout.strip() == "'pong'"
        listed = _pymesh(env, "names")
        assert f"name {name} at port" in listed.stdout
        for argv, needle in [
            (("rpc", node, "1/0"), "ZeroDivisionError"),
            (("rpc", node, "1", "--cookie", "wrong"), "cannot connect"),
            (("rpc", f"nosuch{os.getpid()}@{HOST}", "1"), "cannot connect"),
            (("rpc", node, "def broken("), "SyntaxError"),
        ]:
            bad = _pymesh(env, *argv)
            assert bad.returncode == 1, (argv, bad.stdout, bad.stderr)
            lines = [line for line in bad.stderr.splitlines() if line.startswith("pymesh rpc:")]
            assert len(lines) == 1 and needle in lines[0], (argv, bad.stderr)
        # the node survived every failure
        again = _pymesh(env, "rpc", node, "Node.self()")
        assert again.stdout.strip() == repr(node)
    finally:
        _stop(procs)


def test_discovery_command_shows_the_topology_state(env: dict[str, str], tmp_path: Path) -> None:
    tag = f"dc{os.getpid()}"
    a, b = f"{tag}a", f"{tag}b"
    topo = tmp_path / "topologies.toml"
    topo.write_text(
        f'[topologies.fixed]\nstrategy = "static"\n[topologies.fixed.config]\n'
        f'hosts = ["{b}@{HOST}"]\npolling_interval = 0.5\n'
    )
    procs = [_node(env, a, "--topology", str(topo))]
    try:
        before = _discovery(env, f"{a}@{HOST}")
        assert before.returncode == 0, before.stderr
        assert "fixed (static)" in before.stdout
        assert "connected:  -" in before.stdout
        procs.append(_node(env, b))
        deadline = time.monotonic() + 15
        while True:
            after = _discovery(env, f"{a}@{HOST}")
            if f"connected:  {b}@{HOST}" in after.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert f"found:      {b}@{HOST}" in after.stdout
        assert f"connected:  {b}@{HOST}" in after.stdout, after.stdout
    finally:
        _stop(procs)


def test_discovery_command_on_a_down_node_fails_with_one_line(env: dict[str, str]) -> None:
    result = _discovery(env, f"nosuch{os.getpid()}@{HOST}")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "cannot connect" in result.stderr


def test_a_bad_topology_file_is_refused_at_start_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    topo = tmp_path / "bad.toml"
    topo.write_text('[topologies.x]\nstrategy = "carrier_pigeon"\n')
    result = subprocess.run(
        [sys.executable, "-m", "pymesh", "run", "--sname", f"bad{os.getpid()}", "--topology", str(topo)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "carrier_pigeon" in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
