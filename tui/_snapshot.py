"""The observed node's side of the pane: snapshots taken where the state lives.

:func:`poll` is what a pane calls — directly when it runs inside the node
(``observer()`` in the shell), through ``rpc_call(node,
"pymesh.tui._snapshot:poll", ...)`` when it attaches from elsewhere
(``pymesh tui NODE``). Each caller has a *session* here, keyed by the caller's
node name: an open traffic watch (ignoring the caller's own requests), a
round-trip prober that pings every connected peer every few seconds, and the
times nodes changed state. A session nobody polls for :data:`LEASE` seconds
closes itself, so a pane that vanished costs nothing for long.

Everything here uses pymesh's public API and imports no Textual: it is
imported on nodes that never draw a pane.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import pymesh
from pymesh import Node, Pid

from . import _names
from ._api import TrafficWatch, measure_rtt, watch_traffic
from ._model import PeerInfo, ProcInfo, Snapshot

__all__ = ["poll", "process_detail", "close_session", "Session", "LEASE"]

#: Seconds without a poll after which a session closes itself.
LEASE = 15.0
#: Seconds between round-trip measurements.
RTT_EVERY = 2.0
MAX_PROCS = 2000
MAX_NAMES = 5000
MAX_EVENTS = 400


class Session:
    """One pane's watch on this node (see the module docstring)."""

    def __init__(self, key: str, ignore: list[str]) -> None:
        self.key = key
        self.id = f"{os.getpid()}-{time.time():.6f}"
        self.watch: TrafficWatch = watch_traffic(ignore=ignore)
        self.rtt: dict[str, float | None] = {}
        self.states: dict[str, tuple[str, float]] = {}  # node -> (state, since)
        self.addresses: dict[str, str] = {}
        self.last_poll = time.monotonic()
        self._prober = asyncio.get_running_loop().create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        while True:
            if self.key != "local" and time.monotonic() - self.last_poll > LEASE:
                # the pane went away without closing its session (killed, cut off)
                if _sessions.get(self.key) is self:
                    del _sessions[self.key]
                self.watch.close()
                return
            peers = [s.node for s in Node.statistics() if s.state == "up" and s.node not in self.watch.ignore]
            results = await asyncio.gather(*(measure_rtt(n) for n in peers), return_exceptions=True)
            for node, rtt in zip(peers, results):
                self.rtt[node] = rtt if isinstance(rtt, float) else None
            await asyncio.sleep(RTT_EVERY)

    def close(self) -> None:
        self.watch.close()
        self._prober.cancel()

    def _since(self, node: str, state: str, known: float | None, now: float) -> float:
        prev = self.states.get(node)
        if known is not None:
            since = known
        elif prev is not None and prev[0] == state:
            since = prev[1]
        else:
            since = now
        self.states[node] = (state, since)
        return since

    def peers(self, now: float) -> list[PeerInfo]:
        me = Node.self()
        rows = [PeerInfo(me, f"port {Node.port()}", "this", None, self._since(me, "this", _started, now),
                         None, 0, 0, 0, 0, 0)]
        stats = {s.node: s for s in Node.statistics()}
        for node in sorted(set(Node.list("known")) | set(stats)):
            if node == me:
                continue
            s = stats.get(node)
            if s is not None:
                state = "connecting" if s.state != "up" else "hidden" if s.hidden else "connected"
                if s.address:
                    self.addresses[node] = s.address
                rows.append(PeerInfo(
                    node, s.address or self.addresses.get(node), state, None,
                    self._since(node, state, s.since if s.state == "up" else None, now),
                    self.rtt.get(node) if s.state == "up" else None,
                    s.msgs_in, s.msgs_out, s.bytes_in, s.bytes_out, s.queued_bytes + s.write_buffer,
                ))
            else:
                self.rtt.pop(node, None)
                rows.append(PeerInfo(node, self.addresses.get(node), "down", Node.down_reason(node),
                                     self._since(node, "down", None, now), None, 0, 0, 0, 0, 0))
        return rows


_sessions: dict[str, Session] = {}
_started = time.time()


def _expire() -> None:
    now = time.monotonic()
    for key, session in list(_sessions.items()):
        if key != "local" and now - session.last_poll > LEASE:
            session.close()
            del _sessions[key]


def _procs(limit: int) -> tuple[list[ProcInfo], int]:
    pids = pymesh.processes()
    named = {pymesh.whereis(n) for n in pymesh.registered()}
    ordered = [p for p in pids if p in named] + [p for p in pids if p not in named]
    out: list[ProcInfo] = []
    for pid in ordered[:limit]:
        info = pymesh.process_info(pid)
        if info is not None:
            out.append(ProcInfo(repr(pid), info.registered_name, info.message_queue_len, info.status,
                                info.label or info.initial_call))
    return out, len(pids)


def snapshot(key: str = "local", *, ignore: list[str] | None = None, events: int = MAX_EVENTS,
             procs: int = MAX_PROCS, names: int = MAX_NAMES) -> Snapshot:
    """This node's :class:`Snapshot` for the session ``key`` (made on first use).

    Must run on the node's event loop. Raises :class:`pymesh.NotAlive` when
    the node is not started.
    """
    _expire()
    session = _sessions.get(key)
    if session is None:
        session = _sessions[key] = Session(key, ignore or [])
    session.last_poll = time.monotonic()
    now = time.time()
    peers = session.peers(now)
    name_rows, names_total, kinds, errors = _names.collect(names)
    proc_rows, procs_total = _procs(procs)
    batch = session.watch.read(events)
    return Snapshot(
        node=Node.self(), time=now, peers=peers, names=name_rows, names_total=names_total,
        procs=proc_rows, procs_total=procs_total, events=batch.events, left_out=batch.left_out,
        session=session.id, kinds=kinds, errors=errors,
    )


def poll(watcher: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rpc entry point: :func:`snapshot` for the pane on node ``watcher``, as a term.

    The watcher's own traffic (its requests and these replies) is not traced.
    ``options`` may set ``events``, ``procs`` and ``names`` (list caps).
    """
    opts = options or {}
    snap = snapshot(watcher, ignore=[watcher], events=int(opts.get("events", MAX_EVENTS)),
                    procs=int(opts.get("procs", MAX_PROCS)), names=int(opts.get("names", MAX_NAMES)))
    return snap.as_term()


def close_session(key: str) -> bool:
    """End the session ``key`` (its traffic watch and prober); False if none."""
    session = _sessions.pop(key, None)
    if session is None:
        return False
    session.close()
    return True


def process_detail(pid_text: str) -> dict[str, Any] | None:
    """``process_info`` of a local process as printable fields, or None when it is gone."""
    with contextlib.suppress(ValueError):
        info = pymesh.process_info(Pid.parse(pid_text))
        if info is None:
            return None
        return {
            "pid": repr(info.pid),
            "registered_name": info.registered_name,
            "status": info.status,
            "message_queue_len": info.message_queue_len,
            "links": [repr(p) for p in info.links],
            "monitors": [repr(r) for r in info.monitors],
            "monitored_by": [repr(p) for p in info.monitored_by],
            "trap_exit": info.trap_exit,
            "initial_call": info.initial_call,
            "label": info.label,
            "started": info.started,
        }
    return None
