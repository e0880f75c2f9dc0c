"""A real cluster on loopback for the pane's tests, screenshots and benchmark.

A private port mapper (``python -m pymesh epmd --port P`` on a free port, never
4369) and nodes as real OS processes (``python -m pymesh run --sname X``), each
waited for until it prints ``node NAME ready on port N`` and stopped by its pid.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType

__all__ = ["DevCluster", "free_port", "short_host"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_host() -> str:
    return socket.gethostname().split(".")[0]


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    if proc.stdout is not None:
        proc.stdout.close()


class DevCluster:
    """A port mapper and named nodes; a context manager that stops them all."""

    def __init__(self, cookie: str | None = None, *, tick_time: float = 15.0) -> None:
        self.cookie = cookie or f"c{secrets.token_hex(6)}"
        self.tick_time = tick_time
        self.epmd_port = free_port()
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.epmd: subprocess.Popen[str] | None = None
        self.env = {**os.environ, "PYMESH_EPMD_PORT": str(self.epmd_port), "PYMESH_COOKIE": self.cookie}

    def node(self, name: str) -> str:
        return f"{name}@{short_host()}"

    def start_epmd(self) -> None:
        self.epmd = subprocess.Popen(
            [sys.executable, "-m", "pymesh", "epmd", "--port", str(self.epmd_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=self.env,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.epmd_port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the port mapper did not start")

    def start(self, name: str, *, connect: str | None = None, extra: list[str] | None = None) -> str:
        """Start node ``name`` (connected to ``connect``); return its full name."""
        cmd = [sys.executable, "-m", "pymesh", "run", "--sname", name, "--cookie", self.cookie,
               "--epmd-port", str(self.epmd_port), "--tick-time", str(self.tick_time)]
        if connect:
            cmd += ["--connect", self.node(connect) if "@" not in connect else connect]
        cmd += extra or []
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.env)
        self.procs[name] = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()
                if line.startswith("node ") and " ready on port " in line:
                    return line.split()[1]
                if not line and proc.poll() is not None:
                    break
        _stop(proc)
        raise RuntimeError(f"node {name} did not start")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop node ``name`` (SIGTERM: it leaves gracefully; SIGKILL: it vanishes)."""
        proc = self.procs.pop(name, None)
        if proc is not None:
            _stop(proc, sig)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        if self.epmd is not None:
            _stop(self.epmd)
            self.epmd = None

    def __enter__(self) -> DevCluster:
        self.start_epmd()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
