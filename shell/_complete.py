"""Tab completion: Python names and attributes, node names, registered names.

* Inside ``Node.connect("`` (and ``Node.ping``, ``rpc_call``, ``peer_stop``, ...):
  the nodes this node knows (``Node.list("known")``) and those the local port
  mapper has registered.
* Inside ``whereis("``, ``send("``, ``monitor("``, ``i("``, ...: the locally
  registered names.
* Anywhere else: jedi over the live namespace when jedi is installed, else an
  ``rlcompleter``-style completer. Both run in a worker thread, so a slow first
  jedi call never stalls the node.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

import pymesh
from pymesh import Node

__all__ = ["ShellCompleter"]

_NODE_ARG = re.compile(
    r"(?:Node\.(?:connect|ping|disconnect|monitor|spawn|statistics|down_reason)|rpc_call|rpc_eval"
    r"|peer_stop|Node\.list)\(\s*(['\"])(?P<prefix>[^'\"]*)$"
)
_NAME_ARG = re.compile(
    r"(?:whereis|send|monitor|unregister|call|cast|i|link|exit)\(\s*(['\"])(?P<prefix>[^'\"]*)$"
)
_WORD = re.compile(r"[A-Za-z_][\w.]*$")


class ShellCompleter(Completer):
    """Completes against ``namespace()`` (read at each Tab) and the live node."""

    def __init__(self, namespace: Callable[[], dict[str, Any]], epmd_port: int | None) -> None:
        self.namespace = namespace
        self.epmd_port = epmd_port
        self._mapper_names: tuple[float, list[str]] = (0.0, [])
        try:
            import jedi  # noqa: F401

            self._jedi = True
        except ImportError:
            self._jedi = False

    # prompt_toolkit calls this one; it may await.
    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        before = document.text_before_cursor
        m = _NODE_ARG.search(before)
        if m:
            for c in self._matching(m.group("prefix"), await self._node_names()):
                yield c
            return
        m = _NAME_ARG.search(before)
        if m:
            try:
                names = pymesh.registered()
            except RuntimeError:  # changed while we read it (another thread)
                names = []
            for c in self._matching(m.group("prefix"), names):
                yield c
            return
        loop = asyncio.get_running_loop()
        for c in await loop.run_in_executor(None, self._python, document):
            yield c

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        return self._python(document)

    @staticmethod
    def _matching(prefix: str, candidates: Iterable[str]) -> list[Completion]:
        return [Completion(c, -len(prefix)) for c in sorted(set(candidates)) if c.startswith(prefix)]

    async def _node_names(self) -> list[str]:
        try:
            known = [n for n in Node.list(["known", "connected"]) if n != Node.self()]
        except RuntimeError:
            known = []
        return known + await self._port_mapper_names()

    async def _port_mapper_names(self) -> list[str]:
        when, cached = self._mapper_names
        if time.monotonic() - when < 2.0:
            return cached
        from pymesh.epmd import names

        me = Node.self()
        host = me.partition("@")[2] if Node.alive() else socket.gethostname().split(".")[0]
        try:
            listed = await names("127.0.0.1", self.epmd_port, timeout=1.0)
        except Exception:  # noqa: BLE001 - no port mapper: nothing to offer
            listed = []
        result = [f"{name}@{host}" for name, _ in listed if f"{name}@{host}" != me]
        self._mapper_names = (time.monotonic(), result)
        return result

    def _python(self, document: Document) -> list[Completion]:
        try:
            if self._jedi:
                return self._with_jedi(document)
            return self._with_rlcompleter(document)
        except Exception:  # noqa: BLE001 - a completer must never break the prompt
            return []

    def _with_jedi(self, document: Document) -> list[Completion]:
        import jedi

        script = jedi.Interpreter(document.text, [dict(self.namespace())])
        row, col = document.cursor_position_row + 1, document.cursor_position_col
        out = []
        for jc in script.complete(row, col):
            name = jc.name_with_symbols
            if jc.name.startswith("_") and not _WORD_PREFIX_UNDERSCORE(document):
                continue
            out.append(Completion(name, len(jc.complete) - len(name), display=name, display_meta=jc.type))
        return out

    def _with_rlcompleter(self, document: Document) -> list[Completion]:
        import rlcompleter

        m = _WORD.search(document.text_before_cursor)
        if not m:
            return []
        word = m.group(0)
        completer = rlcompleter.Completer(dict(self.namespace()))
        out: list[Completion] = []
        state = 0
        while state < 500:
            match = completer.complete(word, state)
            if match is None:
                break
            out.append(Completion(match.rstrip("("), -len(word)))
            state += 1
        return out


def _WORD_PREFIX_UNDERSCORE(document: Document) -> bool:
    m = _WORD.search(document.text_before_cursor)
    return bool(m and m.group(0).rsplit(".", 1)[-1].startswith("_"))
