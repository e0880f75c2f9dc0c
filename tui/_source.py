"""Where the pane's snapshots come from: this node, or another one over the wire.

A source is three calls — ``poll()``, ``process_detail(pid)`` and
``close()``, all async — so the pane does not care whether the state is in its
own process (:class:`LocalSource`, for ``observer()`` in the shell) or on a
node it reached as a hidden node (:class:`RemoteSource`, for ``pymesh tui
NODE``). Tests add a fake one with fixed data.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from pymesh import Node, RpcError, rpc_call

from . import _snapshot
from ._model import Snapshot

__all__ = ["Source", "LocalSource", "RemoteSource"]


class Source(Protocol):
    """What the pane asks of a source."""

    #: the observed node's name, as the header shows it
    node: str
    #: how the pane reaches it, e.g. ``"local"`` or ``"hidden node tui42@vm"``
    via: str

    async def poll(self) -> Snapshot: ...
    async def process_detail(self, pid: str) -> dict[str, Any] | None: ...
    async def close(self) -> None: ...


class LocalSource:
    """The node this pane runs in (it must be started)."""

    def __init__(self) -> None:
        self.node = Node.self()
        self.via = "local"

    async def poll(self) -> Snapshot:
        return _snapshot.snapshot("local")

    async def process_detail(self, pid: str) -> dict[str, Any] | None:
        return _snapshot.process_detail(pid)

    async def close(self) -> None:
        _snapshot.close_session("local")


class RemoteSource:
    """Another node, read with ``rpc_call`` from this (already started) node.

    When the node cannot be reached, :meth:`poll` returns a snapshot with
    ``alive=False`` and the reason (``Node.down_reason``), and tries again
    on the next poll: the pane stays up and picks the node up when it returns.
    """

    def __init__(self, node: str, *, timeout: float = 5.0, connect_timeout: float = 2.0) -> None:
        self.node = node
        self.via = f"hidden node {Node.self()}"
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._was_up = False
        self._lost: str | None = None  # why the node went down, while it stays down

    def _down(self, reason: str) -> Snapshot:
        return Snapshot(node=self.node, time=time.time(), alive=False, reason=reason)

    async def poll(self) -> Snapshot:
        if self.node not in Node.list("connected"):
            if self._was_up and self._lost is None:
                # why it went away, before reconnect attempts overwrite the reason
                self._lost = Node.down_reason(self.node) or "unreachable"
            if not await Node.connect(self.node, timeout=self.connect_timeout):
                return self._down(self._lost or Node.down_reason(self.node) or "unreachable")
        try:
            term = await rpc_call(self.node, "pymesh.tui._snapshot:poll", Node.self(), timeout=self.timeout)
        except RpcError as e:
            reason = e.reason if isinstance(e.reason, str) else str(e.reason)
            if reason == "noconnection":
                reason = Node.down_reason(self.node) or reason
                self._lost = self._lost or reason
            return self._down(reason)
        try:
            snap = Snapshot.from_term(term)
        except ValueError as e:
            return self._down(f"bad snapshot: {e}")
        self._was_up, self._lost = True, None
        return snap

    async def process_detail(self, pid: str) -> dict[str, Any] | None:
        try:
            result = await rpc_call(self.node, "pymesh.tui._snapshot:process_detail", pid, timeout=self.timeout)
        except RpcError:
            return None
        return result if isinstance(result, dict) else None

    async def close(self) -> None:
        if self.node in Node.list("connected"):
            try:
                await rpc_call(self.node, "pymesh.tui._snapshot:close_session", Node.self(), timeout=2.0)
            except RpcError:
                pass
