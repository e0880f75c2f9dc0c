"""Peer nodes: more local nodes as child OS processes, as OTP's ``:peer`` starts them.

``await peers.start("node2")`` runs ``python -m pymesh run --name node2@<our host>``
with this node's cookie (in the child's environment, not on its command line)
and port mapper, waits for its ``node ... ready`` line, and connects to it. Peers
run in their own session (the terminal's Ctrl-C is not theirs) and stop when the
shell stops: gracefully with SIGTERM, killed by pid if they linger; if the shell
dies without stopping them they see their stdin close and leave by themselves.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import sys
from dataclasses import dataclass, field

import pymesh
from pymesh import Node

__all__ = ["Peer", "Peers"]

_READY = re.compile(rb"^node (\S+) ready on port (\d+)")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


@dataclass
class Peer:
    """A started peer: its full node name and OS process."""

    node: str
    process: asyncio.subprocess.Process
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))
    drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class Peers:
    """The peers of this node, by full node name."""

    def __init__(self) -> None:
        self.running: dict[str, Peer] = {}

    def _full(self, name: str) -> str:
        if "@" in name:
            return name
        host = Node.self().partition("@")[2]
        return f"{name}@{host}"

    async def start(self, name: str, *args: str) -> str:
        """Start peer ``name`` (``node2`` or ``node2@host``); return its node name.

        Extra ``args`` go to ``pymesh run``. Raises :class:`pymesh.NotAlive`
        when this node is not started, and :class:`pymesh.NodeError` when the
        peer does not come up or cannot be connected.
        """
        if not Node.alive():
            raise pymesh.NotAlive("peer() needs a named node: Node.start(\"name\") first")
        full = self._full(name)
        if full in self.running and self.running[full].process.returncode is None:
            raise pymesh.NodeError(f"peer {full} is running already (pid {self.running[full].pid})")
        env = dict(os.environ, PYMESH_COOKIE=Node.get_cookie())
        command = [
            sys.executable, "-m", "pymesh", "run", "--name", full,
            "--epmd-port", str(Node.epmd_port()), "--exit-with-parent", *args,
        ]
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        peer = Peer(full, proc)
        self.running[full] = peer
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._wait_ready(peer)
        except BaseException as e:
            await self._terminate(peer)
            self.running.pop(full, None)
            if isinstance(e, TimeoutError):
                raise pymesh.NodeError(f"peer {full} did not start in {START_TIMEOUT:g}s{self._tail(peer)}") from None
            raise
        peer.drain = asyncio.get_running_loop().create_task(self._drain(peer))
        if not await Node.connect(full):
            raise pymesh.NodeError(f"peer {full} started (pid {peer.pid}) but cannot be connected")
        return full

    async def _wait_ready(self, peer: Peer) -> None:
        assert peer.process.stdout is not None
        while True:
            line = await peer.process.stdout.readline()
            if not line:
                await peer.process.wait()
                raise pymesh.NodeError(
                    f"peer {peer.node} exited with status {peer.process.returncode}{self._tail(peer)}"
                )
            peer.output.append(line.decode(errors="replace").rstrip())
            m = _READY.match(line)
            if m:
                peer.node = m.group(1).decode()
                return

    @staticmethod
    def _tail(peer: Peer) -> str:
        lines = [x for x in peer.output if x.strip()][-5:]
        return (":\n  " + "\n  ".join(lines)) if lines else ""

    @staticmethod
    async def _drain(peer: Peer) -> None:
        assert peer.process.stdout is not None
        while line := await peer.process.stdout.readline():
            peer.output.append(line.decode(errors="replace").rstrip())

    async def stop(self, name: str) -> bool:
        """Stop peer ``name``; False when there is no such running peer."""
        peer = self.running.pop(self._full(name), None)
        if peer is None:
            return False
        await self._terminate(peer)
        return True

    async def stop_all(self) -> None:
        peers, self.running = list(self.running.values()), {}
        await asyncio.gather(*(self._terminate(p) for p in peers), return_exceptions=True)

    @staticmethod
    async def _terminate(peer: Peer) -> None:
        proc = peer.process
        if proc.returncode is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        if peer.drain is not None:
            peer.drain.cancel()

    def list(self) -> list[str]:
        return sorted(n for n, p in self.running.items() if p.process.returncode is None)
