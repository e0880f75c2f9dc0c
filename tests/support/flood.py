"""Functions the backpressure tests run on ``pymesh run`` nodes with ``rpc_call``.

``tests/`` is on the nodes' ``PYTHONPATH`` (see :class:`support.reliability.RunNode`),
so ``rpc_call(node, "support.flood:flood_wait", ...)`` runs them there.
"""

from __future__ import annotations

import time
from typing import Any

from pymesh import (
    Node,
    Pid,
    WouldBlock,
    receive,
    register,
    send,
    send_nowait,
    send_wait,
    spawn,
)

STATE: dict[str, Any] = {"got": 0}


async def _slow_sink(delay: float) -> None:
    register("slow")
    while True:
        msg = await receive()
        STATE["got"] += 1
        if type(msg) is tuple and msg[0] == "count":
            send(msg[1], ("count", STATE["got"]))
        time.sleep(delay)  # noqa: ASYNC251 - blocks this node's loop: it reads from its sockets this slowly


def start_slow_sink(delay: float) -> Pid:
    """A registered ``slow`` process that takes ``delay`` seconds per message."""
    return spawn(_slow_sink, delay)


def received() -> int:
    return int(STATE["got"])


async def flood_wait(node: str, seconds: float, size: int) -> dict[str, Any]:
    """``send_wait`` ``size``-byte messages to ``("slow", node)`` for ``seconds``."""
    payload = b"x" * size
    sent = 0
    waited = 0.0
    end = time.monotonic() + seconds
    busy_seen = False
    while time.monotonic() < end:
        t0 = time.monotonic()
        await send_wait(("slow", node), payload)
        dt = time.monotonic() - t0
        if dt > 0.001:
            busy_seen = True
            waited += dt
        sent += 1
    stats = Node.statistics(node)
    return {"sent": sent, "waited": waited, "busy_seen": busy_seen, "busy_sends": stats.busy_sends}


def flood_plain(node: str, count: int, size: int) -> dict[str, Any]:
    """``send`` ``count`` messages at once; then see what ``send_nowait`` does."""
    payload = b"x" * size
    for _ in range(count):
        send(("slow", node), payload)
    stats = Node.statistics(node)
    try:
        send_nowait(("slow", node), payload)
        would_block = None
    except WouldBlock as e:
        would_block = {"node": e.node, "queued": e.queued}
    return {
        "busy": stats.busy,
        "busy_sends": stats.busy_sends,
        "backlog": stats.queued_bytes + stats.write_buffer,
        "would_block": would_block,
    }


async def _bounded(limit: int) -> None:
    import asyncio

    from pymesh import process_flag

    process_flag("max_mailbox", limit)
    register("bounded")
    await asyncio.sleep(3600)  # never reads its mailbox


def start_bounded(limit: int) -> Pid:
    """A registered ``bounded`` process with ``max_mailbox`` ``limit`` that never receives."""
    return spawn(_bounded, limit)
