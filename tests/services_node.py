"""A pymesh node with the services loaded, in its own OS process, for the Global and PG tests.

Run as ``python tests/services_node.py --sname NAME --cookie C --epmd-port P``.
It starts the node, prints ``node NAME ready on port N`` (as ``pymesh run``
does) and serves until SIGTERM, or until its stdin closes, so that a node
never outlives the test that started it.

The test drives it with ``rpc_eval``: the eval namespace is pymesh's public
API plus ``Global``, ``PG``, ``Registry``, ``asyncio``, ``COLLECTED`` and this
module as ``sn`` (``await sn.register_idle("name")``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import pymesh
import pymesh.services
from pymesh import Node, Pid, receive, spawn
from pymesh.runtime._rpc import set_eval_namespace
from pymesh.services import PG, Global, Registry

#: Messages the ``collector`` processes received, by tag.
COLLECTED: dict[str, list[Any]] = {}


async def idle() -> None:
    """A process that waits until told ``"stop"``."""
    while await receive() != "stop":
        pass


async def collector(tag: str) -> None:
    """A process that keeps every message it gets in ``COLLECTED[tag]``."""
    box = COLLECTED.setdefault(tag, [])
    while True:
        box.append(await receive())


async def register_idle(name: Any, resolve: str = "random_exit") -> tuple[bool, Pid]:
    """Spawn an idle process and register it globally as ``name``."""
    pid = spawn(idle)
    return await Global.register_name(name, pid, resolve), pid


async def register_collector(name: Any, resolve: str = "random_exit") -> tuple[bool, Pid]:
    """Spawn a collector (tag = ``name``) and register it globally."""
    pid = spawn(collector, name)
    return await Global.register_name(name, pid, resolve), pid


def keep_first(name: Any, pid1: Pid, pid2: Pid) -> Pid:
    """A custom resolver: keep ``pid1`` (the pid that sorts first), kill the other."""
    pymesh.exit(pid2, "kill")
    return pid1


async def register_custom(name: Any) -> tuple[bool, Pid]:
    pid = spawn(idle)
    return await Global.register_name(name, pid, keep_first), pid


async def join_idle(group: Any, n: int = 1, scope: Any = "pg") -> list[Pid]:
    """Spawn ``n`` idle processes and join them to ``group``."""
    pids = [spawn(idle) for _ in range(n)]
    PG.join(group, pids, scope=scope)
    return pids


async def watch(tag: str, group: Any = None, scope: Any = "pg") -> Any:
    """Spawn a process that monitors ``group`` (or the whole scope when None) and
    keeps what ``PG.monitor*`` returned, then every event, in ``COLLECTED[tag]``."""
    ready = asyncio.get_running_loop().create_future()

    async def watcher() -> None:
        box = COLLECTED.setdefault(tag, [])
        if group is None:
            ref, now = PG.monitor_scope(scope=scope)
        else:
            ref, now = PG.monitor(group, scope=scope)
        box.append(("monitoring", ref, now))
        ready.set_result(ref)
        while True:
            box.append(await receive())

    spawn(watcher)
    return await ready


async def hold_lock(lock_id: Any, seconds: float) -> Pid:
    """Spawn a process that takes ``lock_id`` and holds it ``seconds`` (or until killed)."""
    taken = asyncio.get_running_loop().create_future()

    async def holder() -> None:
        taken.set_result(await Global.set_lock(lock_id))
        await asyncio.sleep(seconds)
        Global.del_lock(lock_id)

    pid = spawn(holder)
    await taken
    return pid


def alive(pid: Pid) -> bool:
    return pymesh.is_alive(pid)


def namespace() -> dict[str, Any]:
    ns = {name: getattr(pymesh, name) for name in pymesh.__all__}
    ns.update(Global=Global, PG=PG, Registry=Registry, asyncio=asyncio, COLLECTED=COLLECTED, sn=sys.modules[__name__])
    return ns


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sname", required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--epmd-port", type=int, required=True)
    args = parser.parse_args()
    full = await pymesh.start(args.sname, cookie=args.cookie, epmd_port=args.epmd_port, listen_host="127.0.0.1")
    set_eval_namespace(namespace)
    print(f"node {full} ready on port {Node.port()}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = loop.create_task(reader.read())
    eof.add_done_callback(lambda _: stop.set())
    await stop.wait()
    await pymesh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(pymesh.run(main()))
