"""One pymesh node in its own OS process, driven over its stdin/stdout (``tests/nodes/testnode.py``).

:class:`NodeProc` starts the script, waits for its ``READY`` line, and sends it
Python source to evaluate (``await node.eval("Node.list()")``): the answer
comes back on stdout, so a test can ask a node questions even while that
node's network is cut, stalled or partitioned. The node's log (stderr) is
kept line by line in :attr:`NodeProc.log_lines`.

Shared by the multi-node tests (tests/test_multinode.py) and the chaos
harness (tests/chaos/). :func:`stop_process` kills by pid (SIGCONT first, in
case the process was stopped) and reaps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

__all__ = ["HOST", "TESTNODE", "NodeProc", "RemoteFailure", "stop_process"]

HOST = socket.gethostname().split(".")[0]
#: The node script that speaks this stdin/stdout protocol.
TESTNODE = Path(__file__).resolve().parent.parent / "nodes" / "testnode.py"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` by its pid (waking it first if it was stopped) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a kill -9 that did not take
        pass


# --- node subprocesses ---------------------------------------------------------------------------


class RemoteFailure(AssertionError):
    """Source sent to a node raised there; the message holds the remote traceback."""


class NodeProc:
    """One ``testnode.py`` subprocess: its name, port, pid, logs and an ``eval`` channel."""

    def __init__(self, short: str, argv: list[str], env: dict[str, str]) -> None:
        self.short = short
        self.name = f"{short}@{HOST}"
        self.port = 0
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.pid = self.popen.pid
        self.ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        self.stopped = threading.Event()
        self.log_lines: list[str] = []
        self._replies: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._gone: RemoteFailure | None = None  # set once stdout ends (the process exited)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def __repr__(self) -> str:
        return f"<NodeProc {self.name} pid={self.pid}>"

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            kind, _, rest = line.partition(" ")
            if kind == "R":
                ident, _, payload = rest.partition(" ")
                with self._lock:
                    fut = self._replies.pop(int(ident), None)
                if fut is not None:
                    fut.set_result(json.loads(payload))
            elif kind == "READY":
                _, port, _ = rest.split()
                self.port = int(port)
                self.ready.set_result(line)
            elif kind == "FAILED":
                self.ready.set_exception(RemoteFailure(f"{self.name} did not start: {rest}"))
            elif kind == "STOPPED":
                self.stopped.set()
        gone = RemoteFailure(f"{self.name} exited (status {self.popen.poll()})")
        if not self.ready.done():
            self.ready.set_exception(gone)
        with self._lock:
            self._gone = gone
            pending, self._replies = self._replies, {}
        for fut in pending.values():
            fut.set_exception(gone)

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            self.log_lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    async def wait_ready(self, timeout: float = 20.0) -> NodeProc:
        await asyncio.wait_for(asyncio.wrap_future(self.ready), timeout)
        return self

    async def eval(self, source: str, timeout: float = 15.0) -> Any:
        """Evaluate ``source`` on the node; return its value (JSON-shaped, ``repr`` for the rest)."""
        ident = next(self._ids)
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        with self._lock:
            if self._gone is not None:
                raise self._gone
            self._replies[ident] = fut
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(f"{ident} {json.dumps(source)}\n".encode())
            self.popen.stdin.flush()
        except OSError as e:  # the process is gone (its stdout reader says so soon)
            with self._lock:
                self._replies.pop(ident, None)
            raise RemoteFailure(f"{self.name} cannot be reached on its stdin: {e}") from None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        finally:
            with self._lock:
                self._replies.pop(ident, None)
        if not result["ok"]:
            raise RemoteFailure(f"{self.name}: {source!r} raised:\n{result['repr']}")
        return result["value"]

    async def until(self, expression: str, timeout: float = 10.0) -> Any:
        """Wait, on the node, until ``expression`` is truthy; return its value."""
        return await self.eval(f"await until(lambda: {expression}, {timeout})", timeout + 5)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    async def wait_exit(self, timeout: float = 10.0) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.popen.wait), timeout)
