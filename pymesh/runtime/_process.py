"""Lightweight processes: spawn, mailboxes, selective receive, links, monitors, names.

A pymesh *process* is an asyncio task with an identity (:class:`~pymesh.Pid`), a
mailbox, and the BEAM's failure semantics:

* ``spawn(fn, *args)`` runs ``async def fn`` as a process and returns its pid at
  once. ``send(dest, msg)`` never blocks and never fails for a dead pid (the
  message is dropped, as on the BEAM); it raises :class:`~pymesh.NoProcess` only
  for an unknown *local name*, which is a programming error. Where the BEAM
  would suspend a sender because the connection to the destination's node is
  busy, ``await send_wait(dest, msg)`` waits and ``send_nowait(dest, msg)``
  raises :class:`~pymesh.WouldBlock`; plain ``send`` queues on.
* ``process_flag("max_mailbox", n)`` bounds a process's mailbox: the message
  that would make it hold more than ``n`` kills the process with reason
  ``"mailbox_overflow"`` (as Erlang's ``max_heap_size`` kills), freeing the
  mailbox; links and monitors see that reason, a supervisor restarts it.
* ``await receive(pattern, timeout=...)`` takes the first message that matches;
  the others stay in the mailbox, in order. On timeout it raises
  :class:`~pymesh.ReceiveTimeout`.
* A process ends with a *reason*: ``"normal"`` when its function returns, the
  exception when it raises, or the reason of ``raise Exit(reason)``. Linked
  processes receive an exit signal carrying that reason: a non-``"normal"`` one
  kills them too, unless they trap exits, in which case it arrives as the message
  ``("EXIT", pid, reason)``. ``exit(pid, "kill")`` cannot be trapped.
* ``monitor(pid)`` returns a :class:`~pymesh.Ref`; when the process ends the
  watcher gets ``("DOWN", ref, "process", pid, reason)`` exactly once — at once,
  with reason ``"noproc"``, if it was already dead.

Any asyncio task that calls :func:`self` (or ``receive``, ``link``, ``monitor``)
becomes a process from then on; that is how a plain ``asyncio.run(main())``
script, or the shell, takes part. Tasks a process creates with
``asyncio.create_task`` act on its behalf and share its mailbox.

Signals between processes are applied in the order they were sent. Exits cascade
through a work queue rather than recursion, so a long chain of links cannot
overflow the stack.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .._errors import BadName, NoProcess, NotAProcess, ReceiveTimeout, WouldBlock
from ..wire._types import NO_NODE, Pid, Ref
from ._pattern import compile_pattern

__all__ = [
    "Exit",
    "Process",
    "ProcessInfo",
    "spawn",
    "spawn_link",
    "spawn_monitor",
    "spawn_opt",
    "self",
    "send",
    "send_wait",
    "send_nowait",
    "receive",
    "register",
    "unregister",
    "whereis",
    "registered",
    "link",
    "unlink",
    "monitor",
    "demonitor",
    "exit",
    "trap_exit",
    "process_flag",
    "is_alive",
    "process_info",
    "processes",
    "make_ref",
    "flush_mailbox",
]

log = logging.getLogger("pymesh.process")

_CoroutineType = types.CoroutineType


class Exit(BaseException):
    """``raise Exit(reason)`` ends the calling process with ``reason``.

    A ``BaseException`` (like ``SystemExit``) so that ``except Exception`` in user
    code does not swallow it.
    """

    def __init__(self, reason: Any = "normal") -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteOps(Protocol):
    """What the process layer asks of the distribution layer (implemented by
    :class:`pymesh.runtime._node.Distribution`). ``frm`` is the sending pid."""

    def send(self, to: Pid, msg: Any) -> None: ...
    def reg_send(self, frm: Pid | None, name: str, node: str, msg: Any) -> None: ...
    def link(self, frm: Pid, to: Pid) -> None: ...
    def unlink(self, frm: Pid, to: Pid) -> None: ...
    def exit_signal(self, frm: Pid, to: Pid, reason: Any, linked: bool) -> None: ...
    def monitor(self, frm: Pid, to: Pid | str, node: str, ref: Ref) -> None: ...
    def demonitor(self, frm: Pid, to: Pid | str, node: str, ref: Ref) -> None: ...
    def down(self, watcher: Pid, ref: Ref, obj: Any, reason: Any) -> None: ...
    def busy(self, node: str) -> int: ...
    def cork(self, node: str) -> Any: ...
    async def wait_not_busy(self, node: str) -> None: ...


class Process:
    """The runtime's record of one live process. Users hold its :class:`Pid`."""

    __slots__ = (
        "pid",
        "task",
        "mailbox",
        "waiter",
        "others",
        "taken",
        "links",
        "monitors",
        "watchers",
        "trap_exit",
        "name",
        "alive",
        "exit_hooks",
        "kill_reason",
        "started",
        "initial_call",
        "label",
        "max_mailbox",
    )

    def __init__(self, pid: Pid, initial_call: Any) -> None:
        self.pid = pid
        self.task: asyncio.Task[Any] | None = None
        self.mailbox: deque[Any] = deque()
        self.waiter: asyncio.Future[bool] | None = None
        self.others: list[asyncio.Future[bool]] | None = None  # more waiting tasks
        self.taken = 0  # messages removed so far; a waiting scan restarts when it moves
        self.links: set[Pid] | None = None
        # monitors this process holds: ref -> (target pid or name, node)
        self.monitors: dict[Ref, tuple[Any, str]] | None = None
        # monitors held on this process: ref -> (watcher pid, object named in DOWN)
        self.watchers: dict[Ref, tuple[Pid, Any]] | None = None
        self.trap_exit = False
        self.name: str | None = None
        self.alive = True
        self.exit_hooks: list[Callable[[Pid, Any], None]] | None = None
        self.kill_reason: Any = None
        self.started = time.time()
        self.initial_call = initial_call  # the function, named lazily by call_name()
        self.label: str | None = None
        self.max_mailbox = 0  # 0: unbounded

    def call_name(self) -> str:
        """``module.function`` the process started in."""
        call = self.initial_call
        if isinstance(call, str):
            return call
        return f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', repr(call))}"

    def __repr__(self) -> str:
        return f"<Process {self.pid!r} {self.call_name()}{' ' + self.name if self.name else ''}>"


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of one process, as ``process_info(pid)`` returns it."""

    pid: Pid
    registered_name: str | None
    status: str  # "waiting" | "runnable" | "exiting"
    message_queue_len: int
    links: tuple[Pid, ...]
    monitors: tuple[Ref, ...]
    monitored_by: tuple[Pid, ...]
    trap_exit: bool
    initial_call: str
    label: str | None
    started: float


class _Runtime:
    """Process-wide state: one runtime per OS process, like one BEAM VM."""

    def __init__(self) -> None:
        self.node: str = NO_NODE
        self.creation: int = 0
        self.procs: dict[int, Process] = {}
        self.names: dict[str, Process] = {}
        self.ids = itertools.count(1)
        self.refs = itertools.count(1)
        self.dist: RemoteOps | None = None
        # name -> resolver(key) -> Pid | None, for ("via", name, key) destinations
        self.via: dict[Any, Callable[[Any], Pid | None]] = {}
        # name -> register(key, pid), so GenServer.start(name=("via", reg, key)) works
        self.via_register: dict[Any, Callable[[Any, Pid], None]] = {}
        self.signals: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self.draining = False

    def is_local(self, pid: Pid) -> bool:
        node = pid.node
        return (node == self.node and pid.creation == self.creation) or node == NO_NODE


rt: Final = _Runtime()
_current: contextvars.ContextVar[Process | None] = contextvars.ContextVar("pymesh_process", default=None)


# --- identity -----------------------------------------------------------------------


def _adopt() -> Process:
    """Make the running asyncio task a process (the shell, a script's main)."""
    task = asyncio.current_task()
    if task is None:
        raise NotAProcess("not inside an asyncio task: processes live on a running event loop")
    coro = task.get_coro()
    proc = Process(Pid(rt.node, next(rt.ids), rt.creation), getattr(coro, "__qualname__", "task"))
    proc.task = task
    rt.procs[proc.pid.id] = proc
    _current.set(proc)
    task.add_done_callback(lambda t: _adopted_done(proc, t))
    return proc


def _adopted_done(proc: Process, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        reason: Any = "shutdown"
    else:
        exc = task.exception()
        reason = "normal" if exc is None else (exc.reason if isinstance(exc, Exit) else exc)
    _terminate(proc, reason)


def current() -> Process:
    """The calling process's record (adopting the current task if needed)."""
    proc = _current.get()
    if proc is None or not proc.alive and proc.task is not asyncio.current_task():
        return _adopt()
    return proc


def self() -> Pid:
    """The pid of the calling process."""
    return current().pid


def make_ref() -> Ref:
    """A reference unique on this node for its lifetime."""
    return Ref(rt.node, next(rt.refs), rt.creation)


# --- spawning -------------------------------------------------------------------------


def _new_process(fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]) -> tuple[Process, Any]:
    coro = fn(*args)
    if type(coro) is not _CoroutineType and not asyncio.iscoroutine(coro):
        name = getattr(fn, "__qualname__", repr(fn))
        if hasattr(coro, "close"):
            coro.close()
        raise TypeError(f"spawn needs an async function; {name}(...) returned {type(coro).__name__}")
    return Process(Pid(rt.node, next(rt.ids), rt.creation), fn), coro


def _start(proc: Process, coro: Any) -> Pid:
    rt.procs[proc.pid.id] = proc
    proc.task = asyncio.get_running_loop().create_task(_run(proc, coro))
    return proc.pid


async def _run(proc: Process, coro: Coroutine[Any, Any, Any]) -> None:
    _current.set(proc)
    reason: Any = "normal"
    try:
        await coro
    except Exit as e:
        reason = e.reason
    except asyncio.CancelledError:
        reason = proc.kill_reason if proc.kill_reason is not None else "killed"
    except Exception as e:
        reason = e
        if proc.alive:
            log.error("process %r (%s) crashed", proc.pid, proc.call_name(), exc_info=e)
    finally:
        if proc.alive:
            _terminate(proc, reason)


def spawn(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Pid:
    """Start ``fn(*args)`` (an ``async def``) as a new process; return its pid.

    Raises ``TypeError`` when ``fn`` is not an async function, and
    :class:`NotAProcess` when no event loop is running.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise NotAProcess("spawn needs a running event loop (call it from async code)") from None
    proc, coro = _new_process(fn, args)
    return _start(proc, coro)


def spawn_link(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Pid:
    """``spawn`` and link the new process to the caller, atomically."""
    return _spawn_with("spawn_link", fn, args, link=True)  # type: ignore[no-any-return]


def spawn_monitor(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> tuple[Pid, Ref]:
    """``spawn`` and monitor the new process; returns ``(pid, ref)``."""
    return _spawn_with("spawn_monitor", fn, args, monitor=True)  # type: ignore[no-any-return]


def spawn_opt(
    fn: Callable[..., Coroutine[Any, Any, Any]],
    *args: Any,
    link: bool = False,
    monitor: bool = False,
    trap_exit: bool = False,
    max_mailbox: int | None = None,
    label: str | None = None,
) -> Any:
    """``spawn`` with options in force before the process runs its first line,
    as Erlang's ``spawn_opt``: ``link``, ``monitor`` (then ``(pid, ref)`` is
    returned), ``trap_exit``, ``max_mailbox`` (see :func:`process_flag`: a
    message sent right after the spawn already counts) and ``label``.

    Raises ``ValueError`` naming a bad option, and what :func:`spawn` raises.
    """
    return _spawn_with(
        "spawn_opt", fn, args, link=link, monitor=monitor, trap_exit=trap_exit, max_mailbox=max_mailbox, label=label
    )


def _spawn_with(
    who: str,
    fn: Callable[..., Coroutine[Any, Any, Any]],
    args: tuple[Any, ...],
    *,
    link: bool = False,
    monitor: bool = False,
    trap_exit: bool = False,
    max_mailbox: int | None = None,
    label: str | None = None,
) -> Any:
    limit = _mailbox_limit(max_mailbox)
    me = current() if link or monitor else None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise NotAProcess(f"{who} needs a running event loop") from None
    proc, coro = _new_process(fn, args)
    proc.max_mailbox = limit
    proc.trap_exit = bool(trap_exit)
    if label is not None:
        proc.label = str(label)
    if me is not None and link:
        proc.links = {me.pid}
        if me.links is None:
            me.links = set()
        me.links.add(proc.pid)
    if me is not None and monitor:
        ref = make_ref()
        proc.watchers = {ref: (me.pid, proc.pid)}
        if me.monitors is None:
            me.monitors = {}
        me.monitors[ref] = (proc.pid, rt.node)
        return _start(proc, coro), ref
    return _start(proc, coro)


def _mailbox_limit(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise ValueError(f"max_mailbox must be a non-negative int or None, not {value!r}")
    return value


# --- messages ---------------------------------------------------------------------------


def deliver(proc: Process, msg: Any) -> None:
    """Append ``msg`` to ``proc``'s mailbox and wake it if it waits."""
    proc.mailbox.append(msg)
    if proc.max_mailbox and len(proc.mailbox) > proc.max_mailbox:
        _overflow(proc)
        return
    waiter = proc.waiter
    if waiter is not None:
        proc.waiter = None
        if not waiter.done():
            waiter.set_result(True)
        others = proc.others
        if others:
            proc.others = None
            for w in others:
                if not w.done():
                    w.set_result(True)


def send(dest: Any, msg: Any) -> Any:
    """Send ``msg`` to ``dest``; return ``msg``. Never blocks.

    ``dest`` is a :class:`Pid`, a locally registered name, ``(name, node)``, a
    via-tuple ``("via", registry, key)``, or ``("global", name)`` once the
    global name service is loaded (as in Erlang, it takes precedence over a
    process registered as ``"global"`` on a node). A message to a dead pid or to a node
    that cannot be reached is dropped, as on the BEAM; an unknown local name
    raises :class:`NoProcess`; an unencodable message to a remote process
    raises :class:`~pymesh.EncodeError` (nothing is sent).
    """
    t = type(dest)
    if t is Pid:
        if dest.node == rt.node and dest.creation == rt.creation or dest.node == NO_NODE:
            proc = rt.procs.get(dest.id)
            if proc is not None:
                deliver(proc, msg)
        elif rt.dist is not None:
            rt.dist.send(dest, msg)
        return msg
    if t is str:
        proc = rt.names.get(dest)
        if proc is None:
            raise NoProcess(dest)
        deliver(proc, msg)
        return msg
    if t is tuple:
        if len(dest) == 2:
            name, node = dest
            if name == "global" and "global" in rt.via:  # Erlang's {global, Name}
                return send(("via", "global", node), msg)
            if type(node) is not str or "@" not in node:
                raise BadName(f"cannot send to {dest!r}: {node!r} is not a node name (name@host)")
            if node == rt.node or node == NO_NODE:
                return send(name, msg)
            if rt.dist is not None:
                cur = _current.get()
                rt.dist.reg_send(cur.pid if cur is not None else None, name, node, msg)
            return msg
        if len(dest) == 3 and dest[0] == "via":
            pid = whereis(dest)
            if pid is None:
                raise NoProcess(dest)
            return send(pid, msg)
    raise BadName(f"cannot send to {dest!r}: expected a Pid, a name, (name, node) or ('via', registry, key)")


def cork(dest: Any) -> Any:
    """Hold back the write of what this task sends next to ``dest``'s node
    until :func:`uncork` of the handle returned (None when ``dest`` is local or
    nothing needs holding), so that several messages leave in one write."""
    node = _remote_node(dest)
    if node is None or rt.dist is None:
        return None
    return rt.dist.cork(node)


def uncork(handle: Any) -> None:
    """Write what :func:`cork` held back."""
    if handle is not None:
        handle.flush()


def _remote_node(dest: Any) -> str | None:
    """The node ``dest`` lives on when that is another node, else None."""
    t = type(dest)
    if t is Pid:
        if dest.node == rt.node and dest.creation == rt.creation or dest.node == NO_NODE:
            return None
        return dest.node
    if t is tuple:
        if len(dest) == 2 and dest[0] == "global" and "global" in rt.via or len(dest) == 3 and dest[0] == "via":
            pid = whereis(dest)
            return _remote_node(pid) if pid is not None else None
        if len(dest) == 2 and type(dest[1]) is str and dest[1] != rt.node and dest[1] != NO_NODE:
            return dest[1]
    return None


def send_nowait(dest: Any, msg: Any) -> Any:
    """``send``, unless the connection to ``dest``'s node is busy; return ``msg``.

    Erlang's ``erlang:send_nosuspend/2``, raising instead of returning false:
    when more than the node's ``dist_buf_busy_limit`` of bytes waits for that
    peer, raises :class:`~pymesh.WouldBlock` (carrying ``node`` and the bytes
    queued) and sends nothing. A local ``dest`` never blocks. Otherwise as
    :func:`send`, errors included.
    """
    dist = rt.dist
    if dist is not None:
        node = _remote_node(dest)
        if node is not None:
            queued = dist.busy(node)
            if queued:
                raise WouldBlock(node, queued)
    return send(dest, msg)


async def send_wait(dest: Any, msg: Any) -> Any:
    """``send``, first waiting while the connection to ``dest``'s node is busy.

    The BEAM suspends a process that sends over a busy distribution
    connection; this is that suspension, made explicit: it returns at once
    (without yielding) when the connection is not busy or ``dest`` is local,
    and otherwise once enough queued bytes have left — or the connection went
    down, and then the message goes as ``send`` sends it (dialing the node
    again; dropped if that fails). Returns ``msg``; raises as :func:`send` does.
    """
    dist = rt.dist
    if dist is not None:
        node = _remote_node(dest)
        if node is not None and dist.busy(node):
            await dist.wait_not_busy(node)
    return send(dest, msg)


async def receive(match: Any = None, timeout: float | None = None) -> Any:
    """Take the first message in the mailbox that matches ``match``.

    ``match`` is None (any message), a pattern (see :mod:`pymesh.runtime._pattern`)
    or a predicate. Messages that do not match stay in the mailbox, in order.
    ``timeout`` in seconds (0 polls); when it passes with no match, raises
    :class:`ReceiveTimeout`.
    """
    proc = _current.get()
    if proc is None:
        proc = _adopt()
    mbox = proc.mailbox
    if match is None:
        if mbox:
            proc.taken += 1
            return mbox.popleft()
        pred = None
    else:
        pred = compile_pattern(match)
        for i, m in enumerate(mbox):
            if pred(m):
                del mbox[i]
                proc.taken += 1
                return m
    if timeout is not None and timeout <= 0:
        raise ReceiveTimeout(f"no matching message (timeout {timeout})")
    loop = asyncio.get_running_loop()
    scanned = len(mbox)
    taken = proc.taken
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        fut = loop.create_future()
        if proc.waiter is None:
            proc.waiter = fut
        else:
            # another task of this process waits too (e.g. asyncio.gather of calls)
            if proc.others is None:
                proc.others = []
            proc.others.append(fut)
        handle = None if deadline is None else loop.call_at(deadline, _expire, fut)
        try:
            await fut
        finally:
            if proc.waiter is fut:
                proc.waiter = None
            elif proc.others is not None and fut in proc.others:
                proc.others.remove(fut)
            if handle is not None:
                handle.cancel()
        if proc.taken != taken:
            scanned = 0  # another task took messages: indexes moved, rescan
        if pred is None:
            if mbox:
                proc.taken += 1
                return mbox.popleft()
        else:
            n = len(mbox)
            for i in range(scanned, n):
                m = mbox[i]
                if pred(m):
                    del mbox[i]
                    proc.taken += 1
                    return m
            scanned = n
        taken = proc.taken
        if not fut.result():
            raise ReceiveTimeout(f"no matching message within {timeout}s")


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


def flush_mailbox() -> list[Any]:
    """Remove and return every message in the caller's mailbox."""
    proc = current()
    msgs = list(proc.mailbox)
    proc.mailbox.clear()
    proc.taken += len(msgs)
    return msgs


# --- names ----------------------------------------------------------------------------------


def register(name: str, pid: Pid | None = None) -> None:
    """Register ``pid`` (default: the caller) under ``name`` on this node.

    Raises :class:`~pymesh.AlreadyRegistered` (carrying the owner) when the name
    is taken, and :class:`BadName` when ``name`` is not a non-empty ``str``, the
    pid is not a live local process, or the process has a name already.
    """
    from .._errors import AlreadyRegistered

    if type(name) is not str or not name:
        raise BadName(f"a registered name must be a non-empty str, not {name!r}")
    if name == "undefined":
        raise BadName("'undefined' cannot be registered")
    proc = current() if pid is None else _local_live(pid)
    if proc is None:
        raise BadName(f"cannot register {name!r}: {pid!r} is not a live local process")
    owner = rt.names.get(name)
    if owner is not None:
        raise AlreadyRegistered(name, owner.pid)
    if proc.name is not None:
        raise BadName(f"{proc.pid!r} is already registered as {proc.name!r}")
    rt.names[name] = proc
    proc.name = name


def unregister(name: str) -> None:
    """Remove a registered name; :class:`NoProcess` when it is not registered."""
    proc = rt.names.pop(name, None)
    if proc is None:
        raise NoProcess(name)
    proc.name = None


def whereis(name: Any) -> Pid | None:
    """The pid registered as ``name`` here (or for ``("via", reg, key)``), or None."""
    if type(name) is str:
        proc = rt.names.get(name)
        return proc.pid if proc is not None else None
    if type(name) is tuple and len(name) == 2 and name[0] == "global" and "global" in rt.via:
        return rt.via["global"](name[1])  # Erlang's {global, Name}
    if type(name) is tuple and len(name) == 3 and name[0] == "via":
        resolver = rt.via.get(name[1])
        if resolver is None:
            from .._errors import UnknownRegistry

            raise UnknownRegistry(name[1])
        return resolver(name[2])
    raise BadName(f"not a name: {name!r}")


def registered() -> list[str]:
    """Every locally registered name, sorted."""
    return sorted(rt.names)


def _local_live(pid: Pid) -> Process | None:
    if type(pid) is not Pid or not rt.is_local(pid):
        return None
    proc = rt.procs.get(pid.id)
    return proc if proc is not None and proc.alive else None


# --- flags and introspection -------------------------------------------------------------------


def trap_exit(flag: bool = True) -> bool:
    """Set the caller's ``trap_exit`` flag; return the old value."""
    proc = current()
    old, proc.trap_exit = proc.trap_exit, bool(flag)
    return old


def process_flag(flag: str, value: Any) -> Any:
    """Set a flag of the calling process; return its old value.

    ``"trap_exit"`` (bool), ``"label"`` (str, shown by tools), and
    ``"max_mailbox"`` (int; 0 or None: unbounded, the default): a delivery that
    makes the mailbox hold more than that many messages kills the process with
    reason ``"mailbox_overflow"`` (logged, as a crash is). It applies from the
    next delivery on. Raises ``ValueError`` for an unknown flag or a bad value.
    """
    if flag == "trap_exit":
        return trap_exit(value)
    if flag == "label":
        proc = current()
        old, proc.label = proc.label, str(value)
        return old
    if flag == "max_mailbox":
        value = _mailbox_limit(value)
        proc = current()
        old_limit, proc.max_mailbox = proc.max_mailbox, value
        return old_limit or None
    raise ValueError(f"unknown process flag {flag!r} (known: trap_exit, label, max_mailbox)")


def is_alive(pid: Pid) -> bool:
    """True for a live local process; ``ValueError`` for a remote pid (ask its node)."""
    if not rt.is_local(pid):
        raise ValueError(f"is_alive works on local pids; {pid!r} lives on {pid.node}")
    return _local_live(pid) is not None


def process_info(pid: Pid) -> ProcessInfo | None:
    """A :class:`ProcessInfo` snapshot of a live local process, or None."""
    proc = _local_live(pid)
    if proc is None:
        return None
    if proc.kill_reason is not None:
        status = "exiting"
    elif proc.waiter is not None:
        status = "waiting"
    else:
        status = "runnable"
    return ProcessInfo(
        pid=proc.pid,
        registered_name=proc.name,
        status=status,
        message_queue_len=len(proc.mailbox),
        links=tuple(sorted(proc.links or ())),
        monitors=tuple((proc.monitors or {}).keys()),
        monitored_by=tuple(w for w, _ in (proc.watchers or {}).values()),
        trap_exit=proc.trap_exit,
        initial_call=proc.call_name(),
        label=proc.label,
        started=proc.started,
    )


def processes() -> list[Pid]:
    """Pids of every live local process, in spawn order."""
    return [p.pid for p in rt.procs.values() if p.alive]


# --- links and exit signals ----------------------------------------------------------------------


def link(pid: Pid) -> None:
    """Link the caller and ``pid`` (idempotent). A dead local ``pid`` sends the
    caller an exit signal with reason ``"noproc"``; an unreachable node,
    ``"noconnection"``."""
    me = current()
    if type(pid) is not Pid:
        raise BadName(f"link needs a Pid, not {pid!r}")
    if pid == me.pid:
        return
    if me.links is None:
        me.links = set()
    if pid in me.links:
        return
    if rt.is_local(pid):
        other = _local_live(pid)
        if other is None:
            _signal(_exit_signal, me, pid, "noproc", True)
            return
        me.links.add(pid)
        if other.links is None:
            other.links = set()
        other.links.add(me.pid)
        return
    me.links.add(pid)
    if rt.dist is None:
        me.links.discard(pid)
        _signal(_exit_signal, me, pid, "noconnection", True)
        return
    rt.dist.link(me.pid, pid)


def unlink(pid: Pid) -> None:
    """Remove the link between the caller and ``pid``, if any."""
    me = current()
    if me.links is None or pid not in me.links:
        return
    me.links.discard(pid)
    if rt.is_local(pid):
        other = _local_live(pid)
        if other is not None and other.links:
            other.links.discard(me.pid)
    elif rt.dist is not None:
        rt.dist.unlink(me.pid, pid)


def exit(pid: Pid, reason: Any) -> None:
    """Send an exit signal to ``pid`` (Erlang's ``exit/2``).

    ``"kill"`` ends the target unconditionally (reason ``"killed"``); any other
    reason ends it unless it traps exits (then it gets ``("EXIT", caller,
    reason)``); ``"normal"`` is ignored by a non-trapping target other than the
    caller itself. To end the caller, ``raise Exit(reason)``.
    """
    if type(pid) is not Pid:
        raise BadName(f"exit needs a Pid, not {pid!r}")
    cur = _current.get()
    frm = cur.pid if cur is not None else Pid(rt.node, 0, rt.creation)
    if rt.is_local(pid):
        target = _local_live(pid)
        if target is None:
            return
        if target is cur and reason != "normal" and not (cur.trap_exit and reason != "kill"):
            raise Exit("killed" if reason == "kill" else reason)
        _signal(_exit_signal, target, frm, reason, False)
        if target is cur and reason == "normal" and not cur.trap_exit:
            raise Exit("normal")
    elif rt.dist is not None:
        rt.dist.exit_signal(frm, pid, reason, False)


def _signal(fn: Callable[..., None], *args: Any) -> None:
    """Apply a signal, queueing it if another signal is being applied."""
    rt.signals.append((fn, args))
    if rt.draining:
        return
    rt.draining = True
    try:
        while rt.signals:
            f, a = rt.signals.popleft()
            try:
                f(*a)
            except Exception:  # a broken exit hook must not stop the cascade
                log.exception("error while applying a %s signal", getattr(f, "__name__", f))
    finally:
        rt.draining = False


def _exit_signal(proc: Process, frm: Pid, reason: Any, linked: bool) -> None:
    """Apply an exit signal from ``frm`` to the local process ``proc``."""
    if not proc.alive:
        return
    if linked:
        if proc.links is None or frm not in proc.links:
            if reason not in ("noproc", "noconnection"):
                return  # the link was removed meanwhile: the signal is void
        else:
            proc.links.discard(frm)
    if not linked and reason == "kill":
        _kill(proc, "killed")
    elif proc.trap_exit:
        deliver(proc, ("EXIT", frm, reason))
    elif reason == "normal":
        if not linked and frm == proc.pid:
            _kill(proc, "normal")
    else:
        _kill(proc, reason)


def signal_exit(to: Pid, frm: Pid, reason: Any, linked: bool) -> None:
    """Entry point for exit signals arriving from another node."""
    proc = _local_live(to)
    if proc is not None:
        _signal(_exit_signal, proc, frm, reason, linked)


def _kill(proc: Process, reason: Any) -> None:
    proc.kill_reason = reason
    task = proc.task
    _terminate(proc, reason)
    if task is not None and not task.done() and task is not asyncio.current_task():
        outer = task.get_coro()
        if inspect.iscoroutine(outer) and inspect.getcoroutinestate(outer) == inspect.CORO_CREATED:
            # killed before its first step: the process's own coroutine will
            # never be awaited, so close it rather than leave it to the GC's warning
            inner = outer.cr_frame.f_locals.get("coro")
            if inner is not None:
                inner.close()
        task.cancel()


def _overflow(proc: Process) -> None:
    """``proc``'s mailbox passed its ``max_mailbox``: it dies (see ``process_flag``)."""
    if not proc.alive or proc.kill_reason is not None:
        return
    log.error(
        "process %r (%s) killed: its mailbox passed max_mailbox (%d messages)",
        proc.pid,
        proc.call_name(),
        proc.max_mailbox,
    )
    _signal(_kill, proc, "mailbox_overflow")
    if proc.task is not None and proc.task is asyncio.current_task():
        raise Exit("mailbox_overflow")  # it sent to itself: it cannot go on either


def _terminate(proc: Process, reason: Any) -> None:
    """Run once when a process ends: free its names, fire links and monitors."""
    if not proc.alive:
        return
    proc.alive = False
    me = proc.pid
    rt.procs.pop(me.id, None)
    if proc.name is not None:
        if rt.names.get(proc.name) is proc:
            del rt.names[proc.name]
    for waiter in [proc.waiter, *(proc.others or ())]:
        if waiter is not None and not waiter.done():
            waiter.cancel()
    dist = rt.dist
    if proc.links:
        for other in proc.links:
            if rt.is_local(other):
                target = _local_live(other)
                if target is not None:
                    _signal(_exit_signal, target, me, reason, True)
            elif dist is not None:
                dist.exit_signal(me, other, reason, True)
        proc.links = None
    if proc.watchers:
        for ref, (watcher, obj) in proc.watchers.items():
            if rt.is_local(watcher):
                w = _local_live(watcher)
                if w is not None:
                    _signal(_down, w, ref, obj, reason)
            elif dist is not None:
                dist.down(watcher, ref, obj, reason)
        proc.watchers = None
    if proc.monitors:
        for ref, (target, node) in proc.monitors.items():
            _drop_monitor(me, ref, target, node)
        proc.monitors = None
    if proc.exit_hooks:
        for hook in proc.exit_hooks:
            try:
                hook(me, reason)
            except Exception:
                log.exception("exit hook %r failed for %r", hook, me)
        proc.exit_hooks = None
    proc.mailbox.clear()


def add_exit_hook(pid: Pid, hook: Callable[[Pid, Any], None]) -> bool:
    """Call ``hook(pid, reason)`` when the local process ``pid`` ends.

    For services (registries) that must clean up after a process without a
    monitor message round trip. Returns False (and never calls the hook) when
    the process is not alive.
    """
    proc = _local_live(pid)
    if proc is None:
        return False
    if proc.exit_hooks is None:
        proc.exit_hooks = []
    proc.exit_hooks.append(hook)
    return True


def remove_exit_hook(pid: Pid, hook: Callable[[Pid, Any], None]) -> None:
    """Undo :func:`add_exit_hook` (no error when absent)."""
    proc = _local_live(pid)
    if proc is not None and proc.exit_hooks and hook in proc.exit_hooks:
        proc.exit_hooks.remove(hook)


# --- monitors ----------------------------------------------------------------------------------


def monitor(target: Any) -> Ref:
    """Monitor a process: a pid, a local name or ``(name, node)``.

    Returns the monitor's :class:`Ref`. When the target ends (or is already
    gone) the caller receives ``("DOWN", ref, "process", object, reason)``,
    where ``object`` is the pid, or ``(name, node)`` for a monitor by name.
    """
    me = current()
    ref = make_ref()
    if me.monitors is None:
        me.monitors = {}
    if type(target) is tuple and len(target) == 2 and target[0] == "global" and "global" in rt.via:
        target = ("via", "global", target[1])  # Erlang's {global, Name}
    if type(target) is Pid:
        obj: Any = target
        node = target.node
        local = rt.is_local(target)
    elif type(target) is str:
        obj, node, local = (target, rt.node), rt.node, True
    elif type(target) is tuple and len(target) == 2 and type(target[0]) is str:
        obj, node = target, target[1]
        local = node == rt.node or node == NO_NODE
    elif type(target) is tuple and len(target) == 3 and target[0] == "via":
        pid = whereis(target)
        obj, node, local = (pid if pid is not None else target), rt.node, True
        if pid is None:
            _signal(_down, me, ref, target, "noproc")
            return ref
        target = pid
    else:
        raise BadName(f"cannot monitor {target!r}: expected a Pid, a name or (name, node)")
    if local:
        if type(target) is Pid:
            proc = _local_live(target)
        else:
            proc = rt.names.get(obj[0])
        if proc is None or not proc.alive:
            _signal(_down, me, ref, obj, "noproc")
            return ref
        me.monitors[ref] = (proc.pid, rt.node)
        if proc.watchers is None:
            proc.watchers = {}
        proc.watchers[ref] = (me.pid, obj)
        return ref
    me.monitors[ref] = (target if type(target) is Pid else obj[0], node)
    if rt.dist is None:
        del me.monitors[ref]
        _signal(_down, me, ref, obj, "noconnection")
        return ref
    rt.dist.monitor(me.pid, target if type(target) is Pid else obj[0], node, ref)
    return ref


def demonitor(ref: Ref, flush: bool = False) -> bool:
    """Remove a monitor; with ``flush``, also drop its DOWN message if delivered.

    Returns True if the monitor was active.
    """
    me = current()
    entry = me.monitors.pop(ref, None) if me.monitors else None
    if entry is not None:
        _drop_monitor(me.pid, ref, *entry)
    if flush:
        mbox = me.mailbox
        for i, m in enumerate(mbox):
            if type(m) is tuple and len(m) == 5 and m[0] == "DOWN" and m[1] == ref:
                del mbox[i]
                me.taken += 1
                break
    return entry is not None


def _drop_monitor(watcher: Pid, ref: Ref, target: Any, node: str) -> None:
    if type(target) is Pid and rt.is_local(target):
        proc = _local_live(target)
        if proc is not None and proc.watchers:
            proc.watchers.pop(ref, None)
    elif node != rt.node and rt.dist is not None:
        rt.dist.demonitor(watcher, target, node, ref)


def _down(proc: Process, ref: Ref, obj: Any, reason: Any) -> None:
    if not proc.alive:
        return
    if proc.monitors is not None and proc.monitors.pop(ref, None) is None and reason not in ("noproc", "noconnection"):
        return  # demonitored meanwhile
    deliver(proc, ("DOWN", ref, "process", obj, reason))


def signal_down(watcher: Pid, ref: Ref, obj: Any, reason: Any) -> None:
    """Entry point for DOWN signals arriving from another node (or node loss)."""
    proc = _local_live(watcher)
    if proc is not None:
        _signal(_down, proc, ref, obj, reason)


def monitor_from_remote(watcher: Pid, target: Any, ref: Ref) -> Any:
    """A remote ``watcher`` monitors local ``target`` (pid or name).

    Returns None when installed, or the ``(obj, "noproc")`` pair to answer at once.
    """
    obj = target if type(target) is Pid else (target, rt.node)
    proc = _local_live(target) if type(target) is Pid else rt.names.get(target)
    if proc is None or not proc.alive:
        return obj
    if proc.watchers is None:
        proc.watchers = {}
    proc.watchers[ref] = (watcher, obj)
    return None


def demonitor_from_remote(target: Any, ref: Ref) -> None:
    proc = _local_live(target) if type(target) is Pid else rt.names.get(target)
    if proc is not None and proc.watchers:
        proc.watchers.pop(ref, None)


def link_from_remote(frm: Pid, to: Pid) -> bool:
    """A remote ``frm`` links to local ``to``; False when ``to`` is not alive."""
    proc = _local_live(to)
    if proc is None:
        return False
    if proc.links is None:
        proc.links = set()
    proc.links.add(frm)
    return True


def unlink_from_remote(frm: Pid, to: Pid) -> None:
    proc = _local_live(to)
    if proc is not None and proc.links:
        proc.links.discard(frm)


def node_down(node: str) -> None:
    """Fire ``noconnection`` for every link and monitor that crosses to ``node``."""
    for proc in list(rt.procs.values()):
        if proc.links:
            for other in [p for p in proc.links if p.node == node]:
                _signal(_exit_signal, proc, other, "noconnection", True)
        if proc.monitors:
            for ref, (target, tnode) in list(proc.monitors.items()):
                if tnode == node:
                    obj = target if type(target) is Pid else (target, node)
                    _signal(_down, proc, ref, obj, "noconnection")
        if proc.watchers:
            for ref in [r for r, (w, _) in proc.watchers.items() if w.node == node]:
                del proc.watchers[ref]
