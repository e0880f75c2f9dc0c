"""Where ``print`` goes: each shell session is the *group leader* of what it runs.

On the BEAM every process has a group leader that its I/O goes to, and a process
inherits it from the one that spawned it; that is how output of a process started
from a remote shell shows up in that remote shell. The shell does the same with a
context variable: :func:`install` replaces ``sys.stdout``/``sys.stderr`` by
:class:`RoutedStream` objects that write to the calling task's :class:`Sink` when
it has one, else to the original stream. Each session sets its sink in the
context of its shell process, and tasks (and so pymesh processes) copy their
creator's context — so their output follows.

A :class:`Sink` writes either at once (no prompt on screen) or above the prompt
(prompt_toolkit's ``run_in_terminal``), from any thread, and cuts what one
evaluation prints at :data:`PRINT_LIMIT` characters.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["PRINT_LIMIT", "NodeConsole", "RoutedStream", "Sink", "current_sink", "install", "set_fallback", "use_sink"]

#: Characters one evaluation may print in a session before the rest is dropped.
PRINT_LIMIT = 1_000_000

_sink: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("pymesh_shell_sink", default=None)
_fallback: Sink | None = None  # the local terminal's sink, for output of no session


class Sink:
    """A session's terminal, as seen by code that prints.

    ``raw_write(text)`` puts text on the terminal; it is only called on ``loop``'s
    thread. ``context`` (optional) is the prompt_toolkit app session's context,
    needed to print above a prompt that is being edited.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        raw_write: Callable[[str], object],
        *,
        context: contextvars.Context | None = None,
    ) -> None:
        self.loop = loop
        self.raw_write = raw_write
        self.context = context
        self.closed = False
        self.app: Any = None  # the prompt_toolkit Application while a prompt is shown
        self._thread = threading.get_ident()
        self._pending: list[str] = []
        self._flush_scheduled = False
        self._lock = threading.Lock()
        self._incoming: list[str] = []  # written by other threads, not yet on the loop
        self._budget = PRINT_LIMIT
        self.dropped = 0

    def reset_budget(self) -> int:
        """Start a new evaluation's allowance; return what the last one dropped."""
        dropped, self.dropped, self._budget = self.dropped, 0, PRINT_LIMIT
        return dropped

    def write(self, text: str) -> int:
        if self.closed or not text:
            return len(text)
        if self._budget <= 0:
            self.dropped += len(text)
            return len(text)
        if len(text) > self._budget:
            self.dropped += len(text) - self._budget
            text = text[: self._budget]
        self._budget -= len(text)
        if threading.get_ident() == self._thread:
            self._write(text)
            return len(text)
        # From another thread (the node's loop, for an SSH session): batch the
        # writes so that a print loop wakes the session's loop once, not per line.
        with self._lock:
            self._incoming.append(text)
            if len(self._incoming) > 1:
                return len(text)
        try:
            self.loop.call_soon_threadsafe(self._take_incoming)
        except RuntimeError:  # the session's loop is gone
            self.closed = True
        return len(text)

    def _take_incoming(self) -> None:
        with self._lock:
            text = "".join(self._incoming)
            self._incoming.clear()
        self._write(text)

    def _write(self, text: str) -> None:
        if self.closed:
            return
        app = self.app
        if app is None or not app.is_running:
            self.raw_write(text)
            return
        # A prompt is on screen: collect, then print above it in one go.
        self._pending.append(text)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            ctx = (self.context or contextvars.copy_context()).copy()
            self.loop.call_soon(self._flush_above_prompt, context=ctx)

    def _flush_above_prompt(self) -> None:
        from prompt_toolkit.application import run_in_terminal

        self._flush_scheduled = False
        text = "".join(self._pending)
        self._pending.clear()
        if not text:
            return
        if not text.endswith("\n"):
            text += "\n"  # the prompt is redrawn below; keep it on its own line
        asyncio.ensure_future(run_in_terminal(lambda: self.raw_write(text), in_executor=False))


class RoutedStream:
    """``sys.stdout``/``sys.stderr`` replacement: writes go to the context's sink."""

    def __init__(self, default: TextIO) -> None:
        self.default = default

    def _target(self) -> Sink | TextIO:
        sink = _sink.get()
        if sink is None or sink.closed:
            sink = _fallback
            if sink is None or sink.closed:
                return self.default
        return sink

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        target = self._target()
        if target is self.default:
            self.default.flush()

    def isatty(self) -> bool:
        target = self._target()
        return True if isinstance(target, Sink) else self.default.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.default, name)


class NodeConsole:
    """A stream for the node's own messages (its log): the local terminal's sink
    when there is one (above the prompt), else the original stderr — never a
    session's, whichever context logs."""

    def write(self, text: str) -> int:
        sink = _fallback
        if sink is not None and not sink.closed:
            return sink.write(text)
        err = sys.__stderr__
        return err.write(text) if err is not None else len(text)

    def flush(self) -> None:
        if sys.__stderr__ is not None:
            sys.__stderr__.flush()


def install() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through sinks (idempotent)."""
    if not isinstance(sys.stdout, RoutedStream):
        sys.stdout = RoutedStream(sys.stdout)
    if not isinstance(sys.stderr, RoutedStream):
        sys.stderr = RoutedStream(sys.stderr)


def set_fallback(sink: Sink | None) -> None:
    """Output of code that belongs to no session goes to ``sink`` (the local
    terminal, so that it is printed above the prompt), or, with None, to the
    original streams."""
    global _fallback
    _fallback = sink


def current_sink() -> Sink | None:
    """The sink of the calling task's context, if any."""
    return _sink.get()


def use_sink(sink: Sink | None) -> None:
    """Make ``sink`` the calling context's output (its tasks inherit it)."""
    _sink.set(sink)
