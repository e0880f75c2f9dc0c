"""``static`` (a fixed list, retried forever) and ``local`` (the port mapper on this host)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from typing import Any

import pytest

from pymesh._errors import DiscoveryError
from pymesh.services.discovery import Cluster, load_topologies
from pymesh.services.discovery._static import LocalStrategy
from pymesh.services.discovery._strategy import LocalNode

from .discovery_helpers import FakeOps, free_port, run, wait_until


def test_static_hosts_are_retried_every_interval_until_they_answer() -> None:
    ops = FakeOps(reachable={"a@h1"})
    specs = load_topologies(
        {"topologies": {"s": {"strategy": "static", "config": {"hosts": ["a@h1", "b@h2"], "polling_interval": 0.02}}}}
    )

    async def scenario() -> None:
        async with Cluster(specs, ops) as cluster:
            await wait_until(lambda: ops.count("connect", "b@h2") >= 3, what="b retried")
            assert ops.connected == {"a@h1"}
            assert ops.reachable is not None
            ops.reachable.add("b@h2")  # b comes up
            await wait_until(lambda: ops.connected == {"a@h1", "b@h2"})
            ops.drop("a@h1")  # a restarts
            await wait_until(lambda: "a@h1" in ops.connected)
            assert ops.count("disconnect") == 0
            assert cluster.states()[0].nodes_found == ("a@h1", "b@h2")

    run(scenario())


def local_strategy(ops_name: str = "me@box", **config: Any) -> LocalStrategy:
    (spec,) = load_topologies({"topologies": {"l": {"strategy": "local", "config": config}}})
    return LocalStrategy(spec.config, LocalNode(ops_name))


def test_local_names_get_this_nodes_host_part(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, Any]] = []

    async def names(host: str = "127.0.0.1", epmd_port: int | None = None) -> list[tuple[str, int]]:
        asked.append((host, epmd_port))
        return [("me", 4000), ("web1", 4001), ("web2", 4002)]

    import pymesh.runtime._epmd as epmd

    monkeypatch.setattr(epmd, "names", names)
    strategy = local_strategy(epmd_port=4555)
    assert run(strategy.poll()) == {"me@box", "web1@box", "web2@box"}
    assert asked == [("127.0.0.1", 4555)]


def test_local_without_a_host_part_fails_the_poll() -> None:
    with pytest.raises(DiscoveryError, match="no host part"):
        run(local_strategy("nohost").poll())


def _register(epmd_port: int, name: str, port: int) -> socket.socket:
    """Register ``name`` with a real epmd (ALIVE2_REQ); the name lives while the socket is open."""
    encoded = name.encode()
    body = struct.pack(">BHBBHHH", 120, port, 77, 0, 6, 5, len(encoded)) + encoded + struct.pack(">H", 0)
    sock = socket.create_connection(("127.0.0.1", epmd_port), timeout=5)
    sock.sendall(struct.pack(">H", len(body)) + body)
    reply = sock.recv(16)
    assert reply[:1] in (b"y", b"v") and reply[1] == 0, reply
    return sock


def test_local_against_a_real_epmd() -> None:
    epmd = shutil.which("epmd")
    if epmd is None:
        pytest.skip("Erlang's epmd is not installed")
    pytest.importorskip("pymesh.runtime._epmd")
    port = free_port("tcp")
    process = subprocess.Popen([epmd, "-port", str(port), "-address", "127.0.0.1"], stdin=subprocess.DEVNULL)
    registered: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                registered.append(_register(port, "alpha", 5001))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        registered.append(_register(port, "beta", 5002))

        async def scenario() -> None:
            strategy = local_strategy("beta@box", epmd_port=port, polling_interval=0.02)
            assert await strategy.poll() == {"alpha@box", "beta@box"}
            registered.pop(0).close()  # alpha stops
            await wait_until(lambda: _poll_equals(strategy, {"beta@box"}), what="alpha gone")

        run(scenario())
    finally:
        for sock in registered:
            sock.close()
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=5)


async def _poll_equals(strategy: LocalStrategy, expected: set[str]) -> bool:
    return await strategy.poll() == expected
