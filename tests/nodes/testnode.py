"""A pymesh node in its own OS process, driven by a test over stdin/stdout.

Run as ``python testnode.py NAME [options]``. It starts node ``NAME`` (cookie,
port mapper port and tick time from the options), registers a few standard
processes, and prints one line ``READY <full name> <port> <os pid>`` (or
``FAILED <error type> <message>`` and exits 3). Then:

* every stdin line ``<id> <json string>`` is Python source, evaluated in a
  namespace kept between lines (pymesh's public API, ``EVENTS``, ``until``,
  ``nodefns``; top-level ``await`` allowed); the answer is one line
  ``R <id> <json {"ok", "value", "repr"}>``;
* SIGTERM leaves the cluster gracefully (``pymesh.stop()``), prints
  ``STOPPED`` and exits 0 — what a ``pymesh run`` node does;
* end of stdin (the test process went away) exits at once, so a node never
  outlives its test.

Standard processes: ``echo`` (``(frm, msg)`` -> ``msg`` back to ``frm``),
``sink`` (collects messages; ``("$dump", frm)`` sends ``("sink", [...])`` back
and empties it), ``kv`` (:class:`nodefns.KV`), and a node monitor that appends
every ``("nodeup"|"nodedown", node, info)`` to ``EVENTS``. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import traceback
from typing import Any

import nodefns

import pymesh
from pymesh import Node, receive, register, send, spawn
from pymesh.runtime._rpc import evaluate

EVENTS: list[Any] = []


def emit(*parts: Any) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def jsonable(value: Any) -> Any:
    if value is None or type(value) in (bool, int, float, str):
        return value
    if type(value) in (list, tuple):
        return [jsonable(v) for v in value]
    if type(value) is dict and all(type(k) is str for k in value):
        return {k: jsonable(v) for k, v in value.items()}
    return repr(value)


async def until(check: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``check()`` (awaited if it returns an awaitable) until it is truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {value!r} after {timeout}s")
        await asyncio.sleep(interval)


async def echo() -> None:
    while True:
        msg = await receive()
        if type(msg) is tuple and len(msg) == 2:
            send(msg[0], msg[1])


async def sink() -> None:
    got: list[Any] = []
    while True:
        msg = await receive()
        if type(msg) is tuple and len(msg) == 2 and msg[0] == "$dump":
            send(msg[1], ("sink", got))
            got = []
        else:
            got.append(msg)


async def node_events() -> None:
    Node.monitor_nodes(True, reasons=True, node_type="all")
    while True:
        EVENTS.append(await receive())


async def serve_stdin(ns: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        ident, _, source = line.decode().partition(" ")
        loop.create_task(answer(ident, json.loads(source), ns))


async def answer(ident: str, source: str, ns: dict[str, Any]) -> None:
    pymesh.self()  # a process of its own, so that receive() works in the source
    try:
        value = await evaluate(source, ns)
        out = {"ok": True, "value": jsonable(value), "repr": repr(value)}
    except BaseException as e:  # noqa: BLE001 - everything goes back to the test
        out = {"ok": False, "value": None, "repr": "".join(traceback.format_exception(e))}
    emit("R", ident, json.dumps(out))


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--cookie", default=None)
    parser.add_argument("--hidden", action="store_true")
    parser.add_argument("--no-connect-all", action="store_true")
    parser.add_argument("--tick-time", type=float, default=15.0)
    parser.add_argument("--epmd-port", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        full = await pymesh.start(
            args.name,
            cookie=args.cookie,
            hidden=args.hidden,
            connect_all=not args.no_connect_all,
            tick_time=args.tick_time,
            epmd_port=args.epmd_port,
            listen_host="127.0.0.1",
        )
    except pymesh.PymeshError as e:
        emit("FAILED", type(e).__name__, str(e))
        return 3
    register("echo", spawn(echo))
    register("sink", spawn(sink))
    spawn(node_events)
    await nodefns.KV.start(name="kv")
    ns: dict[str, Any] = {name: getattr(pymesh, name) for name in pymesh.__all__}
    ns.update(EVENTS=EVENTS, until=until, nodefns=nodefns, asyncio=asyncio, os=os, pymesh=pymesh)

    loop = asyncio.get_running_loop()
    stopping = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stopping.done() or stopping.set_result("sigterm"))
    stdin = loop.create_task(serve_stdin(ns))
    stdin.add_done_callback(lambda _: stopping.done() or stopping.set_result("eof"))
    emit("READY", full, Node.port(), os.getpid())
    why = await stopping
    if why == "sigterm":
        await pymesh.stop()
        emit("STOPPED")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
