"""GenServer: a process that serves calls, casts and plain messages.

Subclass :class:`GenServer` and override the callbacks you need::

    class Counter(GenServer):
        async def init(self, start=0):
            self.n = start

        async def handle_call(self, request, frm):
            if request == "get":
                return self.n              # the reply

        async def handle_cast(self, msg):
            if msg == "inc":
                self.n += 1

    pid = await Counter.start(10, name="counter")
    cast("counter", "inc")
    assert await call("counter", "get") == 11

Callbacks (all ``async``):

* ``init(*args)`` runs in the new process before ``start`` returns; raising
  makes ``start`` raise :class:`~pymesh.SpawnError` carrying the reason.
* ``handle_call(request, frm)`` returns the reply. Return :data:`NOREPLY` to
  answer later with ``reply(frm, value)`` (from this or any process).
* ``handle_cast(msg)`` and ``handle_info(msg)`` (any other message, ``("EXIT",
  ...)`` and ``("DOWN", ...)`` included) return nothing.
* ``terminate(reason)`` runs when the server stops: on ``raise Exit(reason)``,
  a crash in a callback, or an exit signal while it traps exits.

``call(dest, request, timeout=5)`` works for a pid, a local name, ``(name,
node)`` and via-tuples on any node: it monitors the server, so a server that is
gone or dies raises :class:`~pymesh.CallExit` with its reason at once instead of
waiting for the timeout; no reply in time raises :class:`~pymesh.CallTimeout`.
The wire format is the BEAM's: ``("$gen_call", (pid, ref), request)``, reply
``(ref, value)``, and ``("$gen_cast", msg)``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, ClassVar, Final

from .._errors import CallExit, CallTimeout, ReceiveTimeout, SpawnError
from ..wire._types import Pid, Ref
from . import _process as P

__all__ = ["GenServer", "call", "cast", "reply", "NOREPLY", "From"]

log = logging.getLogger("pymesh.genserver")

From = tuple[Pid, Ref]


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


#: Return it from ``handle_call`` to reply later with :func:`reply`.
NOREPLY: Final = _NoReply()


def reply(frm: From, value: Any) -> None:
    """Answer a call whose ``handle_call`` returned :data:`NOREPLY`."""
    pid, ref = frm
    P.send(pid, (ref, value))


def cast(dest: Any, msg: Any) -> None:
    """Send ``msg`` to a server's ``handle_cast``; never fails, never waits."""
    try:
        P.send(dest, ("$gen_cast", msg))
    except P.NoProcess:
        pass


async def call(dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """Send ``request`` to a server's ``handle_call`` and wait for the reply.

    Raises :class:`CallTimeout` when no reply comes within ``timeout`` seconds
    (None waits forever), and :class:`CallExit` when the server is not there
    or exits first (``e.reason`` is its exit reason).
    """
    me = P.current()
    if type(dest) is tuple and len(dest) == 3 and dest[0] == "via":
        pid = P.whereis(dest)
        if pid is None:
            raise CallExit(dest, "noproc")
        target: Any = pid
    else:
        target = dest
    corked = P.cork(target)  # the monitor and the request leave in one write
    try:
        ref = P.monitor(target)
        try:
            P.send(target, ("$gen_call", (me.pid, ref), request))
        except P.NoProcess:
            P.demonitor(ref, flush=True)
            raise CallExit(dest, "noproc") from None
    finally:
        P.uncork(corked)

    def match(m: Any) -> bool:
        return type(m) is tuple and (
            (len(m) == 2 and m[0] == ref) or (len(m) == 5 and m[0] == "DOWN" and m[1] == ref)
        )

    try:
        msg = await P.receive(match, timeout=timeout)
    except ReceiveTimeout:
        P.demonitor(ref, flush=True)
        raise CallTimeout(dest, timeout or 0.0) from None
    if len(msg) == 2:
        P.demonitor(ref, flush=True)
        return msg[1]
    raise CallExit(dest, msg[4])


class GenServer:
    """Base class of servers; see the module docstring for the callbacks."""

    #: Set ``trap_exit = True`` on a subclass to receive exits as messages.
    trap_exit: ClassVar[bool] = False

    pid: Pid

    async def init(self, *args: Any) -> None:
        """Set up state; raise to refuse to start."""

    async def handle_call(self, request: Any, frm: From) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not handle calls ({request!r})")

    async def handle_cast(self, msg: Any) -> None:
        log.warning("%s: unexpected cast %r", type(self).__name__, msg)

    async def handle_info(self, msg: Any) -> None:
        log.debug("%s: unexpected message %r", type(self).__name__, msg)

    async def terminate(self, reason: Any) -> None:
        """Clean up; the process ends with ``reason`` after this returns."""

    # --- starting -------------------------------------------------------------

    @classmethod
    async def start(cls, *args: Any, name: str | None = None, link: bool = False, timeout: float = 5.0) -> Pid:
        """Start a server process running ``init(*args)``; return its pid.

        ``name`` registers it locally (or via ``("via", registry, key)``).
        Raises :class:`SpawnError` when ``init`` raises or the name is taken.
        """
        server = cls()
        me = P.current()
        ref = P.make_ref()
        parent = me.pid
        spawner = P.spawn_link if link else P.spawn
        pid = spawner(server._loop, parent, ref, name, args)
        mref = P.monitor(pid)

        def match(m: Any) -> bool:
            return type(m) is tuple and (
                (len(m) == 3 and m[0] == "$gen_started" and m[1] == ref)
                or (len(m) == 5 and m[0] == "DOWN" and m[1] == mref)
            )

        try:
            msg = await P.receive(match, timeout=timeout)
        except ReceiveTimeout:
            P.demonitor(mref, flush=True)
            P.exit(pid, "kill")
            raise SpawnError(f"{cls.__name__} init did not finish within {timeout}s") from None
        P.demonitor(mref, flush=True)
        if msg[0] == "DOWN":
            if link:
                P.unlink(pid)
                _flush_exit(pid)
            raise SpawnError(f"{cls.__name__} failed to start: {msg[4]!r}")
        ok, detail = msg[2]
        if not ok:
            if link:
                P.unlink(pid)
                _flush_exit(pid)
            raise SpawnError(f"{cls.__name__} failed to start: {detail}") from (
                detail if isinstance(detail, BaseException) else None
            )
        return pid

    @classmethod
    async def start_link(cls, *args: Any, name: str | None = None, timeout: float = 5.0) -> Pid:
        """:meth:`start`, linked to the caller (what supervisors call)."""
        return await cls.start(*args, name=name, link=True, timeout=timeout)

    # --- the loop ------------------------------------------------------------------

    async def _loop(self, parent: Pid, ref: Ref, name: Any, args: tuple[Any, ...]) -> None:
        self.pid = P.self()
        if self.trap_exit:
            P.trap_exit(True)
        try:
            if name is not None:
                await _register(name, self.pid)
            await self.init(*args)
        except Exception as e:
            # start() raises SpawnError in the caller; a start_link caller that
            # does not trap exits must not be killed by the link first.
            P.unlink(parent)
            P.send(parent, ("$gen_started", ref, (False, e)))
            raise P.Exit(e) from None
        P.send(parent, ("$gen_started", ref, (True, None)))
        reason: Any = "normal"
        try:
            while True:
                msg = await P.receive()
                await self._handle(msg, parent)
        except P.Exit as e:
            reason = e.reason
            raise
        except asyncio.CancelledError:
            reason = P.current().kill_reason or "killed"
            raise
        except Exception as e:
            reason = e
            log.error("%s %r terminating: %r", type(self).__name__, self.pid, e, exc_info=e)
            raise P.Exit(e) from None
        finally:
            try:
                await self.terminate(reason)
            except Exception:
                log.exception("%s %r: terminate failed", type(self).__name__, self.pid)

    async def _handle(self, msg: Any, parent: Pid) -> None:
        if type(msg) is tuple and len(msg) >= 2:
            tag = msg[0]
            if tag == "$gen_call" and len(msg) == 3:
                frm = msg[1]
                result = await self.handle_call(msg[2], frm)
                if result is not NOREPLY:
                    reply(frm, result)
                return
            if tag == "$gen_cast" and len(msg) == 2:
                await self.handle_cast(msg[1])
                return
            if tag == "EXIT" and len(msg) == 3 and msg[1] == parent and self.trap_exit:
                # the parent died: a supervised server goes with it, as in OTP
                raise P.Exit(msg[2])
        await self.handle_info(msg)


async def _register(name: Any, pid: Pid) -> None:
    """Register a starting server: a local name, ``("global", name)``, or a
    via-tuple (whose registrar may be async, as global registration is)."""
    if type(name) is str:
        P.register(name, pid)
        return
    if type(name) is tuple and len(name) == 2 and name[0] == "global":
        name = ("via", "global", name[1])
    if type(name) is tuple and len(name) == 3 and name[0] == "via":
        registrar = P.rt.via_register.get(name[1])
        if registrar is None:
            from .._errors import UnknownRegistry

            raise UnknownRegistry(name[1])
        result = registrar(name[2], pid)
        if inspect.isawaitable(result):
            result = await result
        if result is False:
            from .._errors import AlreadyRegistered

            raise AlreadyRegistered(name, P.whereis(name))
        return
    raise P.BadName(f"a server name is a str, ('global', name) or ('via', registry, key), not {name!r}")


def _flush_exit(pid: Pid) -> None:
    proc = P.current()
    for i, m in enumerate(proc.mailbox):
        if type(m) is tuple and len(m) == 3 and m[0] == "EXIT" and m[1] == pid:
            del proc.mailbox[i]
            proc.taken += 1
            return
