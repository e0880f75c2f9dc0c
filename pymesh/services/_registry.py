"""Registry: Elixir's local, decentralized and scalable key-value process storage.

A registry maps keys to the processes that registered them, each with a value.
With ``keys="unique"`` a key points to at most one process; with
``keys="duplicate"`` a key may point to any number of processes (and to the
same process several times). In both cases one process may hold many keys.
Each entry belongs to the process that registered it: when that process ends,
its entries vanish, at once and without a message round trip.

Use cases
---------
* **Naming processes** — start a server under a *via-name*; ``send``,
  ``call``, ``cast``, ``monitor`` and ``whereis`` all accept it::

      await Registry.start("MyApp.Registry", keys="unique")
      name = ("via", "MyApp.Registry", "agent")
      await Counter.start(0, name=name)
      await call(name, "get")

* **Properties** — attach a value to the calling process and read it from
  anywhere: ``Registry.register(reg, "config", {"debug": True})``, then
  ``Registry.lookup(reg, "config")``, ``Registry.update_value(...)``.

* **Dispatching and pub/sub** — in a duplicate registry, subscribers register
  under a topic and publishers dispatch to them::

      await Registry.start("PubSub", keys="duplicate", partitions=4)
      Registry.register("PubSub", "hello", [])            # in each subscriber
      await Registry.dispatch("PubSub", "hello",
                              lambda entries: [send(pid, ("broadcast", "world")) for pid, _ in entries])

A registry runs as an *owner* process (``Registry.start`` returns its pid;
``Registry.child_spec`` puts it under a supervisor). Registering links the
caller to the registry as Elixir does: when the owner stops or crashes, every
process that holds entries receives an exit signal with the owner's reason,
exactly as a link would deliver it (a trapping process gets ``("EXIT",
owner, reason)``); the owner itself is never disturbed by its registrants
ending. A restarted registry starts empty: nothing is left half-registered.

Consistency and caveats
-----------------------
* Everything is local to this node and immediate: ``lookup`` right after
  ``register`` sees the entry, and an entry is gone as soon as its process
  has ended. (Elixir removes entries asynchronously; here removal happens in
  the process's exit, so ``lookup`` never returns a dead process.)
* Only the calling process can register itself; keys must be hashable and
  encodable (:class:`~pymesh.BadKey` otherwise); values may be anything.
* *Partitions* split the tables as in Elixir — unique keys by the key's hash,
  duplicate keys by the registering pid — and ``dispatch(..., parallel=True)``
  runs the callback for the partitions concurrently. pymesh runs on one event
  loop, so partitions are about the shape of dispatching, not about speed.
* Listeners (names or pids) receive ``("register", reg, key, pid, value)`` and
  ``("unregister", reg, key, pid)``. Unlike Elixir, the latter also arrives
  when entries vanish because their process ended: a listener needs no
  monitor to stay in step.

Matching
--------
``match``, ``count_match`` and ``unregister_match`` take a pattern of
:mod:`pymesh.runtime._pattern` over the *value* (``ANY``, types, structural
tuples, lists and dicts) and an optional ``guard(value) -> bool``. Elixir's
``{:"$1", :_, :"$1"}`` (two equal elements) becomes a guard:
``match(reg, key, (ANY, ANY, ANY), lambda v: v[0] == v[2])``.

``select`` and ``count_select`` take a *spec*: a list of clauses
``(pattern, guard, output)``. The pattern matches the entry tuple ``(key,
pid, value)``; ``guard`` is None or ``guard(entry) -> bool``; ``output`` is
None (the entry itself) or ``output(entry) -> result``. Each entry yields the
output of its first matching clause, so Elixir's
``[{{:"$1", :_, :_}, [], [:"$1"]}]`` is ``[((ANY, ANY, ANY), None, lambda e: e[0])]``.
``count_select`` counts the entries some clause matches.

Errors: an unknown registry raises :class:`~pymesh.UnknownRegistry`; a taken
unique key raises :class:`~pymesh.AlreadyRegistered` with the owner in
``e.pid``; ``update_value`` on a duplicate registry raises
:class:`~pymesh.RegistryError`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .._errors import (
    AlreadyRegistered,
    BadName,
    NoProcess,
    RegistryError,
    UnknownRegistry,
)
from ..runtime import _process as P
from ..runtime._pattern import compile_pattern
from ..runtime._supervisor import ChildSpec
from ..wire._types import Pid
from ._common import PLAIN, check_key, unhashable

__all__ = ["Registry", "RegistryStatistics"]

Keys = Literal["unique", "duplicate"]
Entry = tuple[Pid, Any]

_MISSING: Any = object()
_STOP = ("$registry_stop",)


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """A snapshot of one registry, as :meth:`Registry.statistics` returns it."""

    name: Any
    keys: str  # "unique" | "duplicate"
    partitions: int
    entries: int  # registrations (a duplicate key counts once per registration)
    processes: int  # processes holding at least one entry
    listeners: int
    owner: Pid


def _hashable(key: Any) -> None:
    try:
        hash(key)
    except TypeError:
        raise unhashable(key) from None


def _live_proc(pid: Any) -> P.Process | None:
    if type(pid) is not Pid or not P.rt.is_local(pid):
        return None
    proc = P.rt.procs.get(pid.id)
    return proc if proc is not None and proc.alive else None


class _Table:
    """The state of one running registry. Subclasses hold the entries."""

    kind: Keys

    def __init__(
        self, name: Any, partitions: int, listeners: tuple[Any, ...], meta: dict[Any, Any], owner: Pid
    ) -> None:
        self.name = name
        self.n = partitions
        self.parts: list[dict[Any, Any]] = [{} for _ in range(partitions)]
        # the only partition when there is one: the hot paths skip the hashing
        self.single: dict[Any, Any] | None = self.parts[0] if partitions == 1 else None
        # pid.id of each local process with entries -> its keys (see subclasses)
        self.by_proc: dict[int, dict[Any, Any]] = {}
        self.listeners = listeners
        self.meta = meta
        self.owner = owner
        self.closed = False

    # --- bookkeeping shared by both kinds -------------------------------------------

    def _track(self, proc: P.Process) -> dict[Any, Any]:
        """Start following ``proc``: its keys, and a hook that drops them when it ends."""
        keys: dict[Any, Any] = {}
        self.by_proc[proc.pid.id] = keys
        P.add_exit_hook(proc.pid, self._process_exited)
        return keys

    def _untrack(self, pid: Pid) -> None:
        del self.by_proc[pid.id]
        P.remove_exit_hook(pid, self._process_exited)

    def _notify(self, msg: tuple[Any, ...]) -> None:
        for listener in self.listeners:
            try:
                P.send(listener, msg)
            except NoProcess:
                pass  # a named listener that is gone: as Elixir's send to a dead name, ignored

    def _process_exited(self, pid: Pid, reason: Any) -> None:
        keys = self.by_proc.pop(pid.id, None)
        if keys is not None and not self.closed:
            self._drop_all(pid, keys)

    def owner_exited(self, owner: Pid, reason: Any) -> None:
        self.shutdown(reason)

    def shutdown(self, reason: Any) -> None:
        """The owner ended: forget everything, and signal every registrant as a link would."""
        if self.closed:
            return
        self.closed = True
        if _registries.get(self.name) is self:
            del _registries[self.name]
        if P.rt.via.get(self.name) == self.whereis:
            del P.rt.via[self.name]
        if P.rt.via_register.get(self.name) == self.via_register:
            del P.rt.via_register[self.name]
        registrants = list(self.by_proc)
        self.by_proc.clear()
        for part in self.parts:
            part.clear()
        for pid_id in registrants:
            proc = P.rt.procs.get(pid_id)
            if proc is not None and proc.alive:
                P.remove_exit_hook(proc.pid, self._process_exited)
                P.signal_exit(proc.pid, self.owner, reason, False)

    # --- the interface both kinds implement ---------------------------------------------

    def register(self, proc: P.Process, key: Any, value: Any) -> None:
        raise NotImplementedError

    def unregister(self, pid: Pid, key: Any) -> None:
        raise NotImplementedError

    def unregister_match(self, pid: Pid, key: Any, pred: Callable[[Any], Any]) -> None:
        raise NotImplementedError

    def lookup(self, key: Any) -> list[Entry]:
        raise NotImplementedError

    def by_partition(self, key: Any) -> list[list[Entry]]:
        raise NotImplementedError

    def entries(self) -> Iterator[tuple[Any, Pid, Any]]:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def keys_of(self, pid: Pid) -> list[Any]:
        raise NotImplementedError

    def values_of(self, key: Any, pid: Pid) -> list[Any]:
        raise NotImplementedError

    def _drop_all(self, pid: Pid, keys: dict[Any, Any]) -> None:
        raise NotImplementedError

    def whereis(self, key: Any) -> Pid | None:
        raise RegistryError(f"via-names need a unique registry; {self.name!r} has duplicate keys")

    def via_register(self, key: Any, pid: Pid) -> None:
        raise RegistryError(f"via-names need a unique registry; {self.name!r} has duplicate keys")


class _Unique(_Table):
    """``parts[i]``: key -> (pid, value); ``by_proc[pid.id]``: {key: None} (an ordered set)."""

    kind: Keys = "unique"

    def _part(self, key: Any) -> dict[Any, Entry]:
        try:
            return self.parts[hash(key) % self.n]
        except TypeError:
            raise unhashable(key) from None

    def register(self, proc: P.Process, key: Any, value: Any) -> None:
        part = self.single
        if part is None:
            part = self._part(key)
        try:
            old = part.get(key)
        except TypeError:
            raise unhashable(key) from None
        if old is not None:
            raise AlreadyRegistered(key, old[0])
        if type(key) not in PLAIN:
            check_key(key)
        pid = proc.pid
        part[key] = (pid, value)
        keys = self.by_proc.get(pid.id)
        if keys is None:
            keys = self._track(proc)
        keys[key] = None
        if self.listeners:
            self._notify(("register", self.name, key, pid, value))

    def unregister(self, pid: Pid, key: Any) -> None:
        _hashable(key)
        part = self.single if self.single is not None else self._part(key)
        keys = self.by_proc.get(pid.id)
        if keys is None or key not in keys:
            return
        del keys[key]
        del part[key]
        if not keys:
            self._untrack(pid)
        if self.listeners:
            self._notify(("unregister", self.name, key, pid))

    def unregister_match(self, pid: Pid, key: Any, pred: Callable[[Any], Any]) -> None:
        part = self.single if self.single is not None else self._part(key)
        try:
            entry = part.get(key)
        except TypeError:
            raise unhashable(key) from None
        if entry is not None and entry[0] == pid and pred(entry[1]):
            self.unregister(pid, key)

    def lookup(self, key: Any) -> list[Entry]:
        part = self.single if self.single is not None else self._part(key)
        try:
            entry = part.get(key)
        except TypeError:
            raise unhashable(key) from None
        return [entry] if entry is not None else []

    def by_partition(self, key: Any) -> list[list[Entry]]:
        found = self.lookup(key)
        return [found] if found else []

    def entries(self) -> Iterator[tuple[Any, Pid, Any]]:
        for part in self.parts:
            for key, (pid, value) in list(part.items()):
                yield key, pid, value

    def count(self) -> int:
        return sum(len(part) for part in self.parts)

    def keys_of(self, pid: Pid) -> list[Any]:
        keys = self.by_proc.get(pid.id) if P.rt.is_local(pid) else None
        return list(keys) if keys else []

    def values_of(self, key: Any, pid: Pid) -> list[Any]:
        return [value for owner, value in self.lookup(key) if owner == pid]

    def update_value(self, pid: Pid, key: Any, fn: Callable[[Any], Any]) -> tuple[Any, Any] | None:
        part = self.single if self.single is not None else self._part(key)
        try:
            entry = part.get(key)
        except TypeError:
            raise unhashable(key) from None
        if entry is None or entry[0] != pid:
            return None
        old = entry[1]
        new = fn(old)
        if part.get(key) is entry:  # fn could have unregistered it
            part[key] = (pid, new)
        return new, old

    def _drop_all(self, pid: Pid, keys: dict[Any, Any]) -> None:
        single = self.single
        for key in keys:
            part = single if single is not None else self.parts[hash(key) % self.n]
            part.pop(key, None)
        if self.listeners:
            for key in keys:
                self._notify(("unregister", self.name, key, pid))

    def whereis(self, key: Any) -> Pid | None:
        found = self.lookup(key)
        return found[0][0] if found else None

    def via_register(self, key: Any, pid: Pid) -> None:
        proc = _live_proc(pid)
        if proc is None:
            raise BadName(f"cannot register {key!r} in {self.name!r}: {pid!r} is not a live local process")
        self.register(proc, key, None)


class _Duplicate(_Table):
    """``parts[pid.id % n]``: key -> {slot: (pid, value)}; ``by_proc[pid.id]``: key -> [slot, ...].

    Slots make removing one process's entries O(its entries), however many
    other processes share the key; ``lookup`` is one ``list(dict.values())``.
    """

    kind: Keys = "duplicate"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.slots = itertools.count()
        self.total = 0

    def register(self, proc: P.Process, key: Any, value: Any) -> None:
        pid = proc.pid
        part = self.single if self.single is not None else self.parts[pid.id % self.n]
        try:
            slots = part.get(key)
        except TypeError:
            raise unhashable(key) from None
        if type(key) not in PLAIN:
            check_key(key)
        if slots is None:
            slots = part[key] = {}
        slot = next(self.slots)
        slots[slot] = (pid, value)
        self.total += 1
        keys = self.by_proc.get(pid.id)
        if keys is None:
            keys = self._track(proc)
        mine = keys.get(key)
        if mine is None:
            keys[key] = [slot]
        else:
            mine.append(slot)
        if self.listeners:
            self._notify(("register", self.name, key, pid, value))

    def _remove_slots(self, pid: Pid, key: Any, slots: list[int]) -> None:
        part = self.single if self.single is not None else self.parts[pid.id % self.n]
        entries = part[key]
        for slot in slots:
            del entries[slot]
        if not entries:
            del part[key]
        self.total -= len(slots)

    def unregister(self, pid: Pid, key: Any) -> None:
        _hashable(key)
        keys = self.by_proc.get(pid.id)
        slots = keys.pop(key, None) if keys is not None else None
        if slots is None:
            return
        self._remove_slots(pid, key, slots)
        if not keys:
            self._untrack(pid)
        if self.listeners:
            self._notify(("unregister", self.name, key, pid))

    def unregister_match(self, pid: Pid, key: Any, pred: Callable[[Any], Any]) -> None:
        _hashable(key)
        keys = self.by_proc.get(pid.id)
        slots = keys.get(key) if keys is not None else None
        if not slots:
            return
        assert keys is not None
        part = self.single if self.single is not None else self.parts[pid.id % self.n]
        entries = part[key]
        gone = [s for s in slots if pred(entries[s][1])]
        if not gone:
            return
        self._remove_slots(pid, key, gone)
        left = [s for s in slots if s not in gone]
        if left:
            keys[key] = left
        else:
            del keys[key]
            if not keys:
                self._untrack(pid)
        if self.listeners:
            self._notify(("unregister", self.name, key, pid))

    def lookup(self, key: Any) -> list[Entry]:
        try:
            if self.single is not None:
                entries = self.single.get(key)
                return list(entries.values()) if entries else []
            return [e for part in self.parts if (entries := part.get(key)) for e in entries.values()]
        except TypeError:
            raise unhashable(key) from None

    def by_partition(self, key: Any) -> list[list[Entry]]:
        try:
            return [list(entries.values()) for part in self.parts if (entries := part.get(key))]
        except TypeError:
            raise unhashable(key) from None

    def entries(self) -> Iterator[tuple[Any, Pid, Any]]:
        for part in self.parts:
            for key, entries in list(part.items()):
                for pid, value in list(entries.values()):
                    yield key, pid, value

    def count(self) -> int:
        return self.total

    def keys_of(self, pid: Pid) -> list[Any]:
        keys = self.by_proc.get(pid.id) if P.rt.is_local(pid) else None
        return [key for key, slots in keys.items() for _ in slots] if keys else []

    def values_of(self, key: Any, pid: Pid) -> list[Any]:
        _hashable(key)
        keys = self.by_proc.get(pid.id) if P.rt.is_local(pid) else None
        slots = keys.get(key) if keys else None
        if not slots:
            return []
        entries = self.parts[pid.id % self.n][key]
        return [entries[s][1] for s in slots]

    def _drop_all(self, pid: Pid, keys: dict[Any, Any]) -> None:
        for key, slots in keys.items():
            self._remove_slots(pid, key, slots)
        if self.listeners:
            for key in keys:
                self._notify(("unregister", self.name, key, pid))


#: Every running registry, by name.
_registries: dict[Any, _Table] = {}


def _get(reg: Any) -> _Table:
    try:
        return _registries[reg]
    except KeyError:
        raise UnknownRegistry(reg) from None
    except TypeError:
        raise UnknownRegistry(reg) from None


async def _owner(name: Any) -> None:
    P.process_flag("label", f"Registry {name!r}")
    while await P.receive() != _STOP:
        pass


def _clauses(spec: Any) -> list[tuple[Callable[[Any], Any], Callable[[Any], Any] | None]]:
    if not isinstance(spec, list):
        raise RegistryError(f"a select spec is a list of (pattern, guard, output) clauses, not {spec!r}")
    out = []
    for clause in spec:
        if type(clause) is not tuple or not 1 <= len(clause) <= 3:
            raise RegistryError(f"a select clause is (pattern, guard, output), not {clause!r}")
        pattern, guard, output = (clause + (None, None))[:3]
        if output is not None and not callable(output):
            raise RegistryError(f"a select output is None or a callable, not {output!r}")
        out.append((compile_pattern(pattern, guard), output))
    return out


async def _apply(fn: Callable[[list[Entry]], Any], entries: list[Entry]) -> None:
    result = fn(entries)
    if inspect.isawaitable(result):
        await result


class Registry:
    """Elixir's ``Registry`` module: see the module documentation for a guide."""

    # --- starting and stopping ------------------------------------------------------------

    @staticmethod
    async def start(
        name: Any,
        *,
        keys: Keys = "unique",
        partitions: int = 1,
        listeners: Iterable[Any] = (),
        meta: dict[Any, Any] | Iterable[tuple[Any, Any]] | None = None,
        link: bool = False,
    ) -> Pid:
        """Start registry ``name``; return the pid of its owner process.

        ``keys`` is ``"unique"`` or ``"duplicate"``; ``partitions`` a positive
        int; ``listeners`` process names or pids told of (un)registrations;
        ``meta`` the initial metadata. With ``link`` the owner is linked to
        the caller. Raises :class:`AlreadyRegistered` (owner in ``e.pid``)
        when a registry of that name runs, and :class:`RegistryError` for a
        bad option.
        """
        if keys not in ("unique", "duplicate"):
            raise RegistryError(f"keys must be 'unique' or 'duplicate', not {keys!r}")
        if type(partitions) is not int or partitions < 1:
            raise RegistryError(f"partitions must be a positive int, not {partitions!r}")
        listeners = tuple(listeners)
        for listener in listeners:
            if not (type(listener) is Pid or (type(listener) is str and listener)):
                raise RegistryError(f"a listener is a process name or a pid, not {listener!r}")
        try:
            hash(name)
        except TypeError:
            raise RegistryError(f"a registry name must be hashable, not {name!r}") from None
        existing = _registries.get(name)
        if existing is not None:
            raise AlreadyRegistered(name, existing.owner)
        if name in P.rt.via:
            raise RegistryError(f"{name!r} names another via resolver already (e.g. 'global')")
        meta = dict(meta or {})
        owner = (P.spawn_link if link else P.spawn)(_owner, name)
        table = (_Unique if keys == "unique" else _Duplicate)(name, partitions, listeners, meta, owner)
        _registries[name] = table
        P.rt.via[name] = table.whereis
        P.rt.via_register[name] = table.via_register
        P.add_exit_hook(owner, table.owner_exited)
        return owner

    @staticmethod
    async def start_link(
        name: Any,
        *,
        keys: Keys = "unique",
        partitions: int = 1,
        listeners: Iterable[Any] = (),
        meta: dict[Any, Any] | Iterable[tuple[Any, Any]] | None = None,
    ) -> Pid:
        """:meth:`start`, linked to the caller (what a supervisor calls)."""
        return await Registry.start(name, keys=keys, partitions=partitions, listeners=listeners, meta=meta, link=True)

    @staticmethod
    def child_spec(
        name: Any,
        *,
        keys: Keys = "unique",
        partitions: int = 1,
        listeners: Iterable[Any] = (),
        meta: dict[Any, Any] | None = None,
        id: Any = None,
    ) -> ChildSpec:
        """A :class:`~pymesh.ChildSpec` starting this registry under a supervisor.

        The child id is ``id``, by default ``("Registry", name)``.
        """
        start = functools.partial(
            Registry.start_link, name, keys=keys, partitions=partitions, listeners=tuple(listeners), meta=meta
        )
        return ChildSpec(("Registry", name) if id is None else id, (start, ()), type="supervisor")

    @staticmethod
    def stop(reg: Any) -> None:
        """Stop the registry: its entries are gone when this returns, and every
        registrant receives the exit signal ``"normal"`` (ignored unless it
        traps exits). Raises :class:`UnknownRegistry`."""
        table = _get(reg)
        table.shutdown("normal")
        P.send(table.owner, _STOP)

    # --- registering ------------------------------------------------------------------------

    @staticmethod
    def register(reg: Any, key: Any, value: Any = None) -> Pid:
        """Register the calling process under ``key`` with ``value``; return the owner pid.

        Unique registries raise :class:`AlreadyRegistered` (owner in
        ``e.pid``) for a taken key — even when the caller holds it; duplicate
        registries accept any number of entries. Raises :class:`BadKey` for an
        unhashable or unencodable key, :class:`UnknownRegistry`.
        """
        try:
            table = _registries[reg]
        except (KeyError, TypeError):
            raise UnknownRegistry(reg) from None
        table.register(P.current(), key, value)
        return table.owner

    @staticmethod
    def unregister(reg: Any, key: Any) -> None:
        """Remove every entry of the calling process under ``key`` (no error when none)."""
        _get(reg).unregister(P.self(), key)

    @staticmethod
    def unregister_match(reg: Any, key: Any, pattern: Any, guard: Callable[[Any], Any] | None = None) -> None:
        """Remove the caller's entries under ``key`` whose value matches ``pattern`` (and ``guard``)."""
        _get(reg).unregister_match(P.self(), key, compile_pattern(pattern, guard))

    @staticmethod
    def update_value(reg: Any, key: Any, fn: Callable[[Any], Any]) -> tuple[Any, Any] | None:
        """Replace the caller's value under unique ``key`` with ``fn(old)``.

        Returns ``(new, old)``, or None when the caller does not hold ``key``
        (Elixir's ``:error``). Raises :class:`RegistryError` for a duplicate
        registry.
        """
        table = _get(reg)
        if not isinstance(table, _Unique):
            raise RegistryError(f"update_value needs a unique registry; {reg!r} has duplicate keys")
        return table.update_value(P.self(), key, fn)

    # --- reading ------------------------------------------------------------------------------

    @staticmethod
    def lookup(reg: Any, key: Any) -> list[Entry]:
        """``[(pid, value)]`` for ``key``: at most one for a unique registry, in
        registration order for a duplicate one; ``[]`` when none."""
        try:
            table = _registries[reg]
        except (KeyError, TypeError):
            raise UnknownRegistry(reg) from None
        return table.lookup(key)

    @staticmethod
    def match(reg: Any, key: Any, pattern: Any, guard: Callable[[Any], Any] | None = None) -> list[Entry]:
        """``[(pid, value)]`` under ``key`` whose value matches ``pattern`` (and ``guard``)."""
        table = _get(reg)
        pred = compile_pattern(pattern, guard)
        return [entry for entry in table.lookup(key) if pred(entry[1])]

    @staticmethod
    def count_match(reg: Any, key: Any, pattern: Any, guard: Callable[[Any], Any] | None = None) -> int:
        """How many entries :meth:`match` would return."""
        return len(Registry.match(reg, key, pattern, guard))

    @staticmethod
    def select(reg: Any, spec: list[tuple[Any, ...]]) -> list[Any]:
        """The outputs of ``spec``'s clauses over every ``(key, pid, value)``
        entry (see the module documentation); :class:`RegistryError` for a
        malformed spec."""
        table = _get(reg)
        clauses = _clauses(spec)
        out = []
        for entry in table.entries():
            for pred, output in clauses:
                if pred(entry):
                    out.append(entry if output is None else output(entry))
                    break
        return out

    @staticmethod
    def count_select(reg: Any, spec: list[tuple[Any, ...]]) -> int:
        """How many entries some clause of ``spec`` matches."""
        table = _get(reg)
        clauses = _clauses(spec)
        return sum(1 for entry in table.entries() if any(pred(entry) for pred, _ in clauses))

    @staticmethod
    def count(reg: Any) -> int:
        """The number of entries (registrations) in the registry."""
        return _get(reg).count()

    @staticmethod
    def keys(reg: Any, pid: Pid) -> list[Any]:
        """The keys ``pid`` holds (repeated for repeated duplicate entries); ``[]``
        for a dead or remote pid."""
        return _get(reg).keys_of(pid)

    @staticmethod
    def values(reg: Any, key: Any, pid: Pid) -> list[Any]:
        """The values ``pid`` registered under ``key``."""
        return _get(reg).values_of(key, pid)

    @staticmethod
    async def dispatch(
        reg: Any, key: Any, fn: Callable[[list[Entry]], Any], *, parallel: bool = False
    ) -> None:
        """Call ``fn(entries)`` once per partition that holds entries for ``key``.

        ``fn`` runs in the caller (tasks of the caller with ``parallel``); it
        may be a plain or an async function. It is never called with an empty
        list. With ``parallel=True`` the partitions' calls of an async ``fn``
        run concurrently. An exception from ``fn`` propagates.
        """
        groups = _get(reg).by_partition(key)
        if parallel and len(groups) > 1:
            await asyncio.gather(*(_apply(fn, group) for group in groups))
            return
        for group in groups:
            await _apply(fn, group)

    # --- metadata -------------------------------------------------------------------------------

    @staticmethod
    def meta(reg: Any, key: Any, default: Any = None) -> Any:
        """The metadata under ``key``, or ``default`` when there is none."""
        return _get(reg).meta.get(key, default)

    @staticmethod
    def put_meta(reg: Any, key: Any, value: Any) -> None:
        """Store ``value`` as metadata ``key``."""
        _get(reg).meta[key] = value

    @staticmethod
    def delete_meta(reg: Any, key: Any) -> None:
        """Remove metadata ``key`` (no error when absent)."""
        _get(reg).meta.pop(key, None)

    # --- introspection ---------------------------------------------------------------------------

    @staticmethod
    def statistics(reg: Any) -> RegistryStatistics:
        """A :class:`RegistryStatistics` snapshot of the registry."""
        table = _get(reg)
        return RegistryStatistics(
            name=table.name,
            keys=table.kind,
            partitions=table.n,
            entries=table.count(),
            processes=len(table.by_proc),
            listeners=len(table.listeners),
            owner=table.owner,
        )

    @staticmethod
    def which() -> list[Any]:
        """The names of the running registries."""
        return list(_registries)
