"""Functions the test nodes run for the EtcdRegistry tests (``support.etcd_node:fn``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymesh import AlreadyRegistered, Pid, PymeshError
from pymesh.runtime import _process as P
from pymesh.services._etcd_registry import EtcdRegistry

from .distreg_node import _hold, _watch


async def start(reg: str, url: str, ttl: int = 2, timeout: float = 1.0) -> Pid:
    return await EtcdRegistry.start(reg, url, ttl=ttl, timeout=timeout)


async def claim(reg: str, key: Any, value: Any = None) -> Any:
    """A process that claims ``key`` and holds it: its pid, ("taken", holder) or ("error", kind, seconds)."""
    result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def holder() -> None:
        t0 = time.monotonic()
        try:
            await EtcdRegistry.register(reg, key, value)
        except AlreadyRegistered as e:
            result.set_result(("taken", e.pid))
            return
        except PymeshError as e:
            result.set_result(("error", type(e).__name__, round(time.monotonic() - t0, 2)))
            return
        result.set_result(P.self())
        await _hold()

    pid = P.spawn(holder)
    P.spawn(_watch, pid)
    return await result


async def race(reg: str, key: Any, n: int) -> list[Any]:
    """``n`` processes claim ``key`` at the same moment; what each got."""
    return list(await asyncio.gather(*(claim(reg, key, i) for i in range(n))))


async def whereis(reg: str, key: Any) -> Any:
    return await EtcdRegistry.whereis(reg, key)


async def timed_lookup(reg: str, key: Any) -> Any:
    """``lookup``'s answer, or ("error", kind, seconds) — for "nothing hangs"."""
    t0 = time.monotonic()
    try:
        return await EtcdRegistry.lookup(reg, key)
    except PymeshError as e:
        return ("error", type(e).__name__, round(time.monotonic() - t0, 2))
