"""Process groups: Erlang/OTP's ``pg``, named groups of processes across the cluster.

A process joins a *group* (any hashable, encodable term) within a *scope*;
every node that runs the scope learns the membership, so ``get_members``
answers from the local copy without a network round trip::

    PG.join("workers", self())                   # the default scope, "pg"
    for pid in PG.get_members("workers"):
        send(pid, ("job", 42))

Use cases: pub/sub across nodes (join a topic, send to its members), pools of
interchangeable workers, finding "the processes doing X" anywhere.

Scopes
------
A scope is an independent namespace of groups, served on each node that runs
it; nodes only exchange memberships of the scopes both run. The default
scope ``"pg"`` (OTP's name) runs on every node that has loaded
``pymesh.services`` — which ``import pymesh`` does — from the moment the node
starts; it has no owner process and cannot be stopped. Other scopes are
started with ``await PG.start(scope)`` (or :meth:`PG.child_spec` under a
supervisor) and end with their owner process, which takes their local
members with them (the processes themselves are not touched).

Consistency and caveats
-----------------------
* Eventually consistent, as OTP's ``pg``: a join or leave applies at once on
  its own node and is broadcast to the scope's peers, which apply it in the
  order their connection delivers it. There is no lock and no global order.
* When two nodes connect, each sends the other its local memberships (a full
  sync); when they disconnect, each drops the other's members.
* Only local processes can join or leave (:class:`~pymesh.RegistryError`
  otherwise); a process may join a group several times and is then listed
  that many times (it leaves one at a time). A process that ends leaves every
  group at once. Joining a process that is already dead does nothing.

Monitoring (OTP 25.1's shapes)
------------------------------
``PG.monitor_scope()`` returns ``(ref, {group: [pid, ...]})`` and
``PG.monitor(group)`` returns ``(ref, [pid, ...])``: the current members,
then the caller receives ``(ref, "join", group, [pid, ...])`` and ``(ref,
"leave", group, [pid, ...])`` for every later change — from this node or
another, from a sync or a nodedown. ``PG.demonitor(ref)`` stops them; they
stop when the watcher ends.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final

from .._errors import AlreadyRegistered, RegistryError, UnknownRegistry
from ..runtime import _node as N
from ..runtime import _process as P
from ..runtime._supervisor import ChildSpec
from ..wire._types import Pid, Ref
from ._common import check_key, distribution, unhashable

__all__ = ["PG", "DEFAULT_SCOPE"]

log = logging.getLogger("pymesh.pg")

SERVICE: Final = "pg"
#: The scope every node runs, as OTP's ``pg`` (started with the node).
DEFAULT_SCOPE: Final = "pg"
_SCOPE_WATCH: Final[Any] = object()  # the "group" of a scope monitor
_STOP = ("$pg_stop",)


def _remove(members: dict[Any, list[Pid]], group: Any, pids: Iterable[Pid]) -> None:
    """Remove one occurrence of each pid from ``members[group]``."""
    listed = members.get(group)
    if listed is None:
        return
    for pid in pids:
        try:
            listed.remove(pid)
        except ValueError:
            pass
    if not listed:
        del members[group]


class _Scope:
    """One scope on this node: every member it knows, the local ones, its peers."""

    def __init__(self, name: Any, owner: Pid | None) -> None:
        self.name = name
        self.owner = owner
        self.members: dict[Any, list[Pid]] = {}
        self.local: dict[Any, list[Pid]] = {}
        self.remote: dict[str, dict[Any, list[Pid]]] = {}
        self.peers: set[str] = set()  # nodes running this scope, that we exchanged state with
        self.by_proc: dict[int, Counter[Any]] = {}  # local pid.id -> group -> times joined
        self.watchers: dict[Any, dict[Ref, Pid]] = {}  # group (or _SCOPE_WATCH) -> ref -> watcher
        self.watches: dict[Ref, tuple[Any, Pid]] = {}  # ref -> (group, watcher)
        self.watching: dict[int, set[Ref]] = {}  # watcher pid.id -> its refs
        self.closed = False

    # --- talking to peers --------------------------------------------------------------

    def _send(self, dist: N.Distribution | None, node: str, *msg: Any) -> None:
        if dist is not None:
            dist.send_service(node, SERVICE, (self.name, *msg))

    def _broadcast(self, *msg: Any) -> None:
        dist = distribution()
        if dist is not None:
            for node in list(self.peers):
                dist.send_service(node, SERVICE, (self.name, *msg))

    def discover(self, dist: N.Distribution, nodes: Iterable[str]) -> None:
        for node in nodes:
            self._send(dist, node, "discover")

    def _local_pairs(self) -> list[tuple[Any, list[Pid]]]:
        return [(group, list(pids)) for group, pids in self.local.items()]

    # --- events to watchers ---------------------------------------------------------------

    def _notify(self, what: str, group: Any, pids: list[Pid]) -> None:
        for key in (_SCOPE_WATCH, group):
            watchers = self.watchers.get(key)
            if watchers:
                for ref, watcher in list(watchers.items()):
                    P.send(watcher, (ref, what, group, list(pids)))

    def watch(self, group: Any) -> Ref:
        me = P.current()
        ref = P.make_ref()
        self.watchers.setdefault(group, {})[ref] = me.pid
        self.watches[ref] = (group, me.pid)
        refs = self.watching.get(me.pid.id)
        if refs is None:
            refs = self.watching[me.pid.id] = set()
            P.add_exit_hook(me.pid, self._watcher_exited)
        refs.add(ref)
        return ref

    def unwatch(self, ref: Ref) -> bool:
        found = self.watches.pop(ref, None)
        if found is None:
            return False
        group, watcher = found
        watchers = self.watchers.get(group)
        if watchers is not None:
            watchers.pop(ref, None)
            if not watchers:
                del self.watchers[group]
        refs = self.watching.get(watcher.id)
        if refs is not None:
            refs.discard(ref)
            if not refs:
                del self.watching[watcher.id]
                P.remove_exit_hook(watcher, self._watcher_exited)
        return True

    def _watcher_exited(self, pid: Pid, reason: Any) -> None:
        for ref in list(self.watching.pop(pid.id, ())):
            group, _ = self.watches.pop(ref, (None, None))
            watchers = self.watchers.get(group)
            if watchers is not None:
                watchers.pop(ref, None)
                if not watchers:
                    del self.watchers[group]

    # --- local membership ------------------------------------------------------------------

    def join(self, group: Any, pids: list[Pid]) -> None:
        procs = [_local(pid, "join") for pid in pids]
        joined = []
        for proc in procs:
            if proc is None or not proc.alive:
                continue
            pid = proc.pid
            counts = self.by_proc.get(pid.id)
            if counts is None:
                counts = self.by_proc[pid.id] = Counter()
                P.add_exit_hook(pid, self._member_exited)
            counts[group] += 1
            self.local.setdefault(group, []).append(pid)
            self.members.setdefault(group, []).append(pid)
            joined.append(pid)
        if joined:
            self._broadcast("join", group, joined)
            self._notify("join", group, joined)

    def leave(self, group: Any, pids: list[Pid]) -> bool:
        procs = [_local(pid, "leave") for pid in pids]
        left = []
        for pid, proc in zip(pids, procs, strict=True):
            key = proc.pid.id if proc is not None else pid.id
            counts = self.by_proc.get(key)
            if not counts or not counts.get(group):
                continue
            counts[group] -= 1
            if not counts[group]:
                del counts[group]
            member = proc.pid if proc is not None else pid
            _remove(self.local, group, [member])
            _remove(self.members, group, [member])
            left.append(member)
            if not counts:
                del self.by_proc[key]
                P.remove_exit_hook(member, self._member_exited)
        if not left:
            return False
        self._broadcast("leave", group, left)
        self._notify("leave", group, left)
        return True

    def _member_exited(self, pid: Pid, reason: Any) -> None:
        counts = self.by_proc.pop(pid.id, None)
        if not counts or self.closed:
            return
        for group, times in counts.items():
            gone = [pid] * times
            for members in (self.local, self.members):
                listed = members.get(group)
                if listed is not None:
                    listed[:] = [p for p in listed if p != pid]
                    if not listed:
                        del members[group]
            self._broadcast("leave", group, gone)
            self._notify("leave", group, gone)

    # --- remote membership -------------------------------------------------------------------

    def on_message(self, dist: N.Distribution, node: str, op: str, args: tuple[Any, ...]) -> None:
        if op == "discover":
            # as OTP's pg: answer with our members, and ask a peer we did not
            # know for its own (it may have missed our discover)
            self._send(dist, node, "sync", self._local_pairs())
            if node not in self.peers:
                self.peers.add(node)
                self.remote.setdefault(node, {})
                self.discover(dist, [node])
        elif op == "sync":
            self.peers.add(node)
            self._replace(node, {group: list(pids) for group, pids in args[0]})
        elif node not in self.peers:
            return  # not (or no longer) a peer of this scope: ignore its deltas
        elif op == "join":
            group, pids = args
            self.remote.setdefault(node, {}).setdefault(group, []).extend(pids)
            self.members.setdefault(group, []).extend(pids)
            self._notify("join", group, list(pids))
        elif op == "leave":
            group, pids = args
            _remove(self.remote.setdefault(node, {}), group, pids)
            _remove(self.members, group, pids)
            self._notify("leave", group, list(pids))
        elif op == "down":
            self.node_down(node)

    def _replace(self, node: str, new: dict[Any, list[Pid]]) -> None:
        old = self.remote.get(node, {})
        self.remote[node] = new
        for group in list(old.keys() | new.keys()):
            before, after = Counter(old.get(group, ())), Counter(new.get(group, ()))
            gone = list((before - after).elements())
            came = list((after - before).elements())
            if gone:
                _remove(self.members, group, gone)
                self._notify("leave", group, gone)
            if came:
                self.members.setdefault(group, []).extend(came)
                self._notify("join", group, came)

    def node_down(self, node: str) -> None:
        self.peers.discard(node)
        for group, pids in self.remote.pop(node, {}).items():
            if pids:
                _remove(self.members, group, pids)
                self._notify("leave", group, list(pids))

    def shutdown(self) -> None:
        """The owner ended: peers drop our members; our members are forgotten."""
        if self.closed:
            return
        self.closed = True
        if _scopes.get(self.name) is self:
            del _scopes[self.name]
        self._broadcast("down")
        for pid_id in list(self.by_proc):
            proc = P.rt.procs.get(pid_id)
            if proc is not None:
                P.remove_exit_hook(proc.pid, self._member_exited)
        self.by_proc.clear()
        for pid_id in list(self.watching):
            proc = P.rt.procs.get(pid_id)
            if proc is not None:
                P.remove_exit_hook(proc.pid, self._watcher_exited)
        self.watching.clear()

    def owner_exited(self, pid: Pid, reason: Any) -> None:
        self.shutdown()

    def relocate(self) -> None:
        """A node start renamed the local pids: list members and watchers under
        their new names. (No peer is connected yet, so every member is local.)"""

        def now(pid: Pid) -> Pid:
            proc = P.rt.procs.get(pid.id)
            return proc.pid if proc is not None else pid

        self.local = {group: [now(p) for p in pids] for group, pids in self.local.items()}
        self.members = {group: list(pids) for group, pids in self.local.items()}
        self.remote.clear()
        for watchers in self.watchers.values():
            for ref, watcher in list(watchers.items()):
                watchers[ref] = now(watcher)
                self.watches[ref] = (self.watches[ref][0], watchers[ref])


def _local(pid: Any, what: str) -> P.Process | None:
    if type(pid) is not Pid:
        raise RegistryError(f"only pids can {what} a group, not {pid!r}")
    if not P.rt.is_local(pid):
        raise RegistryError(f"only local processes can {what} a group; {pid!r} lives on {pid.node}")
    return P.rt.procs.get(pid.id)


def _pids(pids: Pid | Iterable[Pid] | None) -> list[Pid]:
    if pids is None:
        return [P.self()]
    if isinstance(pids, Pid):
        return [pids]
    return list(pids)


#: Every scope running on this node, by name.
_scopes: dict[Any, _Scope] = {DEFAULT_SCOPE: _Scope(DEFAULT_SCOPE, None)}


def _scope(name: Any) -> _Scope:
    try:
        return _scopes[name]
    except (KeyError, TypeError):
        raise UnknownRegistry(name) from None


def _group(group: Any) -> Any:
    check_key(group, "group")
    return group


async def _owner(name: Any) -> None:
    P.process_flag("label", f"PG scope {name!r}")
    while await P.receive() != _STOP:
        pass


class PG:
    """OTP's ``pg`` module: see the module documentation for a guide."""

    @staticmethod
    async def start(scope: Any, *, link: bool = False) -> Pid:
        """Start ``scope`` on this node; return its owner's pid.

        Raises :class:`AlreadyRegistered` when it runs already (the default
        scope always does), :class:`BadKey` for a bad scope name.
        """
        check_key(scope, "scope")
        existing = _scopes.get(scope)
        if existing is not None:
            raise AlreadyRegistered(scope, existing.owner)
        owner = (P.spawn_link if link else P.spawn)(_owner, scope)
        sc = _scopes[scope] = _Scope(scope, owner)
        P.add_exit_hook(owner, sc.owner_exited)
        dist = distribution()
        if dist is not None:
            sc.discover(dist, N.Node.list())
        return owner

    @staticmethod
    async def start_link(scope: Any) -> Pid:
        """:meth:`start`, linked to the caller (what a supervisor calls)."""
        return await PG.start(scope, link=True)

    @staticmethod
    def child_spec(scope: Any, *, id: Any = None) -> ChildSpec:
        """A :class:`~pymesh.ChildSpec` running ``scope`` under a supervisor
        (child id ``("PG", scope)`` unless ``id`` is given)."""
        return ChildSpec(("PG", scope) if id is None else id, (functools.partial(PG.start_link, scope), ()))

    @staticmethod
    def stop(scope: Any) -> None:
        """Stop a started scope; :class:`RegistryError` for the default scope."""
        sc = _scope(scope)
        if sc.owner is None:
            raise RegistryError(f"the default scope {scope!r} runs as long as the node")
        sc.shutdown()
        P.send(sc.owner, _STOP)

    @staticmethod
    def join(group: Any, pids: Pid | Iterable[Pid] | None = None, *, scope: Any = DEFAULT_SCOPE) -> None:
        """Add local ``pids`` (default: the caller) to ``group``, once more each."""
        _scope(scope).join(_group(group), _pids(pids))

    @staticmethod
    def leave(group: Any, pids: Pid | Iterable[Pid] | None = None, *, scope: Any = DEFAULT_SCOPE) -> bool:
        """Take one membership of each of ``pids`` (default: the caller) out of
        ``group``; False when none of them was a member (OTP's ``not_joined``)."""
        return _scope(scope).leave(_group(group), _pids(pids))

    @staticmethod
    def get_members(group: Any, *, scope: Any = DEFAULT_SCOPE) -> list[Pid]:
        """Every member of ``group`` on every node of the scope (repeated per join)."""
        try:
            return list(_scope(scope).members.get(group, ()))
        except TypeError:
            raise unhashable(group, "group") from None

    @staticmethod
    def get_local_members(group: Any, *, scope: Any = DEFAULT_SCOPE) -> list[Pid]:
        """The members of ``group`` that run on this node."""
        try:
            return list(_scope(scope).local.get(group, ()))
        except TypeError:
            raise unhashable(group, "group") from None

    @staticmethod
    def which_groups(*, scope: Any = DEFAULT_SCOPE) -> list[Any]:
        """Every group with at least one member anywhere in the scope."""
        return list(_scope(scope).members)

    @staticmethod
    def which_scopes() -> list[Any]:
        """The scopes running on this node."""
        return list(_scopes)

    @staticmethod
    def monitor_scope(*, scope: Any = DEFAULT_SCOPE) -> tuple[Ref, dict[Any, list[Pid]]]:
        """``(ref, {group: members})``; then join/leave events of every group."""
        sc = _scope(scope)
        ref = sc.watch(_SCOPE_WATCH)
        return ref, {group: list(pids) for group, pids in sc.members.items()}

    @staticmethod
    def monitor(group: Any, *, scope: Any = DEFAULT_SCOPE) -> tuple[Ref, list[Pid]]:
        """``(ref, members)``; then join/leave events of ``group``."""
        sc = _scope(scope)
        ref = sc.watch(_group(group))
        return ref, list(sc.members.get(group, ()))

    @staticmethod
    def demonitor(ref: Ref, *, scope: Any = DEFAULT_SCOPE) -> bool:
        """Stop a monitor; False when it was not active."""
        return _scope(scope).unwatch(ref)


# --- on the node ------------------------------------------------------------------------------


def _on_service(dist: N.Distribution, node: str, payload: Any) -> None:
    if type(payload) is not tuple or len(payload) < 2:
        log.warning("node=%s: malformed pg message %r", node, payload)
        return
    sc = _scopes.get(payload[0])
    if sc is not None:
        sc.on_message(dist, node, payload[1], payload[2:])


def _on_node_event(dist: N.Distribution, event: str, node: str, info: dict[str, Any]) -> None:
    if info.get("node_type") != "visible":
        return
    for sc in list(_scopes.values()):
        if event == "nodeup":
            sc.discover(dist, [node])
        elif event == "nodedown":
            sc.node_down(node)


def install(dist: N.Distribution) -> None:
    """The start hook: serve process groups on a node that starts."""
    if SERVICE in dist.services:
        return
    for sc in _scopes.values():
        sc.relocate()
    dist.services[SERVICE] = lambda node, payload: _on_service(dist, node, payload)
    hook: Callable[[str, str, dict[str, Any]], None] = lambda event, node, info: _on_node_event(
        dist, event, node, info
    )
    dist.hooks.append(hook)
    for sc in _scopes.values():  # loaded after peers connected: they missed our nodeup discover
        sc.discover(dist, N.Node.list())
