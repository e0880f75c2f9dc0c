"""Functions the test nodes run for the DistributedSupervisor tests.

:func:`child` is the supervised child: it records itself in :data:`RUNNING`
while it runs and counts its starts in :data:`STARTS`, per child id, on its node.
"""

from __future__ import annotations

from typing import Any

from pymesh import Pid
from pymesh.runtime import _process as P
from pymesh.services._dist_supervisor import (
    DistributedSupervisor,
    UniformDistribution,
    UniformQuorumDistribution,
)

RUNNING: dict[Any, Pid] = {}
STARTS: dict[Any, int] = {}
#: child id -> the state it was handed when it started (after a move)
HANDED: dict[Any, Any] = {}


async def child(child_id: Any) -> None:
    me = P.self()
    RUNNING[child_id] = me
    STARTS[child_id] = STARTS.get(child_id, 0) + 1
    state: Any = None
    try:
        while True:
            m = await P.receive()
            if m[0] == "$handoff":
                state = HANDED[child_id] = m[1]
            elif m[0] == "$handoff_request":
                DistributedSupervisor.hand_off(m, state)
            elif m[0] == "set":
                state = m[1]
            elif m[0] == "crash":
                raise RuntimeError("asked to crash")
    finally:
        if RUNNING.get(child_id) == me:
            del RUNNING[child_id]


async def start_sup(name: str, quorum: bool = False, **opts: Any) -> Pid:
    strategy = UniformQuorumDistribution() if quorum else UniformDistribution()
    return await DistributedSupervisor.start(name, strategy=strategy, **opts)


async def start_children(name: str, ids: list[Any], handoff: bool = False) -> list[Pid]:
    return [
        await DistributedSupervisor.start_child(
            name, {"id": i, "start": "support.dsup_node:child", "args": (i,), "handoff": handoff}
        )
        for i in ids
    ]


async def try_start_child(name: str, child_id: Any) -> str:
    """``"ok"`` or the name of the exception ``start_child`` raised."""
    try:
        await DistributedSupervisor.start_child(name, {"id": child_id, "start": "support.dsup_node:child", "args": (child_id,)})
        return "ok"
    except Exception as e:
        return type(e).__name__


def running() -> dict[Any, Pid]:
    return dict(RUNNING)


def starts() -> dict[Any, int]:
    return dict(STARTS)


def handed() -> dict[Any, Any]:
    return dict(HANDED)


def which_children(name: str) -> list[tuple[Any, Pid | None, str]]:
    return DistributedSupervisor.which_children(name)


def sup_members(name: str) -> dict[str, bool]:
    return DistributedSupervisor.members(name)


def set_state(child_id: Any, value: Any) -> bool:
    pid = RUNNING.get(child_id)
    if pid is None:
        return False
    P.send(pid, ("set", value))
    return True


def crash(child_id: Any) -> bool:
    pid = RUNNING.get(child_id)
    if pid is None:
        return False
    P.send(pid, ("crash",))
    return True


async def terminate_child(name: str, child_id: Any) -> None:
    await DistributedSupervisor.terminate_child(name, child_id)


async def stop_sup(name: str) -> None:
    await DistributedSupervisor.stop(name)
