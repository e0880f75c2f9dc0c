"""A TCP proxy on loopback that a test can cut: the network between a node and etcd.

``await start_proxy(port)`` (on a node, through ``rpc_call``) forwards a new
local port to ``127.0.0.1:port``; ``cut("refuse")`` closes it and every
connection through it (the far side is unreachable), ``cut("silent")`` keeps
accepting but forwards nothing (the far side hangs), ``restore()`` forwards again.
"""

from __future__ import annotations

import asyncio
import contextlib

_state: dict[str, object] = {"mode": "open", "server": None, "target": 0, "port": 0}
_conns: set[asyncio.StreamWriter] = set()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        while data := await reader.read(65536):
            if _state["mode"] != "open":
                continue  # silent: swallow
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _conns.add(writer)
    try:
        if _state["mode"] == "silent":
            await reader.read()  # hold the connection, answer nothing
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", _state["target"])
        _conns.add(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    except Exception:
        pass
    finally:
        _conns.discard(writer)
        with contextlib.suppress(Exception):
            writer.close()


async def start_proxy(target: int) -> int:
    _state["target"] = target
    _state["mode"] = "open"
    server = await asyncio.start_server(_serve, "127.0.0.1", _state["port"] or 0)
    _state["server"] = server
    _state["port"] = server.sockets[0].getsockname()[1]
    return int(_state["port"])  # type: ignore[arg-type]


def cut(mode: str = "refuse") -> None:
    _state["mode"] = mode
    if mode == "refuse":
        server = _state["server"]
        if server is not None:
            server.close()  # type: ignore[attr-defined]
            _state["server"] = None
    for w in list(_conns):
        if mode == "refuse":
            with contextlib.suppress(Exception):
                w.transport.abort()


async def restore() -> None:
    _state["mode"] = "open"
    if _state["server"] is None:
        await start_proxy(int(_state["target"]))  # type: ignore[arg-type]
