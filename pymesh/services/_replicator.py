"""Replication of one :class:`~pymesh.services._crdt.AWLWWMap` over the nodes that run it.

The engine under :class:`~pymesh.DistributedRegistry` and
:class:`~pymesh.DistributedSupervisor`: each of those owns one
:class:`Replicator`, identified cluster-wide by ``(kind, name)``. It speaks a
small protocol over the runtime's ``service`` control message (one service,
``pymesh.crdt``, shared by every replicator on the node):

``hello``  "I run ``(kind, name)``" — sent to every visible node at start and
           to every node that comes up. A node that runs the same replicator
           answers with a ``hello`` of its own (flagged as an answer), and
           each side then sends the other its **full state**: that is how a
           joining node, or the two halves of a healed partition, catch up.
``delta``  a batch of local writes (a delta group), sent to the live members
           at most once every ``sync_interval`` seconds, or at once when
           ``max_batch`` writes are waiting; it may ask for an ``ack``. A
           write after a quiet spell leaves at the end of the current loop
           iteration (with whatever else that iteration wrote) instead of
           waiting out a whole interval: batching costs latency only when
           writes come faster than one interval apart.
``bye``    the replicator stopped; its node is no longer a member.

Members are the nodes that said hello, while they stay connected: a nodedown
(the runtime's node hooks) takes a member out at once. ``members="auto"``
accepts any visible node; a list accepts only the nodes named in it.

Only writes are replicated; what a write *means* (who may remove what, which
entries a reader should see while their node is away) is the owner's
business — see the registry and the supervisor.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Literal

from ..runtime import _process as P
from ..runtime._node import Distribution, current_distribution
from ..wire import _terms
from ..wire._control import SERVICE as _SERVICE_OP
from ._crdt import AWLWWMap, Dot

__all__ = ["Replicator", "SERVICE", "Members"]

log = logging.getLogger("pymesh.replicator")

#: The runtime service name every replicator's messages travel under.
SERVICE = "pymesh.crdt"

Members = Literal["auto"] | Iterable[str]

_replicators: dict[tuple[str, Any], Replicator] = {}


class Replicator:
    """One replicated map plus its membership; see the module docstring.

    ``on_change(keys)`` runs after remote data changed the dots of ``keys``;
    ``on_member(node, up)`` after ``node``'s full state was merged (``up``),
    or after it left. Both run
    synchronously in the event loop, never inside a local write.
    """

    def __init__(
        self,
        kind: str,
        name: Any,
        *,
        members: Members = "auto",
        sync_interval: float = 0.005,
        max_batch: int = 512,
        rank: Callable[[Any], Any] | None = None,
        on_change: Callable[[set[Hashable]], None] | None = None,
        on_member: Callable[[str, bool], None] | None = None,
    ) -> None:
        if sync_interval < 0:
            raise ValueError(f"sync_interval must be >= 0, not {sync_interval}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        if members != "auto":
            if isinstance(members, str):
                raise ValueError(f"members must be 'auto' or a list of node names, not {members!r}")
            members = frozenset(members)
        self.kind = kind
        self.name = name
        self.key = (kind, name)
        self.members_spec: Literal["auto"] | frozenset[str] = members
        self.sync_interval = sync_interval
        self.max_batch = max_batch
        self.on_change = on_change or (lambda keys: None)
        self.on_member = on_member or (lambda node, up: None)
        self.node = ""
        self.creation = 0
        self.map = AWLWWMap(None, rank=rank)
        #: member node -> its creation, for every member now connected (deltas go there)
        self.live: dict[str, int] = {}
        #: the live members whose full state has been merged: their entries are current
        self.synced: dict[str, int] = {}
        #: every member ever seen (minus those that said bye): the quorum's denominator
        self.known: set[str] = set()
        self._buffer = AWLWWMap(compacting=False)
        self._last_flush = float("-inf")  # loop time of the last delta sent
        self._buffered = 0
        self._flush_handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._seq = 0
        self._acks: dict[int, tuple[set[str], asyncio.Future[None]]] = {}
        self._dist: Distribution | None = None
        self.deltas_out = 0
        self.deltas_in = 0
        self.states_in = 0

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Join the cluster: announce this replica to every visible node.

        Raises :class:`NotAlive` when this node is not distributed, and
        ``ValueError`` when a replicator of the same kind and name runs here.
        """
        dist = current_distribution()
        if self.key in _replicators:
            raise ValueError(f"a {self.kind} named {self.name!r} is already running on this node")
        self._dist = dist
        self.node = dist.name
        self.creation = P.rt.creation
        self.map.replica = f"{dist.name}/{secrets.token_hex(4)}"
        self.known.add(dist.name)
        _install(dist)
        _replicators[self.key] = self
        from ..runtime._node import Node

        for node in Node.list("visible"):
            self._hello(node, answer=False)

    def stop(self) -> None:
        """Flush what is pending, say bye to the members, and leave."""
        if _replicators.get(self.key) is not self:
            return
        self.flush()
        for node in list(self.live):
            self._send(node, ("bye", self.kind, self.name))
        del _replicators[self.key]
        self.live.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for _, fut in self._acks.values():
            if not fut.done():
                fut.set_result(None)
        self._acks.clear()

    @property
    def running(self) -> bool:
        return _replicators.get(self.key) is self

    # --- local writes -------------------------------------------------------------------------

    def add(self, key: Hashable, value: Any, replace: Iterable[Dot] | None = None) -> None:
        """Write ``key`` locally and queue the delta for the members."""
        self._queue(self.map.add(key, value, replace))

    def remove(self, key: Hashable, dots: Iterable[Dot] | None = None) -> None:
        """Remove ``key`` (or some of its dots) locally and queue the delta."""
        delta = self.map.remove(key, dots)
        if not delta.is_empty():
            self._queue(delta)

    def _queue(self, delta: AWLWWMap) -> None:
        self._buffer.merge(delta)
        self._buffered += 1
        if self._buffered >= self.max_batch:
            self.flush()
        elif self._flush_handle is None and self._dist is not None:
            loop = asyncio.get_running_loop()
            wait = self._last_flush + self.sync_interval - loop.time()
            if wait <= 0:  # quiet for an interval: no reason to hold this write back
                self._flush_handle = loop.call_soon(self.flush)
            else:
                self._flush_handle = loop.call_later(wait, self.flush)

    def flush(self, ack: bool = False) -> asyncio.Future[None] | None:
        """Send the pending delta group to the live members now.

        With ``ack``, return a future that completes when every member that
        was live at this moment has acknowledged it (or has gone down).
        """
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        fut: asyncio.Future[None] | None = None
        seq = 0
        if ack:
            self._seq += 1
            seq = self._seq
            fut = asyncio.get_running_loop().create_future()
            waiting = set(self.live)
            if waiting:
                self._acks[seq] = (waiting, fut)
            else:
                fut.set_result(None)
        if self._buffered == 0 and not (ack and seq in self._acks):
            return fut
        buffer, self._buffer, self._buffered = self._buffer, AWLWWMap(compacting=False), 0
        if not self.live:
            return fut
        self._last_flush = asyncio.get_running_loop().time()
        data = _terms.encode([_SERVICE_OP, SERVICE, ("delta", self.kind, self.name, buffer.to_term(), seq)])
        for node in self.live:
            self._out(node, data)
        self.deltas_out += 1
        return fut

    async def sync(self, timeout: float = 5.0) -> bool:
        """Flush now and wait until the live members acknowledged; False on timeout."""
        fut = self.flush(ack=True)
        assert fut is not None
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return False

    # --- membership ----------------------------------------------------------------------------

    def allows(self, node: str) -> bool:
        return self.members_spec == "auto" or node in self.members_spec

    def is_live(self, node: str, creation: int) -> bool:
        """True when ``node`` (of incarnation ``creation``) is this node, or a live
        member whose full state has been merged since it came up.

        Entries of other nodes are what readers should not see: their owner is
        away, or its news (removals made while it was away) has not arrived yet.
        """
        if node == self.node:
            return creation == self.creation
        return self.synced.get(node) == creation

    def _hello(self, node: str, answer: bool) -> None:
        if self.allows(node):
            self._send(node, ("hello", self.kind, self.name, self.creation, answer))

    def _member_up(self, node: str, creation: int, answer: bool) -> None:
        if not self.allows(node):
            return
        conn = self._dist.conns.get(node) if self._dist is not None else None
        if conn is None or not conn.up or conn.hidden:
            return
        fresh = self.live.get(node) != creation
        self.live[node] = creation
        self.known.add(node)
        if fresh and node in self.synced:
            self._member_down(node, forget=False)  # a new incarnation: the old one is gone
            self.live[node] = creation
        if not answer:
            self._hello(node, answer=True)
        if fresh or not answer:
            self._send(node, ("state", self.kind, self.name, self.map.to_term()))

    def _member_down(self, node: str, forget: bool) -> None:
        if forget:
            self.known.discard(node)
        if self.live.pop(node, None) is None:
            return
        was_synced = self.synced.pop(node, None) is not None
        for seq, (waiting, fut) in list(self._acks.items()):
            waiting.discard(node)
            if not waiting:
                del self._acks[seq]
                if not fut.done():
                    fut.set_result(None)
        if was_synced:
            self.on_member(node, False)

    # --- incoming ------------------------------------------------------------------------------

    def _handle(self, node: str, op: str, args: tuple[Any, ...]) -> None:
        if op == "delta":
            term, seq = args
            if node not in self.live:
                return
            self.deltas_in += 1
            changed = self.map.merge(AWLWWMap.from_term(term))
            if seq:
                self._send(node, ("ack", self.kind, self.name, seq))
            if changed:
                self.on_change(changed)
        elif op == "state":
            (term,) = args
            if node not in self.live:
                return
            self.states_in += 1
            changed = self.map.merge(AWLWWMap.from_term(term))
            newly = self.synced.get(node) != self.live[node]
            self.synced[node] = self.live[node]
            if changed:
                self.on_change(changed)
            if newly:
                self.on_member(node, True)
        elif op == "hello":
            creation, answer = args
            self._member_up(node, int(creation), bool(answer))
        elif op == "ack":
            (seq,) = args
            entry = self._acks.get(seq)
            if entry is not None:
                entry[0].discard(node)
                if not entry[0]:
                    del self._acks[seq]
                    if not entry[1].done():
                        entry[1].set_result(None)
        elif op == "bye":
            self._member_down(node, forget=True)
        else:
            raise ValueError(f"unknown replication op {op!r}")

    # --- sending -------------------------------------------------------------------------------

    def _send(self, node: str, payload: tuple[Any, ...]) -> None:
        self._out(node, _terms.encode([_SERVICE_OP, SERVICE, payload]))

    def _out(self, node: str, data: bytes) -> None:
        dist = self._dist
        if dist is None:
            return
        conn = dist.conns.get(node)
        if conn is not None and conn.up:  # never dial: a member that is away gets a full state later
            conn.out(data)

    def statistics(self) -> dict[str, Any]:
        return {
            "keys": len(self.map),
            "members": sorted(self.live),
            "pending": self._buffered,
            "deltas_out": self.deltas_out,
            "deltas_in": self.deltas_in,
            "states_in": self.states_in,
        }


# --- the node-wide service and hooks ------------------------------------------------------------


def _on_service(node: str, payload: Any) -> None:
    if type(payload) is not tuple or len(payload) < 3:
        raise ValueError("malformed replication message")
    op, kind, name = payload[0], payload[1], payload[2]
    rep = _replicators.get((kind, name))
    if rep is None:
        return  # we do not run it: a hello goes unanswered, which is the answer
    rep._handle(node, op, payload[3:])


def _on_node_event(event: str, node: str, info: dict[str, Any]) -> None:
    if info.get("node_type") == "hidden":
        return
    for rep in list(_replicators.values()):
        if event == "nodeup":
            rep._hello(node, answer=False)
        elif event == "nodedown":
            rep._member_down(node, forget=False)


def _install(dist: Distribution) -> None:
    dist.services[SERVICE] = _on_service
    if _on_node_event not in dist.hooks:
        dist.hooks.append(_on_node_event)


def running(kind: str, name: Any) -> Replicator | None:
    """The replicator of ``(kind, name)`` on this node, if it runs."""
    return _replicators.get((kind, name))
