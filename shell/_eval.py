"""Evaluating shell input inside a pymesh process, and interrupting it.

Each session (the local terminal, each SSH session) owns an :class:`Evaluator`,
which lives on the node's event loop and owns a *shell process*: a pymesh
process that does nothing but lend its identity. Every input runs as a new
asyncio task in that process's context, so ``self()``, ``receive`` and
``flush()`` see the same pid and mailbox from one input to the next, and a
running input can be cancelled without ending the process. When the shell
process dies (a linked process crashed, someone sent it ``exit``), the next
input gets a new one and the session says so, as iex does.

Interrupting (Ctrl-C) has two cases:

* the input waits (``await asyncio.sleep(100)``): its task is cancelled;
* the input runs without yielding (``while True: pass``): the event loop is
  stuck in it, so nothing scheduled can run. A signal handler, which Python runs
  in the main thread between two bytecodes, raises :class:`Interrupted` right
  there — but only when the task being run is the input's (or the code running
  was typed into a shell), never inside the loop's own machinery.

The local terminal's Ctrl-C arrives as SIGINT. An SSH session reads Ctrl-C on
its own thread, queues the request and sends :data:`INTERRUPT_SIGNAL` to the main
thread (SIGURG: ignored by default, so a stray one harms nothing).
"""

from __future__ import annotations

import ast
import asyncio
import collections
import contextvars
import inspect
import linecache
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import pymesh

from pymesh import add_exit_hook

from ._output import Sink, use_sink

__all__ = [
    "INTERRUPT_SIGNAL",
    "Evaluator",
    "Interrupted",
    "LeaveShell",
    "Outcome",
    "cut_output",
    "install_interrupt_handler",
    "is_complete",
    "request_interrupt",
]

INTERRUPT_SIGNAL = signal.SIGURG
MAX_RESULT_CHARS = 10_000
MAX_RESULT_LINES = 200

_TLA = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_CO_COROUTINE = inspect.CO_COROUTINE


class Interrupted(BaseException):
    """Ctrl-C stopped an input that was running without yielding to the loop.

    A ``BaseException`` (not ``KeyboardInterrupt``, which asyncio re-raises out of
    the event loop) so that ``except Exception`` in user code does not swallow it.
    """


class LeaveShell(BaseException):
    """``exit()`` / ``quit()`` at the prompt: leave this session."""


@dataclass
class Outcome:
    """What one input produced, as text the session prints."""

    kind: str  # "value" | "none" | "error" | "interrupted" | "exit"
    text: str = ""
    notes: list[str] = field(default_factory=list)
    plain: bool = False  # show the text as it is, not highlighted as Python


# --- compiling ------------------------------------------------------------------------------

_shell_files: set[str] = set()


def _compile(source: str, filename: str) -> tuple[Any, Any]:
    """``(statements_code, last_expression_code)``; either may be None.

    Like the interactive interpreter, a trailing expression statement is the
    input's value. Top-level ``await`` is allowed. Raises ``SyntaxError``.
    """
    tree = compile(source, filename, "exec", flags=ast.PyCF_ONLY_AST | _TLA)
    assert isinstance(tree, ast.Module)
    expr = None
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
        expr = compile(ast.Expression(last.value), filename, "eval", flags=_TLA)
    body = compile(tree, filename, "exec", flags=_TLA) if tree.body else None
    return body, expr


def _remember_source(filename: str, source: str) -> None:
    # Tracebacks then quote the input's lines; mtime None keeps checkcache off them.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    _shell_files.add(filename)


def is_complete(text: str) -> bool:
    """Whether Enter should run ``text`` (True) or open a new line (False).

    Complete when it compiles and its last line is not indented (a block needs
    an empty line to end, as in Python's REPL), when it cannot compile for a
    reason other than ending early (the error is shown), or when the last line
    is empty.
    """
    if not text.strip():
        return True
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1].strip():
        return True
    import codeop

    compiler = codeop.CommandCompiler()
    compiler.compiler.flags |= _TLA
    try:
        code = compiler(text, "<input>", "exec")
    except (SyntaxError, ValueError, OverflowError):
        return True
    if code is None:
        return False
    return not lines[-1][:1].isspace()


def cut_output(text: str, n: int | None = None) -> str:
    """``text``, or its head with a note when longer than the display limits."""
    nlines = text.count("\n") + 1
    if len(text) <= MAX_RESULT_CHARS and nlines <= MAX_RESULT_LINES:
        return text
    head = "\n".join(text[:MAX_RESULT_CHARS].split("\n")[:MAX_RESULT_LINES])
    where = f"; the whole value is v({n})" if n is not None else ""
    return f"{head}\n... (output cut: {len(text):,} characters, {nlines:,} lines in all{where})"


def _format_exception(exc: BaseException) -> str:
    """The traceback, without the shell's own frames."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    here = __file__
    seen: set[int] = set()
    stack: list[traceback.TracebackException] = [te]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list([f for f in t.stack if f.filename != here])
        for other in (t.__cause__, t.__context__):
            if other is not None:
                stack.append(other)
    lines = list(te.format())
    if lines and lines[0].startswith("Traceback") and len(lines) == 2:
        lines = lines[1:]  # no frames left to show
    return "".join(lines).rstrip("\n")


def _describe_exit_reason(reason: Any) -> str:
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return repr(reason)


# --- interrupting ----------------------------------------------------------------------------

_requests: collections.deque[Evaluator] = collections.deque()
_terminal: Evaluator | None = None
_installed: dict[int, Any] = {}


def _in_shell_code(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename in _shell_files:
            return True
        frame = frame.f_back
    return False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    targets: list[Evaluator] = []
    while _requests:
        targets.append(_requests.popleft())
    if signum == signal.SIGINT and _terminal is not None:
        targets.append(_terminal)
    try:
        current = asyncio.current_task()
    except RuntimeError:
        current = None
    raise_here = False
    for ev in targets:
        task = ev.task
        if task is None or task.done():
            continue
        ev.interrupted = True
        if task is current:
            raise_here = True
        else:
            ev.loop.call_soon_threadsafe(task.cancel)
    # A process typed into a shell that spins without yielding keeps the loop
    # from ever running the cancel above; stop it where it stands.
    if not raise_here and targets and _in_shell_code(frame):
        raise_here = True
    if raise_here:
        raise Interrupted("interrupted")


def install_interrupt_handler(terminal: Evaluator | None = None) -> Callable[[], None]:
    """Install the interrupt handlers in the main thread; return their undo.

    Always handles :data:`INTERRUPT_SIGNAL` (SSH sessions); with ``terminal``
    also SIGINT, which then interrupts that evaluator (the local shell).
    """
    global _terminal
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("the interrupt handlers must be installed from the main thread")
    signums = [INTERRUPT_SIGNAL] + ([signal.SIGINT] if terminal is not None else [])
    previous = {s: signal.signal(s, _on_signal) for s in signums}
    if terminal is not None:
        _terminal = terminal

    def undo() -> None:
        global _terminal
        for s, handler in previous.items():
            signal.signal(s, handler)
        if terminal is not None and _terminal is terminal:
            _terminal = None

    return undo


def request_interrupt(ev: Evaluator) -> None:
    """Interrupt ``ev``'s running input, from any thread."""
    _requests.append(ev)
    try:
        signal.pthread_kill(threading.main_thread().ident or 0, INTERRUPT_SIGNAL)
    except (OSError, ValueError):
        pass
    # Wake the loop so that, if it sleeps, the Python handler runs now.
    try:
        ev.loop.call_soon_threadsafe(lambda: None)
    except RuntimeError:
        pass


# --- the evaluator ---------------------------------------------------------------------------


async def _shell_process(ready: asyncio.Future[tuple[contextvars.Context, asyncio.Task[Any]]], sink: Sink | None, label: str) -> None:
    """The shell process: it only lends its identity to the inputs."""
    pymesh.process_flag("label", label)
    use_sink(sink)
    task = asyncio.current_task()
    assert task is not None
    ready.set_result((contextvars.copy_context(), task))
    await asyncio.get_running_loop().create_future()  # until killed


class Evaluator:
    """One session's evaluation state, on the node's loop (see the module doc).

    ``namespace`` is the session's globals; ``name`` prefixes the pseudo file
    names of inputs (``<shell:3>``); ``sink`` is the session's output.
    """

    def __init__(self, namespace: dict[str, Any], *, name: str, sink: Sink | None, label: str) -> None:
        self.namespace = namespace
        self.name = name
        self.sink = sink
        self.label = label
        self.loop = asyncio.get_running_loop()
        self.results: dict[int, Any] = {}
        self.task: asyncio.Task[Outcome] | None = None
        self.interrupted = False
        self.pid: pymesh.Pid | None = None
        self._ctx: contextvars.Context | None = None
        self._holder: asyncio.Task[Any] | None = None
        self._exit_reason: Any = None
        self._dead = True
        self._closing = False

    # the shell process

    async def open(self) -> pymesh.Pid:
        """Start the shell process; return its pid."""
        ready: asyncio.Future[tuple[contextvars.Context, asyncio.Task[Any]]] = self.loop.create_future()
        pid = pymesh.spawn(_shell_process, ready, self.sink, self.label)
        self._ctx, self._holder = await ready
        self.pid, self._dead, self._exit_reason = pid, False, None
        add_exit_hook(pid, self._on_exit)
        return pid

    def _on_exit(self, pid: pymesh.Pid, reason: Any) -> None:
        self.pid, self._dead, self._exit_reason = pid, True, reason
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    async def close(self) -> None:
        """Cancel the running input and end the shell process."""
        self._closing = True
        task = self.task
        if task is not None and not task.done():
            self.interrupted = True
            request_interrupt(self)
            task.cancel()
            await asyncio.wait([task], timeout=5.0)
        holder = self._holder
        if holder is not None and not holder.done():
            holder.cancel()
            await asyncio.wait([holder], timeout=5.0)

    # inputs

    async def run(self, source: str, n: int) -> Outcome:
        """Evaluate one input, numbered ``n``; never raises for what the input does."""
        notes: list[str] = []
        if self._dead and not self._closing:
            notes += await self._replace_process()
        filename = f"<{self.name}:{n}>"
        _remember_source(filename, source)
        self.interrupted = False
        task = self.loop.create_task(self._evaluate(source, filename, n), context=self._ctx)
        self.task = task
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            # The session went away mid-input: the input goes with it.
            self.interrupted = True
            if not task.done():
                task.cancel()
            raise
        finally:
            self.task = None
        if task.cancelled():
            outcome = (
                Outcome("error", "")  # the note below says why
                if self._dead
                else Outcome("interrupted", "** (interrupted) the input was cancelled (Ctrl-C)")
            )
        else:
            exc = task.exception()
            if exc is None:
                outcome = task.result()
            elif isinstance(exc, (Interrupted, KeyboardInterrupt)):
                outcome = Outcome("interrupted", "** (interrupted) Ctrl-C stopped the input")
            else:
                outcome = Outcome("error", _format_exception(exc))
        outcome.notes = notes + outcome.notes
        if self._dead and not self._closing:
            # The shell process died during the input (a link, an exit signal):
            # say so, as iex does, and give the session a new one.
            outcome.notes.append(self._death_note())
            outcome.notes += await self._replace_process()
        return outcome

    def _death_note(self) -> str:
        return f"** (EXIT from {self.pid!r}) shell process exited with reason: {_describe_exit_reason(self._exit_reason)}"

    async def _replace_process(self) -> list[str]:
        old = self.pid
        await self.open()
        return [f"** new shell process {self.pid!r} (the old one, {old!r}, is gone)"]

    async def _evaluate(self, source: str, filename: str, n: int) -> Outcome:
        ns = self.namespace
        try:
            body, expr = _compile(source, filename)
        except (SyntaxError, ValueError, OverflowError) as e:
            return Outcome("error", "".join(traceback.format_exception_only(type(e), e)).rstrip("\n"))
        try:
            if body is not None:
                r = eval(body, ns)
                if body.co_flags & _CO_COROUTINE:
                    await r
            value = None
            if expr is not None:
                value = eval(expr, ns)
                if expr.co_flags & _CO_COROUTINE:
                    value = await value
                if inspect.iscoroutine(value):
                    value = await value  # a call to an async function: run it, as iex would
        except (LeaveShell, SystemExit):
            return Outcome("exit")
        except (Interrupted, KeyboardInterrupt):
            return Outcome("interrupted", "** (interrupted) Ctrl-C stopped the input")
        except asyncio.CancelledError:
            if self.interrupted or self._dead:
                raise
            return Outcome("error", _format_exception(sys.exc_info()[1]))  # type: ignore[arg-type]
        except pymesh.Exit as e:
            return Outcome("error", f"** (exit) {_describe_exit_reason(e.reason)}")
        except BaseException as e:  # noqa: BLE001 - whatever the input raises is shown
            return Outcome("error", _format_exception(e))
        if expr is None:
            return Outcome("none")
        self.results[n] = value
        if value is None:
            return Outcome("none")
        ns["_"] = value
        try:
            text = repr(value)
        except Exception as e:  # noqa: BLE001
            return Outcome("error", f"(the value's __repr__ failed)\n{_format_exception(e)}")
        return Outcome("value", cut_output(text, n), plain=getattr(type(value), "shell_plain", False))

    def value(self, n: int | None = None) -> Any:
        """``v(n)``: the value of input ``n``; ``v()``/``v(-k)`` count back."""
        if not self.results:
            raise LookupError("no value yet")
        numbers = sorted(self.results)
        if n is None:
            n = -1
        if n <= 0:
            if n == 0 or -n > len(numbers):
                raise LookupError(f"v({n}): only {len(numbers)} values so far")
            return self.results[numbers[n]]
        if n not in self.results:
            raise LookupError(f"v({n}): input {n} had no value")
        return self.results[n]
