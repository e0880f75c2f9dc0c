"""A cluster of real pymesh nodes (OS processes) on loopback, for the registry and supervisor tests.

* :func:`epmd` (a session fixture): pymesh's port mapper on a random free port
  (never 4369), killed by its pid at the end; ``PYMESH_EPMD_PORT`` points at it.
* :class:`Cluster`: starts ``python -m pymesh run --sname X`` subprocesses in
  parallel, waits for their ``node NAME ready on port N`` line, and kills each
  by its pid (``kill -9``) on :meth:`Cluster.kill` or at teardown. Nodes get
  this folder's parent on ``PYTHONPATH``, so ``support.*`` helpers are
  importable there for ``rpc_call(node, "support.distreg_node:fn", ...)``.
* :func:`local_node`: the test itself as a node, for ``rpc_call``/``rpc_eval``.

``run``, ``eventually`` and ``free_port`` are tests/conftest.py's, re-exported.

Every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually, free_port, run  # the suite's shared helpers

import pymesh

__all__ = ["Cluster", "cluster", "epmd", "eventually", "free_port", "kill_pid", "local_node", "run", "unique"]

HOST = socket.gethostname().split(".")[0]
TESTS_DIR = Path(__file__).resolve().parent.parent


def unique(tag: str = "n") -> str:
    return f"{tag}{secrets.token_hex(3)}"


def kill_pid(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL ``proc`` by its pid (SIGCONT first, in case it was stopped) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


@pytest.fixture(scope="session")
def epmd() -> Iterator[int]:
    """A private pymesh port mapper for the session; yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pymesh", "epmd", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    old = os.environ.get("PYMESH_EPMD_PORT")
    os.environ["PYMESH_EPMD_PORT"] = str(port)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the port mapper did not start")
            time.sleep(0.05)
        yield port
    finally:
        kill_pid(proc)
        if old is None:
            os.environ.pop("PYMESH_EPMD_PORT", None)
        else:
            os.environ["PYMESH_EPMD_PORT"] = old


class Cluster:
    """Node subprocesses sharing a cookie and a port mapper."""

    def __init__(self, epmd_port: int, log_dir: Path) -> None:
        self.epmd_port = epmd_port
        self.cookie = "c" + secrets.token_hex(8)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
        env["PYMESH_EPMD_PORT"] = str(self.epmd_port)
        env.pop("PYMESH_COOKIE", None)
        return env

    def start(self, count: int, tag: str = "n", timeout: float = 30.0) -> list[str]:
        """Start ``count`` nodes in parallel; return their full names once all are ready."""
        shorts = [unique(tag) for _ in range(count)]
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        for short in shorts:
            log = (self.log_dir / f"{short}.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "pymesh", "run", "--sname", short, "--cookie", self.cookie,
                 "--epmd-port", str(self.epmd_port)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=self.env(), cwd=str(TESTS_DIR),
            )
            log.close()
            started.append((short, proc))
        names: list[str] = []
        for short, proc in started:
            line = _readline(proc, timeout)
            if not line.startswith("node "):
                kill_pid(proc)
                raise RuntimeError(f"node {short} did not start: {line!r}; log: {self.log(short)}")
            name = line.split()[1]
            self.procs[name] = proc
            names.append(name)
        return names

    def log(self, node: str) -> str:
        short = node.partition("@")[0]
        path = self.log_dir / f"{short}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self, node: str) -> None:
        """``kill -9`` the node, by its pid."""
        proc = self.procs.pop(node)
        kill_pid(proc)

    def close(self) -> None:
        for node in list(self.procs):
            self.kill(node)


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> str:
    out: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.readline().decode(errors="replace").strip())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else "<no ready line within %ss>" % timeout


@pytest.fixture
def cluster(epmd: int, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(epmd, tmp_path)
    try:
        yield c
    finally:
        c.close()


@contextlib.asynccontextmanager
async def local_node(cluster: Cluster, tag: str = "t") -> AsyncIterator[str]:
    """This test process as a node of ``cluster`` (stopped on exit)."""
    name = await pymesh.start(unique(tag), cookie=cluster.cookie, epmd_port=cluster.epmd_port)
    try:
        yield name
    finally:
        await pymesh.stop()
