"""DistributedSupervisor: a dynamic supervisor whose children are spread over a cluster, and survive it.

What Horde's DynamicSupervisor does, built so that children are neither lost
nor duplicated. Start a supervisor of the same name on every node that
should run children; start children from any of them::

    await DistributedSupervisor.start("jobs")                       # on every node
    pid = await DistributedSupervisor.start_child(
        "jobs", {"id": "report-7", "start": "myapp.jobs:run_report", "args": (7,)})
    DistributedSupervisor.which_children("jobs")                    # the whole cluster's

A child is described by a :class:`DistributedChildSpec` (or a dict of its
fields) whose ``start`` is an importable ``"module:function"`` — an ``async
def`` run as the child process, as :meth:`Node.spawn` runs it — or
``"module:Class"`` naming a :class:`~pymesh.GenServer`, started with
``start_link(*args)``. Specs travel between nodes, so every node must be able
to import the target.

Placement and the guarantees
----------------------------
The specs (and which pid runs each) live in a replicated CRDT map
(:mod:`pymesh.services._crdt`), kept by every member. Where a child runs is a
pure function of its id and the set of members that are up — a
:class:`DistributionStrategy` — so nodes that see the same members agree on
every placement without talking. Each node runs exactly the children placed
on it, and keeps reconciling as members come and go:

* **A member dies** (nodedown, e.g. ``kill -9``): every survivor computes the
  same new owner for each of its children; that one node starts it. Children
  of other nodes do not move (a consistent-hash ring).
* **A member joins**: the children now placed on it move there. The old
  runner stops its copy first — after asking it for its state if the spec has
  ``handoff=True`` — and the new owner starts only once no other copy is
  visible, so a move never overlaps.
* **A partition**: with :class:`UniformDistribution` (the default, available
  first) each side runs every child it knows, once per side; when the
  partition heals, placements agree again and the extra copies stop, leaving
  exactly one. With :class:`UniformQuorumDistribution` (consistent first) a
  side with no more than half of the members stops its children and refuses
  ``start_child`` (:class:`NoQuorum`), so at most one copy runs even during
  the partition; the majority side takes the children over.
* ``start_child`` returns once the spec has reached every live member, so a
  node crash right after it does not lose the child.

Handoff: a spec with ``handoff=True`` moves with its state. Before stopping
it, the supervisor sends the child ``("$handoff_request", sup, ref)``; the
child answers with :meth:`DistributedSupervisor.hand_off` (``send(sup,
("$handoff_state", ref, state))``). The new copy receives ``("$handoff",
state)`` as its first message. A child killed with its node has no chance to
hand off; it restarts from its spec.

Restarts follow OTP's types: ``permanent`` always, ``transient`` after an
abnormal exit, ``temporary`` never (its spec is removed). More than
``max_restarts`` crashes of one child within ``max_seconds`` on one node
means restarting will not help: the child's spec is removed and the error
logged.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import time
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .._errors import (
    CallExit,
    EncodeError,
    PymeshError,
    ReceiveTimeout,
    SpawnError,
    UnknownRegistry,
)
from ..runtime import _process as P
from ..runtime._genserver import From, GenServer, call
from ..runtime._node import resolve_function
from ..runtime._supervisor import ChildSpec
from ..wire import _terms
from ..wire._types import Pid
from ._crdt import Dot
from ._replicator import Replicator

__all__ = [
    "DistributedSupervisor",
    "DistributedChildSpec",
    "DistributionStrategy",
    "UniformDistribution",
    "UniformQuorumDistribution",
    "NoQuorum",
]

log = logging.getLogger("pymesh.dist_supervisor")

_KIND = "supervisor"
_RESTARTS = ("permanent", "transient", "temporary")


class NoQuorum(SpawnError):
    """The supervisor sees no more than half of its members: it will not start children."""


# --- child specs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedChildSpec:
    """How to start one child anywhere in the cluster.

    ``start`` is ``"module:function"`` (an async function run as the child) or
    ``"module:Class"`` (a GenServer, started with ``start_link(*args)``);
    ``args`` must be terms (they travel). ``shutdown`` is the seconds a child
    gets to stop (and to hand off) before it is killed.
    """

    id: Any
    start: str
    args: tuple[Any, ...] = ()
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown: float = 5.0
    handoff: bool = False

    def __post_init__(self) -> None:
        hash(self.id)
        if not isinstance(self.start, str) or ":" not in self.start:
            raise ValueError(f"start must be 'module:function', not {self.start!r}")
        if self.restart not in _RESTARTS:
            raise ValueError(f"restart must be one of {_RESTARTS}, not {self.restart!r}")
        if not isinstance(self.args, tuple):
            object.__setattr__(self, "args", tuple(self.args))

    def to_term(self) -> tuple[Any, ...]:
        return (self.id, self.start, self.args, self.restart, float(self.shutdown), self.handoff)

    @classmethod
    def from_term(cls, term: Any) -> DistributedChildSpec:
        id_, start, args, restart, shutdown, handoff = term
        return cls(id_, start, tuple(args), restart, shutdown, bool(handoff))

    @classmethod
    def of(cls, spec: Any) -> DistributedChildSpec:
        """Normalize a spec given as this class, a dict of its fields, or ``(id, start, args)``."""
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if isinstance(spec, tuple) and len(spec) in (2, 3):
            return cls(*spec)
        raise ValueError(f"not a child spec: {spec!r}")


# --- distribution strategies -------------------------------------------------------------------------


class DistributionStrategy(Protocol):
    """Where children go: two methods, as Horde's behaviour has.

    ``members`` maps every known member node (this one included) to whether it
    is up now, as this node sees it. Both methods must be pure functions of
    their arguments, so that every node computes the same answers.
    """

    def choose_node(self, child_id: Any, members: Mapping[str, bool]) -> str | None:
        """The node that should run ``child_id``, or None when none should."""
        ...

    def has_quorum(self, members: Mapping[str, bool]) -> bool:
        """Whether this node may run children at all."""
        ...


def _hash64(term: Any) -> int:
    return int.from_bytes(hashlib.blake2b(_terms.encode(term), digest_size=8).digest(), "big")


class UniformDistribution:
    """A consistent-hash ring over the members that are up (``vnodes`` points each).

    Children spread evenly, and a member joining or leaving moves only the
    children it gains or loses. Always has quorum: every side of a partition
    keeps running (and restarting) every child it knows.
    """

    def __init__(self, vnodes: int = 64) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        self.vnodes = vnodes
        self._ring: tuple[frozenset[str], list[int], list[str]] | None = None

    def _points(self, up: frozenset[str]) -> tuple[list[int], list[str]]:
        if self._ring is None or self._ring[0] != up:
            pairs = sorted((_hash64((node, i)), node) for node in up for i in range(self.vnodes))
            self._ring = (up, [h for h, _ in pairs], [n for _, n in pairs])
        return self._ring[1], self._ring[2]

    def choose_node(self, child_id: Any, members: Mapping[str, bool]) -> str | None:
        up = frozenset(n for n, is_up in members.items() if is_up)
        if not up:
            return None
        hashes, nodes = self._points(up)
        i = bisect.bisect_left(hashes, _hash64(child_id))
        return nodes[i % len(nodes)]

    def has_quorum(self, members: Mapping[str, bool]) -> bool:
        return True


class UniformQuorumDistribution(UniformDistribution):
    """The ring of :class:`UniformDistribution`, but only with a quorum: more than half of
    the known members up. A strict majority, so that of the two halves of an
    even split neither runs children (each half would otherwise run a copy)."""

    def has_quorum(self, members: Mapping[str, bool]) -> bool:
        up = sum(1 for is_up in members.values() if is_up)
        return up * 2 > len(members)

    def choose_node(self, child_id: Any, members: Mapping[str, bool]) -> str | None:
        if not self.has_quorum(members):
            return None
        return super().choose_node(child_id, members)


# --- the supervisor on one node ----------------------------------------------------------------------

# Keys of the replicated map:
#   ("spec", id)    -> (spec term, logical clock, origin node)   any node writes
#   ("pid", id)     -> (pid, logical clock)                      only the pid's node writes
#   ("handoff", id) -> (state, logical clock)                    the old runner writes, the new removes


def _local_name(name: str) -> str:
    return f"pymesh.dsup.{name}"


@dataclass
class _Running:
    pid: Pid
    spec: DistributedChildSpec
    stopping: bool = False


class _Server(GenServer):
    trap_exit = True

    async def init(self, name: str, opts: dict[str, Any]) -> None:  # type: ignore[override]
        if name in _supervisors:
            raise ValueError(f"a distributed supervisor named {name!r} already runs on this node")
        self.name = name
        self.strategy: DistributionStrategy = opts["strategy"]
        self.max_restarts: int = opts["max_restarts"]
        self.max_seconds: float = opts["max_seconds"]
        self.running: dict[Hashable, _Running] = {}
        self.by_pid: dict[Pid, Hashable] = {}
        self.crashes: dict[Hashable, deque[float]] = {}
        self.clock = 0
        self.leaving = False
        self._reconcile_queued = False
        self.rep = Replicator(
            _KIND, name, members=opts["members"], sync_interval=opts["sync_interval"],
            max_batch=opts["max_batch"], on_change=self._changed, on_member=self._member,
        )
        P.register(_local_name(name), self.pid)
        self.rep.start()
        _supervisors[name] = self
        P.add_exit_hook(self.pid, lambda pid, reason: self._closed())
        self._tick = P.spawn_link(_ticker, self.pid, opts["reconcile_interval"])

    # --- views of the replica ---------------------------------------------------------------

    def members(self) -> dict[str, bool]:
        rep = self.rep
        up = {rep.node, *rep.synced}
        if rep.members_spec == "auto":
            known = rep.known | up
        else:
            known = set(rep.members_spec) | up
        return {n: n in up for n in sorted(known)}

    def specs(self) -> dict[Hashable, DistributedChildSpec]:
        out = {}
        entries: dict[Any, dict[Dot, Any]] = self.rep.map.entries
        for key, dots in entries.items():
            if key[0] == "spec" and dots:
                term = min(dots.values(), key=lambda v: (v[1], v[2]))[0]
                out[key[1]] = DistributedChildSpec.from_term(term)
        return out

    def runners(self, child_id: Hashable) -> list[Pid]:
        """The pids running ``child_id`` that this node can see (its own included)."""
        rep = self.rep
        out = []
        for pid, _ in rep.map.entries.get(("pid", child_id), {}).values():
            if pid.node == rep.node:
                r = self.running.get(child_id)
                if r is not None and r.pid == pid:
                    out.append(pid)
            elif rep.is_live(pid.node, pid.creation):
                out.append(pid)
        return sorted(out)

    def _own_dots(self, key: Hashable, pid: Pid | None = None) -> list[Dot]:
        me = self.rep.node
        return [d for d, v in self.rep.map.entries.get(key, {}).items()
                if v[0].node == me and (pid is None or v[0] == pid)]

    # --- triggers ----------------------------------------------------------------------------------

    def _changed(self, keys: set[Hashable]) -> None:
        for key in keys:
            for v in self.rep.map.entries.get(key, {}).values():
                self.clock = max(self.clock, v[1])
        self.request_reconcile()

    def _member(self, node: str, up: bool) -> None:
        self.request_reconcile()

    def request_reconcile(self) -> None:
        if not self._reconcile_queued and not self.leaving:
            self._reconcile_queued = True
            P.send(self.pid, ("$reconcile",))

    def _tick_clock(self) -> int:
        self.clock += 1
        return self.clock

    # --- reconciling: run exactly the children placed here -------------------------------------

    async def reconcile(self) -> None:
        self._reconcile_queued = False
        if self.leaving:
            return
        me = self.rep.node
        # our own pid entries that no longer run (a previous incarnation, a crash) go first
        entries: dict[Any, dict[Dot, Any]] = self.rep.map.entries
        for key in [k for k in entries if k[0] == "pid"]:
            stale = [d for d, (pid, _) in entries[key].items()
                     if pid.node == me and (self.running.get(key[1]) is None or self.running[key[1]].pid != pid)]
            if stale:
                self.rep.remove(key, stale)
        members = self.members()
        quorum = self.strategy.has_quorum(members)
        specs = self.specs()
        for child_id, r in list(self.running.items()):
            if r.stopping:
                continue
            if child_id not in specs:
                await self._stop(child_id, handoff=False)  # terminated from some node
            elif not quorum:
                await self._stop(child_id, handoff=False)
            elif self.strategy.choose_node(child_id, members) != me:
                # a move hands the state on; a duplicate (another copy runs) just stops
                others = [p for p in self.runners(child_id) if p != r.pid]
                await self._stop(child_id, handoff=not others)
            elif ("handoff", child_id) in self.rep.map:
                self.rep.remove(("handoff", child_id))  # from a duplicate; ours runs on
        if not quorum:
            return
        for child_id, spec in specs.items():
            if child_id in self.running or self.strategy.choose_node(child_id, members) != me:
                continue
            if self.runners(child_id):
                continue  # still running elsewhere: its node stops it, then we start it
            try:
                await self._start(spec)
            except Exception as e:
                log.error("supervisor %r: starting %r failed: %r", self.name, child_id, e)
                self._crashed(child_id, spec)

    async def _start(self, spec: DistributedChildSpec) -> Pid:
        target: Any = resolve_function(spec.start)
        if isinstance(target, type) and issubclass(target, GenServer):
            pid = await target.start_link(*spec.args)
        else:
            pid = P.spawn_link(target, *spec.args)
        handoff = self.rep.map.winner(("handoff", spec.id))
        if handoff is not None:
            P.send(pid, ("$handoff", handoff[1][0]))
            self.rep.remove(("handoff", spec.id))
        self.running[spec.id] = _Running(pid, spec)
        self.by_pid[pid] = spec.id
        self.rep.add(("pid", spec.id), (pid, self._tick_clock()), replace=self._own_dots(("pid", spec.id)))
        return pid

    async def _stop(self, child_id: Hashable, handoff: bool) -> None:
        """Stop our copy of ``child_id``; its pid entry goes only once it is dead."""
        r = self.running[child_id]
        r.stopping = True
        pid, spec = r.pid, r.spec
        if handoff and spec.handoff:
            ref = P.make_ref()
            P.send(pid, ("$handoff_request", self.pid, ref))
            try:
                msg = await P.receive(
                    lambda m: type(m) is tuple and len(m) == 3
                    and ((m[0] == "$handoff_state" and m[1] == ref) or (m[0] == "EXIT" and m[1] == pid)),
                    timeout=spec.shutdown,
                )
                if msg[0] == "$handoff_state":
                    self.rep.add(("handoff", child_id), (msg[2], self._tick_clock()))
                else:
                    P.current().mailbox.appendleft(msg)  # the EXIT, for the wait below
            except ReceiveTimeout:
                log.warning("supervisor %r: %r did not hand off within %ss", self.name, child_id, spec.shutdown)
        P.exit(pid, "shutdown")
        try:
            await P.receive(_exit_from(pid), timeout=spec.shutdown)
        except ReceiveTimeout:
            P.exit(pid, "kill")
            try:
                await P.receive(_exit_from(pid), timeout=5.0)
            except ReceiveTimeout:
                log.error("supervisor %r: child %r (%r) did not die after kill", self.name, child_id, pid)
        self._forget(child_id, pid)

    def _forget(self, child_id: Hashable, pid: Pid) -> None:
        r = self.running.get(child_id)
        if r is not None and r.pid == pid:
            del self.running[child_id]
        self.by_pid.pop(pid, None)
        self.rep.remove(("pid", child_id), self._own_dots(("pid", child_id), pid))

    def _crashed(self, child_id: Hashable, spec: DistributedChildSpec) -> None:
        stamps = self.crashes.setdefault(child_id, deque())
        now = time.monotonic()
        stamps.append(now)
        while stamps and now - stamps[0] > self.max_seconds:
            stamps.popleft()
        if len(stamps) > self.max_restarts:
            log.error("supervisor %r: child %r crashed %d times in %ss; giving up on it",
                      self.name, child_id, len(stamps), self.max_seconds)
            self.crashes.pop(child_id, None)
            self.rep.remove(("spec", child_id))

    # --- messages --------------------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if msg == ("$reconcile",):
            await self.reconcile()
        elif type(msg) is tuple and len(msg) == 3 and msg[0] == "EXIT":
            await self._child_exit(msg[1], msg[2])

    async def _child_exit(self, pid: Pid, reason: Any) -> None:
        child_id = self.by_pid.get(pid)
        if child_id is None:
            return
        r = self.running.get(child_id)
        self._forget(child_id, pid)
        if r is None or r.stopping:
            return
        spec = r.spec
        normal = reason in ("normal", "shutdown") or (type(reason) is tuple and len(reason) == 2 and reason[0] == "shutdown")
        if spec.restart == "temporary" or (spec.restart == "transient" and normal):
            self.rep.remove(("spec", child_id))
            return
        log.warning("supervisor %r: child %r exited with %r", self.name, child_id, reason)
        self._crashed(child_id, spec)
        self.request_reconcile()

    async def handle_call(self, request: Any, frm: From) -> Any:
        op = request[0]
        if op == "start_child":
            return await self._start_child(DistributedChildSpec.from_term(request[1]), request[2])
        if op == "stop":
            await self._leave()
            raise P.Exit("normal")
        raise ValueError(f"unknown request {request!r}")

    async def _start_child(self, spec: DistributedChildSpec, timeout: float) -> tuple[str, Any]:
        if not self.strategy.has_quorum(self.members()):
            return ("no_quorum", "fewer than half of the members are up")
        if spec.id in self.specs():
            runners = self.runners(spec.id)
            return ("already_started", runners[0] if runners else None)
        try:
            pid = await self._start(spec)
        except Exception as e:
            return ("error", f"{type(e).__name__}: {e}")
        self.rep.add(("spec", spec.id), (spec.to_term(), self._tick_clock(), self.rep.node))
        if not await self.rep.sync(timeout):
            log.warning("supervisor %r: not every member acknowledged child %r in time", self.name, spec.id)
        return ("ok", pid)

    async def _leave(self) -> None:
        """Graceful stop: hand children off (they restart on the other members), then leave."""
        for child_id, r in list(self.running.items()):
            if not r.stopping:
                await self._stop(child_id, handoff=True)
        self.leaving = True
        await self.rep.sync(2.0)

    async def terminate(self, reason: Any) -> None:
        self.leaving = True
        if P.current().alive:  # killed, the children went with it through their links
            for child_id, r in list(self.running.items()):
                if not r.stopping:
                    await self._stop(child_id, handoff=False)
        self._closed()

    def _closed(self) -> None:
        self.leaving = True
        if _supervisors.get(self.name) is self:
            del _supervisors[self.name]
        self.rep.stop()


async def _ticker(sup: Pid, interval: float) -> None:
    """Asks the supervisor to reconcile now and then: a safety net under the event-driven triggers."""
    while True:
        try:
            await P.receive(lambda m: False, timeout=interval)
        except ReceiveTimeout:
            P.send(sup, ("$reconcile",))


def _exit_from(pid: Pid) -> Any:
    return lambda m: type(m) is tuple and len(m) == 3 and m[0] == "EXIT" and m[1] == pid


_supervisors: dict[str, _Server] = {}


def _get(name: str) -> _Server:
    s = _supervisors.get(name)
    if s is None:
        raise UnknownRegistry(name)
    return s


class DistributedSupervisor:
    """A dynamic supervisor over the cluster; see the module docstring.

    Functions take the supervisor's name (the same on every node) and raise
    :class:`~pymesh.UnknownRegistry` when none of that name runs here.
    """

    @staticmethod
    async def start(
        name: str,
        *,
        members: Literal["auto"] | Iterable[str] = "auto",
        strategy: DistributionStrategy | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        sync_interval: float = 0.005,
        max_batch: int = 512,
        reconcile_interval: float = 1.0,
        link: bool = False,
    ) -> Pid:
        """Start the supervisor ``name`` on this node; return its pid.

        ``members``: ``"auto"`` or a list of node names; ``strategy`` defaults
        to :class:`UniformDistribution`. Raises :class:`~pymesh.SpawnError`
        when one of that name runs here already or the node is not distributed.
        """
        if type(name) is not str or not name:
            raise ValueError(f"a supervisor name must be a non-empty str, not {name!r}")
        opts = {
            "members": members,
            "strategy": strategy or UniformDistribution(),
            "max_restarts": max_restarts,
            "max_seconds": max_seconds,
            "sync_interval": sync_interval,
            "max_batch": max_batch,
            "reconcile_interval": reconcile_interval,
        }
        return await _Server.start(name, opts, link=link)

    @staticmethod
    async def start_link(name: str, **opts: Any) -> Pid:
        """:meth:`start`, linked to the caller (what supervisors call)."""
        return await DistributedSupervisor.start(name, link=True, **opts)

    @staticmethod
    def child_spec(name: str, **opts: Any) -> ChildSpec:
        """A :class:`~pymesh.ChildSpec` to run this supervisor under a local :class:`~pymesh.Supervisor`."""
        return ChildSpec(("DistributedSupervisor", name), (_start_link_opts, (name, opts)), type="supervisor")

    @staticmethod
    async def stop(name: str, timeout: float = 30.0) -> None:
        """Leave gracefully: this node's children hand off and restart on the other members."""
        s = _get(name)
        try:
            await call(s.pid, ("stop",), timeout=timeout)
        except CallExit:
            pass

    @staticmethod
    async def start_child(name: str, spec: Any, timeout: float = 10.0) -> Pid:
        """Start a child on the member the strategy places it on; return its pid.

        ``spec`` is a :class:`DistributedChildSpec` or a dict of its fields.
        Returns once the spec has reached every live member. Raises
        :class:`NoQuorum` without a quorum, ``ValueError`` for a bad spec or a
        child id that exists already, :class:`~pymesh.EncodeError` when the
        args cannot travel, and :class:`~pymesh.SpawnError` when the child
        fails to start.
        """
        s = _get(name)
        spec = DistributedChildSpec.of(spec)
        try:
            term = spec.to_term()
            _terms.encode(term)
        except EncodeError as e:
            raise EncodeError(f"child {spec.id!r}: its spec cannot travel: {e}") from None
        members = s.members()
        if not s.strategy.has_quorum(members):
            raise NoQuorum(f"supervisor {name!r}: only {sum(members.values())} of {len(members)} members are up")
        node = s.strategy.choose_node(spec.id, members) or s.rep.node
        dest: Any = s.pid if node == s.rep.node else (_local_name(name), node)
        try:
            status, value = await call(dest, ("start_child", term, timeout), timeout=timeout + 5.0)
        except CallExit as e:
            raise SpawnError(f"child {spec.id!r}: the supervisor on {node} is gone ({e.reason!r})") from None
        if status == "ok":
            return value
        if status == "no_quorum":
            raise NoQuorum(f"supervisor {name!r} on {node}: {value}")
        if status == "already_started":
            raise ValueError(f"a child with id {spec.id!r} exists already (running as {value!r})")
        raise SpawnError(f"child {spec.id!r} failed to start on {node}: {value}")

    @staticmethod
    async def terminate_child(name: str, child_id: Any, timeout: float = 10.0) -> None:
        """Stop ``child_id`` wherever it runs and forget its spec.

        Raises ``KeyError`` for an unknown id, and :class:`~pymesh.PymeshError`
        when it still runs after ``timeout`` seconds.
        """
        s = _get(name)
        if child_id not in s.specs():
            raise KeyError(f"no child {child_id!r}")
        s.rep.remove(("spec", child_id))
        s.request_reconcile()
        await s.rep.sync(timeout)
        deadline = time.monotonic() + timeout
        while s.runners(child_id):
            if time.monotonic() > deadline:
                raise PymeshError(f"child {child_id!r} still runs after {timeout}s")
            await asyncio.sleep(0.01)

    @staticmethod
    def which_children(name: str) -> list[tuple[Any, Pid | None, str]]:
        """``[(id, pid or None, "worker")]`` for every child in the cluster, as this node sees it.

        A child moving between nodes, or waiting for its node's placement, has
        no pid for a moment.
        """
        s = _get(name)
        out = []
        for child_id in sorted(s.specs(), key=repr):
            runners = s.runners(child_id)
            out.append((child_id, runners[0] if runners else None, "worker"))
        return out

    @staticmethod
    def count_children(name: str) -> dict[str, int]:
        children = DistributedSupervisor.which_children(name)
        return {"specs": len(children), "active": sum(1 for _, pid, _ in children if pid is not None)}

    @staticmethod
    def members(name: str) -> dict[str, bool]:
        """Every known member node and whether it is up, as this node sees it."""
        return _get(name).members()

    @staticmethod
    def hand_off(request: Any, state: Any) -> None:
        """Answer a ``("$handoff_request", sup, ref)`` message with ``state`` (from the child)."""
        _, sup, ref = request
        P.send(sup, ("$handoff_state", ref, state))


async def _start_link_opts(name: str, opts: dict[str, Any]) -> Pid:
    return await DistributedSupervisor.start(name, link=True, **opts)

