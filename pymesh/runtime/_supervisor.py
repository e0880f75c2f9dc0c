"""Supervisor: keeps child processes running, restarting them by a strategy.

::

    sup = await Supervisor.start_link(
        [
            ChildSpec("cache", start=(Cache.start_link, ())),
            Worker,                           # a GenServer class: Worker.start_link()
            (Worker2, {"size": 3}),           # (class, arg): Worker2.start_link(arg)
        ],
        strategy="one_for_one", max_restarts=3, max_seconds=5,
    )

Strategies (OTP's): ``one_for_one`` restarts only the child that exited;
``one_for_all`` stops every other child and restarts them all; ``rest_for_one``
restarts the child and every child started after it.

Restart types: ``permanent`` children are always restarted; ``transient`` only
when they exit abnormally (not ``"normal"``, ``"shutdown"`` or ``("shutdown",
...)``); ``temporary`` never.

Restart intensity: more than ``max_restarts`` restarts within ``max_seconds``
means something is wrong that restarting will not fix. The supervisor then
stops all its children and exits with reason ``"shutdown"``, escalating the
problem to *its* supervisor, exactly as OTP does.

A child's ``start`` is ``(async_fn, args)``; ``await async_fn(*args)`` must start
a process *linked to the caller* and return its pid — ``GenServer.start_link``
does. Children stop in reverse start order: ``exit(pid, "shutdown")``, then
``"kill"`` after ``shutdown`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import ReceiveTimeout, SpawnError
from ..wire._types import Pid
from . import _process as P
from ._genserver import GenServer, From, call

__all__ = ["Supervisor", "ChildSpec", "child_spec"]

log = logging.getLogger("pymesh.supervisor")

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
_RESTARTS = ("permanent", "transient", "temporary")


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child."""

    id: Any
    start: tuple[Callable[..., Any], tuple[Any, ...]]
    restart: Restart = "permanent"
    shutdown: float | Literal["brutal_kill", "infinity"] = 5.0
    type: Literal["worker", "supervisor"] = "worker"

    def __post_init__(self) -> None:
        if self.restart not in _RESTARTS:
            raise ValueError(f"restart must be one of {_RESTARTS}, not {self.restart!r}")
        fn, args = self.start
        if not callable(fn) or not isinstance(args, tuple):
            raise ValueError(f"start must be (async_fn, args_tuple), not {self.start!r}")


def child_spec(child: Any) -> ChildSpec:
    """Normalize a child: a :class:`ChildSpec`, a dict of its fields, a
    GenServer class, or ``(GenServerClass, arg)``. ``ValueError`` otherwise."""
    if isinstance(child, ChildSpec):
        return child
    if isinstance(child, dict):
        return ChildSpec(**child)
    if isinstance(child, type) and issubclass(child, GenServer):
        return ChildSpec(child.__name__, (child.start_link, ()))
    if isinstance(child, tuple) and len(child) == 2 and isinstance(child[0], type) and issubclass(child[0], GenServer):
        return ChildSpec(child[0].__name__, (child[0].start_link, (child[1],)))
    raise ValueError(f"not a child spec: {child!r}")


@dataclass
class _Child:
    spec: ChildSpec
    pid: Pid | None = None


def _is_shutdown(reason: Any) -> bool:
    return reason in ("normal", "shutdown") or (type(reason) is tuple and len(reason) == 2 and reason[0] == "shutdown")


@dataclass
class _Intensity:
    max_restarts: int
    max_seconds: float
    stamps: deque[float] = field(default_factory=deque)

    def allow(self) -> bool:
        now = time.monotonic()
        self.stamps.append(now)
        while self.stamps and now - self.stamps[0] > self.max_seconds:
            self.stamps.popleft()
        return len(self.stamps) <= self.max_restarts


class Supervisor(GenServer):
    """A supervisor process; start one with :meth:`Supervisor.start_link`."""

    trap_exit = True

    @classmethod
    async def start_link(  # type: ignore[override]
        cls,
        children: list[Any],
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str | None = None,
        timeout: float = 30.0,
    ) -> Pid:
        """Start a supervisor linked to the caller, and its children in order.

        Raises ``ValueError`` for a bad strategy or child spec, and
        :class:`SpawnError` when a child fails to start (children already
        started are stopped first).
        """
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, not {strategy!r}")
        specs = [child_spec(c) for c in children]
        ids = [s.id for s in specs]
        if len(set(map(repr, ids))) != len(ids):
            raise ValueError(f"child ids must be unique: {ids!r}")
        return await cls.start(specs, strategy, max_restarts, max_seconds, name=name, link=True, timeout=timeout)

    # --- the callbacks -------------------------------------------------------

    async def init(self, specs: list[ChildSpec], strategy: Strategy, max_restarts: int, max_seconds: float) -> None:  # type: ignore[override]
        self.strategy = strategy
        self.intensity = _Intensity(max_restarts, max_seconds)
        self.children: list[_Child] = []
        for spec in specs:
            child = _Child(spec)
            try:
                await self._start_child(child)
            except Exception:
                await self._stop_all()
                raise
            self.children.append(child)

    async def handle_info(self, msg: Any) -> None:
        if type(msg) is tuple and len(msg) == 3 and msg[0] == "EXIT":
            await self._child_exited(msg[1], msg[2])
        elif type(msg) is tuple and len(msg) == 2 and msg[0] == "$restart":
            await self._retry(msg[1])

    async def handle_call(self, request: Any, frm: From) -> Any:
        op = request[0] if type(request) is tuple else request
        handler = self._CALLS.get(op)
        if handler is None:
            raise ValueError(f"unknown supervisor request {request!r}")
        try:
            return ("ok", await handler(self, *(request[1:] if type(request) is tuple else ())))
        except (ValueError, KeyError, SpawnError) as e:
            return ("error", str(e))

    async def terminate(self, reason: Any) -> None:
        await self._stop_all()

    # --- requests ------------------------------------------------------------

    async def _which_children(self) -> list[tuple[Any, Pid | None, str]]:
        return [(c.spec.id, c.pid, c.spec.type) for c in self.children]

    async def _count_children(self) -> dict[str, int]:
        return {
            "specs": len(self.children),
            "active": sum(1 for c in self.children if c.pid is not None),
            "workers": sum(1 for c in self.children if c.spec.type == "worker"),
            "supervisors": sum(1 for c in self.children if c.spec.type == "supervisor"),
        }

    async def _start_new_child(self, spec: Any) -> Pid | None:
        spec = child_spec(spec)
        if any(c.spec.id == spec.id for c in self.children):
            raise ValueError(f"a child with id {spec.id!r} exists already")
        child = _Child(spec)
        await self._start_child(child)
        self.children.append(child)
        return child.pid

    async def _terminate_child(self, child_id: Any) -> None:
        child = self._find(child_id)
        await self._stop_child(child)
        if child.spec.restart == "temporary":
            self.children.remove(child)

    async def _restart_child(self, child_id: Any) -> Pid | None:
        child = self._find(child_id)
        if child.pid is not None:
            raise ValueError(f"child {child_id!r} is running")
        await self._start_child(child)
        return child.pid

    async def _delete_child(self, child_id: Any) -> None:
        child = self._find(child_id)
        if child.pid is not None:
            raise ValueError(f"child {child_id!r} is running; terminate it first")
        self.children.remove(child)

    _CALLS: dict[str, Callable[..., Any]] = {
        "which_children": _which_children,
        "count_children": _count_children,
        "start_child": _start_new_child,
        "terminate_child": _terminate_child,
        "restart_child": _restart_child,
        "delete_child": _delete_child,
    }

    # --- mechanics -------------------------------------------------------------

    def _find(self, child_id: Any) -> _Child:
        for c in self.children:
            if c.spec.id == child_id:
                return c
        raise KeyError(f"no child {child_id!r}")

    async def _start_child(self, child: _Child) -> None:
        fn, args = child.spec.start
        pid = await fn(*args)
        if type(pid) is not Pid:
            raise SpawnError(f"child {child.spec.id!r}: start returned {pid!r}, not a pid")
        child.pid = pid

    async def _stop_child(self, child: _Child) -> None:
        pid, child.pid = child.pid, None
        if pid is None:
            return
        shutdown = child.spec.shutdown
        P.exit(pid, "kill" if shutdown == "brutal_kill" else "shutdown")
        wait = None if shutdown == "infinity" else (0.0 if shutdown == "brutal_kill" else float(shutdown))
        try:
            await P.receive(_exit_from(pid), timeout=wait if wait else None if shutdown == "infinity" else 5.0)
        except ReceiveTimeout:
            P.exit(pid, "kill")
            try:
                await P.receive(_exit_from(pid), timeout=5.0)
            except ReceiveTimeout:
                log.error("child %r (%r) did not die after kill", child.spec.id, pid)
        P.unlink(pid)

    async def _stop_all(self) -> None:
        for child in reversed(self.children):
            await self._stop_child(child)

    async def _child_exited(self, pid: Pid, reason: Any) -> None:
        index = next((i for i, c in enumerate(self.children) if c.pid == pid), None)
        if index is None:
            return  # not ours (or already handled)
        child = self.children[index]
        child.pid = None
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and _is_shutdown(reason)):
            if restart == "temporary":
                self.children.pop(index)
            return
        log.warning("supervisor %r: child %r exited with %r", self.pid, child.spec.id, reason)
        if not self.intensity.allow():
            log.error("supervisor %r: reached max restart intensity; shutting down", self.pid)
            raise P.Exit("shutdown")
        if self.strategy == "one_for_one":
            group = [child]
        elif self.strategy == "one_for_all":
            group = list(self.children)
        else:
            group = self.children[index:]
        for other in reversed(group):
            if other is not child:
                await self._stop_child(other)
        for c in group:
            try:
                await self._start_child(c)
            except Exception as e:
                log.error("supervisor %r: restarting %r failed: %r", self.pid, c.spec.id, e)
                if not self.intensity.allow():
                    raise P.Exit("shutdown") from None
                # counted against the intensity; tried again via a message to
                # ourselves, so the supervisor keeps serving meanwhile
                P.send(self.pid, ("$restart", c.spec.id))

    async def _retry(self, child_id: Any) -> None:
        child = next((c for c in self.children if c.spec.id == child_id and c.pid is None), None)
        if child is None:
            return
        try:
            await self._start_child(child)
        except Exception as e:
            log.error("supervisor %r: restarting %r failed: %r", self.pid, child_id, e)
            if not self.intensity.allow():
                raise P.Exit("shutdown") from None
            P.send(self.pid, ("$restart", child_id))

    # --- convenience API (calls to a running supervisor) -------------------------

    @staticmethod
    async def which_children(sup: Any) -> list[tuple[Any, Pid | None, str]]:
        """``[(id, pid or None, "worker" | "supervisor")]`` in start order."""
        return _unwrap(await call(sup, "which_children"))

    @staticmethod
    async def count_children(sup: Any) -> dict[str, int]:
        return _unwrap(await call(sup, "count_children"))

    @staticmethod
    async def start_child(sup: Any, spec: Any) -> Pid:
        """Add and start a child; ``ValueError`` for a duplicate id or bad spec."""
        return _unwrap(await call(sup, ("start_child", spec), timeout=30.0))

    @staticmethod
    async def terminate_child(sup: Any, child_id: Any) -> None:
        _unwrap(await call(sup, ("terminate_child", child_id), timeout=30.0))

    @staticmethod
    async def restart_child(sup: Any, child_id: Any) -> Pid:
        return _unwrap(await call(sup, ("restart_child", child_id), timeout=30.0))

    @staticmethod
    async def delete_child(sup: Any, child_id: Any) -> None:
        _unwrap(await call(sup, ("delete_child", child_id)))


def _exit_from(pid: Pid) -> Callable[[Any], bool]:
    return lambda m: type(m) is tuple and len(m) == 3 and m[0] == "EXIT" and m[1] == pid


def _unwrap(result: Any) -> Any:
    status, value = result
    if status != "ok":
        raise ValueError(value)
    return value
