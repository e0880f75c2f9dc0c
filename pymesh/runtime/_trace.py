"""Message tracing: a bounded ring buffer of the control messages crossing this node.

Nobody pays for tracing until someone watches. The two hot paths — outgoing
messages in :meth:`Connection.out <pymesh.runtime._connection.Connection.out>`,
incoming ones in :meth:`Channel.data_received
<pymesh.runtime._connection.Channel.data_received>` just before they are
dispatched — hold one check each, ``if tracer is not None``, on a module global
of :mod:`pymesh.runtime._connection`. :func:`watch_traffic` installs a
:class:`Tracer` there; the last watch to close removes it.

While installed, the tracer *samples*: it records at most ``budget`` messages a
second (refilled in tenths of a second) into a ring of ``capacity`` records and
only counts the rest, so a flood costs the node a counter per message, never a
decode. A record keeps what the hot path already had — the encoded bytes of an
outgoing message, the decoded term of an incoming one — and the work of
decoding, sizing and previewing happens when a reader asks
(:meth:`TrafficWatch.read`), at most ``budget`` times a second. Every read says
how many messages it left out: sampled away, evicted from the ring before the
reader came back, or beyond the reader's ``limit``.

Only messages that cross to or from another node are traced (local ``send`` is
not). A watch can ignore some peers — a remote observer ignores its own
requests and replies, which would otherwise feed on themselves.

This module also holds the ``observer`` service every started node answers:
``ping``/``pong``, which :func:`measure_rtt` uses to time a round trip to a peer
through the same connection (and queue) as its messages.
"""

from __future__ import annotations

import asyncio
import itertools
import reprlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .._errors import NotAlive
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
    OP_NAMES,
    REG_SEND,
    SEND,
    SEND_TUPLE,
    SERVICE,
    SPAWN_REPLY,
    SPAWN_REQUEST,
    UNLINK,
)
from ..wire._types import Pid
from . import _connection
from . import _process as P

__all__ = [
    "TraceEvent",
    "TraceBatch",
    "Tracer",
    "TrafficWatch",
    "watch_traffic",
    "measure_rtt",
    "install",
    "short_repr",
    "SERVICE_NAME",
]

#: The service name (a ``SERVICE`` control message) of the observer protocol.
SERVICE_NAME = "observer"

#: Records kept for readers that fall behind.
DEFAULT_CAPACITY = 4096
#: Messages recorded per second at most; the rest are counted as left out.
DEFAULT_BUDGET = 2000
#: An outgoing message larger than this is previewed from its head only.
_FULL_DECODE_LIMIT = 1 << 20
_WINDOW = 0.1


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One traced message, rendered for people.

    ``direction`` is ``"in"`` or ``"out"``; ``node`` the peer it came from or
    went to; ``kind`` the control operation (``send``, ``reg_send``, ``link``,
    ``exit``, ``monitor``, ``down``, ``service``, ...). ``frm`` and ``to`` are
    printed pids, names or service names (``""`` when the operation has none);
    ``frm_name``/``to_name`` the registered name of a local pid, if any.
    ``size`` is the encoded size in bytes (``approx`` when it was estimated);
    ``preview`` a short, printable rendering of the payload.
    """

    time: float
    direction: str
    node: str
    kind: str
    frm: str
    to: str
    size: int
    preview: str
    frm_name: str | None = None
    to_name: str | None = None
    approx: bool = False

    def as_term(self) -> tuple[Any, ...]:
        """A tuple of plain values that can cross the wire (see :meth:`from_term`)."""
        return (
            self.time, self.direction, self.node, self.kind, self.frm, self.to,
            self.size, self.preview, self.frm_name, self.to_name, self.approx,
        )

    @classmethod
    def from_term(cls, term: Iterable[Any]) -> TraceEvent:
        """Rebuild an event from :meth:`as_term`'s tuple (``ValueError`` if malformed)."""
        values = list(term)
        if len(values) != 11:
            raise ValueError(f"a trace event has 11 fields, not {len(values)}")
        return cls(*values)


@dataclass(frozen=True, slots=True)
class TraceBatch:
    """What one :meth:`TrafficWatch.read` returns: the newest events, oldest
    first, and how many messages crossed the node since the previous read
    without being in ``events``."""

    events: list[TraceEvent]
    left_out: int


class Tracer:
    """The ring buffer the hot paths feed while at least one watch is open.

    Not created directly: :func:`watch_traffic` makes and installs one.
    """

    __slots__ = ("ring", "window_budget", "room", "seq", "skipped", "ignore", "watches", "_timer", "_loop")

    def __init__(self, capacity: int, budget: int) -> None:
        self.ring: deque[tuple[float, bool, str, Any]] = deque(maxlen=capacity)
        self.window_budget = max(1, round(budget * _WINDOW))
        self.room = self.window_budget
        self.seq = 0  # records ever appended
        self.skipped = 0  # messages counted, not recorded
        self.ignore: frozenset[str] = frozenset()
        self.watches: list[TrafficWatch] = []
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(_WINDOW, self._refill)

    # --- the hot paths (called by pymesh.runtime._connection) ------------------------

    def outgoing(self, node: str, data: bytes | list[bytes]) -> None:
        if node in self.ignore:
            return
        if self.room > 0:
            if type(data) is list:  # encode_send's parts (a large payload)
                data = b"".join(data)
            self.room -= 1
            self.seq += 1
            self.ring.append((time.time(), True, node, data))
        else:
            self.skipped += 1

    def incoming(self, node: str, msgs: list[Any]) -> None:
        if node in self.ignore:
            return
        n = len(msgs)
        room = self.room
        if room <= 0:
            self.skipped += n
            return
        take = min(n, room)
        self.room = room - take
        self.skipped += n - take
        self.seq += take
        now = time.time()
        append = self.ring.append
        for i in range(take):
            append((now, False, node, msgs[i]))

    # --- housekeeping ------------------------------------------------------------------

    def _refill(self) -> None:
        self.room = self.window_budget
        self._timer = self._loop.call_later(_WINDOW, self._refill)

    def _update_ignore(self) -> None:
        ignored: set[str] = set()
        for w in self.watches:
            ignored |= w.ignore
        self.ignore = frozenset(ignored)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ring.clear()


class TrafficWatch:
    """An open watch on this node's traffic (from :func:`watch_traffic`).

    Read new events with :meth:`read`; :meth:`close` (or leaving the ``with``
    block) ends the watch, and with the last one, all tracing cost.
    """

    def __init__(self, tracer: Tracer, ignore: frozenset[str]) -> None:
        self._tracer: Tracer | None = tracer
        self.ignore = ignore
        self._seq = tracer.seq
        self._skipped = tracer.skipped

    @property
    def closed(self) -> bool:
        return self._tracer is None

    def set_ignore(self, nodes: Iterable[str]) -> None:
        """Ignore traffic to and from ``nodes`` (replacing the previous set)."""
        self.ignore = frozenset(nodes)
        if self._tracer is not None:
            self._tracer._update_ignore()

    def read(self, limit: int = 500) -> TraceBatch:
        """The events recorded since the previous read, at most the newest ``limit``.

        Raises ``RuntimeError`` on a closed watch.
        """
        t = self._tracer
        if t is None:
            raise RuntimeError("this traffic watch is closed")
        ring = t.ring
        new = t.seq - self._seq
        available = min(new, len(ring))
        take = max(0, min(available, limit))
        n = len(ring)
        records = [ring[i] for i in range(n - take, n)]
        left_out = (new - take) + (t.skipped - self._skipped)
        self._seq, self._skipped = t.seq, t.skipped
        return TraceBatch([render(r) for r in records], left_out)

    def close(self) -> None:
        """End this watch (idempotent); the last one uninstalls the tracer."""
        t, self._tracer = self._tracer, None
        if t is None:
            return
        if self in t.watches:
            t.watches.remove(self)
        t._update_ignore()
        if not t.watches and _connection.tracer is t:
            _connection.tracer = None
            t._stop()

    def __enter__(self) -> TrafficWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch_traffic(
    *, ignore: Iterable[str] = (), capacity: int = DEFAULT_CAPACITY, budget: int = DEFAULT_BUDGET
) -> TrafficWatch:
    """Start watching the messages that cross this node; return the open watch.

    The first watch installs the tracer with ``capacity`` and ``budget``
    (messages recorded per second; the rest are only counted); later watches
    share it. ``ignore`` names peers whose traffic this watch does not want
    traced. Must be called on the running event loop (``RuntimeError``
    otherwise). Cheap to hold: see the module docstring.
    """
    t = _connection.tracer
    if t is None:
        t = Tracer(capacity, budget)
        _connection.tracer = t
    watch = TrafficWatch(t, frozenset(ignore))
    t.watches.append(watch)
    t._update_ignore()
    return watch


# --- rendering ------------------------------------------------------------------------------

_repr = reprlib.Repr()
_repr.maxstring = 48
_repr.maxother = 48
_repr.maxlong = 40
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 6
_repr.maxdict = 4
_repr.maxlevel = 3
_repr.fillvalue = "…"

#: The longest preview :func:`short_repr` returns.
PREVIEW_WIDTH = 80


def short_repr(value: Any, width: int = PREVIEW_WIDTH) -> str:
    """A one-line, printable rendering of any value, at most ``width`` characters.

    Never raises: a broken ``__repr__`` gives ``<TypeName>``. Large values are
    abbreviated without being walked whole; control and non-printable
    characters are escaped.
    """
    try:
        text = _repr.repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _pid_text(value: Any) -> tuple[str, str | None]:
    """Printed form of a pid (and its local registered name) or of any other value."""
    if type(value) is Pid:
        name = None
        if P.rt.is_local(value):
            proc = P.rt.procs.get(value.id)
            if proc is not None:
                name = proc.name
        return repr(value), name
    if value is None:
        return "", None
    return short_repr(value, 40), None


def _estimate(term: Any, limit: int = _FULL_DECODE_LIMIT) -> int | None:
    """Encoded size of a small term (by encoding it), or None when it is large.

    Walks at most a few thousand nodes, so a huge term costs no more than a
    small one; None means "more than ``limit`` bytes, or too many parts".
    """
    stack = [term]
    budget, total = 5000, 0
    while stack:
        budget -= 1
        if budget < 0:
            return None
        v = stack.pop()
        t = type(v)
        if t is str or t is bytes or t is bytearray:
            total += len(v)
        elif t is list or t is tuple or t is set or t is frozenset:
            stack.extend(v)
        elif t is dict:
            stack.extend(v.keys())
            stack.extend(v.values())
        if total > limit:
            return None
    try:
        return len(_terms.encode(term))
    except Exception:
        return None


def _head(data: bytes) -> list[Any]:
    """The first fields of a large encoded control message, its payload skipped."""
    import msgpack

    unpacker = msgpack.Unpacker(ext_hook=_terms._ext_hook, strict_map_key=False, use_list=True,
                                max_buffer_size=len(data))
    unpacker.feed(data)
    n = unpacker.read_array_header()
    fields: list[Any] = []
    for i in range(n):
        if i == n - 1 and n > 2:
            unpacker.skip()
            fields.append(_Omitted(len(data)))
        else:
            fields.append(unpacker.unpack())
    return fields


class _Omitted:
    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"<{self.size:,} bytes, not decoded>"


def render(record: tuple[float, bool, str, Any]) -> TraceEvent:
    """Turn one ring record into a :class:`TraceEvent`. Never raises."""
    t, out, node, payload = record
    direction = "out" if out else "in"
    approx = False
    if out:
        size = len(payload)
        try:
            m = _terms.decode(payload) if size <= _FULL_DECODE_LIMIT else _head(payload)
        except Exception:
            return TraceEvent(t, direction, node, "?", "", "", size, f"<{size:,} undecodable bytes>")
    else:
        m = payload
        est = _estimate(m)
        if est is None:
            approx = True
            est = _FULL_DECODE_LIMIT
        size = est
    try:
        return _classify(t, direction, node, m, size, approx)
    except Exception:
        return TraceEvent(t, direction, node, "?", "", "", size, short_repr(m), approx=approx)


def _classify(t: float, direction: str, node: str, m: list[Any], size: int, approx: bool) -> TraceEvent:
    op = m[0]
    if type(op) is not int:
        return TraceEvent(t, direction, node, "?", "", "", size, short_repr(m), approx=approx)
    if op == SEND_TUPLE and len(m) >= 2:  # how a send of a tuple travels: items inline
        op, m = SEND, [SEND, m[1], tuple(m[2:])]
    kind = OP_NAMES.get(op, f"op{op}")
    frm: Any = None
    to: Any = None
    body: Any = None
    if op == SEND:
        to, body = m[1], m[2]
    elif op == REG_SEND:
        frm, to, body = m[1], m[2], m[3]
    elif op in (LINK, UNLINK):
        frm, to = m[1], m[2]
        body = ""
    elif op in (EXIT, EXIT2) or op in (MONITOR, DEMONITOR):
        frm, to, body = m[1], m[2], m[3]
    elif op == DOWN:
        frm, to, body = m[1], m[2], m[4]
    elif op == SPAWN_REQUEST:
        frm, to, body = m[2], m[3], m[4]
    elif op == SPAWN_REPLY:
        to, body = m[2], m[4]
    elif op == NODES or op == DISCONNECT:
        body = m[1]
    elif op == SERVICE:
        to, body = m[1], m[2]
    else:
        body = m[1:]
    frm_text, frm_name = _pid_text(frm)
    to_text, to_name = _pid_text(to)
    if type(to) is str:
        to_text = to
    text = "" if body == "" else short_repr(body)
    return TraceEvent(t, direction, node, kind, frm_text, to_text, size, text, frm_name, to_name, approx)


# --- the observer service: round-trip times ------------------------------------------------------

_tokens = itertools.count(1)
_pending: dict[int, asyncio.Future[float]] = {}


def install(services: dict[str, Callable[[str, Any], None]]) -> None:
    """Register the ``observer`` service handler on a started node."""
    services[SERVICE_NAME] = _on_service


def _on_service(node: str, payload: Any) -> None:
    kind, token = payload[0], payload[1]
    if kind == "ping":
        from ._node import current_distribution

        current_distribution().send_service(node, SERVICE_NAME, ("pong", token))
    elif kind == "pong":
        fut = _pending.pop(token, None)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())


async def measure_rtt(node: str, timeout: float = 2.0) -> float | None:
    """The round-trip time to ``node`` in seconds, or None.

    Sends a ping through the connection's queue and waits for the pong, so a
    busy connection shows its queueing delay. Never connects: None when
    ``node`` is not connected, does not answer within ``timeout`` (an old
    node without the ``observer`` service), or this node is not alive.
    """
    from ._node import current_distribution

    try:
        dist = current_distribution()
    except NotAlive:
        return None
    conn = dist.conns.get(node)
    if conn is None or not conn.up:
        return None
    loop = asyncio.get_running_loop()
    token = next(_tokens)
    fut: asyncio.Future[float] = loop.create_future()
    _pending[token] = fut
    t0 = time.perf_counter()
    try:
        dist.send_service(node, SERVICE_NAME, ("ping", token))
        return await asyncio.wait_for(fut, timeout) - t0
    except TimeoutError:
        return None
    finally:
        _pending.pop(token, None)
