"""How discovery acts on the node: the ``ClusterOps`` protocol and its implementations.

Strategies never connect anything themselves. The topology that runs them
calls a :class:`ClusterOps`: by default :class:`DefaultOps`, which calls
``pymesh.Node.connect / disconnect / list / self`` (imported when first
used, so this package imports without a running node); a topology's
``connect`` / ``disconnect`` / ``list_nodes`` hooks replace single
operations (:class:`HookedOps`), as libcluster's ``{M, F, A}`` triples do;
tests pass a fake that records calls.

Any operation except ``self_name`` and ``dist_port`` may be a coroutine
function or a plain function; the topology awaits what needs awaiting.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from pymesh._errors import PymeshError

__all__ = ["ClusterOps", "DefaultOps", "HookedOps"]

T = TypeVar("T")


@runtime_checkable
class ClusterOps(Protocol):
    """The node operations discovery needs.

    * ``connect(node)`` — connect to ``node``; ``True`` on success.
    * ``disconnect(node)`` — drop the connection to ``node``; ``True`` if
      there was one.
    * ``list_nodes()`` — the names of the nodes connected now (not this one).
    * ``self_name()`` — this node's name, ``name@host``.
    * ``dist_port()`` — the port this node accepts distribution connections
      on, or ``None`` if unknown; advertised by gossip, etcd and eureka.
    """

    def connect(self, node: str) -> bool | Awaitable[bool]: ...

    def disconnect(self, node: str) -> bool | Awaitable[bool]: ...

    def list_nodes(self) -> list[str] | Awaitable[list[str]]: ...

    def self_name(self) -> str: ...

    def dist_port(self) -> int | None: ...


async def maybe_await(value: T | Awaitable[T]) -> T:
    """Return ``value``, awaiting it first if it is awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value


def _node() -> Any:
    # Imported late: discovery is a layer above the runtime, and this module
    # must import (for configuration checks, tests) without a node running.
    import pymesh

    return pymesh.Node


class DefaultOps:
    """:class:`ClusterOps` over ``pymesh.Node``, the node this process runs.

    ``dist_port`` is advertised as given, else asked of ``Node.port()``
    (``None`` while the node is not distributed).
    """

    def __init__(self, dist_port: int | None = None) -> None:
        self._dist_port = dist_port

    async def connect(self, node: str) -> bool:
        return bool(await maybe_await(_node().connect(node)))

    async def disconnect(self, node: str) -> bool:
        return bool(await maybe_await(_node().disconnect(node)))

    async def list_nodes(self) -> list[str]:
        return [str(n) for n in await maybe_await(_node().list())]

    def self_name(self) -> str:
        return str(_node().self())

    def dist_port(self) -> int | None:
        if self._dist_port is not None:
            return self._dist_port
        port = getattr(_node(), "port", None)
        try:
            return int(port()) if port is not None else None
        except PymeshError:
            return None  # not started


class HookedOps:
    """:class:`ClusterOps` that sends some operations to user hooks and the rest to ``base``.

    A hook is a callable (plain or coroutine function): ``connect(node)``
    and ``disconnect(node)`` return a bool, ``list_nodes()`` a list of names.
    """

    def __init__(
        self,
        base: ClusterOps,
        *,
        connect: Callable[[str], Any] | None = None,
        disconnect: Callable[[str], Any] | None = None,
        list_nodes: Callable[[], Any] | None = None,
    ) -> None:
        self._base = base
        self._connect = connect
        self._disconnect = disconnect
        self._list_nodes = list_nodes

    async def connect(self, node: str) -> bool:
        fn = self._connect or self._base.connect
        return bool(await maybe_await(fn(node)))

    async def disconnect(self, node: str) -> bool:
        fn = self._disconnect or self._base.disconnect
        return bool(await maybe_await(fn(node)))

    async def list_nodes(self) -> list[str]:
        fn = self._list_nodes or self._base.list_nodes
        return [str(n) for n in await maybe_await(fn())]

    def self_name(self) -> str:
        return self._base.self_name()

    def dist_port(self) -> int | None:
        return self._base.dist_port()
