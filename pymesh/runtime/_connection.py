"""The asyncio adapter over :class:`~pymesh.wire.DistProtocol`: it only pumps bytes.

Two classes, two jobs:

* :class:`Channel` is one TCP connection: it feeds received bytes to its protocol
  object, hands the resulting events to the :class:`~pymesh.runtime._node.Distribution`,
  and writes what the protocol has to send. Writes are *coalesced*: a send only
  appends encoded bytes to the protocol's batch and schedules one flush for the
  end of the current event-loop iteration, so a burst of sends leaves in one
  frame and one ``write`` syscall. A batch that grows past :func:`flush_at`
  (1 MiB, less for a small busy limit) is flushed at once so the peer can start
  working while we still produce.
* :class:`Connection` is the logical link to one peer node. It outlives the
  channels that try to establish it (an outgoing dial, an incoming accept, both
  at once when two nodes connect simultaneously) and queues messages sent while
  it is still connecting, as the BEAM does.

Backpressure, as the BEAM's ``dist_buf_busy_limit``: a connection is *busy*
while more than its limit of bytes waits to leave — written to the transport
but not yet taken by the kernel (the transport tells us with
``pause_writing``/``resume_writing``), plus the coalescing batch (at most
:func:`flush_at` of the limit), or, while connecting, queued for the handshake to finish.
``send_wait`` waits while a connection is busy, ``send_nowait`` raises
:class:`~pymesh.WouldBlock`; plain ``send`` cannot wait (it is not async), so
it queues on and is counted in ``ConnectionStats.busy_sends``, with a warning
at most every 10 s per connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import RemoteProtocolError
from ..wire._protocol import Connected, DistProtocol, PeerNamed, Refused, Role, State, refusal
from ._loop import kick

if TYPE_CHECKING:
    from ._node import Distribution
    from ._trace import Tracer

__all__ = ["Channel", "Connection", "ConnectionStats", "FLUSH_AT", "DEFAULT_BUSY_LIMIT", "flush_at", "high_water"]

log = logging.getLogger("pymesh.dist")

#: Flush a batch immediately once it holds this many bytes (or a quarter of the
#: connection's busy limit, if that is less: see :func:`flush_at`).
FLUSH_AT = 1024 * 1024

#: Bytes queued for one peer beyond which its connection is busy, unless
#: ``start(dist_buf_busy_limit=...)`` says otherwise. Erlang's ``+zdbbl`` defaults
#: to 1 MiB; a pymesh flush alone may carry 1 MiB (FLUSH_AT), hence more headroom.
DEFAULT_BUSY_LIMIT = 8 * 1024 * 1024

_BUSY_WARN_EVERY = 10.0  # seconds between two "busy" warnings of one connection


def flush_at(limit: int) -> int:
    """The batch size that is written at once, for a connection whose busy limit
    is ``limit``: :data:`FLUSH_AT`, or a quarter of a smaller limit (a batch
    should not hold most of what may wait to leave)."""
    return max(min(FLUSH_AT, limit // 4), 1)


def high_water(limit: int) -> int:
    """The transport write-buffer size that makes a connection with ``limit`` busy:
    the limit less the largest coalescing batch that can come on top of it."""
    return max(limit - flush_at(limit), limit // 2, 1)

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
    busy: bool = False  # over busy_limit: send_wait waits, send_nowait raises
    busy_limit: int = DEFAULT_BUSY_LIMIT
    busy_sends: int = 0  # plain sends queued while busy


class Channel(asyncio.BufferedProtocol):
    """One TCP connection, handshaking or carrying a node connection.

    A ``BufferedProtocol``: the transport reads straight into the protocol's
    receive buffer (:meth:`DistProtocol.get_buffer`) and the frames are
    decoded where they lie, so received bytes are copied only into the terms
    built from them."""

    plain = True  # not TLS (see pymesh.runtime._tls.TlsChannel)

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
            limits=dist.decode_limits,
        )
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None  # set once the handshake completes
        self.peer = peer
        self.address: str | None = None
        self.host: str | None = None  # the peer's IP address
        self.pending = False  # an accepted handshake the guard counts
        self.paused = False  # the transport holds more than the busy limit
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
        self.host = str(peername[0]) if peername else None
        if self.proto.role is Role.ACCEPTOR and not self.dist.admit(self):
            self.close_reason = "refused"
            transport.abort()  # type: ignore[attr-defined]
            return
        high = self.dist.busy_high_water
        transport.set_write_buffer_limits(high=high, low=high // 2)  # type: ignore[attr-defined]
        self.last_recv = self._loop.time()
        self._handshake_timer = self._loop.call_later(self.dist.handshake_timeout, self._handshake_expired)
        self.dist.channel_opened(self)
        self.flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.proto.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._received(nbytes, self.proto.buffer_updated, nbytes)

    def data_received(self, data: bytes) -> None:
        """Bytes from a layer that hands over bytes objects (TLS)."""
        self._received(len(data), self.proto.receive_data, data)

    def _received(self, nbytes: int, feed: Callable[[Any], list[Any]], arg: Any) -> None:
        self.last_recv = self._loop.time()
        kick()  # keep polling a while: the next message is likely close behind (see _loop)
        first = self.bytes_in == 0
        self.bytes_in += nbytes
        try:
            events = feed(arg)
        except RemoteProtocolError as e:
            if self.plain and first and self.proto.role is Role.ACCEPTOR and self.proto.received_head(1) == b"\x16":
                self._refuse_tls()  # a TLS ClientHello broke the framing
            else:
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

    def pause_writing(self) -> None:
        self.paused = True
        log.debug("node=%s conn=%s: busy (%d bytes buffered)", self.peer, self.address, self.write_buffer)

    def resume_writing(self) -> None:
        self.paused = False
        conn = self.conn
        if conn is not None and conn.drain_waiters:
            conn.wake_drained()

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

    def _refuse_tls(self) -> None:
        # A TLS node dialing a plain one: its ClientHello broke the framing. Answer
        # in plain pymesh, which the TLS channel recognises as "not TLS".
        self.close_reason = "protocol_error"
        log.warning(
            "node=? conn=%s closed: refused a TLS connection: this node does not use TLS distribution", self.address
        )
        if self.transport is not None:
            self.transport.write(refusal("this node does not use TLS distribution"))
            self.transport.close()

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.proto.state is not State.CONNECTED:
            self.fail("handshake_timeout", f"handshake not finished within {self.dist.handshake_timeout}s")

    # --- output -----------------------------------------------------------------------

    def schedule_flush(self) -> None:
        if self.proto.pending_bytes >= self.dist.flush_at:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        buffers = self.proto.buffers_to_send()
        if buffers and self.transport is not None and not self.transport.is_closing():
            if len(buffers) == 1:
                data = buffers[0]
                self.transport.write(data)
                self.bytes_out += len(data)
            else:
                self.transport.writelines(buffers)
                self.bytes_out += sum(map(len, buffers))
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
        "busy_limit",
        "flush_at",
        "busy_sends",
        "drain_waiters",
        "_busy_warned",
        "__weakref__",
    )

    def __init__(self, node: str, busy_limit: int = DEFAULT_BUSY_LIMIT) -> None:
        self.node = node
        self.channel: Channel | None = None  # the channel carrying traffic, once up
        self.attempt: Channel | None = None  # our outgoing channel while handshaking
        self.incoming: Channel | None = None  # the peer's channel while handshaking
        self.dialing = False
        self.queued: list[bytes | list[bytes]] = []
        self.queued_bytes = 0
        self.waiters: list[asyncio.Future[bool]] = []
        self.hidden = False
        self.creation = 0
        self.since: float | None = None
        self.msgs_out = 0
        self.dispatch: Any = None  # set by the Distribution when the connection comes up
        self.busy_limit = busy_limit
        self.flush_at = flush_at(busy_limit)
        self.busy_sends = 0
        self.drain_waiters: list[asyncio.Future[None]] = []
        self._busy_warned = -_BUSY_WARN_EVERY

    @property
    def up(self) -> bool:
        return self.channel is not None

    @property
    def busy(self) -> bool:
        """More than ``busy_limit`` bytes wait to leave (see the module doc)."""
        ch = self.channel
        if ch is None:
            return self.queued_bytes >= self.busy_limit
        return ch.paused

    @property
    def backlog(self) -> int:
        """Bytes waiting to leave: the batch and the transport's buffer, or the
        queue of a connection still being set up."""
        ch = self.channel
        if ch is None:
            return self.queued_bytes
        return ch.proto.pending_bytes + ch.write_buffer

    async def wait_drained(self) -> None:
        """Return once this connection is not busy, or is gone."""
        while self.busy and (self.channel is not None or self.dialing or self.attempt or self.incoming):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.drain_waiters.append(fut)
            await fut

    def wake_drained(self) -> None:
        """Wake every ``wait_drained`` (each checks again whether it may go on)."""
        waiters, self.drain_waiters = self.drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _busy_send(self) -> None:
        self.busy_sends += 1
        now = time.monotonic()
        if now - self._busy_warned >= _BUSY_WARN_EVERY:
            self._busy_warned = now
            log.warning(
                "node=%s: connection busy (%d bytes queued, limit %d): send() queues on regardless; "
                "send_wait() would wait, send_nowait() refuse (%d sends queued while busy so far)",
                self.node,
                self.backlog,
                self.busy_limit,
                self.busy_sends,
            )

    def out(self, data: bytes | list[bytes], urgent: bool = True) -> None:
        """Queue one encoded control message for this node.

        On an idle connection an ``urgent`` message is written at once; the
        others (and anything sent while a write is pending) leave together at
        the end of the loop iteration."""
        ch = self.channel
        self.msgs_out += 1
        if tracer is not None:
            tracer.outgoing(self.node, data)
        if ch is not None:
            if ch.paused:
                self._busy_send()
            pending = ch.proto.send_encoded(data)
            if ch.flush_scheduled:
                if pending >= self.flush_at:
                    ch.flush()
                    ch.flush_scheduled = True
                return
            # An idle connection writes at once (no added latency); sends that
            # follow in the same loop iteration batch up behind a scheduled flush.
            if urgent:
                ch.flush()
            ch.flush_scheduled = True
            ch._loop.call_soon(ch.flush)
        else:
            if self.queued_bytes >= self.busy_limit:
                self._busy_send()
            self.queued.append(data)
            self.queued_bytes += len(data) if type(data) is bytes else sum(map(len, data))

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
            busy=self.busy,
            busy_limit=self.busy_limit,
            busy_sends=self.busy_sends,
        )

    def resolve_waiters(self, ok: bool) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(ok)


def wall_clock() -> float:
    return time.time()
