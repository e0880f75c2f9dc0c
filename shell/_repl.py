"""The read-eval-print loop, the same for the local terminal and each SSH session.

:class:`Repl` reads input with prompt_toolkit (multi-line editing, Python
highlighting, completion, history) and hands each input to a :class:`Backend`,
which evaluates it on the node (see :mod:`._eval`). The prompt names the node and
counts inputs, as iex's does: ``pymesh(node1@vm)3>``, or ``pymesh(3)>`` while the
node is not distributed; it follows ``Node.start``/``Node.stop``.

While the prompt waits, the node's loop is free: prompt_toolkit reads keys
asynchronously (the local terminal shares the node's loop; SSH sessions run on a
thread of their own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any, Protocol

import platformdirs
from prompt_toolkit import PromptSession
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText, PygmentsTokens
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style
from pygments import lex
from pygments.lexers.python import PythonLexer

from pymesh import Node

from ._complete import ShellCompleter
from ._eval import Evaluator, Outcome, is_complete, request_interrupt
from ._output import Sink

__all__ = ["Backend", "LocalBackend", "Repl", "ThreadBackend", "history_path"]

_STYLE = Style.from_dict(
    {
        "prompt": "ansigreen",
        "continuation": "ansibrightblack",
        "error": "ansired",
        "note": "ansiyellow",
    }
)


def history_path() -> Path:
    """Where inputs are kept across runs: platformdirs' user state dir."""
    return Path(platformdirs.user_state_dir("pymesh")) / "shell_history"


def _history() -> History:
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


class Backend(Protocol):
    """Evaluates inputs for a :class:`Repl` (on the node's loop, wherever the REPL runs)."""

    def namespace(self) -> dict[str, Any]: ...
    async def evaluate(self, source: str, n: int) -> Outcome: ...
    def interrupt(self) -> None: ...


class LocalBackend:
    """The evaluator runs on the REPL's own loop (the local terminal)."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def namespace(self) -> dict[str, Any]:
        return self.evaluator.namespace

    async def evaluate(self, source: str, n: int) -> Outcome:
        return await self.evaluator.run(source, n)

    def interrupt(self) -> None:
        request_interrupt(self.evaluator)


class ThreadBackend:
    """The evaluator runs on the node's loop, in another thread (SSH sessions)."""

    def __init__(self, evaluator: Evaluator, node_loop: asyncio.AbstractEventLoop) -> None:
        self.evaluator = evaluator
        self.node_loop = node_loop
        self._running: concurrent.futures.Future[Outcome] | None = None

    def namespace(self) -> dict[str, Any]:
        return self.evaluator.namespace

    async def evaluate(self, source: str, n: int) -> Outcome:
        fut = asyncio.run_coroutine_threadsafe(self.evaluator.run(source, n), self.node_loop)
        self._running = fut
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            # The session is going away mid-input: stop the input on the node too,
            # even one that never yields.
            self.interrupt()
            fut.cancel()
            raise
        finally:
            self._running = None

    @property
    def evaluating(self) -> bool:
        return self._running is not None

    def interrupt(self) -> None:
        if self._running is not None:
            request_interrupt(self.evaluator)


class Repl:
    """Read, evaluate (through ``backend``), print; until Ctrl-D or ``exit()``.

    ``sink`` is the session's output (the REPL tells it when a prompt is on
    screen); ``epmd_port`` is where node names are looked up for completion.
    """

    def __init__(self, backend: Backend, sink: Sink, *, banner: str, epmd_port: int | None, history: bool = True) -> None:
        self.backend = backend
        self.sink = sink
        self.banner = banner
        self.count = 1
        self.evaluating = False
        self.session: PromptSession[str] = PromptSession(
            multiline=True,
            key_bindings=self._bindings(),
            lexer=PygmentsLexer(PythonLexer),
            completer=ShellCompleter(backend.namespace, epmd_port),
            complete_while_typing=False,
            history=_history() if history else InMemoryHistory(),
            prompt_continuation=self._continuation,
            style=_STYLE,
            include_default_pygments_style=True,
            enable_history_search=False,
        )

    # --- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        self.print(self.banner, "class:note")
        while True:
            self.sink.app = self.session.app
            try:
                text = await self.session.prompt_async(
                    self._message, handle_sigint=False, set_exception_handler=False
                )
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt drops the input
            except EOFError:
                break
            finally:
                self.sink.app = None
            if not text.strip():
                continue
            n = self.count
            self.count += 1
            self.sink.reset_budget()
            self.evaluating = True
            try:
                outcome = await self.backend.evaluate(text.rstrip() + "\n", n)
            finally:
                self.evaluating = False
            dropped = self.sink.reset_budget()
            self.show(outcome)
            if dropped:
                self.print(f"... (printed output cut: {dropped:,} more characters dropped)", "class:note")
            if outcome.kind == "exit":
                break

    def _message(self) -> FormattedText:
        node = Node.self()
        if not Node.alive():
            return FormattedText([("class:prompt", f"pymesh({self.count})> ")])
        return FormattedText([("class:prompt", f"pymesh({node}){self.count}> ")])

    @staticmethod
    def _continuation(width: int, line_number: int, is_soft_wrap: int) -> FormattedText:
        return FormattedText([("class:continuation", "...".rjust(width - 1) + " ")])

    # --- output ------------------------------------------------------------------------

    def print(self, text: str, style: str = "") -> None:
        print_formatted_text(FormattedText([(style, text)]), style=_STYLE)

    def show(self, outcome: Outcome) -> None:
        for note in outcome.notes:
            self.print(note, "class:note")
        if not outcome.text:
            return
        if outcome.kind == "value":
            if outcome.plain:
                self.print(outcome.text)
            else:
                print_formatted_text(_tokens(outcome.text), style=_STYLE)
        elif outcome.kind == "error":
            self.print(outcome.text, "class:error")
        elif outcome.kind == "interrupted":
            self.print(outcome.text, "class:note")

    # --- keys --------------------------------------------------------------------------

    def _bindings(self) -> KeyBindings:
        kb = KeyBindings()

        @Condition
        def only_space_before_cursor() -> bool:
            before = self.session.default_buffer.document.current_line_before_cursor
            return before.strip() == ""

        @kb.add("enter")
        def _(event: KeyPressEvent) -> None:
            buf = event.current_buffer
            if buf.complete_state is not None and buf.complete_state.current_completion is not None:
                buf.complete_state = None  # Enter takes the completion
                return
            if buf.document.is_cursor_at_the_end and not is_complete(buf.text):
                buf.insert_text("\n" + _indent_for(buf.document.current_line))
                return
            if not buf.document.is_cursor_at_the_end and not is_complete(buf.text):
                buf.insert_text("\n")
                return
            buf.validate_and_handle()

        @kb.add("escape", "enter")
        def _(event: KeyPressEvent) -> None:
            event.current_buffer.validate_and_handle()

        @kb.add("tab", filter=only_space_before_cursor)
        def _(event: KeyPressEvent) -> None:
            event.current_buffer.insert_text("    ")

        return kb


def _tokens(text: str) -> PygmentsTokens:
    tokens = list(lex(text, PythonLexer()))
    # pygments ends with a newline token; print_formatted_text adds its own
    if tokens and tokens[-1][1] == "\n":
        tokens.pop()
    return PygmentsTokens(tokens)


def _indent_for(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    code = line.split("#", 1)[0].rstrip()
    if code.endswith(":"):
        return indent + "    "
    if code.strip() in ("pass", "break", "continue", "return") or code.strip().startswith(("return ", "raise ")):
        return indent[:-4]
    return indent
