"""Small workloads for a demo cluster: the traffic the screenshots, tests and
benchmark of the pane watch. Started on a node with
``Node.spawn(node, "pymesh.tui._demo:chatter", ...)``.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from pymesh import Node, Pid, ReceiveTimeout, receive, register, self, send, spawn

__all__ = ["chatter", "sink", "flood", "idle", "register_idle"]

_PAYLOADS: list[Any] = [
    ("order", 42, {"sku": "A-17", "qty": 3}),
    {"event": "login", "user": "ada", "ok": True},
    "hello from the mesh",
    b"\x00\x01binary\xff",
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    ("metrics", {"cpu": 0.42, "mem": 1_234_567, "tags": ["a", "b"]}),
    ("blob", "x" * 5000),
]


async def idle(name: str | None = None) -> None:
    """Register ``name`` (if given) and wait forever."""
    if name:
        register(name)
    while True:
        await receive()


async def register_idle(names: list[str]) -> None:
    """Start one idle registered process per name (returns at once)."""
    for name in names:
        spawn(idle, name)


async def _short_lived(peer_worker: Any) -> None:
    # link to and monitor a peer's worker, then end normally: link, monitor,
    # exit ("normal", which the worker ignores) and demonitor all cross the wire
    from pymesh import link, monitor

    link(peer_worker)
    monitor(peer_worker)
    await asyncio.sleep(0.2)


async def chatter(name: str, peers: list[str], rate: float = 20.0) -> None:
    """Register ``name``; send ``rate`` messages a second, round robin, to
    ``(name, peer)`` for each peer, with varied payloads; every few seconds
    start a short-lived process that links to and monitors a peer's worker."""
    register(name)
    payloads = itertools.cycle(_PAYLOADS)
    targets = itertools.cycle(peers) if peers else None
    period = 1.0 / rate if rate > 0 else 1.0
    loop = asyncio.get_running_loop()
    next_send = loop.time()
    last_spawn = next_send
    peer_worker = None
    while True:
        wait = next_send - loop.time()
        if wait > 0:
            try:
                msg = await receive(timeout=wait)
                if type(msg) is tuple and len(msg) == 2 and type(msg[0]) is Pid:
                    peer_worker = msg[0]
            except ReceiveTimeout:
                pass
            continue
        next_send += period
        if targets is not None:
            peer = next(targets)
            if peer in Node.list("connected"):
                send((name, peer), (self(), next(payloads)))
        now = loop.time()
        if peer_worker is not None and now - last_spawn > 3.0:
            last_spawn = now
            spawn(_short_lived, peer_worker)


async def sink(name: str = "sink") -> None:
    """Register ``name`` and count messages; ``("count", pid)`` is answered
    with ``("count", n)``; ``("reset",)`` zeroes the count."""
    register(name)
    n = 0
    while True:
        m = await receive()
        if type(m) is tuple and m:
            tag = m[0]
            if tag == "count":
                send(m[1], ("count", n))
                continue
            if tag == "reset":
                n = 0
                continue
        n += 1


async def flood(target: Any, rate: float, seconds: float, report_to: Any = None) -> int:
    """Send ``("load", i, payload)`` to ``target`` at ``rate`` msgs/s (0: as fast
    as possible) for ``seconds``; return (and send to ``report_to``) the count."""
    payload = {"key": "value", "n": 42}
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    batch = 200
    while True:
        now = loop.time()
        if now - start >= seconds:
            break
        if rate > 0:
            due = int((now - start) * rate) - sent
            if due <= 0:
                await asyncio.sleep(0.002)
                continue
            n = min(due, batch * 10)
        else:
            n = batch
        for _ in range(n):
            send(target, ("load", sent, payload))
            sent += 1
        await asyncio.sleep(0)
    if report_to is not None:
        send(report_to, ("flooded", sent))
    return sent


async def _holds(kind: str, cls: Any, reg: str, key: str) -> None:
    cls.register(reg, key)
    await idle()


async def service_names(short: str) -> list[str]:
    """Names of the services' kinds on this node, for the demo's Names pane:
    a local ``Registry``, a ``DistributedRegistry`` and a ``Global`` name, each
    when its module is there. Returns the kinds it could start."""
    started: list[str] = []
    try:
        from pymesh.services import Registry

        await Registry.start("rooms")
        for key in (f"lobby_{short}", f"ops_{short}"):
            spawn(_holds, "registry", Registry, "rooms", key)
        started.append("registry")
    except Exception:  # noqa: BLE001 - a demo shows what there is
        pass
    try:
        from pymesh.services import DistributedRegistry

        await DistributedRegistry.start("users")
        spawn(_holds, "dreg", DistributedRegistry, "users", f"user_{short}")
        started.append("dreg")
    except Exception:  # noqa: BLE001
        pass
    try:
        from pymesh.services import PG

        PG.join("workers", [spawn(idle), spawn(idle)])
        started.append("pg")
    except Exception:  # noqa: BLE001
        pass
    try:
        from pymesh.services import Global

        if await Global.register_name(f"leader_{short}", spawn(idle)):
            started.append("global")
    except Exception:  # noqa: BLE001
        pass
    return started
