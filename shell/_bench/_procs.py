"""The OS processes of a bench run: port mappers and nodes, and how they end.

Every process the bench starts is recorded in a :class:`Reaper` and killed by
its pid when the run ends, however it ends. A BEAM node runs as a child of the
``elixir`` launcher script, so it is killed by the OS pid it reports, and any
process still left under the launcher is found by walking ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import IO

__all__ = ["BenchNode", "Reaper", "free_port", "NodeFailed", "stop_nodes"]


class NodeFailed(RuntimeError):
    """A bench node did not start, answered an error, or did not answer in time."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; empty where there is none)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _cmdline_has(pid: int, needle: str) -> bool:
    """True while ``pid`` is alive and its command line contains ``needle``
    (so that a pid reused by an unrelated process is never killed)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return needle.encode() in f.read()
    except OSError:
        return False


class Reaper:
    """Starts processes and kills every one of them, by pid, in :meth:`kill_all`."""

    def __init__(self, log: IO[bytes] | None) -> None:
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []
        # pids the processes reported (a BEAM under its launcher) -> a word of their command line
        self.extra_pids: dict[int, str] = {}

    def popen(self, cmd: Sequence[str], env: dict[str, str] | None = None, stdin: bool = False) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stderr=self.log if self.log is not None else subprocess.DEVNULL,
            env=env,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], grace: float = 0.0) -> None:
        """End ``proc`` (and what it started): wait ``grace`` seconds, then SIGKILL by pid."""
        if grace > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        for pid in _children(proc.pid):
            _kill(pid)
        if proc.poll() is None:
            _kill(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def kill_all(self) -> None:
        for pid, needle in self.extra_pids.items():
            if _cmdline_has(pid, needle):
                _kill(pid)
        for proc in reversed(self.procs):
            self.kill(proc)
        self.procs.clear()
        self.extra_pids.clear()


class BenchNode:
    """One node (pymesh or BEAM) that takes commands on stdin, one per line."""

    def __init__(
        self, reaper: Reaper, cmd: Sequence[str], env: dict[str, str] | None, label: str, short: str
    ) -> None:
        self.reaper = reaper
        self.short = short  # the node's short name: it is in the command line of its OS process
        self.label = label
        self.proc = reaper.popen(cmd, env=env, stdin=True)
        self._buf = b""
        self.name = ""
        self.os_pid = self.proc.pid

    def wait_ready(self, timeout: float) -> None:
        line = self.readline(timeout, prefixes=("ready",))
        _, self.name, pid = line.split()
        self.os_pid = int(pid)
        self.reaper.extra_pids[self.os_pid] = self.short

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise NodeFailed(f"{self.label}: cannot send {command!r}: {e}") from None

    def readline(self, timeout: float, prefixes: tuple[str, ...] = ("ok", "error")) -> str:
        """The next stdout line starting with one of ``prefixes`` (others, such
        as a BEAM's log lines, are skipped); :class:`NodeFailed` on ``error``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                word = line.split(" ", 1)[0]
                if word == "error":
                    raise NodeFailed(f"{self.label}: {line}")
                if word in prefixes:
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise NodeFailed(f"{self.label}: no answer within {timeout:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise NodeFailed(f"{self.label}: exited (status {self.proc.poll()})")
                self._buf += chunk

    def ask(self, command: str, timeout: float = 300.0) -> dict[str, str]:
        """Run ``command``; return the ``key=value`` pairs of its answer."""
        self.send(command)
        return parse(self.readline(timeout))

    def quit(self) -> None:
        """Ask the node to stop; :meth:`reap` then makes sure it did."""
        with contextlib.suppress(NodeFailed):
            self.send("quit")

    def reap(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the node to exit, then kill it by pid."""
        self.reaper.kill(self.proc, grace=grace)
        if _cmdline_has(self.os_pid, self.short):
            _kill(self.os_pid)


def stop_nodes(nodes: Sequence[BenchNode], grace: float = 3.0) -> None:
    """Ask every node to quit at once, give them ``grace`` seconds together, kill the rest."""
    for node in nodes:
        node.quit()
    deadline = time.monotonic() + grace
    for node in nodes:
        node.reap(max(0.0, deadline - time.monotonic()))


def parse(line: str) -> dict[str, str]:
    """``"ok a=1 b=2"`` -> ``{"a": "1", "b": "2"}``."""
    return dict(word.split("=", 1) for word in line.split()[1:] if "=" in word)
