"""The asyncio adapter over :class:`~pymesh.wire.DistProtocol`: it only pumps bytes.

Two classes, two jobs:

* :class:`Channel` is one TCP connection: it feeds received bytes to its protocol
  object, hands the resulting events to the :class:`~pymesh.runtime._node.Distribution`,
  and writes what the protocol has to send. Writes are *coalesced*: a send only
  appends encoded bytes to the protocol's batch and schedules one flush for the
  end of the current event-loop iteration, so a burst of sends leaves in one
  frame and one ``write`` syscall. A batch that grows past ``FLUSH_AT`` is
  flushed at once so the peer can start working while we still produce.
* :class:`Connection` is the logical link to one peer node. It outlives the
  channels that try to establish it (an outgoing dial, an incoming accept, both
  at once when two nodes connect simultaneously) and queues messages sent while
  it is still connecting, as the BEAM does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import RemoteProtocolError
from ..wire._protocol import Connected, DistProtocol, PeerNamed, Refused, Role, State

if TYPE_CHECKING:
    from ._node import Distribution
    from ._trace import Tracer

__all__ = ["Channel", "Connection", "ConnectionStats", "FLUSH_AT"]

log = logging.getLogger("pymesh.dist")

#: Flush a batch immediately once it holds this many bytes.
FLUSH_AT = 256 * 1024

#: The message tracer while someone watches (see :mod:`pymesh.runtime._trace`),
#: else None: the hot paths below pay one ``is not None`` check for it.
tracer: Tracer | None = None


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """A snapshot of one node connection (``Node.statistics(node)``)."""

    node: str
    state: str  # "up" | "connecting"
    hidden: bool
    address: str | None
    since: float | None  # wall-clock time the connection came up
    msgs_in: int
    msgs_out: int
    bytes_in: int
    bytes_out: int
    queued_bytes: int  # encoded, not yet written to the socket
    write_buffer: int  # written to the transport, not yet on the wire


class Channel(asyncio.Protocol):
    """One TCP connection, handshaking or carrying a node connection."""

    def __init__(self, dist: Distribution, role: Role, peer: str | None = None) -> None:
        self.dist = dist
        self.proto = DistProtocol(
            role,
            dist.name,
            dist.cookie,
            flags=dist.flags,
            creation=dist.creation,
            peer=peer,
            max_frame=dist.max_frame,
        )
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None  # set once the handshake completes
        self.peer = peer
        self.address: str | None = None
        self.close_reason: str | None = None
        self.flush_scheduled = False
        self.last_recv = 0.0
        self.wrote_since_tick = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.msgs_in = 0
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"<Channel {self.proto.role.value} peer={self.peer} state={self.proto.state.value}>"

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peername = transport.get_extra_info("peername")
        self.address = f"{peername[0]}:{peername[1]}" if peername else None
        self.last_recv = self._loop.time()
        self._handshake_timer = self._loop.call_later(self.dist.handshake_timeout, self._handshake_expired)
        self.dist.channel_opened(self)
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.last_recv = self._loop.time()
        self.bytes_in += len(data)
        try:
            events = self.proto.receive_data(data)
        except RemoteProtocolError as e:
            self.fail("protocol_error", f"{type(e).__name__}: {e}")
            return
        conn = self.conn
        if conn is not None and events:
            self.msgs_in += len(events)
            if tracer is not None:
                tracer.incoming(conn.node, events)
            conn.dispatch(events, self)
            return
        for i, event in enumerate(events):
            if type(event) is list:
                # the handshake completed inside this chunk: the rest are control messages
                assert self.conn is not None
                self.msgs_in += len(events) - i
                if tracer is not None:
                    tracer.incoming(self.conn.node, events[i:])
                self.conn.dispatch(events[i:], self)
                return
            self._handshake_event(event)
            if self.close_reason is not None:
                return
        self.flush()  # handshake steps that complete no event still answer the peer

    def eof_received(self) -> bool:
        try:
            self.proto.receive_eof()
        except RemoteProtocolError as e:
            log.warning("node=%s conn=%s: %s", self.peer, self.address, e)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        reason = self.close_reason or "connection_closed"
        self.dist.channel_lost(self, reason, exc)

    # --- handshake --------------------------------------------------------------------

    def _handshake_event(self, event: Any) -> None:
        if type(event) is PeerNamed:
            self.peer = event.name
            status = self.dist.decide(self, event)
            refused = self.proto.decide(status, "" if status != "not_allowed" else "refused by policy")
            self.flush()
            if refused is not None:
                self._refused(refused)
        elif type(event) is Connected:
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
            self.dist.channel_up(self, event)
        elif type(event) is Refused:
            self._refused(event)
        self.flush()

    def _refused(self, event: Refused) -> None:
        self.close_reason = f"refused:{event.status}"
        self.dist.channel_refused(self, event)
        self.close()

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.proto.state is not State.CONNECTED:
            self.fail("handshake_timeout", f"handshake not finished within {self.dist.handshake_timeout}s")

    # --- output -----------------------------------------------------------------------

    def schedule_flush(self) -> None:
        if self.proto.pending_bytes >= FLUSH_AT:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        data = self.proto.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.bytes_out += len(data)
            self.wrote_since_tick = True

    def tick(self) -> None:
        self.proto.send_tick()
        self.flush()

    # --- closing ------------------------------------------------------------------------

    def fail(self, reason: str, detail: str) -> None:
        """Close because of ``reason``; log ``detail`` naming the peer."""
        if self.close_reason is None:
            self.close_reason = reason
            log.warning("node=%s conn=%s closed: %s", self.peer or "?", self.address, detail)
        if self.transport is not None:
            self.transport.abort()

    def close(self, reason: str | None = None) -> None:
        """Close gracefully: flush what is queued, then close."""
        if reason is not None and self.close_reason is None:
            self.close_reason = reason
        if self.transport is not None and not self.transport.is_closing():
            self.flush()
            self.transport.close()

    @property
    def write_buffer(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0


class Connection:
    """The logical connection to one peer node (see the module docstring)."""

    __slots__ = (
        "node",
        "channel",
        "attempt",
        "incoming",
        "dialing",
        "queued",
        "queued_bytes",
        "waiters",
        "hidden",
        "creation",
        "since",
        "msgs_out",
        "dispatch",
        "__weakref__",
    )

    def __init__(self, node: str) -> None:
        self.node = node
        self.channel: Channel | None = None  # the channel carrying traffic, once up
        self.attempt: Channel | None = None  # our outgoing channel while handshaking
        self.incoming: Channel | None = None  # the peer's channel while handshaking
        self.dialing = False
        self.queued: list[bytes] = []
        self.queued_bytes = 0
        self.waiters: list[asyncio.Future[bool]] = []
        self.hidden = False
        self.creation = 0
        self.since: float | None = None
        self.msgs_out = 0
        self.dispatch: Any = None  # set by the Distribution when the connection comes up

    @property
    def up(self) -> bool:
        return self.channel is not None

    def out(self, data: bytes) -> None:
        """Queue one encoded control message for this node."""
        ch = self.channel
        self.msgs_out += 1
        if tracer is not None:
            tracer.outgoing(self.node, data)
        if ch is not None:
            ch.proto.send_encoded(data)
            if ch.flush_scheduled:
                if ch.proto.pending_bytes >= FLUSH_AT:
                    ch.flush()
                    ch.flush_scheduled = True
                return
            # An idle connection writes at once (no added latency); sends that
            # follow in the same loop iteration batch up behind a scheduled flush.
            ch.flush()
            ch.flush_scheduled = True
            ch._loop.call_soon(ch.flush)
        else:
            self.queued.append(data)
            self.queued_bytes += len(data)

    def stats(self) -> ConnectionStats:
        ch = self.channel
        return ConnectionStats(
            node=self.node,
            state="up" if ch is not None else "connecting",
            hidden=self.hidden,
            address=ch.address if ch is not None else None,
            since=self.since,
            msgs_in=ch.msgs_in if ch is not None else 0,
            msgs_out=self.msgs_out,
            bytes_in=ch.bytes_in if ch is not None else 0,
            bytes_out=ch.bytes_out if ch is not None else 0,
            queued_bytes=(ch.proto.pending_bytes if ch is not None else self.queued_bytes),
            write_buffer=ch.write_buffer if ch is not None else 0,
        )

    def resolve_waiters(self, ok: bool) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(ok)


def wall_clock() -> float:
    return time.time()
