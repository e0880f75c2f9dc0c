"""DistributedRegistry: unique names replicated to every node that runs the registry.

What Horde's registry does, with the rough edges filed off. Start a registry
of the same name on each node that should share it; a process registered on
any of them can be found from all of them::

    await DistributedRegistry.start("workers")            # on every node
    DistributedRegistry.register("workers", "job-42", {"attempt": 1})
    DistributedRegistry.lookup("workers", "job-42")       # [(pid, {"attempt": 1})], on any node
    send(("via", "workers", "job-42"), "go")
    await MyServer.start(name=("via", "workers", "job-7"))

Use cases: one process per entity (a user session, a device, a game room)
that any node can address by key, with no central server and lookups at
local-dictionary speed.

The functions mirror :class:`~pymesh.Registry`'s for unique keys — ``register``,
``unregister``, ``lookup``, ``match``, ``select``/``count_select`` (the same
``(pattern, guard, output)`` specs), ``count``, ``keys``, ``meta`` — plus
``whereis``, ``members`` and ``wait_synced``. Keys and values must be terms
that can travel (:class:`~pymesh.BadKey` / :class:`~pymesh.EncodeError`).
Unlike the local registry, registrants are not linked to the registry: when
it stops (or crashes) on a node, that node's names are removed everywhere and
their processes live on, nameless.

Consistency — read this before relying on it
--------------------------------------------
The registry is **available and eventually consistent** (AP). Each node
keeps a full replica; ``lookup``/``select``/``count`` read it with no round
trip, ``register`` writes it and returns at once. Writes travel as batched
deltas of a delta-state CRDT (:mod:`pymesh.services._crdt`): at most one
delta every ``sync_interval`` seconds (5 ms by default) — a write after a
quiet spell leaves at once, writes that come faster are batched — or as soon
as ``max_batch`` writes wait. So:

* Right after ``register`` returns, other nodes may not see the name for a
  few milliseconds. For a stronger promise, ``await wait_synced(reg)``
  returns once every member acknowledged the writes so far; for
  linearizable names use :class:`~pymesh.EtcdRegistry`.
* Two nodes may register one key at the same moment, or on both sides of a
  partition. Both registrations succeed locally; when the replicas meet,
  every node picks the same winner: the registration with the smaller
  *logical clock* (a Lamport clock: the older registration, as causality
  orders them), ties broken by the pids' total order. Nothing about it
  depends on which node looks, or on wall clocks. The loser process is sent
  the exit signal ``("name_conflict", key, winner_pid)`` by its own node.
* A node that goes down takes its entries with it at once on every other
  node (its names become free there). If it was only partitioned away, its
  entries come back when it reconnects, and any key taken meanwhile is a
  conflict resolved as above.
* A process's entries vanish when it exits.

Members are the nodes running a registry of the same name: ``members="auto"``
(every visible node that runs it) or an explicit list of node names. A node
joining gets a full copy of the state.

The rules that make it safe, for the curious: only the node of a pid ever
adds or removes that pid's entries (a nodedown hides a node's entries rather
than erasing them, so a partition cannot erase a live process's name), and
a node's entries are shown only once its full state has been merged after
it (re)connects, so stale entries never flicker into view.

``meta``/``put_meta`` are local to each node, as the registry's own
configuration; they are not replicated.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import (
    AlreadyRegistered,
    BadName,
    EncodeError,
    RegistryError,
    UnknownRegistry,
)
from ..runtime import _process as P
from ..runtime._genserver import GenServer
from ..runtime._node import current_distribution
from ..runtime._pattern import compile_pattern
from ..runtime._supervisor import ChildSpec
from ..wire import _terms
from ..wire._types import Pid
from ._common import check_key, unhashable
from ._crdt import Dot
from ._registry import _clauses
from ._replicator import Members, Replicator

__all__ = ["DistributedRegistry", "DistributedRegistryStats"]

log = logging.getLogger("pymesh.dist_registry")

_KIND = "registry"

# value stored per dot: (pid, value, logical clock)
_Entry = tuple[Pid, Any, int]


def _rank(entry: _Entry) -> tuple[int, Pid]:
    return (entry[2], entry[0])


@dataclass(frozen=True, slots=True)
class DistributedRegistryStats:
    """A snapshot of one node's replica, from :meth:`DistributedRegistry.statistics`."""

    name: Any
    node: str
    members: tuple[str, ...]
    keys: int
    local_keys: int
    pending_writes: int
    deltas_out: int
    deltas_in: int
    states_in: int
    conflicts: int
    owner: Pid


class _Replica:
    """The registry's state on this node: the replicated map and what is derived from it."""

    def __init__(self, name: Any, owner: Pid, members: Members, sync_interval: float, max_batch: int,
                 listeners: Iterable[Any], meta: dict[Any, Any]) -> None:
        self.name = name
        self.owner = owner
        self.rep = Replicator(
            _KIND, name, members=members, sync_interval=sync_interval, max_batch=max_batch,
            rank=_rank, on_change=self._changed, on_member=self._member,
        )
        #: key -> (pid, value) of the visible winner: what readers see
        self.winners: dict[Hashable, tuple[Pid, Any]] = {}
        #: local pid -> its keys
        self.local: dict[Pid, set[Hashable]] = {}
        #: node -> keys that had (or have) a dot of that node's pids
        self.by_node: dict[str, set[Hashable]] = {}
        self.clock = 0
        self.listeners = list(listeners)
        self.meta = dict(meta)
        self.conflicts = 0
        self.closed = False

    # --- visibility and winners -----------------------------------------------------------

    def _visible(self, pid: Pid) -> bool:
        return self.rep.is_live(pid.node, pid.creation)

    def _recompute(self, key: Hashable) -> None:
        """Settle ``key``: clean our own stale dots, resolve conflicts, refresh the winner."""
        rep = self.rep
        while True:
            dots = rep.map.entries.get(key)
            visible: list[tuple[int, Pid, Dot, Any]] = []
            stale: list[Dot] = []
            if dots:
                me, creation = rep.node, rep.creation
                for dot, (pid, value, clock) in dots.items():
                    if pid.node == me:
                        # this node is the authority on its own pids
                        if pid.creation != creation or P._local_live(pid) is None:
                            stale.append(dot)
                            continue
                        keys = self.local.get(pid)
                        if keys is None or key not in keys:
                            self._adopt(pid, key)
                    elif not self._visible(pid):
                        continue
                    visible.append((clock, pid, dot, value))
            if stale:
                rep.remove(key, stale)
                continue
            if len(visible) > 1:
                visible.sort(key=lambda e: (e[0], e[1], e[2]))
                winner = visible[0][1]
                losers = [e for e in visible[1:] if e[1].node == rep.node]
                if losers:
                    for _, pid, dot, _ in losers:
                        self._evict(key, pid, dot, winner)
                    continue
            break
        old = self.winners.get(key)
        if visible:
            best = min(visible, key=lambda e: (e[0], e[1], e[2]))
            new = (best[1], best[3])
            if old != new:
                self.winners[key] = new
                if old is not None and old[0] == new[0]:
                    return  # the owner's value changed (update_value): no owner change to tell
                if old is not None:
                    self._notify(("unregister", self.name, key, old[0]))
                self._notify(("register", self.name, key, new[0], new[1]))
        elif old is not None:
            del self.winners[key]
            self._notify(("unregister", self.name, key, old[0]))

    def _evict(self, key: Hashable, pid: Pid, dot: Dot, winner: Pid) -> None:
        """``pid`` (ours) lost ``key`` to ``winner``: drop its entry, then tell it."""
        self.conflicts += 1
        self.rep.remove(key, [dot])
        self._forget(pid, key)
        log.info("registry %r: %r loses %r to %r (name conflict)", self.name, pid, key, winner)
        P.signal_exit(pid, self.owner, ("name_conflict", key, winner), False)

    def _adopt(self, pid: Pid, key: Hashable) -> None:
        keys = self.local.get(pid)
        if keys is None:
            keys = self.local[pid] = set()
            P.add_exit_hook(pid, self._exited)
        keys.add(key)
        self.by_node.setdefault(pid.node, set()).add(key)

    def _forget(self, pid: Pid, key: Hashable) -> None:
        keys = self.local.get(pid)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.local[pid]
                P.remove_exit_hook(pid, self._exited)

    def _notify(self, msg: tuple[Any, ...]) -> None:
        for listener in self.listeners:
            try:
                P.send(listener, msg)
            except P.NoProcess:
                pass

    # --- replication callbacks -------------------------------------------------------------------

    def _changed(self, keys: set[Hashable]) -> None:
        entries = self.rep.map.entries
        by_node = self.by_node
        for key in keys:
            for pid, _, clock in entries.get(key, {}).values():
                self.clock = max(self.clock, clock)
                by_node.setdefault(pid.node, set()).add(key)
        for key in keys:
            self._recompute(key)

    def _member(self, node: str, up: bool) -> None:
        keys = self.by_node.get(node)
        if not keys:
            return
        entries = self.rep.map.entries
        for key in list(keys):
            if not any(pid.node == node for pid, _, _ in entries.get(key, {}).values()):
                keys.discard(key)
            self._recompute(key)

    # --- local writes ------------------------------------------------------------------------

    def register(self, key: Hashable, pid: Pid, value: Any) -> None:
        check_key(key)
        owner = self.winners.get(key)
        if owner is not None:
            raise AlreadyRegistered(key, owner[0])
        if P._local_live(pid) is None:
            raise BadName(f"cannot register {key!r}: {pid!r} is not a live local process")
        try:
            _terms.encode((key, value))
        except EncodeError as e:
            raise EncodeError(f"cannot register {key!r} in {self.name!r}: {e}") from None
        self.clock += 1
        self.rep.add(key, (pid, value, self.clock), replace=())
        self._adopt(pid, key)
        self._recompute(key)

    def update_value(self, key: Hashable, pid: Pid, fn: Callable[[Any], Any]) -> tuple[Any, Any] | None:
        """Replace ``pid``'s value under ``key`` with ``fn(old)`` if ``pid`` owns
        ``key`` here; return ``(new, old)``, else None. The entry keeps its
        registration clock, so an update never changes who wins a conflict."""
        owner = self.winners.get(key)
        if owner is None or owner[0] != pid:
            return None
        mine = [(dot, clock) for dot, (p, _, clock) in self.rep.map.entries.get(key, {}).items() if p == pid]
        if not mine:
            return None
        old = owner[1]
        new = fn(old)
        try:
            _terms.encode((key, new))
        except EncodeError as e:
            raise EncodeError(f"cannot update {key!r} in {self.name!r}: {e}") from None
        clock = min(c for _, c in mine)
        self.rep.add(key, (pid, new, clock), replace=[dot for dot, _ in mine])
        self._recompute(key)
        return new, old

    def unregister(self, key: Hashable, pid: Pid) -> None:
        keys = self.local.get(pid)
        if keys is None or key not in keys:
            return
        dots = [d for d, (p, _, _) in self.rep.map.entries.get(key, {}).items() if p == pid]
        self._forget(pid, key)
        self.rep.remove(key, dots)
        self._recompute(key)

    def _exited(self, pid: Pid, reason: Any) -> None:
        keys = self.local.pop(pid, None)
        if not keys or self.closed:
            return
        entries = self.rep.map.entries
        for key in keys:
            dots = [d for d, (p, _, _) in entries.get(key, {}).items() if p == pid]
            self.rep.remove(key, dots)
            self._recompute(key)

    def close(self) -> None:
        """Leave: drop every local entry (replicated), say bye, unhook."""
        if self.closed:
            return
        entries = self.rep.map.entries
        for pid, keys in list(self.local.items()):
            P.remove_exit_hook(pid, self._exited)
            for key in keys:
                dots = [d for d, (p, _, _) in entries.get(key, {}).items() if p == pid]
                self.rep.remove(key, dots)
        self.local.clear()
        self.closed = True
        self.rep.stop()
        if _registries.get(self.name) is self:
            del _registries[self.name]
        if P.rt.via.get(self.name) == self.whereis:
            del P.rt.via[self.name]
        if P.rt.via_register.get(self.name) == self._via_register:
            del P.rt.via_register[self.name]

    # --- reads -----------------------------------------------------------------------------------

    def whereis(self, key: Hashable) -> Pid | None:
        w = self.winners.get(key)
        return w[0] if w is not None else None

    def _via_register(self, key: Hashable, pid: Pid) -> None:
        self.register(key, pid, None)


_registries: dict[Any, _Replica] = {}


def _get(reg: Any) -> _Replica:
    try:
        return _registries[reg]
    except (KeyError, TypeError):
        raise UnknownRegistry(reg) from None


class _Server(GenServer):
    """The registry's owner process on one node: its life is the replica's life."""

    trap_exit = True

    async def init(self, name: Any, opts: dict[str, Any]) -> None:  # type: ignore[override]
        P.process_flag("label", f"DistributedRegistry {name!r}")
        replica = _Replica(name, self.pid, **opts)
        replica.rep.start()  # NotAlive when the node is not distributed
        _registries[name] = replica
        P.rt.via[name] = replica.whereis
        P.rt.via_register[name] = replica._via_register
        # cleanup runs in the exit hook too, so even a "kill" leaves nothing half-registered
        P.add_exit_hook(self.pid, lambda pid, reason: replica.close())
        self.replica = replica

    async def handle_info(self, msg: Any) -> None:
        if msg == _STOP:
            raise P.Exit("normal")

    async def terminate(self, reason: Any) -> None:
        replica = getattr(self, "replica", None)
        if replica is not None:
            replica.close()


_STOP = ("$dist_registry_stop",)


class DistributedRegistry:
    """Unique keys replicated across the nodes that run the registry.

    The functions mirror :class:`~pymesh.Registry`'s for unique keys; each
    takes the registry's name first and raises :class:`~pymesh.UnknownRegistry`
    when no registry of that name runs on this node. Reads are answered by
    the local replica. See the module docstring for the consistency model.
    """

    # --- starting and stopping ------------------------------------------------------------

    @staticmethod
    async def start(
        name: Any,
        *,
        members: Literal["auto"] | Iterable[str] = "auto",
        sync_interval: float = 0.005,
        max_batch: int = 512,
        listeners: Iterable[Any] = (),
        meta: dict[Any, Any] | Iterable[tuple[Any, Any]] | None = None,
        link: bool = False,
    ) -> Pid:
        """Start the registry ``name`` on this node; return its owner process's pid.

        ``members``: ``"auto"`` (every visible node running a registry of this
        name) or a list of node names. Deltas are sent at most every
        ``sync_interval`` seconds (a write after a quiet spell at once), or
        as soon as ``max_batch`` writes wait. ``listeners`` (pids
        or local names) get ``("register", name, key, pid, value)`` and
        ``("unregister", name, key, pid)`` whenever the owner of a key, as
        this node sees it, changes — for registrations made on any node.

        Raises :class:`~pymesh.AlreadyRegistered` (owner in ``e.pid``) when a
        registry of that name runs here, :class:`~pymesh.RegistryError` for a
        bad option or a name another via resolver uses, :class:`~pymesh.BadKey`
        for a name that cannot travel, and :class:`~pymesh.NotAlive` when this
        node is not distributed.
        """
        check_key(name, "registry name")
        existing = _registries.get(name)
        if existing is not None:
            raise AlreadyRegistered(name, existing.owner)
        if name in P.rt.via:
            raise RegistryError(f"{name!r} names another via resolver already")
        if members != "auto" and (isinstance(members, str) or not all(isinstance(m, str) for m in members)):
            raise RegistryError(f"members must be 'auto' or a list of node names, not {members!r}")
        if sync_interval < 0 or max_batch < 1:
            raise RegistryError(f"need sync_interval >= 0 and max_batch >= 1, not {sync_interval}, {max_batch}")
        listeners = tuple(listeners)
        for listener in listeners:
            if not (type(listener) is Pid or (type(listener) is str and listener)):
                raise RegistryError(f"a listener is a process name or a pid, not {listener!r}")
        current_distribution()  # NotAlive, before a process is started for nothing
        opts = {
            "members": members if members == "auto" else list(members),
            "sync_interval": sync_interval,
            "max_batch": max_batch,
            "listeners": listeners,
            "meta": dict(meta or {}),
        }
        return await _Server.start(name, opts, link=link)

    @staticmethod
    async def start_link(name: Any, **opts: Any) -> Pid:
        """:meth:`start`, linked to the caller (what a supervisor calls)."""
        return await DistributedRegistry.start(name, link=True, **opts)

    @staticmethod
    def child_spec(name: Any, *, id: Any = None, **opts: Any) -> ChildSpec:
        """A :class:`~pymesh.ChildSpec` running this registry under a supervisor.

        The child id is ``id``, by default ``("DistributedRegistry", name)``;
        ``opts`` are :meth:`start`'s.
        """
        start = functools.partial(DistributedRegistry.start_link, name, **opts)
        return ChildSpec(("DistributedRegistry", name) if id is None else id, (start, ()), type="supervisor")

    @staticmethod
    def stop(reg: Any) -> None:
        """Stop the registry on this node. Its local entries are removed on every
        node (their processes keep running, nameless); peers see this node
        leave. Raises :class:`~pymesh.UnknownRegistry`."""
        replica = _get(reg)
        replica.close()
        P.send(replica.owner, _STOP)

    # --- writes -------------------------------------------------------------------------------

    @staticmethod
    def register(reg: Any, key: Any, value: Any = None) -> Pid:
        """Register the calling process under ``key`` with ``value``; return the owner pid.

        Raises :class:`~pymesh.AlreadyRegistered` (``e.pid`` is the holder)
        when ``key`` is taken as this node sees it — even by the caller —,
        :class:`~pymesh.BadKey` for a key that is unhashable or cannot travel,
        and :class:`~pymesh.EncodeError` for a value that cannot travel.
        """
        replica = _get(reg)
        replica.register(key, P.self(), value)
        return replica.owner

    @staticmethod
    def unregister(reg: Any, key: Any) -> None:
        """Remove the calling process's registration of ``key`` (no error if none)."""
        _get(reg).unregister(key, P.self())

    @staticmethod
    def update_value(reg: Any, key: Any, fn: Callable[[Any], Any]) -> tuple[Any, Any] | None:
        """Replace the calling process's value under ``key`` with ``fn(old)``,
        as Elixir's ``Registry.update_value``; replicated like a registration.

        Returns ``(new, old)``, or None when the caller does not own ``key`` as
        this node sees it (Elixir's ``:error``). Listeners hear nothing: the
        owner did not change. Raises :class:`~pymesh.EncodeError` for a new
        value that cannot travel (the old one stays), and whatever ``fn`` raises.
        """
        return _get(reg).update_value(key, P.self(), fn)

    @staticmethod
    async def wait_synced(reg: Any, timeout: float = 5.0) -> bool:
        """Send pending writes now; True once every current member acknowledged them."""
        return await _get(reg).rep.sync(timeout)

    # --- reads (the local replica, no round trip) ------------------------------------------------

    @staticmethod
    def lookup(reg: Any, key: Any) -> list[tuple[Pid, Any]]:
        """``[(pid, value)]`` for a registered ``key``, ``[]`` otherwise."""
        try:
            w = _get(reg).winners.get(key)
        except TypeError:
            raise unhashable(key) from None
        return [w] if w is not None else []

    @staticmethod
    def whereis(reg: Any, key: Any) -> Pid | None:
        """The pid registered under ``key``, or None."""
        return _get(reg).whereis(key)

    @staticmethod
    def match(reg: Any, key: Any, pattern: Any, guard: Callable[[Any], Any] | None = None) -> list[tuple[Pid, Any]]:
        """``[(pid, value)]`` under ``key`` when its value matches ``pattern`` (and ``guard``)."""
        pred = compile_pattern(pattern, guard)
        return [e for e in DistributedRegistry.lookup(reg, key) if pred(e[1])]

    @staticmethod
    def select(reg: Any, spec: list[tuple[Any, ...]]) -> list[Any]:
        """The outputs of ``spec``'s ``(pattern, guard, output)`` clauses over every
        ``(key, pid, value)`` entry, as :meth:`Registry.select <pymesh.Registry.select>`."""
        replica = _get(reg)
        clauses = _clauses(spec)
        out = []
        for key, (pid, value) in replica.winners.items():
            entry = (key, pid, value)
            for pred, output in clauses:
                if pred(entry):
                    out.append(entry if output is None else output(entry))
                    break
        return out

    @staticmethod
    def count_select(reg: Any, spec: list[tuple[Any, ...]]) -> int:
        """How many entries some clause of ``spec`` matches."""
        replica = _get(reg)
        clauses = _clauses(spec)
        return sum(
            1 for key, (pid, value) in replica.winners.items() if any(p((key, pid, value)) for p, _ in clauses)
        )

    @staticmethod
    def count(reg: Any) -> int:
        """How many keys are registered, as this node sees it."""
        return len(_get(reg).winners)

    @staticmethod
    def keys(reg: Any, pid: Pid) -> list[Any]:
        """The keys ``pid`` holds, as this node sees it."""
        return [k for k, w in _get(reg).winners.items() if w[0] == pid]

    @staticmethod
    def members(reg: Any) -> list[str]:
        """The nodes this registry replicates with now, this node included, sorted."""
        r = _get(reg)
        return sorted({r.rep.node, *r.rep.synced})

    # --- meta (local to this node) ----------------------------------------------------------------

    @staticmethod
    def meta(reg: Any, key: Any, default: Any = None) -> Any:
        """This node's metadata under ``key``, or ``default`` (metadata is not replicated)."""
        return _get(reg).meta.get(key, default)

    @staticmethod
    def put_meta(reg: Any, key: Any, value: Any) -> None:
        """Store ``value`` as metadata ``key`` on this node."""
        _get(reg).meta[key] = value

    @staticmethod
    def delete_meta(reg: Any, key: Any) -> None:
        """Remove metadata ``key`` (no error when absent)."""
        _get(reg).meta.pop(key, None)

    # --- introspection -----------------------------------------------------------------------------

    @staticmethod
    def statistics(reg: Any) -> DistributedRegistryStats:
        """A :class:`DistributedRegistryStats` snapshot of this node's replica."""
        r = _get(reg)
        s = r.rep.statistics()
        return DistributedRegistryStats(
            name=r.name,
            node=r.rep.node,
            members=tuple(DistributedRegistry.members(reg)),
            keys=len(r.winners),
            local_keys=sum(len(k) for k in r.local.values()),
            pending_writes=s["pending"],
            deltas_out=s["deltas_out"],
            deltas_in=s["deltas_in"],
            states_in=s["states_in"],
            conflicts=r.conflicts,
            owner=r.owner,
        )

    @staticmethod
    def which() -> list[Any]:
        """The names of the distributed registries running on this node."""
        return list(_registries)
