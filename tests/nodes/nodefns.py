"""Functions a test asks a node subprocess to run by ``"module:function"`` name.

``tests/nodes`` is the script directory of ``testnode.py``, so a node imports
this module as ``nodefns`` — what ``Node.spawn(node, "nodefns:...")`` and
``rpc_call(node, "nodefns:...")`` name.
"""

from __future__ import annotations

import os
from typing import Any

import pymesh
from pymesh import GenServer, Pid, receive, send


async def report_home(to: Pid, tag: Any) -> None:
    """Send ``(tag, self(), node, os pid)`` to ``to``, then echo until told to stop."""
    send(to, (tag, pymesh.self(), pymesh.Node.self(), os.getpid()))
    while True:
        msg = await receive()
        if msg == "stop":
            return
        if msg == "crash":
            raise RuntimeError("asked to crash")
        send(to, ("echo", msg))


async def wait_forever() -> None:
    await receive("never sent")


def add(a: int, b: int) -> int:
    return a + b


async def slow_add(a: int, b: int) -> int:
    import asyncio

    await asyncio.sleep(0.05)
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


class KV(GenServer):
    """A tiny key-value server, registered as ``kv`` on every test node."""

    async def init(self) -> None:
        self.data: dict[Any, Any] = {}

    async def handle_call(self, request: Any, frm: Any) -> Any:
        op = request[0]
        if op == "put":
            self.data[request[1]] = request[2]
            return "ok"
        if op == "get":
            return self.data.get(request[1])
        if op == "where":
            return (pymesh.Node.self(), os.getpid())
        if op == "hang":
            import asyncio

            await asyncio.sleep(3600)
        if op == "crash":
            raise RuntimeError("kv crashed on request")
        raise ValueError(f"unknown request {request!r}")
