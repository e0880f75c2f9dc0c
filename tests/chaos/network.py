"""The chaos harness's network: every node-to-node byte goes through a proxy the harness controls.

Each node gets a *port mapper of its own* (:class:`PortMapperView`, speaking
the EPMD protocol through pymesh's wire codec). It registers there as usual;
but when it asks where node ``j`` listens, its view answers with the port of
the proxy for the ordered pair ``(i, j)``, never with ``j``'s real port. So a
dial from ``i`` to ``j`` is a TCP connection to :class:`PairProxy` ``(i, j)``,
which connects on to ``j``'s real port and pumps the bytes, and whatever the
:class:`Link` ``{i, j}`` says happens to them:

* ``up`` — bytes pass, after ``delay`` seconds each way (added latency, order kept);
* ``cut`` — every connection through the link is aborted at once (both nodes
  see a reset, as when a route disappears) and new ones are reset as soon as
  they are accepted (a refused reconnect);
* ``stall`` — bytes are held, in order, in one direction or both (a silent
  network: nothing is lost, nothing arrives; the nodes notice only through
  their tick timeout). On heal, held bytes are released as TCP would
  retransmit them; a connection that one node gave up on meanwhile is
  aborted on the other side too.

Nothing here touches a node's code: the nodes see real TCP connections that
fail the ways real ones do. Only 127.0.0.1 is used; no port is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from pymesh._errors import RemoteProtocolError
from pymesh.wire._epmd import (
    Alive2Req,
    Alive2Resp,
    Alive2XResp,
    NamesReq,
    NamesResp,
    NodeEntry,
    Port2Resp,
    PortPlease2Req,
    RequestParser,
    encode_response,
)

__all__ = ["Link", "Network", "PairProxy", "PortMapperView"]

log = logging.getLogger("chaos.network")

LOOPBACK = "127.0.0.1"
_CHUNK = 65536


@dataclass
class _Registration:
    entry: NodeEntry
    creation: int


class Network:
    """Port mapper views and pair proxies for a fixed set of node short names."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.registered: dict[str, _Registration] = {}
        self.views: dict[str, PortMapperView] = {}
        self.proxies: dict[tuple[str, str], PairProxy] = {}
        self.links: dict[frozenset[str], Link] = {}
        self._creation = int(time.time()) & 0xFFFFFF
        self.stats = {"connections": 0, "refused": 0, "aborted": 0, "bytes": 0}
        self.tasks: set[asyncio.Task[None]] = set()  # proxied connections being pumped

    async def start(self) -> None:
        for a in self.names:
            self.views[a] = await PortMapperView.start(self, a)
        for a in self.names:
            for b in self.names:
                if a != b:
                    link = self.links.setdefault(frozenset((a, b)), Link(a, b))
                    self.proxies[(a, b)] = await PairProxy.start(self, a, b, link)

    async def close(self) -> None:
        for server in [*self.views.values(), *self.proxies.values()]:
            await server.close()
        for link in self.links.values():
            link.abort_all()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def epmd_port(self, name: str) -> int:
        """The port mapper port node ``name`` must use."""
        return self.views[name].port

    def link(self, a: str, b: str) -> Link:
        return self.links[frozenset((a, b))]

    def next_creation(self) -> int:
        self._creation = (self._creation + 1) & 0xFFFFFFFF or 4
        return max(self._creation, 4)

    def heal_all(self) -> None:
        for link in self.links.values():
            link.set_delay(0.0)
            link.heal()


class Link:
    """The state of the network between two nodes, in both directions."""

    def __init__(self, a: str, b: str) -> None:
        self.a, self.b = a, b
        self.mode = "up"  # up | cut | stall
        self.held: set[tuple[str, str]] = set()  # stalled directions (src, dst)
        self.delay = 0.0
        self.pipes: set[_Pipe] = set()

    def __repr__(self) -> str:
        return f"<Link {self.a}-{self.b} {self.mode} delay={self.delay}>"

    def cut(self) -> None:
        self.mode = "cut"
        self.held.clear()
        self.abort_all()

    def stall(self, direction: tuple[str, str] | None = None) -> None:
        """Hold bytes from ``direction[0]`` to ``direction[1]``, or both ways when None."""
        self.mode = "stall"
        self.held = {direction} if direction else {(self.a, self.b), (self.b, self.a)}

    def heal(self) -> None:
        self.mode = "up"
        self.held.clear()
        for pipe in list(self.pipes):
            pipe.wake()

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds
        for pipe in list(self.pipes):
            pipe.wake()

    def abort_all(self) -> None:
        for pipe in list(self.pipes):
            pipe.abort()

    def holds(self, src: str, dst: str) -> bool:
        return (src, dst) in self.held


class PortMapperView:
    """Node ``name``'s port mapper: registrations are shared, lookups point at proxies."""

    def __init__(self, net: Network, name: str) -> None:
        self.net = net
        self.name = name
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, net: Network, name: str) -> PortMapperView:
        view = cls(net, name)
        view.server = await asyncio.start_server(view._serve, LOOPBACK, 0)
        view.port = view.server.sockets[0].getsockname()[1]
        return view

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        parser = RequestParser()
        try:
            request = None
            while request is None:
                data = await asyncio.wait_for(reader.read(_CHUNK), 10)
                if not data:
                    return
                parser.receive_data(data)
                request = parser.next_request()
            if isinstance(request, Alive2Req):
                await self._alive2(request, reader, writer)
            elif isinstance(request, PortPlease2Req):
                writer.write(encode_response(self._port_please(request.name)))
                await writer.drain()
            elif isinstance(request, NamesReq):
                names = tuple((n, self._proxy_port(n)) for n in self.net.registered if self._proxy_port(n))
                writer.write(encode_response(NamesResp(self.port, names)))
                await writer.drain()
        except (RemoteProtocolError, OSError, TimeoutError) as e:
            log.debug("view %s: %s", self.name, e)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def _proxy_port(self, name: str) -> int:
        proxy = self.net.proxies.get((self.name, name))
        return proxy.port if proxy is not None else 0

    def _port_please(self, name: str) -> Port2Resp:
        reg = self.net.registered.get(name)
        port = self._proxy_port(name)
        if reg is None or not port:
            return Port2Resp(1)
        e = reg.entry
        return Port2Resp(0, NodeEntry(e.name, port, e.node_type, e.protocol, e.highest, e.lowest, e.extra))

    async def _alive2(self, request: Alive2Req, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply = Alive2XResp if request.highest >= 6 else Alive2Resp
        if request.name in self.net.registered:
            writer.write(encode_response(reply(1, 99)))
            await writer.drain()
            return
        creation = self.net.next_creation()
        reg = _Registration(request.entry, creation if request.highest >= 6 else creation % 3 + 1)
        self.net.registered[request.name] = reg
        try:
            writer.write(encode_response(reply(0, reg.creation)))
            await writer.drain()
            while await reader.read(_CHUNK):  # the registration lasts as long as this connection
                pass
        finally:
            if self.net.registered.get(request.name) is reg:
                del self.net.registered[request.name]


class PairProxy:
    """The one road from node ``src`` to node ``dst``: connections ``src`` dials to ``dst``."""

    def __init__(self, net: Network, src: str, dst: str, link: Link) -> None:
        self.net, self.src, self.dst, self.link = net, src, dst, link
        self.server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    async def start(cls, net: Network, src: str, dst: str, link: Link) -> PairProxy:
        proxy = cls(net, src, dst, link)
        proxy.server = await asyncio.start_server(proxy._accept, LOOPBACK, 0)
        proxy.port = proxy.server.sockets[0].getsockname()[1]
        return proxy

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reg = self.net.registered.get(self.dst)
        if self.link.mode == "cut" or reg is None:
            self.net.stats["refused"] += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, reg.entry.port), 5)
        except (OSError, TimeoutError):
            self.net.stats["refused"] += 1
            writer.transport.abort()
            return
        if self.link.mode == "cut":  # cut while we connected
            self.net.stats["refused"] += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.net.stats["connections"] += 1
        pipe = _Pipe(self, (reader, writer), (up_reader, up_writer))
        self.link.pipes.add(pipe)
        self.net.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await pipe.run()
        except asyncio.CancelledError:
            pass  # the network is closing; asyncio's streams would log a cancelled handler
        finally:
            self.link.pipes.discard(pipe)
            self.net.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]


@dataclass
class _Direction:
    src: str
    dst: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    eof: bool = False


class _Pipe:
    """One proxied TCP connection: two directions, each a queue released by the link's rules."""

    def __init__(
        self,
        proxy: PairProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.link = proxy.link
        # bytes the dialing node (src) sends go to the accepting node (dst), and back
        self.ways = (
            _Direction(proxy.src, proxy.dst, client[0], server[1]),
            _Direction(proxy.dst, proxy.src, server[0], client[1]),
        )
        self._writers = (client[1], server[1])
        self._event = asyncio.Event()
        self._aborted = False
        self._loop = asyncio.get_running_loop()

    def wake(self) -> None:
        self._event.set()

    def abort(self) -> None:
        if not self._aborted:
            self._aborted = True
            self.proxy.net.stats["aborted"] += 1
            for w in self._writers:
                w.transport.abort()
            self._event.set()

    async def run(self) -> None:
        tasks = [self._loop.create_task(self._read(w)) for w in self.ways]
        tasks += [self._loop.create_task(self._write(w)) for w in self.ways]
        try:
            await asyncio.gather(*tasks)
        except (OSError, asyncio.IncompleteReadError):
            self.abort()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.abort()

    async def _read(self, way: _Direction) -> None:
        try:
            while not self._aborted:
                data = await way.reader.read(_CHUNK)
                if not data:
                    break
                way.queue.append((self._loop.time(), data))
                self._event.set()
        except OSError:
            # a reset on one side: the other side is reset too, held bytes and all
            self.abort()
            return
        way.eof = True
        self._event.set()

    async def _write(self, way: _Direction) -> None:
        link = self.link
        while not self._aborted:
            if way.queue and not link.holds(way.src, way.dst):
                sent_at, data = way.queue[0]
                wait = sent_at + link.delay - self._loop.time()
                if wait > 0:
                    self._event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._event.wait(), wait)
                    continue
                way.queue.popleft()
                way.writer.write(data)
                self.proxy.net.stats["bytes"] += len(data)
                await way.writer.drain()
                continue
            if way.eof and not way.queue:
                # a graceful close: pass the FIN on once everything before it is through
                if way.writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        way.writer.write_eof()
                other = self.ways[1] if way is self.ways[0] else self.ways[0]
                if other.eof and not other.queue:
                    self.abort()
                return
            self._event.clear()
            await self._event.wait()
