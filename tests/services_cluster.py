"""A small cluster of real nodes for the Global and PG tests: OS processes on loopback.

* a private pymesh port mapper (``python -m pymesh epmd --port P``) on a random
  free port, never 4369, with ``PYMESH_EPMD_PORT`` pointing at it;
* node subprocesses running ``tests/services_node.py`` (the services loaded),
  started in parallel; each prints ``node NAME ready on port N``;
* the test process itself joins as a *hidden* node (:meth:`Cluster.driver`),
  so it can ``rpc_eval`` on every node without taking part in global names or
  process groups.

Every subprocess is killed by its pid at the end, every wait is bounded, and
only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import itertools
import contextlib
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pymesh
from pymesh import Node, Pid, rpc_eval

T = TypeVar("T")

HERE = Path(__file__).parent
NODE_SCRIPT = HERE / "services_node.py"
HOST = socket.gethostname().split(".")[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(scenario: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
    """Run ``scenario()`` on a fresh event loop, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await scenario()

    return pymesh.run(bounded())


async def eventually(check: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = 8.0) -> Any:
    """Call (and await) ``check()`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what} (last: {value!r})")
        await asyncio.sleep(0.03)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise RuntimeError(f"node process {proc.pid} gave no ready line (exit {proc.poll()}, got {buf!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError(f"node process {proc.pid} closed its stdout (got {buf!r})")
            buf += chunk
    return buf.decode().strip()


class Cluster:
    """A port mapper plus named node subprocesses; :meth:`close` kills them all by pid."""

    def __init__(self, names: list[str]) -> None:
        self.cookie = "svc-" + secrets.token_hex(8)
        self.epmd_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tag = secrets.token_hex(3)
        self.nodes: dict[str, str] = {}  # short name -> full node name
        env = dict(os.environ, PYMESH_EPMD_PORT=str(self.epmd_port), PYTHONPATH=str(HERE))
        self.env = env
        self.epmd = subprocess.Popen(
            [sys.executable, "-m", "pymesh", "epmd", "--port", str(self.epmd_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_epmd()
            self.start(names)
        except BaseException:
            self.close()
            raise

    def _wait_epmd(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.epmd_port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("the port mapper did not start")

    def start(self, names: list[str]) -> None:
        """Start nodes ``names`` (in parallel) and wait for each one's ready line."""
        started = {}
        for name in names:
            sname = f"{name}{self.tag}"
            proc = subprocess.Popen(
                [sys.executable, str(NODE_SCRIPT), "--sname", sname, "--cookie", self.cookie,
                 "--epmd-port", str(self.epmd_port)],
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None if os.environ.get("PYMESH_TEST_NODE_LOGS") else subprocess.DEVNULL,
            )
            self.procs[name] = proc
            started[name] = proc
        deadline = time.monotonic() + 20
        for name, proc in started.items():
            line = _read_line(proc, deadline)
            assert line.startswith("node ") and " ready on port " in line, line
            self.nodes[name] = line.split()[1]

    def kill(self, name: str) -> None:
        """Kill node ``name`` at once (SIGKILL): its peers see it go down."""
        _kill(self.procs.pop(name))
        del self.nodes[name]

    def close(self) -> None:
        for proc in self.procs.values():
            _kill(proc)
        self.procs.clear()
        _kill(self.epmd)

    def __getitem__(self, name: str) -> str:
        return self.nodes[name]

    @contextlib.asynccontextmanager
    async def driver(self, connect: bool = True) -> AsyncIterator[str]:
        """This test process as a hidden node, connected to every cluster node."""
        me = await pymesh.start(
            f"drv{secrets.token_hex(3)}", cookie=self.cookie, hidden=True, epmd_port=self.epmd_port,
            listen_host="127.0.0.1",
        )
        try:
            if connect:
                for node in self.nodes.values():
                    assert await Node.connect(node), f"cannot connect to {node}"
            yield me
        finally:
            await pymesh.stop()


async def ev(node: str, source: str, timeout: float = 10.0) -> Any:
    """``rpc_eval`` on ``node``; the value (or the repr when it cannot travel)."""
    value, text = await rpc_eval(node, source, timeout=timeout)
    return value if value is not None else (None if text == "None" else text)


async def mesh(cluster: Cluster, names: list[str] | None = None) -> None:
    """Connect the given cluster nodes to each other and wait until their global
    names and pg scopes have synced."""
    names = names or list(cluster.nodes)
    first = cluster[names[0]]
    for name in names[1:]:
        assert await ev(first, f"await Node.connect({cluster[name]!r})") is True
    want = sorted(cluster[n] for n in names)
    for name in names:
        node = cluster[name]
        others = [n for n in want if n != node]
        await eventually(
            lambda node=node, others=others: _visible(node, others), f"{node} sees {others}"
        )
        assert await ev(node, "await Global.sync()") is True


async def _visible(node: str, others: list[str]) -> bool:
    seen = await ev(node, "Node.list()")
    return all(o in seen for o in others)


async def in_parallel(*calls: Callable[[], Awaitable[T]], timeout: float = 15.0) -> list[T]:
    """Await each call in a process of its own, all at once; their results in order.

    (Tasks of one process share its mailbox, and ``receive`` wakes one waiter
    per process, so concurrent ``rpc_eval`` calls need processes of their own.)
    """
    me = pymesh.self()

    async def one(i: int, fn: Callable[[], Awaitable[T]]) -> None:
        try:
            pymesh.send(me, ("$parallel", i, True, await fn()))
        except Exception as e:  # noqa: BLE001 - handed back to the caller
            pymesh.send(me, ("$parallel", i, False, e))

    for i, fn in enumerate(calls):
        pymesh.spawn(one, i, fn)
    results: dict[int, T] = {}
    for _ in calls:
        _, i, ok, value = await pymesh.receive(("$parallel", int, bool, pymesh.ANY), timeout=timeout)
        if not ok:
            raise value
        results[i] = value
    return [results[i] for i in range(len(calls))]


# --- names unique within a test session -----------------------------------------------

_ids = itertools.count()


def fresh(tag: str) -> str:
    return f"{tag}-{next(_ids)}"


def pid_src(pid: Pid) -> str:
    return f"Pid.parse({str(pid)!r})"
