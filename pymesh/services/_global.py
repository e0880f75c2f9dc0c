"""Global names: Erlang's ``:global``, a name registry shared by every connected node.

A global name is unique across all connected visible nodes. Registering one
takes a lock on that name on every node, checks that no node has it, commits
it everywhere and only then returns ``True``: all or nothing. After
``register_name`` returns, every node connected at that moment answers
``whereis_name`` with the new pid::

    pid = spawn(worker)
    if await Global.register_name("leader", pid):
        ...
    Global.send("leader", "hello")                  # or send(("global", "leader"), ...)
    await call(("via", "global", "leader"), "get")   # works wherever via-names do

Use cases: one process per cluster (a leader, a singleton service), a
well-known name that clients on any node resolve locally, and cluster-wide
mutual exclusion with :meth:`Global.set_lock` / :meth:`Global.trans`.

Consistency and caveats
-----------------------
* Every node keeps a full copy of the table, so ``whereis_name`` never leaves
  the node. Names assume a fully connected cluster (pymesh's default,
  ``connect_all=True``), as ``:global`` does; hidden nodes take no part.
* A name goes away on every node when its process ends (the process's node
  tells the others) and, on each node, when the connection to the process's
  node goes down. When nodes connect, each sends the other the names of its
  own processes (``Global.sync()`` waits until that exchange is done with
  every connected node).
* A partition can let both sides register the same name. When it heals, a
  *resolver* settles each clash, on every node the same way:

  - ``"random_exit"`` (the default): one pid survives and the other is killed
    (``exit(pid, "kill")``) by its own node. The choice is the same on every
    node: the survivor is the pid whose printed form (``#PID<...>``) has the
    smaller CRC-32, ties going to the smaller pid;
  - ``"random_notify"``: the same choice, but the loser is not killed: it
    receives ``("global_name_conflict", name)`` and loses the name;
  - ``"notify_all"``: the name is unregistered and both processes receive
    ``("global_name_conflict", name, other_pid)``;
  - a callable ``resolve(name, pid1, pid2) -> pid | None`` (plain or async):
    it runs once, on the node that registered the pid that sorts first, and
    its answer — the pid to keep, or None to drop the name — is sent to every
    node. Dealing with the other process is up to the callable, as in OTP.

  The clash is settled with the resolver of the registration whose pid sorts
  first (pids order by node, creation, serial on every node alike).
* ``("global", name)`` as a destination (``send``, ``monitor``, ``call``)
  takes precedence over a process registered as ``"global"`` on a node, as in
  Erlang; ``("via", "global", name)`` means the same and is also accepted by
  ``whereis``. Starting a GenServer *under* a global name is not available
  through ``name=`` (the runtime's via-registration cannot wait); register in
  ``init`` with ``await Global.register_name(...)``.

Locks
-----
``await Global.set_lock(lock_id, nodes=None, retries=math.inf)`` takes
``lock_id`` for the calling process on ``nodes`` (default: this node and
every connected one) — on all of them or on none — and returns ``True``, or
``False`` once ``retries`` further attempts failed. Attempts back off
exponentially with jitter (1 ms doubling to 200 ms). The lock is released
by ``Global.del_lock(lock_id)``, when its process ends, and on each node when
the holder's node goes down. The same process may set a lock it holds again.
``await Global.trans(lock_id, fn, ...)`` runs ``fn()`` (plain or async)
under the lock and returns its result, or raises :class:`~pymesh.LockAborted`.

Errors: :class:`~pymesh.BadKey` for an unhashable or unencodable name or lock
id, :class:`~pymesh.NoProcess` for ``Global.send`` to an unknown name,
:class:`~pymesh.RegistryError` for an unknown resolver.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from .._errors import BadName, LockAborted, NoProcess, RegistryError
from ..runtime import _node as N
from ..runtime import _process as P
from ..wire._types import NO_NODE, Pid, Ref
from ._common import check_key, distribution, unhashable

__all__ = ["Global", "RESOLVERS", "survivor"]

log = logging.getLogger("pymesh.global")

SERVICE: Final = "global"
#: The built-in conflict resolvers, by name.
RESOLVERS: Final = ("random_exit", "random_notify", "notify_all")
_CUSTOM: Final = "custom"
_NAME_LOCK: Final = "$global_name"
#: How long one round of lock requests or commits waits for the other nodes.
ROUND_TIMEOUT: Final = 5.0
_GONE: Final[Any] = object()  # a node that went down while we waited for it

Resolver = str | Callable[[Any, Pid, Pid], Any]


def survivor(pid1: Pid, pid2: Pid) -> Pid:
    """The pid ``random_exit`` and ``random_notify`` keep: the same on every node."""
    r1, r2 = zlib.crc32(repr(pid1).encode()), zlib.crc32(repr(pid2).encode())
    if r1 != r2:
        return pid1 if r1 < r2 else pid2
    return min(pid1, pid2)


def _wire_lock(lock_id: Any) -> tuple[str, Any]:
    """How a lock travels: a name's lock as ``("name", name)``, any other as ``("lock", id)``."""
    if type(lock_id) is tuple and len(lock_id) == 2 and lock_id[0] == _NAME_LOCK:
        return "name", lock_id[1]
    return "lock", lock_id


def _lock_id(kind: str, key: Any) -> Any:
    return (_NAME_LOCK, key) if kind == "name" else key


def _backoff(attempt: int) -> float:
    return random.uniform(0.5, 1.0) * min(0.2, 0.001 * 2.0 ** min(attempt, 8))


def _live(pid: Pid) -> bool:
    if not P.rt.is_local(pid):
        return False
    proc = P.rt.procs.get(pid.id)
    return proc is not None and proc.alive


@dataclass(slots=True)
class _Entry:
    pid: Pid
    method: str  # a built-in resolver's name, or "custom"
    registrar: str  # the node that registered it (and holds a custom resolver)

    def wire(self, name: Any) -> list[Any]:
        return [name, self.pid, self.method, self.registrar]


class _Round:
    """One request sent to several nodes, waiting for their replies."""

    __slots__ = ("fut", "results", "waiting")

    def __init__(self, nodes: Iterable[str]) -> None:
        self.waiting = set(nodes)
        self.results: dict[str, Any] = {}
        self.fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def answer(self, node: str, value: Any) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            self.results[node] = value
            if not self.waiting and not self.fut.done():
                self.fut.set_result(None)

    def expire(self) -> None:
        """The round's time is up: stop waiting (the silent nodes stay absent)."""
        if not self.fut.done():
            self.fut.set_result(None)


class _GlobalServer:
    """This node's copy of the global name table, its locks, and the protocol."""

    def __init__(self) -> None:
        self.names: dict[Any, _Entry] = {}
        self.by_pid: dict[Pid, set[Any]] = {}
        self.custom: dict[tuple[Any, Pid], Callable[..., Any]] = {}
        # clashes a custom resolver on another node is deciding: name -> both entries
        self.deferred: dict[Any, tuple[_Entry, _Entry]] = {}
        self.resolving: set[Any] = set()  # names whose custom resolver runs here now
        self.locks: dict[Any, Pid] = {}  # lock id -> holder
        self.held: dict[int, dict[Any, tuple[bool, list[str]]]] = {}  # local holder -> lock -> (here, nodes)
        self.rounds: dict[Ref, _Round] = {}
        self.peers: set[str] = set()  # connected nodes that run this service and synced with us
        self.node = P.rt.node
        self._ops: dict[str, Callable[..., None]] = {
            "sync": self._on_sync,
            "lock": self._on_lock,
            "unlock": self._on_unlock,
            "commit": self._on_commit,
            "unreg": self._on_unreg,
            "resolved": self._on_resolved,
            "reply": self._on_reply,
        }

    # --- installation on a node --------------------------------------------------------

    def install(self, dist: N.Distribution) -> None:
        """Serve the protocol on ``dist`` (a start hook; also for a node already up)."""
        if SERVICE in dist.services:
            return
        self._relocate(dist.name)
        dist.services[SERVICE] = lambda node, payload: self._on_service(dist, node, payload)
        dist.hooks.append(lambda event, node, info: self._on_node_event(dist, event, node, info))
        for node in N.Node.list():  # loaded after peers connected: they missed our nodeup sync
            self._send(dist, node, ["sync", self._own(), True])

    def _relocate(self, node: str) -> None:
        """Names of local processes follow their pids when a node start renames them."""
        old, self.node = self.node, node
        for name, entry in list(self.names.items()):
            pid = entry.pid
            if pid.node == node or pid.node not in (old, NO_NODE):
                continue
            proc = P.rt.procs.get(pid.id)
            fn = self.custom.get((name, pid))
            self._forget(name, pid)
            if proc is None or not proc.alive or proc.pid.node != node:
                continue
            if fn is not None:
                self.custom[(name, proc.pid)] = fn
            registrar = node if entry.registrar in (old, NO_NODE) else entry.registrar
            self._put(None, name, _Entry(proc.pid, entry.method, registrar))

    def _send(self, dist: N.Distribution, node: str, payload: list[Any]) -> None:
        # lists, not tuples: msgpack packs them natively (tuples take the slower ext path)
        dist.send_service(node, SERVICE, payload)

    def _own(self) -> list[list[Any]]:
        is_local = P.rt.is_local
        return [entry.wire(name) for name, entry in self.names.items() if is_local(entry.pid)]

    # --- the table ---------------------------------------------------------------------

    def _put(self, dist: N.Distribution | None, name: Any, entry: _Entry) -> None:
        pid = entry.pid
        self.names[name] = entry
        names = self.by_pid.get(pid)
        if names is None:
            names = self.by_pid[pid] = set()
            if P.rt.is_local(pid) and not P.add_exit_hook(pid, self._process_exited):
                # the process is gone already: so is the name, everywhere
                del self.by_pid[pid]
                del self.names[name]
                self._broadcast_unreg(dist, [name], pid)
                return
        names.add(name)

    def _forget(self, name: Any, pid: Pid) -> bool:
        """Drop ``name`` if it still points at ``pid``; True if it did."""
        entry = self.names.get(name)
        if entry is None or entry.pid != pid:
            return False
        del self.names[name]
        self.custom.pop((name, pid), None)
        names = self.by_pid.get(pid)
        if names is not None:
            names.discard(name)
            if not names:
                del self.by_pid[pid]
                if P.rt.is_local(pid):
                    P.remove_exit_hook(pid, self._process_exited)
        return True

    def _process_exited(self, pid: Pid, reason: Any) -> None:
        names = self.by_pid.pop(pid, None)
        if not names:
            return
        gone = []
        for name in names:
            entry = self.names.get(name)
            if entry is not None and entry.pid == pid:
                del self.names[name]
                self.custom.pop((name, pid), None)
                gone.append(name)
        if gone:
            self._broadcast_unreg(distribution(), gone, pid)

    def _broadcast_unreg(self, dist: N.Distribution | None, names: list[Any], pid: Pid) -> None:
        if dist is not None:
            for node in list(self.peers):
                self._send(dist, node, ["unreg", None, names, pid])

    def _merge(self, dist: N.Distribution, name: Any, entry: _Entry) -> None:
        """Take in ``entry`` from another node; settle a clash with the table's."""
        current = self.names.get(name)
        if current is None:
            self._put(dist, name, entry)
            return
        if current.pid == entry.pid:
            return
        first, second = (current, entry) if current.pid < entry.pid else (entry, current)
        method = first.method if first.method in RESOLVERS or first.method == _CUSTOM else "random_exit"
        if method == _CUSTOM:
            fn = self.custom.get((name, first.pid))
            if first.registrar == self.node and fn is not None:
                if name not in self.resolving:
                    self.resolving.add(name)
                    P.spawn(self._resolve_custom, dist, name, first, second, fn)
                return
            if first.registrar in self.peers:
                self.deferred[name] = (first, second)  # its registrar decides, and tells every node
                return
            method = "random_exit"  # nobody left to ask
        winner = None if method == "notify_all" else survivor(first.pid, second.pid)
        self._settle(dist, name, first, second, winner, method)

    def _settle(
        self, dist: N.Distribution | None, name: Any, e1: _Entry, e2: _Entry, winner: Pid | None, method: str
    ) -> None:
        """Apply the decision of a clash between ``e1`` and ``e2`` (idempotent).

        A node speaks for its own processes: it tells its peers that a local
        loser lost the name, so that a node which never saw the clash (it
        learned only one of the two) forgets the loser too.
        """
        self.deferred.pop(name, None)
        fn = self.custom.get((name, winner)) if winner is not None else None
        self._forget(name, e1.pid)
        self._forget(name, e2.pid)
        if winner is not None:
            if fn is not None:
                self.custom[(name, winner)] = fn
            self._put(dist, name, e1 if e1.pid == winner else e2)
        for loser, other in ((e1.pid, e2.pid), (e2.pid, e1.pid)):
            if loser == winner or not P.rt.is_local(loser):
                continue
            self._broadcast_unreg(dist, [name], loser)
            if not _live(loser):
                continue
            log.info("global name %r: clash between %r and %r settled by %s", name, e1.pid, e2.pid, method)
            if method == "random_exit":
                P.signal_exit(loser, Pid(P.rt.node, 0, P.rt.creation), "kill", False)
            elif method == "random_notify":
                P.send(loser, ("global_name_conflict", name))
            elif method == "notify_all":
                P.send(loser, ("global_name_conflict", name, other))

    async def _resolve_custom(
        self, dist: N.Distribution, name: Any, e1: _Entry, e2: _Entry, fn: Callable[..., Any]
    ) -> None:
        try:
            result = fn(name, e1.pid, e2.pid)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            log.exception("global name %r: the resolver %r failed; dropping the name", name, fn)
            result = None
        finally:
            self.resolving.discard(name)
        winner = result if result in (e1.pid, e2.pid) else None
        self._settle(dist, name, e1, e2, winner, _CUSTOM)
        decision = None if winner is None else (e1 if e1.pid == winner else e2).wire(name)
        for node in list(self.peers):
            self._send(dist, node, ["resolved", name, e1.wire(name), e2.wire(name), decision])

    # --- locks ---------------------------------------------------------------------------

    def _try_lock(self, lock_id: Any, holder: Pid) -> bool:
        current = self.locks.get(lock_id)
        if current is None:
            self.locks[lock_id] = holder
            return True
        return current == holder

    def _release(self, lock_id: Any, holder: Pid) -> None:
        if self.locks.get(lock_id) == holder:
            del self.locks[lock_id]

    def _release_on(self, dist: N.Distribution | None, lock_id: Any, holder: Pid, nodes: Iterable[str]) -> None:
        if dist is None:
            return
        kind, key = _wire_lock(lock_id)
        for node in nodes:
            if node in self.peers:
                self._send(dist, node, ["unlock", kind, key, holder])

    async def _round(
        self, dist: N.Distribution | None, nodes: list[str], build: Callable[[Ref], list[Any]]
    ) -> dict[str, Any]:
        """Send ``build(ref)`` to ``nodes``; return their replies (``_GONE`` for
        nodes that went down; nodes that did not answer in time are absent)."""
        if dist is None or not nodes:
            return {}
        ref = P.make_ref()
        rnd = _Round(nodes)
        self.rounds[ref] = rnd
        try:
            payload = build(ref)
            for node in nodes:
                self._send(dist, node, payload)
            # a plain timer that ends the wait (cheaper than asyncio.timeout,
            # which costs a good part of a round's CPU time on a busy node)
            expiry = asyncio.get_running_loop().call_later(ROUND_TIMEOUT, rnd.expire)
            try:
                await rnd.fut
            finally:
                expiry.cancel()
            if rnd.waiting:
                log.warning("global: no answer from %s within %ss", sorted(rnd.waiting), ROUND_TIMEOUT)
        finally:
            del self.rounds[ref]
        return rnd.results

    async def _acquire(
        self, dist: N.Distribution | None, lock_id: Any, holder: Pid, here: bool, nodes: list[str]
    ) -> tuple[Pid | None, list[str]] | None:
        """Take ``lock_id`` here (if ``here``) and on ``nodes``, all or none.

        Returns None when some node refused (everything taken is released),
        else ``(a pid holding the name somewhere or None, the nodes that
        granted)``; the pid is only looked for when ``lock_id`` locks a name.
        """
        if here and not self._try_lock(lock_id, holder):
            return None
        kind, key = _wire_lock(lock_id)
        try:
            replies = await self._round(dist, nodes, lambda ref: ["lock", ref, kind, key, holder])
        except BaseException:
            if here:
                self._release(lock_id, holder)
            self._release_on(dist, lock_id, holder, nodes)
            raise
        granted, refused, taken = [], False, None
        for node in nodes:
            reply = replies.get(node)
            if reply is _GONE:
                continue
            if reply is None or not reply[0]:
                refused = True
                continue
            granted.append(node)
            if reply[1] is not None:
                taken = reply[1]
        if refused:
            if here:
                self._release(lock_id, holder)
            self._release_on(dist, lock_id, holder, granted)
            return None
        return taken, granted

    def _holder_exited(self, pid: Pid, reason: Any) -> None:
        held = self.held.pop(pid.id, None)
        if held:
            dist = distribution()
            for lock_id, (here, nodes) in held.items():
                if here:
                    self._release(lock_id, pid)
                self._release_on(dist, lock_id, pid, nodes)

    def _targets(self, nodes: Iterable[str] | None) -> tuple[bool, list[str]]:
        if nodes is None:
            return True, sorted(self.peers) if distribution() is not None else []
        nodes = list(nodes)
        here = self.node in nodes or P.rt.node in nodes
        return here, sorted(n for n in set(nodes) if n in self.peers)

    # --- messages from other nodes ------------------------------------------------------

    def _on_service(self, dist: N.Distribution, node: str, payload: Any) -> None:
        if type(payload) is not list or not payload:
            log.warning("node=%s: malformed global message %r", node, payload)
            return
        handler = self._ops.get(payload[0])
        if handler is None:
            log.debug("node=%s: unknown global message %r", node, payload[0])
            return
        handler(dist, node, *payload[1:])

    def _on_node_event(self, dist: N.Distribution, event: str, node: str, info: dict[str, Any]) -> None:
        if info.get("node_type") != "visible":
            return
        if event == "nodeup":
            self._send(dist, node, ["sync", self._own(), False])
        elif event == "nodedown":
            self._node_down(node)

    def _node_down(self, node: str) -> None:
        self.peers.discard(node)
        for name in [n for n, e in self.names.items() if e.pid.node == node]:
            self._forget(name, self.names[name].pid)
        for lock_id in [lock for lock, holder in self.locks.items() if holder.node == node]:
            del self.locks[lock_id]
        for name in [n for n, (first, _) in self.deferred.items() if first.registrar == node]:
            del self.deferred[name]  # its decider is gone: the entry we hold stays
        for rnd in list(self.rounds.values()):
            rnd.answer(node, _GONE)

    def _on_sync(self, dist: N.Distribution, node: str, entries: list[Any], want_reply: bool) -> None:
        new_peer = node not in self.peers
        self.peers.add(node)
        incoming = {name: _Entry(pid, method, registrar) for name, pid, method, registrar in entries}
        # the sender speaks for its own processes: what it no longer lists is gone
        for name, entry in list(self.names.items()):
            if entry.pid.node == node and (name not in incoming or incoming[name].pid != entry.pid):
                self._forget(name, entry.pid)
        for name, entry in incoming.items():
            self._merge(dist, name, entry)
        if want_reply or new_peer:
            # Our own nodeup sync left before ``node`` was a peer: names we registered or
            # unregistered since then went to neither that sync nor a commit round (those go
            # to peers only). This one covers them; from now on ``node`` gets every round.
            self._send(dist, node, ["sync", self._own(), False])

    def _on_lock(self, dist: N.Distribution, node: str, ref: Ref, kind: str, key: Any, holder: Pid) -> None:
        ok = self._try_lock(_lock_id(kind, key), holder)
        taken = None
        if ok and kind == "name":
            entry = self.names.get(key)
            taken = entry.pid if entry is not None else None
        self._send(dist, node, ["reply", ref, [ok, taken]])

    def _on_unlock(self, dist: N.Distribution, node: str, kind: str, key: Any, holder: Pid) -> None:
        self._release(_lock_id(kind, key), holder)

    def _on_commit(
        self, dist: N.Distribution, node: str, ref: Ref, name: Any, pid: Pid, method: str, registrar: str,
        holder: Pid,
    ) -> None:
        self._merge(dist, name, _Entry(pid, method, registrar))
        self._release((_NAME_LOCK, name), holder)
        self._send(dist, node, ["reply", ref, True])

    def _on_unreg(self, dist: N.Distribution, node: str, ref: Ref | None, names: list[Any], pid: Pid) -> None:
        for name in names:
            if self._forget(name, pid) and name in self.deferred:
                # the entry we kept while a resolver decided is gone: the other one stays
                e1, e2 = self.deferred.pop(name)
                self._put(dist, name, e2 if e1.pid == pid else e1)
        if ref is not None:
            self._send(dist, node, ["reply", ref, True])

    def _on_resolved(
        self, dist: N.Distribution, node: str, name: Any, w1: list[Any], w2: list[Any], decision: list[Any] | None
    ) -> None:
        e1, e2 = _Entry(*w1[1:]), _Entry(*w2[1:])
        self._settle(dist, name, e1, e2, None if decision is None else decision[1], _CUSTOM)

    def _on_reply(self, dist: N.Distribution, node: str, ref: Ref, value: Any) -> None:
        rnd = self.rounds.get(ref)
        if rnd is not None:
            rnd.answer(node, value)

    # --- the API ---------------------------------------------------------------------------

    async def register_name(self, name: Any, pid: Pid, resolve: Resolver) -> bool:
        check_key(name, "global name")
        if type(pid) is not Pid:
            raise BadName(f"a global name is registered for a Pid, not {pid!r}")
        if isinstance(resolve, str):
            if resolve not in RESOLVERS:
                raise RegistryError(f"unknown resolver {resolve!r}: one of {RESOLVERS} or a callable")
            method, fn = resolve, None
        elif callable(resolve):
            method, fn = _CUSTOM, resolve
        else:
            raise RegistryError(f"a resolver is one of {RESOLVERS} or a callable, not {resolve!r}")
        holder = P.self()
        lock_id = (_NAME_LOCK, name)
        attempt = 0
        while True:
            if name in self.names:
                return False
            local = P.rt.is_local(pid)
            if (local and not _live(pid)) or (not local and pid.node not in self.peers):
                return False
            dist = distribution()
            nodes = sorted(self.peers) if dist is not None else []
            got = await self._acquire(dist, lock_id, holder, True, nodes)
            if got is not None:
                taken, granted = got
                if taken is not None or name in self.names or (P.rt.is_local(pid) and not _live(pid)):
                    self._release(lock_id, holder)
                    self._release_on(dist, lock_id, holder, granted)
                    return False
                if fn is not None:
                    self.custom[(name, pid)] = fn
                self._put(dist, name, _Entry(pid, method, self.node))
                self._release(lock_id, holder)
                await self._round(
                    dist,
                    sorted(self.peers) if dist is not None else [],
                    lambda ref: ["commit", ref, name, pid, method, self.node, holder],
                )
                return True
            attempt += 1
            await asyncio.sleep(_backoff(attempt))

    async def unregister_name(self, name: Any) -> None:
        check_key(name, "global name")
        entry = self.names.get(name)
        if entry is None:
            return
        self._forget(name, entry.pid)
        dist = distribution()
        await self._round(
            dist, sorted(self.peers) if dist is not None else [], lambda ref: ["unreg", ref, [name], entry.pid]
        )

    async def set_lock(self, lock_id: Any, nodes: Iterable[str] | None, retries: float) -> bool:
        check_key(lock_id, "lock id")
        holder = P.self()
        attempt = 0
        while True:
            here, targets = self._targets(nodes)
            dist = distribution()
            if await self._acquire(dist, lock_id, holder, here, targets) is not None:
                held = self.held.get(holder.id)
                if held is None:
                    held = self.held[holder.id] = {}
                    P.add_exit_hook(holder, self._holder_exited)
                held[lock_id] = (here, targets)
                return True
            if attempt >= retries:
                return False
            attempt += 1
            await asyncio.sleep(_backoff(attempt))

    def del_lock(self, lock_id: Any, nodes: Iterable[str] | None) -> None:
        holder = P.self()
        held = self.held.get(holder.id)
        record = held.pop(lock_id, None) if held else None
        here, targets = record if record is not None else self._targets(nodes)
        if held is not None and not held:
            del self.held[holder.id]
            P.remove_exit_hook(holder, self._holder_exited)
        if here:
            self._release(lock_id, holder)
        self._release_on(distribution(), lock_id, holder, targets)

    async def sync(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not set(N.Node.list()) <= self.peers:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


_server = _GlobalServer()


async def _via_register(key: Any, pid: Pid) -> bool:
    """``GenServer.start(name=("global", key))``: register across the cluster."""
    return await Global.register_name(key, pid)


class Global:
    """Erlang's ``global`` module: see the module documentation for a guide."""

    @staticmethod
    async def register_name(name: Any, pid: Pid, resolve: Resolver = "random_exit") -> bool:
        """Register ``pid`` under ``name`` on every connected node; all or nothing.

        Returns False when the name is taken somewhere, when ``pid`` is a dead
        local process, or when its node is not connected. ``resolve`` settles
        a clash found when partitions heal (see the module documentation).
        Raises :class:`BadKey` for a bad name, :class:`RegistryError` for a
        bad resolver.
        """
        return await _server.register_name(name, pid, resolve)

    @staticmethod
    async def unregister_name(name: Any) -> None:
        """Remove ``name`` on every connected node (no error when it is not registered)."""
        await _server.unregister_name(name)

    @staticmethod
    def whereis_name(name: Any) -> Pid | None:
        """The pid registered as ``name``, or None; answered from this node's copy."""
        try:
            entry = _server.names.get(name)
        except TypeError:
            raise unhashable(name, "global name") from None
        return entry.pid if entry is not None else None

    @staticmethod
    def send(name: Any, msg: Any) -> Pid:
        """Send ``msg`` to the process registered as ``name``; return its pid.

        Raises :class:`NoProcess` when no process has the name.
        """
        try:
            entry = _server.names.get(name)
        except TypeError:
            raise unhashable(name, "global name") from None
        if entry is None:
            raise NoProcess(("global", name))
        P.send(entry.pid, msg)
        return entry.pid

    @staticmethod
    def registered_names() -> list[Any]:
        """Every global name this node knows."""
        return list(_server.names)

    @staticmethod
    async def set_lock(lock_id: Any, nodes: Iterable[str] | None = None, retries: float = math.inf) -> bool:
        """Take ``lock_id`` for the caller on ``nodes`` (default: all); False after ``retries``."""
        return await _server.set_lock(lock_id, nodes, retries)

    @staticmethod
    def del_lock(lock_id: Any, nodes: Iterable[str] | None = None) -> None:
        """Release a lock the caller holds (no error when it does not)."""
        _server.del_lock(lock_id, nodes)

    @staticmethod
    async def trans(
        lock_id: Any, fn: Callable[[], Any], nodes: Iterable[str] | None = None, retries: float = math.inf
    ) -> Any:
        """Run ``fn()`` (plain or async) holding ``lock_id``; return its result.

        Raises :class:`LockAborted` when the lock cannot be taken within
        ``retries``; the lock is released however ``fn`` ends.
        """
        if not await _server.set_lock(lock_id, nodes, retries):
            raise LockAborted(lock_id)
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            _server.del_lock(lock_id, nodes)

    @staticmethod
    async def sync(timeout: float = 5.0) -> bool:
        """Wait until every connected visible node has exchanged names with this
        one (OTP's ``global:sync()``); False if some have not within ``timeout``."""
        return await _server.sync(timeout)


def install(dist: N.Distribution) -> None:
    """The start hook: serve global names on a node that starts."""
    _server.install(dist)


P.rt.via[SERVICE] = Global.whereis_name
P.rt.via_register[SERVICE] = _via_register
