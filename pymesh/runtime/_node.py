"""The distributed node: naming, listening, connecting, and routing to peers.

:func:`start` turns this OS process's runtime into a named node — one per OS
process, like a BEAM VM. It listens on a TCP port, registers the name with the
port mapper (Erlang's ``epmd`` or pymesh's own, started as a daemon when none
answers), and from then on the :class:`Distribution` object routes every
message, link, monitor and exit signal that crosses to another node.

Connections are made on demand (``send`` to a remote pid connects), are
transitive by default (connecting to B connects to every visible node B knows),
and end with a ``nodedown`` carrying the reason: ``connection_closed``,
``net_tick_timeout``, ``disconnect``, ``protocol_error``. Two nodes dialing each
other at the same moment end with exactly one connection: the dial of the node
whose name sorts greater wins, as the BEAM decides.

The :class:`Node` class gathers the user-facing calls under the names Elixir
users know: ``Node.connect``, ``Node.list``, ``Node.monitor``, ...
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Literal

from .._errors import ConfigError, EncodeError, NodeError, NotAlive, RemoteProtocolError, SpawnError
from ..wire import _terms
from ..wire._control import (
    DEMONITOR,
    DISCONNECT,
    DOWN,
    EXIT,
    EXIT2,
    LINK,
    MONITOR,
    NODES,
    REG_SEND,
    SEND,
    SERVICE,
    SPAWN_REPLY,
    SPAWN_REQUEST,
    UNLINK,
)
from ..wire._frames import DEFAULT_MAX_FRAME
from ..wire._protocol import FLAG_HIDDEN, Connected, PeerNamed, Refused, Role, brief
from ..wire._terms import DecodeLimits
from ..wire._types import NO_NODE, Pid, Ref
from . import _epmd
from . import _process as P
from . import _rpc
from . import _trace
from ._loop import tune_gc
from ._connection import DEFAULT_BUSY_LIMIT, Channel, Connection, ConnectionStats, flush_at, high_water
from ._cookie import resolve_cookie
from ._guard import DEFAULT_MAX_FAILURES, DEFAULT_MAX_PENDING, HandshakeGuard
from ._tls import SSLContexts, TLSConfig, TlsChannel, contexts

__all__ = ["Distribution", "Node", "start", "stop", "current_distribution", "start_hooks"]

log = logging.getLogger("pymesh.dist")

NodeEventHook = Callable[[str, str, dict[str, Any]], None]


def _hostnames() -> set[str]:
    short = socket.gethostname().split(".")[0]
    return {short, socket.gethostname(), socket.getfqdn(), "localhost"}


def full_node_name(name: str, longnames: bool = False) -> str:
    """``node1`` -> ``node1@<short host>``; a name with ``@`` is kept as given."""
    if "@" in name:
        local, _, host = name.partition("@")
        if not local or not host or "@" in host:
            raise NodeError(f"invalid node name {name!r}: expected name@host")
        return name
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise NodeError(f"invalid node name {name!r}: letters, digits, '_' and '-' only")
    host = socket.getfqdn() if longnames else socket.gethostname().split(".")[0]
    return f"{name}@{host}"


class Distribution:
    """The state of a started node. Created by :func:`start`; one per runtime."""

    def __init__(
        self,
        name: str,
        cookie: str,
        *,
        hidden: bool,
        connect_all: bool,
        tick_time: float,
        epmd_port: int,
        max_frame: int,
        handshake_timeout: float,
        tls: SSLContexts | None = None,
        busy_limit: int = DEFAULT_BUSY_LIMIT,
        decode_limits: DecodeLimits | None = None,
        guard: HandshakeGuard | None = None,
    ) -> None:
        self.name = name
        self.cookie = cookie
        self.hidden = hidden
        self.flags = FLAG_HIDDEN if hidden else 0
        self.connect_all = connect_all
        self.tick_time = tick_time
        self.epmd_port = epmd_port
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.tls = tls  # (server, client) SSL contexts; None for plain TCP
        self.channel_class: type[Channel] = TlsChannel if tls is not None else Channel
        self.busy_limit = busy_limit
        self.busy_high_water = high_water(busy_limit)
        self.flush_at = flush_at(busy_limit)
        self.decode_limits = decode_limits or DecodeLimits.for_frame(max_frame)
        self.guard = guard or HandshakeGuard()
        self.creation = 0
        self.port = 0
        self.conns: dict[str, Connection] = {}
        self.channels: set[Channel] = set()
        self.known: set[str] = {name}
        self.node_monitors: dict[Pid, tuple[bool, str]] = {}  # pid -> (reasons, node_type)
        self.node_watches: dict[str, list[Pid]] = {}
        self.services: dict[str, Callable[[str, Any], None]] = {}
        self.hooks: list[NodeEventHook] = []
        self.spawn_waiters: dict[Ref, asyncio.Future[Pid]] = {}
        self.down_reasons: dict[str, str] = {}
        # who may connect (both directions); None allows every authenticated node
        self.policy: Callable[[str], bool] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._registration: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._local_hosts = _hostnames()
        self._handlers = {
            SEND: self._on_send,
            REG_SEND: self._on_reg_send,
            LINK: self._on_link,
            UNLINK: self._on_unlink,
            EXIT: self._on_exit,
            EXIT2: self._on_exit2,
            MONITOR: self._on_monitor,
            DEMONITOR: self._on_demonitor,
            DOWN: self._on_down,
            SPAWN_REQUEST: self._on_spawn_request,
            SPAWN_REPLY: self._on_spawn_reply,
            NODES: self._on_nodes,
            DISCONNECT: self._on_disconnect,
            SERVICE: self._on_service,
        }

    # --- life cycle ----------------------------------------------------------------

    async def listen(self, port: int, host: str) -> None:
        self._server = await self._loop.create_server(
            lambda: self.channel_class(self, Role.ACCEPTOR), host=host, port=port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def start_ticker(self) -> None:
        self._ticker = self._loop.create_task(self._tick_loop())

    async def close(self) -> None:
        """Graceful shutdown: peers see nodedown ``disconnect``."""
        if self._ticker is not None:
            self._ticker.cancel()
        for node in list(self.conns):
            self.disconnect(node)
        if self._server is not None:
            self._server.close()
        for ch in list(self.channels):
            ch.close()
        # let the goodbyes reach the wire before the sockets go
        deadline = self._loop.time() + 1.0
        while self.channels and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        for ch in list(self.channels):
            if ch.transport is not None:
                ch.transport.abort()
        if self._registration is not None:
            await self._registration.close()

    # --- routing out (the RemoteOps the process layer calls) -----------------------

    def conn_for(self, node: str) -> Connection:
        """The connection to ``node``, starting one if there is none.

        A pid of an earlier incarnation of *this* node names no one; its
        messages go to a connection that never comes up and are dropped.
        """
        conn = self.conns.get(node)
        if conn is None:
            if node == self.name:
                return _NOWHERE
            conn = self._dial(node)
        return conn

    def send(self, to: Pid, msg: Any) -> None:
        conn = self.conns.get(to.node) or self.conn_for(to.node)
        conn.out(_terms.encode_send(to, msg))  # encode([SEND, to, msg]), without the list

    def reg_send(self, frm: Pid | None, name: str, node: str, msg: Any) -> None:
        conn = self.conns.get(node) or self.conn_for(node)
        conn.out(_terms.encode([REG_SEND, frm, name, msg]))

    def _control(self, node: str, msg: list[Any], urgent: bool = True) -> None:
        try:
            data = _terms.encode(msg)
        except EncodeError as e:
            # an exit reason or similar that cannot travel: send its repr instead
            msg[-1] = repr(msg[-1])
            log.debug("control message reason not encodable (%s); sending its repr", e)
            data = _terms.encode(msg)
        self.conn_for(node).out(data, urgent)

    def link(self, frm: Pid, to: Pid) -> None:
        self._control(to.node, [LINK, frm, to])

    def unlink(self, frm: Pid, to: Pid) -> None:
        self._control(to.node, [UNLINK, frm, to])

    def exit_signal(self, frm: Pid, to: Pid, reason: Any, linked: bool) -> None:
        if to.node in self.conns or not linked:
            self._control(to.node, [EXIT if linked else EXIT2, frm, to, reason])

    def monitor(self, frm: Pid, to: Pid | str, node: str, ref: Ref) -> None:
        self._control(node, [MONITOR, frm, to, ref])

    def demonitor(self, frm: Pid, to: Pid | str, node: str, ref: Ref) -> None:
        if node in self.conns:
            # nobody waits for it: it leaves with whatever is sent next, or at
            # the end of this loop iteration (a call's demonitor then travels
            # with the next call's request, in one write)
            self._control(node, [DEMONITOR, frm, to, ref], urgent=False)

    def down(self, watcher: Pid, ref: Ref, obj: Any, reason: Any) -> None:
        if watcher.node in self.conns:
            self._control(watcher.node, [DOWN, obj, watcher, ref, reason])

    def cork(self, node: str) -> Channel | None:
        """Hold back the write of what is sent to ``node`` next (normally the
        first message on an idle connection is written at once) until the
        channel returned is flushed, which writes it with anything else
        pending — at the latest at the end of this loop iteration. None when
        no connection is up. Used by ``call`` so that the monitor and the
        request (and the previous call's demonitor) leave in one write."""
        conn = self.conns.get(node)
        ch = conn.channel if conn is not None else None
        if ch is None:
            return None
        if not ch.flush_scheduled:
            ch.flush_scheduled = True
            ch._loop.call_soon(ch.flush)
        return ch

    def busy(self, node: str) -> int:
        """The bytes queued for ``node`` when its connection is busy, else 0."""
        conn = self.conns.get(node)
        if conn is None or not conn.busy:
            return 0
        return max(conn.backlog, 1)

    async def wait_not_busy(self, node: str) -> None:
        """Return once the connection to ``node`` is not busy (or is gone)."""
        conn = self.conns.get(node)
        if conn is not None:
            await conn.wait_drained()

    def send_service(self, node: str, service: str, payload: Any) -> None:
        """Send ``payload`` to the ``service`` handler on ``node`` (connecting on demand)."""
        self.conn_for(node).out(_terms.encode([SERVICE, service, payload]))

    # --- connecting ----------------------------------------------------------------

    def _new_connection(self, node: str) -> Connection:
        conn = Connection(node, self.busy_limit)
        conn.dispatch = self._dispatcher(conn)
        return conn

    def _dial(self, node: str) -> Connection:
        if node == self.name:
            raise NodeError(f"{node} is this node")
        conn = self._new_connection(node)
        conn.dialing = True
        self.conns[node] = conn
        self.known.add(node)
        self._loop.create_task(self._dial_task(conn))
        return conn

    async def _dial_task(self, conn: Connection) -> None:
        node = conn.node
        try:
            short, _, host = node.partition("@")
            if not short or not host:
                raise NodeError(f"invalid node name {node!r}")
            if self.policy is not None and not self.policy(node):
                raise NodeError(f"the connection policy refuses {node}")
            addr = "127.0.0.1" if host in self._local_hosts else host
            entry = await _epmd.port_please(short, host=addr, epmd_port=self.epmd_port)
            if entry is None:
                raise NodeError(f"no node {short!r} registered on {host}")
            if not conn.dialing or self.conns.get(node) is not conn:
                return  # a simultaneous incoming connection won meanwhile
            _, ch = await self._loop.create_connection(
                lambda: self.channel_class(self, Role.INITIATOR, node), addr, entry.port
            )
            if not conn.dialing or self.conns.get(node) is not conn:
                ch.close()
                return
            # from here the attempt channel stands for the dial: when it is lost
            # or refused, _connect_failed must see no dial still in progress
            conn.attempt, conn.dialing = ch, False
        except Exception as e:
            conn.dialing = False
            if not conn.up:
                log.info("node=%s: connection failed: %s", node, e)
                self._connect_failed(conn, "connection_setup_failed")

    def _connect_failed(self, conn: Connection, reason: str) -> None:
        if conn.up or conn.attempt is not None or conn.dialing or conn.incoming is not None:
            return
        if self.conns.get(conn.node) is not conn:
            # a stale attempt (say the timer of a lost simultaneous dial) whose connection
            # came and went meanwhile: that loss was reported when it happened, and the
            # connection in self.conns now, if any, speaks for the node
            return
        del self.conns[conn.node]
        conn.queued.clear()
        conn.queued_bytes = 0
        conn.resolve_waiters(False)
        conn.wake_drained()
        self.down_reasons[conn.node] = reason
        self._node_lost(conn.node, reason, hidden=False, was_up=False)

    async def connect(self, node: str, timeout: float | None = None) -> bool:
        if node == self.name:
            return True
        conn = self.conns.get(node)
        if conn is not None and conn.up:
            return True
        if conn is None:
            try:
                conn = self._dial(node)
            except NodeError:
                return False
        fut = self._loop.create_future()
        conn.waiters.append(fut)
        try:
            return await asyncio.wait_for(fut, timeout or self.handshake_timeout + 5.0)
        except asyncio.TimeoutError:
            return False

    def disconnect(self, node: str) -> bool:
        conn = self.conns.get(node)
        if conn is None or conn.channel is None:
            return False
        ch = conn.channel
        ch.close_reason = "disconnect"
        try:
            ch.proto.send_control([DISCONNECT, "disconnect"])
        except EncodeError:  # pragma: no cover - a constant always encodes
            pass
        ch.close()
        return True

    # --- channel callbacks ------------------------------------------------------

    def admit(self, ch: Channel) -> bool:
        """Whether an accepted connection may handshake (see :mod:`._guard`)."""
        verdict = self.guard.admit(ch.host or "?", self._loop.time())
        if verdict.ok:
            ch.pending = True
            return True
        if verdict.warn:
            log.warning("node=? conn=%s refused at once: %s", ch.address, verdict.reason)
        return False

    def channel_opened(self, ch: Channel) -> None:
        self.channels.add(ch)

    def decide(self, ch: Channel, ev: PeerNamed) -> str:
        """The acceptor's status for a peer that announced itself."""
        name = ev.name
        if name == self.name:
            return "not_allowed"
        if self.policy is not None and not self.policy(name):
            log.warning("node=%s conn=%s: refused by the connection policy", name, ch.address)
            return "not_allowed"
        conn = self.conns.get(name)
        if conn is None:
            # Record the pending accept, so that a send or dial of ours meanwhile
            # waits for this handshake instead of racing it with a second one.
            conn = self._new_connection(name)
            conn.incoming = ch
            self.conns[name] = conn
            self.known.add(name)
            return "ok"
        if conn.up:
            return "alive"
        if conn.dialing or conn.attempt is not None:
            if name > self.name:
                # their dial wins: drop ours, keep the queued messages for theirs
                conn.dialing = False
                if conn.attempt is not None:
                    attempt, conn.attempt = conn.attempt, None
                    attempt.close_reason = "simultaneous"
                    attempt.close()
                conn.incoming = ch
                return "ok_simultaneous"
            return "nok"
        if conn.incoming is not None and conn.incoming is not ch:
            # a second accept from the same peer: the first one is stale
            stale, conn.incoming = conn.incoming, None
            stale.close_reason = "simultaneous"
            stale.close()
        conn.incoming = ch
        return "ok"

    def channel_refused(self, ch: Channel, ev: Refused) -> None:
        node = ch.peer
        conn = self.conns.get(node) if node else None
        if conn is None or conn.attempt is not ch:
            return
        conn.attempt = None
        if ev.status == "nok":
            # the peer's own dial to us wins; give it the handshake time to arrive
            self._loop.call_later(self.handshake_timeout, self._connect_failed, conn, "connection_setup_failed")
            return
        log.warning("node=%s: connection refused (%s)", node, ev.reason)
        self._connect_failed(conn, "connection_setup_failed")

    def channel_up(self, ch: Channel, ev: Connected) -> None:
        node = ev.name
        conn = self.conns.get(node)
        if conn is not None and conn.up and conn.channel is not ch:
            # the peer restarted (or lost its side): the old connection is stale
            old = conn.channel
            assert old is not None
            old.close_reason = "connection_closed"
            old.conn = None
            self._conn_down(conn, "connection_closed")
            old.close()
            conn = None
        if conn is None:
            conn = self._new_connection(node)
            self.conns[node] = conn
        if conn.attempt is not None and conn.attempt is not ch:
            conn.attempt.close_reason = "simultaneous"
            conn.attempt.close()
        conn.attempt = None
        conn.incoming = None
        conn.dialing = False
        conn.channel = ch
        conn.hidden = self.hidden or ev.hidden
        conn.creation = ev.creation
        conn.since = time.time()
        ch.conn = conn
        self.known.add(node)
        self.down_reasons.pop(node, None)
        for data in conn.queued:
            ch.proto.send_encoded(data)
        conn.queued.clear()
        conn.queued_bytes = 0
        if ch.pending:
            ch.pending = False
            self.guard.settled()
        info = {"node_type": "hidden" if conn.hidden else "visible"}
        log.info("node=%s conn=%s: up (%s)", node, ch.address, info["node_type"])
        self._notify_monitors("nodeup", node, info, conn.hidden)
        for hook in list(self.hooks):
            try:
                hook("nodeup", node, info)
            except Exception:
                log.exception("nodeup hook %r failed", hook)
        if not conn.hidden:
            peers = [n for n, c in self.conns.items() if c.up and not c.hidden and n != node]
            ch.proto.send_control([NODES, peers])
        ch.schedule_flush()
        conn.resolve_waiters(True)
        conn.wake_drained()

    def channel_lost(self, ch: Channel, reason: str, exc: Exception | None) -> None:
        self.channels.discard(ch)
        if ch.pending:
            ch.pending = False
            self.guard.settled()
            if reason in ("protocol_error", "handshake_timeout") and ch.host is not None:
                if self.guard.failed(ch.host, self._loop.time()):
                    log.warning(
                        "node=%s conn=%s: too many failed handshakes from %s; refusing it for a while",
                        ch.peer or "?",
                        ch.address,
                        ch.host,
                    )
        conn = ch.conn
        if conn is not None and conn.channel is ch:
            self._conn_down(conn, reason)
            return
        node = ch.peer
        conn = self.conns.get(node) if node else None
        if conn is not None and conn.incoming is ch:
            conn.incoming = None
            log.info("node=%s: incoming handshake lost (%s)", node, exc or reason)
            self._connect_failed(conn, "connection_setup_failed")
            return
        if conn is not None and conn.attempt is ch:
            conn.attempt = None
            if exc is not None or reason not in ("simultaneous",) and not reason.startswith("refused"):
                log.info("node=%s: connection attempt lost (%s)", node, exc or reason)
                self._connect_failed(conn, "connection_setup_failed")

    def _conn_down(self, conn: Connection, reason: str) -> None:
        node = conn.node
        if self.conns.get(node) is conn:
            del self.conns[node]
        conn.channel = None
        conn.wake_drained()
        self.down_reasons[node] = reason
        log.info("node=%s: down (%s)", node, reason)
        self._node_lost(node, reason, conn.hidden, was_up=True)

    def _node_lost(self, node: str, reason: str, hidden: bool, was_up: bool) -> None:
        P.node_down(node)
        for ref, fut in list(self.spawn_waiters.items()):
            if ref.node == self.name and getattr(fut, "_pymesh_node", None) == node and not fut.done():
                fut.set_exception(SpawnError(f"spawn on {node} failed: noconnection"))
        for pid in self.node_watches.pop(node, []):
            P.send(pid, ("nodedown", node))
        if was_up:
            self._notify_monitors("nodedown", node, {"node_type": "hidden" if hidden else "visible", "nodedown_reason": reason}, hidden)
            for hook in list(self.hooks):
                try:
                    hook("nodedown", node, {"nodedown_reason": reason, "node_type": "hidden" if hidden else "visible"})
                except Exception:
                    log.exception("nodedown hook %r failed", hook)

    def _notify_monitors(self, what: str, node: str, info: dict[str, Any], hidden: bool) -> None:
        for pid, (reasons, node_type) in list(self.node_monitors.items()):
            if P._local_live(pid) is None:
                del self.node_monitors[pid]
                continue
            if hidden and node_type == "visible" or not hidden and node_type == "hidden":
                continue
            P.send(pid, (what, node, info) if reasons else (what, node))

    # --- heartbeats ----------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.tick_time / 4
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for conn in list(self.conns.values()):
                ch = conn.channel
                if ch is None:
                    continue
                if now - ch.last_recv > self.tick_time:
                    ch.fail("net_tick_timeout", f"no data for {now - ch.last_recv:.1f}s (tick_time {self.tick_time}s)")
                    continue
                if not ch.wrote_since_tick:
                    ch.tick()
                ch.wrote_since_tick = False
                ch.proto.trim()  # a receive buffer grown for a burst goes back to its first size

    # --- routing in: one handler per control op ---------------------------------

    def _dispatcher(self, conn: Connection) -> Callable[[list[Any], Channel], None]:
        handlers = self._handlers
        procs = P.rt.procs
        names = P.rt.names
        deliver = P.deliver
        rt = P.rt

        def dispatch(msgs: list[Any], ch: Channel) -> None:
            try:
                for m in msgs:
                    op = m[0]
                    if op == SEND:
                        to = m[1]
                        if type(to) is not Pid:
                            raise RemoteProtocolError(f"SEND to a non-pid {brief(to)}")
                        proc = procs.get(to.id)
                        if proc is not None and to.creation == rt.creation and to.node == rt.node:
                            if proc.waiter is None and not proc.max_mailbox:
                                proc.mailbox.append(m[2])  # deliver() with nothing to wake or check
                            else:
                                deliver(proc, m[2])
                    elif op == REG_SEND:
                        proc = names.get(m[2])
                        if proc is not None:
                            deliver(proc, m[3])
                    else:
                        handlers[op](conn, m)
            except RemoteProtocolError as e:
                ch.fail("protocol_error", str(e))
            except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as e:
                ch.fail("protocol_error", f"malformed control message: {type(e).__name__}: {brief(str(e))}")

        return dispatch

    def _on_send(self, conn: Connection, m: list[Any]) -> None:  # pragma: no cover - inlined
        P.send(m[1], m[2])

    def _on_reg_send(self, conn: Connection, m: list[Any]) -> None:  # pragma: no cover - inlined
        proc = P.rt.names.get(m[2])
        if proc is not None:
            P.deliver(proc, m[3])

    @staticmethod
    def _pids(*values: Any) -> None:
        for v in values:
            if type(v) is not Pid:
                raise RemoteProtocolError(f"expected a pid, got {brief(v)}")

    def _on_link(self, conn: Connection, m: list[Any]) -> None:
        _, frm, to = m
        self._pids(frm, to)
        if not P.link_from_remote(frm, to):
            self._control(conn.node, [EXIT, to, frm, "noproc"])

    def _on_unlink(self, conn: Connection, m: list[Any]) -> None:
        _, frm, to = m
        self._pids(frm, to)
        P.unlink_from_remote(frm, to)

    def _on_exit(self, conn: Connection, m: list[Any]) -> None:
        _, frm, to, reason = m
        self._pids(frm, to)
        P.signal_exit(to, frm, reason, True)

    def _on_exit2(self, conn: Connection, m: list[Any]) -> None:
        _, frm, to, reason = m
        self._pids(frm, to)
        P.signal_exit(to, frm, reason, False)

    def _on_monitor(self, conn: Connection, m: list[Any]) -> None:
        _, frm, to, ref = m
        self._pids(frm)
        if type(ref) is not Ref or type(to) not in (Pid, str):
            raise RemoteProtocolError("MONITOR with a bad target or ref")
        dead = P.monitor_from_remote(frm, to, ref)
        if dead is not None:
            self._control(conn.node, [DOWN, dead, frm, ref, "noproc"])

    def _on_demonitor(self, conn: Connection, m: list[Any]) -> None:
        _, frm, to, ref = m
        P.demonitor_from_remote(to, ref)

    def _on_down(self, conn: Connection, m: list[Any]) -> None:
        _, obj, watcher, ref, reason = m
        self._pids(watcher)
        if type(ref) is not Ref:
            raise RemoteProtocolError("DOWN with a bad ref")
        if type(obj) is list:
            obj = tuple(obj)
        P.signal_down(watcher, ref, obj, reason)

    def _on_nodes(self, conn: Connection, m: list[Any]) -> None:
        nodes = m[1]
        if type(nodes) is not list:
            raise RemoteProtocolError("NODES without a list")
        if self.hidden or conn.hidden or not self.connect_all:
            return
        for node in nodes:
            if type(node) is str and node != self.name and node not in self.conns:
                try:
                    self._dial(node)
                except NodeError:
                    pass

    def _on_disconnect(self, conn: Connection, m: list[Any]) -> None:
        if conn.channel is not None:
            conn.channel.close_reason = "disconnect"
            conn.channel.close()

    def _on_service(self, conn: Connection, m: list[Any]) -> None:
        _, service, payload = m
        handler = self.services.get(service)
        if handler is None:
            log.debug("node=%s: message for unknown service %r dropped", conn.node, service)
            return
        try:
            handler(conn.node, payload)
        except RemoteProtocolError:
            raise
        except Exception:
            log.exception("service %r failed on a message from %s", service, conn.node)

    def _on_spawn_request(self, conn: Connection, m: list[Any]) -> None:
        _, ref, frm, target, args, opts = m
        self._pids(frm)
        if type(ref) is not Ref or type(target) is not str or type(args) is not list or type(opts) is not dict:
            raise RemoteProtocolError("malformed SPAWN_REQUEST")
        try:
            fn = resolve_function(target)
            pid = P.spawn(fn, *args)
            if opts.get("link"):
                P.link_from_remote(frm, pid)
        except Exception as e:
            self._control(conn.node, [SPAWN_REPLY, ref, frm, False, f"{type(e).__name__}: {e}"])
            return
        self._control(conn.node, [SPAWN_REPLY, ref, frm, True, pid])

    def _on_spawn_reply(self, conn: Connection, m: list[Any]) -> None:
        _, ref, to, ok, result = m
        fut = self.spawn_waiters.pop(ref, None)
        if fut is None or fut.done():
            return
        if ok and type(result) is Pid:
            fut.set_result(result)
        else:
            fut.set_exception(SpawnError(f"spawn on {conn.node} failed: {result}"))

    async def spawn_remote(self, node: str, target: str, args: tuple[Any, ...], link: bool, timeout: float) -> Pid:
        me = P.current()
        ref = P.make_ref()
        fut: asyncio.Future[Pid] = self._loop.create_future()
        fut._pymesh_node = node  # type: ignore[attr-defined]
        self.spawn_waiters[ref] = fut
        try:
            self._control(node, [SPAWN_REQUEST, ref, me.pid, target, list(args), {"link": link}])
            pid = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise SpawnError(f"spawn on {node} timed out after {timeout}s") from None
        finally:
            self.spawn_waiters.pop(ref, None)
        if link:
            if me.links is None:
                me.links = set()
            me.links.add(pid)
        return pid

    # --- introspection -------------------------------------------------------------

    def statistics(self) -> list[ConnectionStats]:
        return [c.stats() for c in self.conns.values()]


class _Nowhere(Connection):
    """A sink for messages addressed to a dead incarnation of this node."""

    def out(self, data: bytes) -> None:
        pass


_NOWHERE = _Nowhere("nowhere")


def resolve_function(path: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` (or ``module:Class.method``).

    Raises ``ValueError`` naming the path when it is malformed, not importable,
    or not an async callable.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{path!r} is not 'module:function'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{path!r} is not callable")
    return obj


# --- the module-level node -------------------------------------------------------------

_dist: Distribution | None = None

#: Called with the new :class:`Distribution` each time this runtime becomes a
#: node, once it is fully set up and before it has served any peer. Upper
#: layers (global names, process groups) install their ``services`` handlers
#: and node-event ``hooks`` here, so the runtime never imports them.
start_hooks: list[Callable[[Distribution], None]] = []


def current_distribution() -> Distribution:
    """The running :class:`Distribution`; :class:`NotAlive` when not started."""
    if _dist is None:
        raise NotAlive("this node is not alive: start it with pymesh.start(name) or Node.start(name)")
    return _dist


def _listen_host(full_name: str) -> str:
    host = full_name.partition("@")[2]
    if host in _hostnames():
        try:
            addr = socket.gethostbyname(host)
        except OSError:
            addr = "127.0.0.1"
        if addr.startswith("127."):
            return "127.0.0.1"
    return "0.0.0.0"


async def start(
    name: str,
    *,
    cookie: str | None = None,
    hidden: bool = False,
    port: int = 0,
    epmd_port: int | None = None,
    longnames: bool = False,
    tick_time: float = 15.0,
    connect_all: bool = True,
    max_frame: int = DEFAULT_MAX_FRAME,
    handshake_timeout: float = 7.0,
    listen_host: str | None = None,
    epmd_extra: bytes = b"",
    tls: TLSConfig | None = None,
    ssl_context: ssl.SSLContext | SSLContexts | None = None,
    dist_buf_busy_limit: int = DEFAULT_BUSY_LIMIT,
    max_pending_handshakes: int | None = DEFAULT_MAX_PENDING,
    max_handshake_failures: int | None = DEFAULT_MAX_FAILURES,
    decode_limits: DecodeLimits | None = None,
) -> str:
    """Make this OS process a named node; return its full name (``name@host``).

    A short ``name`` gets this machine's short host name; a name with ``@`` is
    used as given. The cookie comes from ``cookie``, else ``$PYMESH_COOKIE``,
    else the cookie file (see :mod:`pymesh.runtime._cookie`). ``tick_time``
    (≥ 1 s) is how long a silent peer is tolerated before nodedown
    ``net_tick_timeout``.

    Reliability and security options:

    * ``tls=TLSConfig(cert, key, ca)`` — mutual TLS for every distribution
      connection (see :mod:`pymesh.runtime._tls`); ``ssl_context=`` takes ready
      contexts instead (one ``PROTOCOL_TLS`` context, or ``(server, client)``).
    * ``dist_buf_busy_limit`` — bytes queued for one peer (8 MiB by default)
      beyond which its connection is busy: ``send_wait`` waits, ``send_nowait``
      raises :class:`WouldBlock`, plain ``send`` queues on and is counted.
    * ``max_pending_handshakes`` (64) — incoming connections handshaking at
      once; ``max_handshake_failures`` (20) — failed handshakes per minute one
      address may make before it is refused at once. None turns either off.
    * ``decode_limits`` — the largest strings, bytes, lists and dicts a peer's
      terms may hold (:meth:`DecodeLimits.for_frame` of ``max_frame`` by default).

    Raises :class:`NameTaken` when the port mapper already has the name,
    :class:`EpmdError` when no port mapper can be reached or started,
    :class:`ConfigError` for unusable TLS files or limits, and
    :class:`NodeError` when this runtime is already a node.
    """
    global _dist
    if _dist is not None:
        raise NodeError(f"this runtime is already node {_dist.name}; Node.stop() first")
    if tick_time < 1.0:
        raise NodeError(f"tick_time must be at least 1 s, not {tick_time}")
    if dist_buf_busy_limit < 1:
        raise ConfigError(f"dist_buf_busy_limit must be a positive number of bytes, not {dist_buf_busy_limit}")
    full = full_node_name(name, longnames)
    ssl_contexts = contexts(tls, ssl_context)
    tune_gc()
    epmd_port = _epmd.default_epmd_port(epmd_port)
    dist = Distribution(
        full,
        resolve_cookie(cookie),
        hidden=hidden,
        connect_all=connect_all,
        tick_time=tick_time,
        epmd_port=epmd_port,
        max_frame=max_frame,
        handshake_timeout=handshake_timeout,
        tls=ssl_contexts,
        busy_limit=dist_buf_busy_limit,
        decode_limits=decode_limits,
        guard=HandshakeGuard(max_pending_handshakes, max_handshake_failures),
    )
    await dist.listen(port, listen_host or _listen_host(full))
    try:
        await _epmd.ensure_running(epmd_port=epmd_port)
        reg = await _epmd.register(
            full.partition("@")[0], dist.port, hidden=hidden, extra=epmd_extra, epmd_port=epmd_port
        )
    except BaseException:
        await dist.close()
        raise
    dist._registration = reg
    _rpc.install(dist.services)
    _trace.install(dist.services)
    dist.creation = reg.creation
    rt = P.rt
    rt.node, rt.creation = full, reg.creation
    _terms.set_local_node(full, reg.creation)
    _rename_local_processes(full, reg.creation)
    rt.dist = dist
    _dist = dist
    for hook in tuple(start_hooks):  # a copy: a hook may add hooks
        try:
            hook(dist)
        except Exception:
            log.exception("start hook %r failed", hook)
    dist.start_ticker()
    log.info("node %s up on port %d (creation %d%s)", full, dist.port, reg.creation, ", TLS" if dist.tls else "")
    return full


def _rename_local_processes(node: str, creation: int) -> None:
    """Existing processes take the node's name, as local pids do on the BEAM."""
    for proc in P.rt.procs.values():
        proc.pid = Pid(node, proc.pid.id, creation)


async def stop() -> None:
    """Leave the cluster gracefully and become an undistributed runtime again."""
    global _dist
    dist = _dist
    if dist is None:
        return
    _dist = None
    await dist.close()
    rt = P.rt
    rt.dist = None
    rt.node, rt.creation = NO_NODE, 0
    _terms.set_local_node(None)
    _rename_local_processes(NO_NODE, 0)


NodeKind = Literal["visible", "hidden", "connected", "this", "known"]


class Node:
    """The BEAM's ``Node`` module: who we are and whom we are connected to."""

    start = staticmethod(start)
    stop = staticmethod(stop)

    @staticmethod
    def self() -> str:
        """This node's name (``"nonode@nohost"`` when not started)."""
        return P.rt.node

    @staticmethod
    def alive() -> bool:
        """True when this runtime is a named, distributed node."""
        return _dist is not None

    @staticmethod
    async def connect(node: str, timeout: float | None = None) -> bool:
        """Connect to ``node``; True when connected (idempotent), False when not.

        Raises :class:`NotAlive` when this node is not started.
        """
        return await current_distribution().connect(node, timeout)

    @staticmethod
    def disconnect(node: str) -> bool:
        """Close the connection to ``node`` (both see nodedown ``disconnect``)."""
        return current_distribution().disconnect(node)

    @staticmethod
    def list(kind: NodeKind | list[NodeKind] = "visible") -> list[str]:
        """Connected nodes: ``visible`` (default), ``hidden``, ``connected``
        (both), ``this``, ``known`` (every node ever seen, this one included).
        A list of kinds returns their union."""
        if isinstance(kind, list):
            out: list[str] = []
            for k in kind:
                out += [n for n in Node.list(k) if n not in out]
            return out
        dist = _dist
        if kind == "this":
            return [P.rt.node]
        if dist is None:
            return [P.rt.node] if kind == "known" else []
        if kind == "known":
            return sorted(dist.known)
        up = [(n, c) for n, c in dist.conns.items() if c.up]
        if kind == "visible":
            return sorted(n for n, c in up if not c.hidden)
        if kind == "hidden":
            return sorted(n for n, c in up if c.hidden)
        if kind == "connected":
            return sorted(n for n, _ in up)
        raise ValueError(f"unknown node kind {kind!r}: visible, hidden, connected, this or known")

    @staticmethod
    async def ping(node: str, timeout: float | None = None) -> str:
        """``"pong"`` if ``node`` can be connected to, else ``"pang"``."""
        if _dist is None:
            return "pang"
        return "pong" if await _dist.connect(node, timeout) else "pang"

    @staticmethod
    def monitor(node: str, flag: bool = True) -> None:
        """The caller gets ``("nodedown", node)`` once when ``node`` goes down.

        As Erlang's ``monitor_node/2``: a node that is not connected is dialed,
        and the message comes as soon as that fails. ``flag=False`` removes
        one such monitor. Monitoring this node itself never fires.
        """
        dist = current_distribution()
        me = P.self()
        if node == dist.name:
            return
        watchers = dist.node_watches.setdefault(node, [])
        if not flag:
            if me in watchers:
                watchers.remove(me)
            return
        watchers.append(me)
        if node not in dist.conns:
            dist.conn_for(node)  # a failed dial delivers the nodedown

    @staticmethod
    def monitor_nodes(flag: bool = True, *, reasons: bool = False, node_type: str = "visible") -> None:
        """Subscribe the caller to ``("nodeup", node)`` / ``("nodedown", node)``.

        With ``reasons=True`` messages are ``("nodeup", node, info)`` and
        ``("nodedown", node, info)``; ``info["nodedown_reason"]`` is one of
        ``connection_closed``, ``net_tick_timeout``, ``disconnect``,
        ``protocol_error``. ``node_type`` is ``visible``, ``hidden`` or ``all``.
        """
        dist = current_distribution()
        me = P.self()
        if node_type not in ("visible", "hidden", "all"):
            raise ValueError(f"node_type must be visible, hidden or all, not {node_type!r}")
        if flag:
            dist.node_monitors[me] = (reasons, node_type)
        else:
            dist.node_monitors.pop(me, None)

    @staticmethod
    async def spawn(node: str, target: str, *args: Any, link: bool = False, timeout: float = 10.0) -> Pid:
        """Start ``"module:function"`` (an async function) on ``node`` with ``args``.

        Returns the new process's pid. Raises :class:`SpawnError` when the node
        is unreachable or refuses (unknown function, not async).
        """
        if node == P.rt.node or node == NO_NODE:
            return (P.spawn_link if link else P.spawn)(resolve_function(target), *args)
        dist = current_distribution()
        if not await dist.connect(node):
            raise SpawnError(f"spawn on {node} failed: noconnection")
        return await dist.spawn_remote(node, target, args, link, timeout)

    @staticmethod
    def get_cookie() -> str:
        """This node's cookie (``NotAlive`` when not started)."""
        return current_distribution().cookie

    @staticmethod
    def set_cookie(cookie: str) -> None:
        """Use ``cookie`` for connections made from now on."""
        if not cookie:
            raise ValueError("a cookie must be a non-empty string")
        current_distribution().cookie = cookie

    @staticmethod
    def set_policy(allow: Callable[[str], bool] | None) -> None:
        """Decide which nodes may be connected to, in both directions.

        ``allow(node_name) -> bool`` is asked before every dial and for every
        incoming handshake (a refused peer gets status ``not_allowed``); None
        allows every node that knows the cookie. Connections the new policy
        refuses are cut at once, without a goodbye — their peers see nodedown
        ``connection_closed``, exactly as if the network had failed. That makes
        it the tool for allow-lists and for real partitions in tests.
        """
        dist = current_distribution()
        dist.policy = allow
        if allow is None:
            return
        for node, conn in list(dist.conns.items()):
            if not allow(node):
                for ch in (conn.channel, conn.attempt):
                    if ch is not None:
                        ch.fail("connection_closed", "refused by the connection policy")
                conn.dialing = False

    @staticmethod
    def statistics(node: str | None = None) -> Any:
        """Connection statistics: one :class:`ConnectionStats` for ``node``, or
        a list for every connection."""
        dist = current_distribution()
        if node is None:
            return dist.statistics()
        conn = dist.conns.get(node)
        return conn.stats() if conn is not None else None

    @staticmethod
    def down_reason(node: str) -> str | None:
        """Why the connection to ``node`` last ended (None if it never did)."""
        return _dist.down_reasons.get(node) if _dist is not None else None

    @staticmethod
    def port() -> int:
        """The TCP port this node listens on for distribution."""
        return current_distribution().port

    @staticmethod
    def epmd_port() -> int:
        """The port of the port mapper this node registered with."""
        return current_distribution().epmd_port
