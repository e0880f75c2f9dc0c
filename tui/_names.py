"""Name providers: each kind of registry the Names pane lists plugs in here.

A provider is two things (the size of Horde's behaviours): a ``kind`` label and
an ``entries()`` method yielding ``(name, pid, owner_node)`` for every name it
holds on the observed node. It runs *on the observed node*, inside a snapshot,
so it must be quick and must not wait; an exception is reported in the pane's
status line and the provider is skipped for that snapshot, never fatal.

Built in:

* ``local`` — the node's registered names (``pymesh.registered()``);
* ``registry``, ``global``, ``pg``, ``dreg`` — the services in
  :mod:`pymesh.services` (local ``Registry``, ``Global`` names, process
  groups, ``DistributedRegistry``), each listed when the node has loaded its
  module (the pane never imports one: that would start it serving).
  They are adapters over the services' BEAM-named public calls
  (``select``, ``registered_names``/``whereis_name``,
  ``which_groups``/``get_members``), so the services depend on nothing here.

A service (or an application) adds its own with :func:`add_provider`; the
provider must be added on the node being observed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import pymesh

from ._api import short_repr
from ._model import NameInfo

__all__ = ["NameProvider", "add_provider", "remove_provider", "providers", "collect"]

Entry = tuple[Any, Any, str]


class NameProvider(Protocol):
    """One kind of name (see the module docstring)."""

    kind: str

    def entries(self) -> Iterable[Entry]: ...


class LocalNames:
    """Names registered with ``pymesh.register`` on this node."""

    kind = "local"

    def entries(self) -> Iterator[Entry]:
        node = pymesh.Node.self()
        for name in pymesh.registered():
            pid = pymesh.whereis(name)
            if pid is not None:
                yield name, pid, node


def _service(*paths: str) -> Any:
    """The first attribute ``module:attr`` whose module is already loaded, else None.

    Never imports: importing :mod:`pymesh.services` makes a node serve global
    names and process groups, and looking must not change what is looked at.
    A node that uses a service has imported it.
    """
    for path in paths:
        module, _, attr = path.partition(":")
        obj: Any = sys.modules.get(module)
        if obj is None:
            continue
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    return None


def _call(obj: Any, *names: str) -> Any:
    for name in names:
        fn = getattr(obj, name, None)
        if callable(fn):
            return fn
    return None


def _registry_names(cls: Any) -> list[Any]:
    """The registries of this kind running on this node (``cls.which()``)."""
    return list(cls.which())


def _select_all(cls: Any, reg: Any) -> list[Any]:
    """Every ``(key, pid, value)`` of registry ``reg``: ``select(reg, [(ANY,)])``
    (a match-everything spec, as Elixir's ``Registry.select``), or
    ``select(reg)`` for a registry whose spec is optional."""
    try:
        return list(cls.select(reg, [(pymesh.ANY,)]))
    except TypeError:
        return list(cls.select(reg))


class RegistryNames:
    """Elixir-style local registries: every ``(key, pid, value)`` of
    ``Registry.select`` for each registry on the node."""

    kind = "registry"

    def __init__(self, registry: Any) -> None:
        self._reg = registry

    def entries(self) -> Iterator[Entry]:
        for reg in _registry_names(self._reg):
            for key, pid, *_ in _select_all(self._reg, reg):
                yield f"{reg}/{key}", pid, getattr(pid, "node", "?")


class GlobalNames:
    """Cluster-wide names: ``registered_names()`` and ``whereis_name(name)``,
    as Erlang's ``:global``."""

    kind = "global"

    def __init__(self, module: Any) -> None:
        self._g = module

    def entries(self) -> Iterator[Entry]:
        names = _call(self._g, "registered_names")
        whereis = _call(self._g, "whereis_name", "whereis")
        if names is None or whereis is None:
            return
        for name in names():
            pid = whereis(name)
            if pid is not None:
                yield name, pid, getattr(pid, "node", "?")


class PgNames:
    """Process groups: ``which_groups()`` and ``get_members(group)``, as
    Erlang's ``pg``; one entry per member."""

    kind = "pg"

    def __init__(self, module: Any) -> None:
        self._pg = module

    def entries(self) -> Iterator[Entry]:
        groups = _call(self._pg, "which_groups")
        members = _call(self._pg, "get_members")
        if groups is None or members is None:
            return
        for group in groups():
            for pid in members(group):
                yield group, pid, getattr(pid, "node", "?")


class DistributedNames:
    """A distributed registry (Horde-like): every ``(key, pid, value)`` of
    ``DistributedRegistry.select`` — cluster-wide, as this node sees it."""

    kind = "dreg"

    def __init__(self, module: Any) -> None:
        self._d = module

    def entries(self) -> Iterator[Entry]:
        for reg in _registry_names(self._d):
            for key, pid, *_ in _select_all(self._d, reg):
                yield f"{reg}/{key}", pid, getattr(pid, "node", "?")


_added: list[NameProvider] = []


def add_provider(provider: NameProvider) -> None:
    """List ``provider``'s names in the pane (replacing one of the same kind)."""
    remove_provider(provider.kind)
    _added.append(provider)


def remove_provider(kind: str) -> None:
    """Stop listing ``kind`` (no error when absent)."""
    _added[:] = [p for p in _added if p.kind != kind]


def _service_providers() -> list[NameProvider]:
    found: list[NameProvider] = []
    reg = _service("pymesh.services:Registry")
    if reg is not None:
        found.append(RegistryNames(reg))
    glob = _service("pymesh.services:Global")
    if glob is not None:
        found.append(GlobalNames(glob))
    pg = _service("pymesh.services:PG")
    if pg is not None:
        found.append(PgNames(pg))
    dreg = _service("pymesh.services:DistributedRegistry")
    if dreg is not None:
        found.append(DistributedNames(dreg))
    return found


def providers() -> list[NameProvider]:
    """Every provider that applies on this node, built-ins first."""
    added = {p.kind for p in _added}
    builtin = [p for p in [LocalNames(), *_service_providers()] if p.kind not in added]
    return builtin + list(_added)


def collect(limit: int) -> tuple[list[NameInfo], int, list[str], list[str]]:
    """Ask every provider: ``(names (at most limit), total, kinds that answered, errors)``."""
    out: list[NameInfo] = []
    total = 0
    kinds: list[str] = []
    errors: list[str] = []
    for provider in providers():
        try:
            for name, pid, node in provider.entries():
                total += 1
                if len(out) < limit:
                    out.append(NameInfo(provider.kind, _text(name), _text(pid), str(node)))
            kinds.append(provider.kind)
        except Exception as e:  # a broken provider must not take the pane down
            errors.append(f"{provider.kind}: {type(e).__name__}: {e}")
    return out, total, kinds, errors


def _text(value: Any) -> str:
    return value if type(value) is str else short_repr(value, 60)
