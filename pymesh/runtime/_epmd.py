"""The port mapper on asyncio: pymesh's own ``epmd``, and the client a node uses.

A distributed node needs two things from the host it runs on: a place to
publish "node ``name`` listens on port ``P``", and a way to ask another host
the same question. Erlang's answer is ``epmd``, a tiny daemon on port 4369;
pymesh speaks its protocol (codec in :mod:`pymesh.wire._epmd`), so a pymesh
node can register with a real ``epmd`` and an Erlang node with
:class:`EpmdServer`, and both can look each other up.

The client side
---------------
* :func:`register` publishes a name. The port mapper keeps the name for as
  long as the TCP connection stays open, so the result is a
  :class:`Registration` to keep (and close when the node stops); a name held
  by someone else raises :class:`~pymesh._errors.NameTaken`.
* :func:`port_please` looks a name up (``None`` if unknown), :func:`names`
  lists them, like ``epmd -names``.
* :func:`ensure_running` starts pymesh's port mapper as a detached daemon if
  nothing answers, the way ``erl`` runs ``epmd -daemon``.

Every client call raises :class:`~pymesh._errors.EpmdError` naming
``host:port`` when no port mapper answers there (refused, unreachable, or
silent for ``timeout`` seconds), and :class:`~pymesh._errors.RemoteProtocolError`
when something answers with bytes that are not the EPMD protocol.

The server side
---------------
:class:`EpmdServer` is a complete port mapper, compatible with Erlang nodes and
with the ``epmd -names`` client. It follows epmd's policy: registrations (and
``DUMP``/``KILL``/``STOP``) are only accepted from loopback addresses, a name is
held until its registering connection closes, ``creation`` changes every time
a name is registered again (and is never 0), ``KILL_REQ`` is refused while
names are registered, and one connection carries one request. A peer that
sends garbage or nothing for ``idle_timeout`` seconds loses its connection,
with a line on the ``pymesh.epmd`` logger naming it; the server carries on.

Which port: the ``epmd_port`` argument, else ``$PYMESH_EPMD_PORT``, else
``$ERL_EPMD_PORT`` (what Erlang honours), else 4369 (see
:func:`default_epmd_port`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from pymesh._errors import ConfigError, EpmdError, NameTaken, RemoteProtocolError
from pymesh.wire._epmd import (
    DEFAULT_EPMD_PORT,
    MAX_LISTING,
    NODE_TYPE_HIDDEN,
    NODE_TYPE_NORMAL,
    PROTOCOL_TCP_IPV4,
    Alive2Req,
    Alive2Resp,
    Alive2XResp,
    DumpReq,
    DumpResp,
    KillReq,
    KillResp,
    NamesReq,
    NamesResp,
    NodeEntry,
    Port2Resp,
    PortPlease2Req,
    Request,
    RequestParser,
    Response,
    StopReq,
    StopResp,
    encode_request,
    encode_response,
    parse_alive2_response,
    parse_names_response,
    parse_port2_response,
)

__all__ = [
    "NodeEntry",
    "EpmdServer",
    "Registration",
    "default_epmd_port",
    "serve_forever",
    "register",
    "port_please",
    "names",
    "ensure_running",
]

log = logging.getLogger("pymesh.epmd")

DIST_HIGHEST = 6
"""Distribution protocol versions pymesh announces (OTP 23+ speak 6)."""
DIST_LOWEST = 6

IDLE_TIMEOUT = 10.0
"""Seconds a connection may stay silent before its request is complete."""

_LOOPBACK_HOSTS = ("127.0.0.1", "::1")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
_CREATION_REFUSED = 99  # what epmd puts in a refused ALIVE2 response
_REMEMBERED_NAMES = 1000  # like epmd's MAX_UNREG_COUNT: old names kept for their creation
_READ_CHUNK = 4096


# --- configuration -------------------------------------------------------------------


def default_epmd_port(explicit: int | None = None) -> int:
    """Return the port mapper port to use.

    ``explicit`` if given (0 means "any free port" to :class:`EpmdServer`),
    else ``$PYMESH_EPMD_PORT``, else ``$ERL_EPMD_PORT``, else 4369. Empty
    variables count as unset.

    Raises :class:`~pymesh._errors.ConfigError`, naming the variable, if a
    variable is not an integer in 1..65535 (or ``explicit`` not in 0..65535).
    """
    if explicit is not None:
        if isinstance(explicit, bool) or not isinstance(explicit, int) or not 0 <= explicit <= 0xFFFF:
            raise ConfigError(f"port mapper port must be an integer in 0..65535, not {explicit!r}")
        return explicit
    for variable in ("PYMESH_EPMD_PORT", "ERL_EPMD_PORT"):
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        try:
            port = int(value)
        except ValueError:
            raise ConfigError(f"{variable}={value!r} is not an integer port number") from None
        if not 1 <= port <= 0xFFFF:
            raise ConfigError(f"{variable}={value!r} is not a port number in 1..65535")
        return port
    return DEFAULT_EPMD_PORT


def _fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: OSError) -> str:
    """``Connection refused`` rather than asyncio's ``Connect call failed (...)``."""
    if exc.errno is not None and exc.errno > 0:  # getaddrinfo's errors are negative
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def _is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (also as an IPv4-mapped IPv6 address)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


# --- the server ------------------------------------------------------------------------


@dataclass(eq=False)
class _Conn:
    """One accepted connection, as the request handlers see it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    local: bool


@dataclass(eq=False)
class _Registered:
    entry: NodeEntry
    creation: int
    conn: _Conn


def _listen_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        # As epmd: rebind at once while old connections linger in TIME_WAIT. On
        # Linux this still refuses a second *listener*, which is what makes two
        # racing daemons harmless.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" means every address, IPv4 included; "::1" must not claim 127.0.0.1.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_plan(host: str | None) -> list[tuple[str, bool]]:
    """``(host, required)`` pairs to listen on; IPv6 loopback is optional."""
    loopback = [("127.0.0.1", True), ("::1", False)]
    if host is None or host == "":
        return loopback
    if host in _WILDCARD_HOSTS:
        return [(host, True)]
    # Like epmd -address: local nodes must reach it on the loopback, always.
    return loopback + ([] if _is_loopback(host) else [(host, True)])


def _bind_all(port: int, host: str | None) -> list[socket.socket]:
    """Listening sockets for every address in the plan, all on one port."""
    attempts = 8 if port == 0 else 1  # port 0: each family picks; retry if they clash
    for attempt in range(attempts):
        sockets: list[socket.socket] = []
        actual = port
        try:
            for address, required in _listen_plan(host):
                try:
                    sockets.append(_listen_socket(address, actual))
                except OSError as exc:
                    unavailable = exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
                    if required or not unavailable:
                        raise EpmdError(f"cannot listen on {_fmt_addr(address, actual)}: {_reason(exc)}") from exc
                    log.debug("not listening on %s: %s", _fmt_addr(address, actual), exc)
                    continue
                actual = sockets[-1].getsockname()[1]
        except EpmdError as exc:
            for sock in sockets:
                sock.close()
            cause = exc.__cause__
            clash = isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
            if port == 0 and clash and sockets and attempt + 1 < attempts:
                continue
            raise
        return sockets
    raise AssertionError("unreachable")  # pragma: no cover


class EpmdServer:
    """A port mapper: pymesh's own ``epmd``, speaking Erlang's protocol.

    Create one with :meth:`start`; stop it with :meth:`close` (or ``async
    with``), or from a client with ``KILL_REQ`` (``epmd -kill``) once no
    names are registered. :meth:`wait_closed` returns when it has stopped.
    """

    def __init__(self, *, idle_timeout: float, relaxed_command_check: bool) -> None:
        """Use :meth:`start`."""
        self._idle_timeout = idle_timeout
        self._relaxed = relaxed_command_check
        self._servers: list[asyncio.Server] = []
        self._port = 0
        self._addresses: tuple[str, ...] = ()
        self._registered: dict[str, _Registered] = {}
        self._creations: dict[str, int] = {}  # name -> last counter, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._close_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        port: int | None = None,
        host: str | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        relaxed_command_check: bool = False,
    ) -> EpmdServer:
        """Listen and serve; return the running server.

        ``port`` defaults to :func:`default_epmd_port`; 0 picks a free port
        (read it back from :attr:`port`). With ``host=None`` the server listens
        on 127.0.0.1 and ::1 only (::1 skipped if the host has no IPv6).
        ``host="0.0.0.0"`` or ``"::"`` listens everywhere, so other hosts can
        look names up; any other address is listened on besides the loopback,
        as ``epmd -address`` does. Registrations are accepted from loopback
        peers only, whatever ``host`` is.

        ``relaxed_command_check`` is epmd's flag of the same name: it lets
        ``KILL_REQ`` stop the server while names are registered, and enables
        ``STOP_REQ`` (forced unregistration).

        Raises :class:`~pymesh._errors.EpmdError` if an address cannot be
        bound, e.g. because another port mapper holds the port.
        """
        server = cls(idle_timeout=idle_timeout, relaxed_command_check=relaxed_command_check)
        sockets = _bind_all(default_epmd_port(port), host)
        try:
            for sock in sockets:
                server._servers.append(await asyncio.start_server(server._on_connect, sock=sock))
        except BaseException:
            for srv in server._servers:
                srv.close()
            for sock in sockets:
                sock.close()
            raise
        names = [sock.getsockname() for sock in sockets]
        server._port = names[0][1]
        server._addresses = tuple(_fmt_addr(name[0], name[1]) for name in names)
        log.info("port mapper listening on %s", ", ".join(server._addresses))
        return server

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._port

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every ``host:port`` listened on."""
        return self._addresses

    def names(self) -> list[tuple[str, int]]:
        """A snapshot of the registered ``(name, port)`` pairs, oldest first."""
        return [(name, reg.entry.port) for name, reg in self._registered.items()]

    def lookup(self, name: str) -> NodeEntry | None:
        """The registration of ``name``, or ``None``."""
        reg = self._registered.get(name)
        return None if reg is None else reg.entry

    async def close(self) -> None:
        """Stop listening, drop every connection (so every registration); idempotent."""
        await asyncio.shield(self._begin_close())

    async def wait_closed(self) -> None:
        """Return once the server has stopped (:meth:`close` or ``KILL_REQ``)."""
        await self._closed.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed.is_set() else f"{len(self._registered)} names"
        return f"<EpmdServer {' '.join(self._addresses) or 'unbound'} {state}>"

    def _begin_close(self) -> asyncio.Task[None]:
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close())
        return self._close_task

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._registered.clear()
        log.info("port mapper on port %d stopped", self._port)
        self._closed.set()

    # -- connections ---------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer_address = writer.get_extra_info("peername") or ("?", 0)
        conn = _Conn(reader, writer, _fmt_addr(peer_address[0], peer_address[1]), _is_loopback(peer_address[0]))
        if self._close_task is not None:
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(conn)
        except RemoteProtocolError as exc:
            log.warning("peer=%s closing connection: %s", conn.peer, exc)
        except OSError as exc:  # reset by peer and friends: nothing to answer
            log.debug("peer=%s connection lost: %s", conn.peer, exc)
        except Exception:  # a bug of ours must cost one connection, never the server
            log.exception("peer=%s closing connection after an internal error", conn.peer)
        except asyncio.CancelledError:
            # Only close() cancels these tasks. Ending quietly keeps asyncio's
            # streams (Python 3.11) from logging the cancellation as an error.
            log.debug("peer=%s connection closed by shutdown", conn.peer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, conn: _Conn) -> None:
        parser = RequestParser()
        request = await self._read_request(conn, parser)
        if request is None:
            return
        if parser.buffered:
            raise RemoteProtocolError(f"{parser.buffered} bytes after the request (one request per connection)")
        await _HANDLERS[type(request)](self, conn, request)

    async def _read_request(self, conn: _Conn, parser: RequestParser) -> Request | None:
        eof = False
        while (request := parser.next_request()) is None:
            if eof:
                log.debug("peer=%s closed the connection without a request", conn.peer)
                return None
            try:
                async with asyncio.timeout(self._idle_timeout):
                    data = await conn.reader.read(_READ_CHUNK)
            except TimeoutError:
                log.info("peer=%s closing connection: no request within %gs", conn.peer, self._idle_timeout)
                return None
            if data:
                parser.receive_data(data)
            else:
                parser.receive_eof()
                eof = True
        return request

    async def _reply(self, conn: _Conn, response: Response) -> None:
        conn.writer.write(encode_response(response))
        async with asyncio.timeout(self._idle_timeout):
            await conn.writer.drain()

    def _refuse_remote(self, conn: _Conn, what: str) -> bool:
        if conn.local:
            return False
        log.warning("peer=%s closing connection: %s from a non-loopback address", conn.peer, what)
        return True

    def _next_creation(self, name: str, highest: int) -> int:
        # epmd's scheme: a 32-bit counter per name, seeded from the clock (so a
        # restarted port mapper does not hand out the same creation again) and
        # bumped on every registration, never below 4. Version-5 nodes get it
        # folded into 1..3. Either way it is never 0, which means "unknown".
        counter = self._creations.pop(name, None)
        if counter is None:
            counter = int(time.time())
        counter = (counter + 1) & 0xFFFFFFFF
        counter = max(counter, 4)
        self._creations[name] = counter
        while len(self._creations) > _REMEMBERED_NAMES:
            oldest = next(iter(self._creations))
            if oldest in self._registered:
                break  # only forget names nobody holds
            del self._creations[oldest]
        return counter if highest >= 6 else counter % 3 + 1

    # -- request handlers: one per request type, dispatched through _HANDLERS ----------------

    async def _process_alive2(self, conn: _Conn, request: Alive2Req) -> None:
        if self._refuse_remote(conn, "ALIVE2_REQ"):
            return
        reply: type[Alive2XResp | Alive2Resp] = Alive2XResp if request.highest >= 6 else Alive2Resp
        if request.name in self._registered:
            log.info("peer=%s refused ALIVE2_REQ: name %r is taken", conn.peer, request.name)
            await self._reply(conn, reply(1, _CREATION_REFUSED))
            return
        creation = self._next_creation(request.name, request.highest)
        registered = _Registered(request.entry, creation, conn)
        self._registered[request.name] = registered
        try:
            await self._reply(conn, reply(0, creation))
            log.info("peer=%s registered %r at port %d (creation %d)", conn.peer, request.name, request.port, creation)
            # This connection *is* the registration: no idle timeout, and it
            # ends when the node closes it.
            data = await conn.reader.read(_READ_CHUNK)
            if data:
                raise RemoteProtocolError(
                    f"{len(data)} unexpected bytes on the registration of {request.name!r}; unregistering"
                )
            log.info("peer=%s unregistered %r (connection closed)", conn.peer, request.name)
        finally:
            if self._registered.get(request.name) is registered:
                del self._registered[request.name]

    async def _process_port_please2(self, conn: _Conn, request: PortPlease2Req) -> None:
        registered = self._registered.get(request.name)
        log.debug("peer=%s PORT_PLEASE2_REQ %r: %s", conn.peer, request.name, "found" if registered else "unknown")
        await self._reply(conn, Port2Resp(0, registered.entry) if registered else Port2Resp(1))

    async def _process_names(self, conn: _Conn, request: NamesReq) -> None:
        await self._reply(conn, NamesResp(self._port, tuple(self.names())))

    async def _process_dump(self, conn: _Conn, request: DumpReq) -> None:
        if self._refuse_remote(conn, "DUMP_REQ"):
            return
        lines = []
        for name, reg in self._registered.items():
            sock = reg.conn.writer.get_extra_info("socket")
            fd = sock.fileno() if sock is not None else -1
            lines.append(f"active name     <{name}> at port {reg.entry.port}, fd = {fd}\n")
        lines += [f"old/unused name <{name}>\n" for name in self._creations if name not in self._registered]
        await self._reply(conn, DumpResp(self._port, "".join(lines)))

    async def _process_kill(self, conn: _Conn, request: KillReq) -> None:
        if self._refuse_remote(conn, "KILL_REQ"):
            return
        if self._registered and not self._relaxed:
            log.info("peer=%s refused KILL_REQ: %d names registered", conn.peer, len(self._registered))
            await self._reply(conn, KillResp(False))
            return
        await self._reply(conn, KillResp(True))
        log.info("peer=%s sent KILL_REQ: stopping", conn.peer)
        self._begin_close()

    async def _process_stop(self, conn: _Conn, request: StopReq) -> None:
        if self._refuse_remote(conn, "STOP_REQ"):
            return
        if not self._relaxed:
            # epmd closes without an answer unless -relaxed_command_check.
            log.warning("peer=%s closing connection: STOP_REQ needs relaxed_command_check", conn.peer)
            return
        registered = self._registered.pop(request.name, None)
        if registered is not None:
            registered.conn.writer.close()
            log.info("peer=%s unregistered %r by STOP_REQ", conn.peer, request.name)
        await self._reply(conn, StopResp(registered is not None))


_HANDLERS: dict[type, Callable[[EpmdServer, _Conn, Request], Awaitable[None]]] = {
    Alive2Req: EpmdServer._process_alive2,  # type: ignore[dict-item]
    PortPlease2Req: EpmdServer._process_port_please2,  # type: ignore[dict-item]
    NamesReq: EpmdServer._process_names,  # type: ignore[dict-item]
    DumpReq: EpmdServer._process_dump,  # type: ignore[dict-item]
    KillReq: EpmdServer._process_kill,  # type: ignore[dict-item]
    StopReq: EpmdServer._process_stop,  # type: ignore[dict-item]
}


async def serve_forever(
    port: int,
    host: str | None = None,
    *,
    on_ready: Callable[[EpmdServer], None] | None = None,
) -> None:
    """Run a port mapper until cancelled or stopped by ``KILL_REQ``.

    This is ``pymesh epmd``. ``on_ready`` is called once the server listens.
    Raises :class:`~pymesh._errors.EpmdError` if the port cannot be bound.
    """
    server = await EpmdServer.start(port, host)
    try:
        if on_ready is not None:
            on_ready(server)
        await server.wait_closed()
    finally:
        await server.close()


# --- the client ------------------------------------------------------------------------------


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _ask(request: Request, what: str, host: str, epmd_port: int | None, timeout: float) -> bytes:
    """Send one request and return everything the port mapper answers before closing."""
    port = default_epmd_port(epmd_port)
    addr = _fmt_addr(host, port)
    payload = encode_request(request)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(payload)
                await writer.drain()
                answer = bytearray()
                while chunk := await reader.read(65536):
                    answer += chunk
                    if len(answer) > MAX_LISTING:
                        raise RemoteProtocolError(f"answer to {what} from {addr} exceeds {MAX_LISTING} bytes")
            finally:
                await _close_writer(writer)
    except TimeoutError:
        raise EpmdError(f"no answer to {what} from a port mapper at {addr} within {timeout}s") from None
    except OSError as exc:
        raise EpmdError(f"no port mapper answering at {addr} ({_reason(exc)})") from exc
    if not answer:
        raise EpmdError(f"port mapper at {addr} closed the connection without answering {what}")
    return bytes(answer)


async def port_please(
    name: str,
    host: str = "127.0.0.1",
    epmd_port: int | None = None,
    timeout: float = 5.0,
) -> NodeEntry | None:
    """Ask the port mapper on ``host`` where node ``name`` listens.

    ``name`` is the part of the node name before ``@``. Returns its
    :class:`NodeEntry`, or ``None`` if no such name is registered.

    Raises :class:`~pymesh._errors.EpmdError` if no port mapper answers, and
    :class:`~pymesh._errors.RemoteProtocolError` on a malformed answer.
    """
    answer = await _ask(PortPlease2Req(name), "PORT_PLEASE2_REQ", host, epmd_port, timeout)
    response = parse_port2_response(answer)
    if response is None:
        raise RemoteProtocolError(f"PORT2_RESP truncated after {len(answer)} bytes")
    return response.entry


async def names(
    host: str = "127.0.0.1",
    epmd_port: int | None = None,
    timeout: float = 5.0,
) -> list[tuple[str, int]]:
    """List the ``(name, port)`` pairs registered with the port mapper on ``host``.

    Raises :class:`~pymesh._errors.EpmdError` if no port mapper answers, and
    :class:`~pymesh._errors.RemoteProtocolError` on a malformed answer.
    """
    answer = await _ask(NamesReq(), "NAMES_REQ", host, epmd_port, timeout)
    return list(parse_names_response(answer).names)


class Registration:
    """A name held at a port mapper, for as long as this object stays open.

    Returned by :func:`register`. The port mapper drops the name when the
    connection closes, so keep the object for the life of the node and
    :meth:`close` it (or use ``async with``) when the node stops.

    :attr:`closed` is set once the registration is gone: after :meth:`close`,
    or when the port mapper dropped the connection (it stopped or was
    killed); :attr:`lost` then tells the two apart.
    """

    def __init__(
        self,
        name: str,
        port: int,
        creation: int,
        host: str,
        epmd_port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Use :func:`register`."""
        self.name = name
        self.port = port
        self.creation = creation
        self.host = host
        self.epmd_port = epmd_port
        self.closed = asyncio.Event()
        self.lost = False
        self._reader = reader
        self._writer = writer
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        addr = _fmt_addr(self.host, self.epmd_port)
        try:
            data = await self._reader.read(1)
            self.lost = True
            if data:
                log.warning("port mapper at %s sent unexpected data; dropping registration of %r", addr, self.name)
            else:
                log.warning("port mapper at %s dropped the registration of %r", addr, self.name)
        except OSError as exc:
            self.lost = True
            log.warning("port mapper at %s: registration of %r lost: %s", addr, self.name, exc)
        finally:
            self._writer.close()
            self.closed.set()

    async def close(self) -> None:
        """Unregister (close the connection); idempotent."""
        self._watcher.cancel()
        await asyncio.wait([self._watcher])
        # The watcher may have been cancelled before it ever ran its finally.
        self._writer.close()
        self.closed.set()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed.is_set() else "open"
        return (
            f"<Registration {self.name!r} port={self.port} creation={self.creation} "
            f"at {_fmt_addr(self.host, self.epmd_port)} {state}>"
        )


async def register(
    name: str,
    port: int,
    *,
    hidden: bool = False,
    extra: bytes = b"",
    host: str = "127.0.0.1",
    epmd_port: int | None = None,
    timeout: float = 5.0,
) -> Registration:
    """Register node ``name`` (the part before ``@``) as listening on ``port``.

    The port mapper must run on this host: it only takes registrations from
    loopback addresses. Returns the open :class:`Registration`, whose
    ``creation`` tells this incarnation of the node from earlier ones.

    Raises :class:`~pymesh._errors.NameTaken` if the name is registered
    already, :class:`~pymesh._errors.EpmdError` naming ``host:port`` if no port
    mapper answers (or it hangs up without answering, which is how epmd refuses
    a non-loopback peer), and :class:`~pymesh._errors.LocalProtocolError` for
    a name or extra field the protocol cannot carry.
    """
    request = Alive2Req(
        name,
        port,
        NODE_TYPE_HIDDEN if hidden else NODE_TYPE_NORMAL,
        PROTOCOL_TCP_IPV4,
        DIST_HIGHEST,
        DIST_LOWEST,
        bytes(extra),
    )
    payload = encode_request(request)  # bad fields fail here, before any I/O
    epmd_port = default_epmd_port(epmd_port)
    addr = _fmt_addr(host, epmd_port)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, epmd_port)
            writer.write(payload)
            await writer.drain()
            answer = b""
            while (response := parse_alive2_response(answer)) is None:
                chunk = await reader.read(16)
                if not chunk:
                    raise EpmdError(
                        f"port mapper at {addr} closed the connection without answering "
                        f"ALIVE2_REQ for {name!r} (is this host's loopback address in use?)"
                    )
                answer += chunk
    except BaseException as exc:
        if writer is not None:
            writer.close()
        if isinstance(exc, TimeoutError):
            raise EpmdError(f"no answer to ALIVE2_REQ from a port mapper at {addr} within {timeout}s") from None
        if isinstance(exc, OSError):
            raise EpmdError(f"no port mapper answering at {addr} ({_reason(exc)})") from exc
        raise
    if response.result != 0:
        await _close_writer(writer)
        raise NameTaken(f"node name {name!r} is already registered with the port mapper at {addr}")
    log.info("registered %r at port %d with the port mapper at %s (creation %d)", name, port, addr, response.creation)
    return Registration(name, port, response.creation, host, epmd_port, reader, writer)


# --- starting a daemon -------------------------------------------------------------------------


async def _answers(host: str, port: int, timeout: float) -> bool:
    try:
        await names(host, port, timeout)
    except EpmdError:
        return False
    return True


async def _read_pipe(fd: int, timeout: float) -> bytes:
    """Everything written to the pipe ``fd`` until its writers close it (or timeout)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        async with asyncio.timeout(timeout):
            return await reader.read()
    except TimeoutError:
        return b""
    finally:
        transport.close()


async def ensure_running(
    epmd_port: int | None = None,
    host: str = "127.0.0.1",
    timeout: float = 5.0,
) -> bool:
    """Make sure a port mapper answers on ``host``; start one if not.

    If nothing answers ``NAMES_REQ``, start ``python -m pymesh epmd --port P``
    as a detached daemon (own session, no terminal, output discarded), so it
    outlives this node the way ``erl`` leaves ``epmd -daemon`` behind, and wait
    until it answers. Returns True if this call started the port mapper, False
    if one was running already or another process won a race to start it (the
    loser's daemon cannot bind and exits quietly).

    Raises :class:`~pymesh._errors.EpmdError` if ``host`` is not a loopback
    address (a daemon can only be started here) or nothing answers within
    ``timeout`` seconds.
    """
    port = default_epmd_port(epmd_port)
    addr = _fmt_addr(host, port)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if await _answers(host, port, min(timeout, 1.0)):
        return False
    if not _is_loopback(host):
        raise EpmdError(f"no port mapper answering at {addr}, and one can only be started on this host")
    # The daemon writes "ready" to this pipe once it listens; a daemon that loses
    # the race for the port exits without writing, which tells the two apart.
    ready_read, ready_write = os.pipe()
    command = [sys.executable, "-m", "pymesh", "epmd", "--port", str(port), "--ready-fd", str(ready_write)]
    try:
        # A plain Popen, not an asyncio child: the daemon must not be tied to this loop.
        daemon = subprocess.Popen(  # noqa: ASYNC220
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(ready_write,),
        )
    except OSError as exc:
        os.close(ready_read)
        raise EpmdError(f"cannot start a port mapper daemon ({' '.join(command)}): {exc}") from exc
    finally:
        os.close(ready_write)
    started = (await _read_pipe(ready_read, max(deadline - loop.time(), 0.0))).startswith(b"ready")
    # Reap the daemon whenever it exits, so it never lingers as a zombie of ours.
    threading.Thread(target=daemon.wait, name=f"pymesh-epmd-reaper-{daemon.pid}", daemon=True).start()
    while not await _answers(host, port, max(min(deadline - loop.time(), 1.0), 0.1)):
        if loop.time() >= deadline:
            state = "is running" if daemon.poll() is None else f"exited with code {daemon.returncode}"
            raise EpmdError(
                f"started a port mapper daemon (pid {daemon.pid}, which {state}), "
                f"but nothing answers at {addr} after {timeout}s"
            )
        await asyncio.sleep(0.05)
    if started:
        log.info("started port mapper daemon pid=%d on port %d", daemon.pid, port)
    else:
        log.debug("port mapper daemon pid=%d lost the race for port %d", daemon.pid, port)
    return started
