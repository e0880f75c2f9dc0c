"""Functions the test nodes run (``rpc_call(node, "support.distreg_node:fn", ...)``).

Shared by the distributed registry, supervisor and etcd registry tests. Each
node records how its watched processes ended in :data:`EXITS`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pymesh
from pymesh import Node, Pid
from pymesh.runtime import _process as P

#: pid -> exit reason of every process started by :func:`spawn_holder` that ended
EXITS: dict[Pid, Any] = {}


# --- partitions -----------------------------------------------------------------------------------


def partition(blocked: list[str]) -> None:
    """Cut this node off from ``blocked`` (connections cut, reconnects refused)."""
    refused = set(blocked)
    Node.set_policy(lambda node: node not in refused)


async def heal(nodes: list[str]) -> list[bool]:
    """Allow every node again and reconnect to ``nodes``."""
    Node.set_policy(None)
    return [await Node.connect(n, timeout=5) for n in nodes if n != Node.self()]


def visible() -> list[str]:
    return Node.list()


# --- processes ------------------------------------------------------------------------------------


async def _hold() -> None:
    while True:
        m = await P.receive()
        if m == "stop":
            return
        if type(m) is tuple and m[0] == "update":  # ("update", reg, key, new value, reply to)
            _, reg, key, value, frm = m
            if value == "<an object>":
                value = object()  # a value that cannot travel
            try:
                answer: Any = _registry().update_value(reg, key, lambda old: value)
            except Exception as e:
                answer = ("error", type(e).__name__)
            P.send(frm, ("updated", answer))


async def update_holder(pid: Pid, reg: str, key: Any, value: Any) -> Any:
    """Have the holder ``pid`` set its value under ``key``; its update_value's answer."""
    P.send(pid, ("update", reg, key, value, P.self()))
    return (await P.receive(lambda m: type(m) is tuple and m[0] == "updated", timeout=5))[1]


def lookup(reg: str, key: Any) -> Any:
    return _registry().lookup(reg, key)


async def _watch(pid: Pid) -> None:
    ref = P.monitor(pid)
    msg = await P.receive(lambda m: type(m) is tuple and len(m) == 5 and m[1] == ref)
    EXITS[pid] = msg[4]


def exit_reason(pid: Pid) -> Any:
    """How a watched process ended, or None while it runs."""
    return EXITS.get(pid)


def is_alive(pid: Pid) -> bool:
    return P.is_alive(pid)


def kill(pid: Pid, reason: Any = "kill") -> None:
    P.exit(pid, reason)


# --- the distributed registry ---------------------------------------------------------------------


def _registry() -> Any:
    from pymesh.services._dist_registry import DistributedRegistry

    return DistributedRegistry


async def start_registry(name: str) -> Pid:
    return await _registry().start(name)


async def start_registry_opts(name: str, opts: dict[str, Any]) -> Pid:
    return await _registry().start(name, **opts)


class Echo(pymesh.GenServer):
    async def handle_call(self, request: Any, frm: Any) -> Any:
        return ("echo", request)


async def start_via_echo(reg: str, key: Any) -> Pid:
    return await Echo.start(name=("via", reg, key))


async def call_via(reg: str, key: Any, request: Any) -> Any:
    return await pymesh.call(("via", reg, key), request)


def select_keys(reg: str, tag: str) -> list[Any]:
    """The keys ``(tag, anything)`` registered, through ``select``."""
    return sorted(_registry().select(reg, [(((tag, pymesh.ANY), pymesh.ANY, pymesh.ANY), None, lambda e: e[0])]))


def entries(reg: str, keys: list[Any]) -> dict[Any, list[tuple[int, Pid]]]:
    """For each key, every entry in the replica as (logical clock, pid)."""
    from pymesh.services._dist_registry import _registries

    r = _registries[reg]
    return {k: sorted((clock, pid) for pid, _, clock in r.rep.map.entries.get(k, {}).values()) for k in keys}


async def spawn_holder(reg: str, key: Any, value: Any = None) -> Any:
    """A process that registers ``key`` and waits; returns its pid, or ("taken", owner)."""
    result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def holder() -> None:
        try:
            _registry().register(reg, key, value)
        except pymesh.AlreadyRegistered as e:
            result.set_result(("taken", e.pid))
            return
        result.set_result(P.self())
        await _hold()

    pid = P.spawn(holder)
    P.spawn(_watch, pid)
    return await result


def whereis(reg: str, key: Any) -> Pid | None:
    return _registry().whereis(reg, key)


def snapshot(reg: str, keys: list[Any]) -> dict[Any, Any]:
    """For each key: (winner pid or None, number of live dots in the replica)."""
    from pymesh.services._dist_registry import _registries

    r = _registries[reg]
    return {k: (r.whereis(k), len(r.rep.map.entries.get(k, {}))) for k in keys}


def count(reg: str) -> int:
    return _registry().count(reg)


def members(reg: str) -> list[str]:
    return _registry().members(reg)


async def register_many(reg: str, prefix: str, n: int) -> list[Pid]:
    return [await spawn_holder(reg, (prefix, i)) for i in range(n)]


def stats(reg: str) -> Any:
    from pymesh.services._dist_registry import _registries

    r = _registries[reg]
    return (r.winners, r.rep.map.entries)
